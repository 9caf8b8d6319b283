"""Several photos of one case (an album) against one photo: the accuracy gain of the bot's mean.

    python tools/album_accuracy.py diagnosis/bundled --data ../shared/datasets/skin-photos

The bot answers an album with the mean of its photos' calibrated probabilities
(`diagnosis.serving.postprocess.combined_probabilities`). The data have no real albums, so two
stand-ins are measured on val and test, with the logits `python -m diagnosis evaluate` computes:

- near-duplicate groups (`group` in split.json, photos of one lesion): the truest stand-in, but
  rare (about 15 groups per split) and nearly identical photos, so it understates the gain;
- same-label sets: 2 or 3 photos drawn at random (seed 0) from different groups of one label.
  Different patients vary more than one spot photographed twice, so the photos' errors are less
  alike than in a real album: this overstates the gain. The truth lies between the two.

For each set, "single" is every photo of the set answered alone (the mean of their accuracies),
"album" the set answered once with the combined probabilities. Also printed: how often the answer
names a condition rather than "I can't tell" (the card's abstention rule), and, for melanoma and
BCC sets, how often the referral rule sends them to a dermatologist.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from diagnosis.bundle import load_bundle  # noqa: E402
from diagnosis.serving.postprocess import combined_probabilities  # noqa: E402
from diagnosis.training.calibration import softmax, urgent_flags  # noqa: E402
from diagnosis.training.evaluate import bundle_logits, choose_samples  # noqa: E402

SETS_PER_LABEL = 40  # same-label sets drawn per label and album size


def same_group_sets(samples) -> list[list[int]]:
    by_group = defaultdict(list)
    for i, sample in enumerate(samples):
        by_group[sample.group_key].append(i)
    return [members for members in by_group.values() if len(members) > 1]


def same_label_sets(samples, size: int, rng: random.Random) -> list[list[int]]:
    """`size` photos of one label, each from a different near-duplicate group."""
    by_label = defaultdict(lambda: defaultdict(list))
    for i, sample in enumerate(samples):
        by_label[sample.label][sample.group_key].append(i)
    sets = []
    for label in sorted(by_label):
        groups = sorted(by_label[label])
        if len(groups) < size:
            continue
        for _ in range(SETS_PER_LABEL):
            sets.append([rng.choice(by_label[label][g]) for g in rng.sample(groups, size)])
    return sets


def answered(rows: np.ndarray, card) -> np.ndarray:
    """Which rows the bot answers with a condition rather than "I can't tell" (the card's rule:
    a top probability of at least abstain_threshold, and not the catch-all label)."""
    other = card.labels.index(card.other_label) if card.other_label else -1
    return (rows.max(axis=1) >= card.abstain_threshold) & (rows.argmax(axis=1) != other)


def score(sets, probs, targets, malignant, card) -> dict:
    single_right, album_right, single_ref, album_ref, n_mal = [], [], [], [], 0
    single_answered, album_answered = [], []
    urgent_at = card.urgent_threshold
    for members in sets:
        target = targets[members[0]]
        rows = probs[members]
        combined = combined_probabilities(rows)
        single_right.append(np.mean(rows.argmax(axis=1) == target))
        album_right.append(combined.argmax() == target)
        single_answered.append(answered(rows, card).mean())
        album_answered.append(answered(combined[None], card)[0])
        if target in malignant:
            n_mal += 1
            single_ref.append(urgent_flags(rows, malignant, urgent_at).mean())
            album_ref.append(urgent_flags(combined[None], malignant, urgent_at)[0])
    return {
        "sets": len(sets),
        "single_acc": float(np.mean(single_right)),
        "album_acc": float(np.mean(album_right)),
        "single_answered": float(np.mean(single_answered)),
        "album_answered": float(np.mean(album_answered)),
        "malignant_sets": n_mal,
        "single_referral": float(np.mean(single_ref)) if single_ref else None,
        "album_referral": float(np.mean(album_ref)) if album_ref else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    card = bundle.card
    index = {label: i for i, label in enumerate(card.labels)}
    malignant = [index[m] for m in card.malignant_labels]
    for split in ("val", "test"):
        samples = [s for s in choose_samples(bundle, args.data, split) if s.label in index]
        logits = bundle_logits(bundle, samples, args.data, workers=args.workers, progress=False)
        probs = softmax(logits, card.temperature)
        targets = np.array([index[s.label] for s in samples])
        rng = random.Random(0)
        stand_ins = {
            "near-duplicate groups": same_group_sets(samples),
            "same-label pairs": same_label_sets(samples, 2, rng),
            "same-label triples": same_label_sets(samples, 3, rng),
        }
        for name, sets in stand_ins.items():
            r = score(sets, probs, targets, malignant, card)
            referral = (
                f"; malignant referred {r['single_referral']:.3f} -> {r['album_referral']:.3f}"
                f" ({r['malignant_sets']} sets)"
                if r["malignant_sets"]
                else ""
            )
            print(
                f"{split} {name}: {r['sets']} sets, accuracy single {r['single_acc']:.3f} -> "
                f"album {r['album_acc']:.3f} ({r['album_acc'] - r['single_acc']:+.3f}); answered "
                f"(not I-can't-tell) {r['single_answered']:.3f} -> {r['album_answered']:.3f}"
                f"{referral}"
            )


if __name__ == "__main__":
    main()
