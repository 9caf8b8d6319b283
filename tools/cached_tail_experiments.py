"""Compare cached-tail settings on val only (docs/model-report.md, "CPU fine-tuning of the last
stages"); test is never read here.

    python tools/cached_tail_experiments.py cache --views 1 --extras --cache runs/cache
    python tools/cached_tail_experiments.py cache --views 2 --seed 1 --cache runs/cache2
    python tools/cached_tail_experiments.py train \
        '[["views3-b6", {"epochs": 3, "lr": 1e-4, "tail_from": 6}, false]]' \
        --cache runs/cache --cache runs/cache2

`cache` stores light-augmented views of every training photo of the bundled model's split (and,
with --extras, the sampled HAM10000 / MSLD photos, at most 200 per label) and the val photos at
the input of block 5 (`cached_tail.prepare`); another --seed gives other views. `train` pools the
training views of every --cache folder (so a 1-view and a 2-view cache make 3 views a photo) and
fine-tunes, per setting [name, TrainConfig overrides, with the extra photos?], blocks
`tail_from` (5 or 6) on + head; for tail_from 6 block 5 is run once over the cache, frozen
(cheaper than training it). Per-epoch val macro-F1 is logged; for the kept epoch the val logits
go to runs/ and the val screening point and "I can't tell" share are printed, chosen on val by
the same rules as a bundle's card (train.finish_bundle).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from diagnosis.bundle import BUNDLED_MODEL_DIR, load_bundle  # noqa: E402
from diagnosis.training import cached_tail  # noqa: E402
from diagnosis.training.calibration import (  # noqa: E402
    choose_abstain_threshold,
    choose_urgent_threshold,
    fit_temperature,
    softmax,
    urgent_flags,
)
from diagnosis.training.metrics import compute_metrics  # noqa: E402
from diagnosis.training.train_config import TrainConfig  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RUNS = Path("runs")
CACHED_AT = 5  # every cache holds the input of block 5


def cache_config(cache_dir: Path, views: int, seed: int, extras: bool) -> TrainConfig:
    return TrainConfig(
        data_dir=DATASETS / "skin-photos",
        out_dir=RUNS / "exp",
        recipe="cached-tail",
        views=views,
        seed=seed,
        tail_from=CACHED_AT,
        extra_data=(DATASETS / "ham10000-dermoscopy", DATASETS / "msld-viral-rashes")
        if extras
        else (),
        cache_dir=cache_dir,
        batch_size=64,
        workers=1,
    )


def cached_files(cache_dir: Path, prefix: str) -> list[Path]:
    return sorted(
        p
        for p in cache_dir.glob(f"{prefix}*.npy")
        if not p.name.endswith((".targets.npy", ".partial.npy"))
    )


def read_set(paths: list[Path]) -> cached_tail.FeatureSet:
    parts = [
        cached_tail.FeatureSet(np.load(p, mmap_mode="r"), np.load(p.with_suffix(".targets.npy")))
        for p in paths
    ]
    return cached_tail.FeatureSet(
        np.concatenate([np.asarray(p.features) for p in parts]),
        np.concatenate([p.targets for p in parts]),
    )


def through_block5(model: torch.nn.Module, features: cached_tail.FeatureSet):
    out = []
    with torch.no_grad():
        for start in range(0, len(features.targets), 256):
            hidden = torch.from_numpy(np.asarray(features.features[start : start + 256])).float()
            out.append(model.blocks[5](hidden).half().numpy())
    return cached_tail.FeatureSet(np.concatenate(out), features.targets)


def screening_on_val(logits: np.ndarray, targets: np.ndarray, card) -> dict:
    """Temperature, "I can't tell" and urgent thresholds chosen on val as finish_bundle does,
    and what they give on val itself (optimistic: chosen and measured on the same photos)."""
    labels = card.labels
    probs = softmax(logits, fit_temperature(logits, targets))
    other_index = labels.index(card.other_label) if card.other_label else None
    malignant = [labels.index(label) for label in card.malignant_labels]
    abstain = choose_abstain_threshold(probs, targets, other_index)
    urgent = choose_urgent_threshold(probs, targets, malignant)
    chosen = copy.copy(card)
    chosen.abstain_threshold, chosen.urgent_threshold = abstain, urgent
    metrics = compute_metrics(probs, targets, labels, chosen)
    not_malignant = ~np.isin(targets, malignant)
    return {
        "macro_f1": round(metrics["macro_f1"], 4),
        "top3": round(metrics["top3"], 4),
        "ece": round(metrics["ece"], 4),
        "urgent_threshold": urgent,
        "malignant_referred": round(metrics["malignant_sensitivity"], 4),
        "rest_flagged_urgent": round(
            float(urgent_flags(probs[not_malignant], malignant, urgent).mean()), 4
        ),
        "abstain_threshold": abstain,
        "cant_tell_named": round(metrics["abstain_rate_named"], 4),
    }


def train(settings: list, cache_dirs: list[Path]) -> None:
    bundle = load_bundle(BUNDLED_MODEL_DIR)
    card = bundle.card
    main_train = read_set([p for d in cache_dirs for p in cached_files(d, "train-skin-photos-")])
    extra_files = [
        p
        for d in cache_dirs
        for p in cached_files(d, "train-")
        if not p.name.startswith("train-skin-photos-")
    ]
    wanted = any(with_extras for _, _, with_extras in settings)
    extra_train = read_set(extra_files) if wanted and extra_files else None
    val_set = read_set(cached_files(cache_dirs[0], "val-"))
    start = bundle.model.float().eval()
    by_tail: dict[int, tuple] = {CACHED_AT: (main_train, extra_train, val_set)}
    start_logits = cached_tail.tail_logits(start, val_set, CACHED_AT)
    print("START", json.dumps(screening_on_val(start_logits, val_set.targets, card)), flush=True)
    for name, overrides, with_extras in settings:
        setting = cache_config(cache_dirs[0], 1, 0, False)
        setting.tail_from = 6
        for key, value in overrides.items():
            setattr(setting, key, value)
        if setting.tail_from not in by_tail:
            by_tail[setting.tail_from] = tuple(
                part if part is None else through_block5(start, part)
                for part in (main_train, extra_train, val_set)
            )
        main_part, extra_part, val_part = by_tail[setting.tail_from]
        train_part = main_part
        if with_extras and extra_part is not None:
            train_part = cached_tail.FeatureSet(
                np.concatenate([main_part.features, extra_part.features]),
                np.concatenate([main_part.targets, extra_part.targets]),
            )
        model = load_bundle(BUNDLED_MODEL_DIR).model.float().eval()
        best_epoch, best_f1, history = cached_tail.train_tail(
            model, train_part, val_part, card.labels, setting
        )
        logits = cached_tail.tail_logits(model, val_part, setting.tail_from)
        result = {
            "views": len(train_part.targets),
            "best_epoch": best_epoch,
            "val_f1": best_f1,
            "kept": screening_on_val(logits, val_part.targets, card),
        }
        print("RESULT", name, json.dumps({**result, "history": history}), flush=True)
        np.save(RUNS / f"val_logits_{name}.npy", logits)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["cache", "train"])
    parser.add_argument("settings", nargs="?", default="[]")
    parser.add_argument("--cache", type=Path, action="append")
    parser.add_argument("--views", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--extras", action="store_true")
    args = parser.parse_args()
    cache_dirs = args.cache or [RUNS / "cache"]
    if args.mode == "cache":
        cached_tail.prepare(cache_config(cache_dirs[0], args.views, args.seed, args.extras))
    else:
        train(json.loads(args.settings), cache_dirs)


if __name__ == "__main__":
    main()
