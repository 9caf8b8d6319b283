"""Refit a bundle's temperature and thresholds on its saved val split, through the serving path.

    python tools/refit_calibration.py BUNDLE_DIR --data ../shared/datasets/skin-photos [--write]

Training fits them on the GPU's bf16 logits (or, for the first bundle, on a WebP copy of the
photos); serving runs fp32 on the CPU from the fp16 weights file. This refits them, with the
same functions and targets as `diagnosis/training/train.py` (at most 20 % of val `other`
photos answered confidently; urgent referral for 95 % of val malignant photos), on the logits that
`python -m diagnosis evaluate` computes, then prints val and test figures. --write stores the new
calibration and the test figures in the model card (the weights and their checksum stay).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from diagnosis.bundle import load_bundle, write_card  # noqa: E402
from diagnosis.training.calibration import (  # noqa: E402
    choose_abstain_threshold,
    choose_urgent_threshold,
    fit_temperature,
    softmax,
    urgent_flags,
)
from diagnosis.training.evaluate import bundle_logits, choose_samples  # noqa: E402
from diagnosis.training.metrics import compute_metrics  # noqa: E402
from diagnosis.training.train import CARD_METRICS  # noqa: E402


def figures(bundle, logits, samples) -> dict:
    card = bundle.card
    index = {label: i for i, label in enumerate(card.labels)}
    targets = np.array([index.get(s.label, -1) for s in samples])
    probs = softmax(logits, card.temperature)
    metrics = compute_metrics(
        probs,
        targets,
        card.labels,
        card=card,
        uncalibrated_probs=softmax(logits),
        sources=[s.source or "unknown" for s in samples],
    )
    malignant = [card.labels.index(m) for m in card.malignant_labels]
    benign = (targets >= 0) & ~np.isin(targets, malignant)
    flagged = urgent_flags(probs[benign], malignant, card.urgent_threshold)
    metrics["urgent_rate_non_malignant"] = float(flagged.mean()) if benign.any() else None
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()

    bundle = load_bundle(args.bundle)
    card = bundle.card
    config = card.training_data.get("config", {})
    split_logits = {}
    split_samples = {}
    for split in ("val", "test"):
        split_samples[split] = choose_samples(bundle, args.data, split)
        split_logits[split] = bundle_logits(
            bundle, split_samples[split], args.data, workers=args.workers, progress=False
        )
    old = (card.temperature, card.abstain_threshold, card.urgent_threshold)
    index = {label: i for i, label in enumerate(card.labels)}
    val_targets = np.array([index.get(s.label, -1) for s in split_samples["val"]])
    known = val_targets >= 0
    val_logits = split_logits["val"][known]
    val_targets = val_targets[known]
    card.temperature = fit_temperature(val_logits, val_targets)
    val_probs = softmax(val_logits, card.temperature)
    other = card.labels.index(card.other_label) if card.other_label else None
    card.abstain_threshold = choose_abstain_threshold(
        val_probs, val_targets, other, config.get("max_other_confident", 0.2)
    )
    card.urgent_threshold = choose_urgent_threshold(
        val_probs,
        val_targets,
        [card.labels.index(m) for m in card.malignant_labels],
        config.get("min_malignant_sensitivity", 0.95),
    )
    print(
        f"{card.version}: temperature {old[0]:.3f} -> {card.temperature:.3f}, abstain "
        f"{old[1]} -> {card.abstain_threshold}, urgent {old[2]} -> {card.urgent_threshold}"
    )
    result = {}
    for split in ("val", "test"):
        m = figures(bundle, split_logits[split], split_samples[split])
        result[split] = m
        print(
            f"  {split}: macro-F1 {m['macro_f1']:.3f} acc {m['accuracy']:.3f} "
            f"top-3 {m['top3']:.3f} "
            f"mal.sens {m['malignant_sensitivity']:.3f} ECE {m['ece']:.3f} "
            f"(raw {m['ece_uncalibrated']:.3f}) other-conf {m['other_confident_rate']:.3f} "
            f"abstain-named {m['abstain_rate_named']:.3f} "
            f"urgent-non-malignant {m['urgent_rate_non_malignant']:.3f} | "
            + ", ".join(f"{s} F1 {r['macro_f1']:.3f}" for s, r in m["per_source"].items())
        )
    if args.write:
        test, val = result["test"], result["val"]
        card.metrics = {
            "split": "test",
            **{k: test[k] for k in CARD_METRICS},
            "urgent_rate_non_malignant": test["urgent_rate_non_malignant"],
            "val_macro_f1": val["macro_f1"],
            "val_macro_f1_training": card.metrics.get("val_macro_f1"),
            "note": "figures on the original JPEGs through the serving path (CPU, fp32 from the "
            "fp16 weights): python -m diagnosis evaluate; val_macro_f1_training is the bf16 GPU "
            "figure that picked the epoch",
        }
        card.training_data["recalibrated"] = (
            "temperature and thresholds refitted on the val split through the serving path "
            "(tools/refit_calibration.py)"
        )
        write_card(card, args.bundle)
        print(json.dumps({"written": str(args.bundle / "model_card.json")}))


if __name__ == "__main__":
    main()
