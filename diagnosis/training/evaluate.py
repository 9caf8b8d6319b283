"""Evaluating a bundle on a photo folder, through the same preprocessing as serving.

`python -m diagnosis evaluate` and the end of training both call `evaluate_bundle`, so the
figures in a model card are the figures anyone can reproduce from the saved split.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from diagnosis.bundle import Bundle, load_bundle
from diagnosis.training.calibration import reliability_bins, softmax
from diagnosis.training.data import SPLITS, PhotoDataset, Sample, load_split, read_samples
from diagnosis.training.metrics import compute_metrics

SPLIT_FILE = "split.json"


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    samples: list[Sample]
    probs: np.ndarray  # calibrated, one row per sample (rows of unknown labels included)
    targets: np.ndarray  # -1 where the model lacks the label
    unknown_labels: dict[str, int]  # labels in the data the model does not have, with counts


def choose_samples(bundle: Bundle, data_dir: Path, split: str) -> list[Sample]:
    """The photos to evaluate: one split of the bundle's saved split, or all of the folder."""
    samples = read_samples(data_dir)
    if split == "all":
        return samples
    split_path = bundle.path / SPLIT_FILE
    if not split_path.is_file():
        raise FileNotFoundError(f"{split_path}: no saved split; use --split all")
    wanted = {s.file for s in load_split(split_path)[split]}
    chosen = [s for s in samples if s.file in wanted]
    if not chosen:
        raise ValueError(f"none of the {split} photos of {split_path} are in {data_dir}")
    return chosen


def bundle_logits(
    bundle: Bundle,
    samples: list[Sample],
    data_dir: Path,
    batch_size: int = 32,
    workers: int = 2,
    progress: bool = True,
    device: str = "cpu",
) -> np.ndarray:
    dataset = PhotoDataset(samples, data_dir, bundle.card, train=False)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers)
    model = bundle.model.to(device).eval()
    outputs = []
    with torch.inference_mode():
        for images, _ in tqdm(loader, desc="evaluate", disable=not progress):
            images = images.to(device)
            logits = model(images).float()
            if bundle.card.test_time_flip:
                logits = (logits + model(images.flip(-1)).float()) / 2
            outputs.append(logits.cpu())
    model.cpu()
    return torch.cat(outputs).numpy() if outputs else np.zeros((0, bundle.card.num_classes))


def evaluate_bundle(
    bundle: Bundle | Path,
    data_dir: Path,
    split: str = "test",
    progress: bool = True,
    workers: int = 2,
    device: str = "cpu",
) -> Evaluation:
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle)
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split must be one of {', '.join(SPLITS)} or all")
    card = bundle.card
    samples = choose_samples(bundle, data_dir, split)
    index = {label: i for i, label in enumerate(card.labels)}
    targets = np.array([index.get(s.label, -1) for s in samples])
    unknown = Counter(s.label for s in samples if s.label not in index)
    logits = bundle_logits(
        bundle, samples, data_dir, progress=progress, workers=workers, device=device
    )
    probs = softmax(logits, card.temperature)
    metrics = compute_metrics(
        probs,
        targets,
        card.labels,
        card=card,
        uncalibrated_probs=softmax(logits),
        sources=[s.source or "unknown" for s in samples],
    )
    metrics["split"] = split
    metrics["model"] = card.version
    metrics["unknown_labels"] = dict(unknown)
    return Evaluation(metrics, samples, probs, targets, dict(unknown))


def save_figures(evaluation: Evaluation, labels: list[str], out_dir: Path) -> list[Path]:
    """Confusion matrix and reliability diagram as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = evaluation.metrics
    matrix = np.array(metrics["confusion"], dtype=float)
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)

    figure, axes = plt.subplots(figsize=(9, 8))
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(range(len(labels)), labels, fontsize=8)
    for (row, col), count in np.ndenumerate(matrix):
        if count:
            axes.text(
                col,
                row,
                int(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if normalised[row, col] > 0.5 else "black",
            )
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(
        f"Confusion matrix ({metrics['split']}, {metrics['count']} photos; "
        "colour = share of the true label)"
    )
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    confusion_path = out_dir / "confusion_matrix.png"
    figure.savefig(confusion_path, dpi=110)
    plt.close(figure)

    known = evaluation.targets >= 0
    figure, axes = plt.subplots(figsize=(5.5, 5.5))
    axes.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    rows = reliability_bins(evaluation.probs[known], evaluation.targets[known], bins=10)
    confidence = [c for c, _, n in rows if n]
    accuracy = [a for _, a, n in rows if n]
    axes.bar(
        [c for c, _, n in rows if n],
        accuracy,
        width=0.08,
        alpha=0.6,
        label="accuracy per confidence bin",
    )
    axes.plot(confidence, accuracy, "o-", color="C1")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("confidence (top probability)")
    axes.set_ylabel("accuracy")
    ece_raw = metrics.get("ece_uncalibrated")
    title = f"Reliability: ECE {metrics['ece']:.3f} after temperature scaling"
    if ece_raw is not None:
        title += f"\n(ECE {ece_raw:.3f} before)"
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    reliability_path = out_dir / "reliability_diagram.png"
    figure.savefig(reliability_path, dpi=110)
    plt.close(figure)
    return [confusion_path, reliability_path]


def summary_json(metrics: dict[str, Any]) -> str:
    keep = {k: v for k, v in metrics.items() if k not in ("confusion",)}
    return json.dumps(keep, ensure_ascii=False)


def format_report(metrics: dict[str, Any]) -> str:
    def pct(value):
        return "n/a" if value is None else f"{value * 100:.1f}%"

    lines = [
        f"model {metrics['model']} on {metrics['count']} photos ({metrics['split']})",
        f"  macro-F1 (named labels) {metrics['macro_f1']:.3f}   accuracy {pct(metrics['accuracy'])}"
        f"   top-3 {pct(metrics['top3'])}",
        f"  ECE {metrics['ece']:.3f} after calibration"
        + (
            f", {metrics['ece_uncalibrated']:.3f} before"
            if metrics.get("ece_uncalibrated") is not None
            else ""
        ),
        f"  malignant sensitivity (melanoma + BCC, incl. urgent referral) "
        f"{pct(metrics['malignant_sensitivity'])}",
        f"  'other' answered confidently {pct(metrics['other_confident_rate'])}   "
        f'named photos answered "can\'t tell" {pct(metrics["abstain_rate_named"])}',
        "",
        f"  {'label':36s} {'prec':>6s} {'recall':>6s} {'F1':>6s} {'n':>5s}",
    ]
    for label, row in metrics["per_class"].items():
        lines.append(
            f"  {label:36s} {row['precision']:6.3f} {row['recall']:6.3f} "
            f"{row['f1']:6.3f} {row['support']:5d}"
        )
    for source, row in metrics.get("per_source", {}).items():
        lines.append(
            f"  source {source}: {row['count']} photos, macro-F1 {row['macro_f1']:.3f}, "
            f"accuracy {pct(row['accuracy'])}, top-3 {pct(row['top3'])}"
        )
    if metrics.get("unknown_labels"):
        lines.append(f"  labels the model does not have (not scored): {metrics['unknown_labels']}")
    return "\n".join(lines)
