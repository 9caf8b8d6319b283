"""Compare cached-tail settings on val only (docs/model-report.md, "CPU fine-tuning of the last
stages"); test is never read here.

    python tools/cached_tail_experiments.py cache
    python tools/cached_tail_experiments.py train '[["extras6", {"epochs": 4, "lr": 3e-4}, true]]'

`cache` stores one light-augmented view of every training photo of the bundled model's split,
the sampled HAM10000 / MSLD photos (at most 200 per label) and the val photos at the input of
block 5 (`cached_tail.prepare`, under runs/cache). `train` runs block 5 once more over that
cache (frozen: under this machine's contention training it cost 13 minutes an epoch) and
fine-tunes block 6 + head per setting: [name, TrainConfig overrides, with the extra photos?];
per-epoch val macro-F1 is logged, the val logits of the kept epoch go to runs/.
"""

from __future__ import annotations

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
from diagnosis.training.calibration import fit_temperature, softmax  # noqa: E402
from diagnosis.training.metrics import compute_metrics  # noqa: E402
from diagnosis.training.train_config import TrainConfig  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
RUNS = Path("runs")


def through_block5(model: torch.nn.Module, features: cached_tail.FeatureSet):
    out = []
    with torch.no_grad():
        for start in range(0, len(features.targets), 256):
            hidden = torch.from_numpy(np.asarray(features.features[start : start + 256])).float()
            out.append(model.blocks[5](hidden).half().numpy())
    return cached_tail.FeatureSet(np.concatenate(out), features.targets)


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    config = TrainConfig(
        data_dir=DATASETS / "skin-photos",
        out_dir=RUNS / "exp",
        recipe="cached-tail",
        views=1,
        tail_from=5,
        extra_data=(DATASETS / "ham10000-dermoscopy", DATASETS / "msld-viral-rashes"),
        cache_dir=RUNS / "cache",
        batch_size=64,
        workers=1,
    )
    bundle, split, train_set, val_set = cached_tail.prepare(config)
    main_views = config.views * len(split["train"])
    if sys.argv[1] == "cache":
        return
    start = bundle.model.float().eval()
    block6 = RUNS / "cache" / "tail6.npz"
    if block6.is_file():
        stored = np.load(block6)
        train_set = cached_tail.FeatureSet(stored["tf"], stored["tt"])
        val_set = cached_tail.FeatureSet(stored["vf"], stored["vt"])
    else:
        train_set, val_set = through_block5(start, train_set), through_block5(start, val_set)
        np.savez(
            block6,
            tf=train_set.features,
            tt=train_set.targets,
            vf=val_set.features,
            vt=val_set.targets,
        )
    for name, overrides, with_extras in json.loads(sys.argv[2]):
        setting = copy.deepcopy(config)
        setting.tail_from = 6
        for key, value in overrides.items():
            setattr(setting, key, value)
        part = train_set
        if not with_extras:
            part = cached_tail.FeatureSet(
                train_set.features[:main_views], train_set.targets[:main_views]
            )
        model = load_bundle(BUNDLED_MODEL_DIR).model.float().eval()
        best_epoch, best_f1, history = cached_tail.train_tail(
            model, part, val_set, bundle.card.labels, setting
        )
        logits = cached_tail.tail_logits(model, val_set, setting.tail_from)
        probs = softmax(logits, fit_temperature(logits, val_set.targets))
        metrics = compute_metrics(probs, val_set.targets, bundle.card.labels)
        result = {"best_epoch": best_epoch, "val_f1": best_f1, "top3": metrics["top3"]}
        print("RESULT", name, json.dumps({**result, "history": history}), flush=True)
        np.save(RUNS / f"val_logits_{name}.npy", logits)


if __name__ == "__main__":
    main()
