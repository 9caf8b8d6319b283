"""Evaluation figures from probabilities: what `evaluate` prints and training writes to the card.

Macro-F1 is averaged over the named conditions only: `other` is a bin for "none of these",
and what matters for it is how rarely it is answered confidently (`other_confident_rate`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diagnosis.bundle import ModelCard
from diagnosis.training.calibration import (
    confident_other_rate,
    expected_calibration_error,
    urgent_flags,
)


def per_class_scores(predicted: np.ndarray, targets: np.ndarray, labels: list[str]) -> dict:
    scores = {}
    for index, label in enumerate(labels):
        true_pos = int(((predicted == index) & (targets == index)).sum())
        predicted_pos = int((predicted == index).sum())
        support = int((targets == index).sum())
        precision = true_pos / predicted_pos if predicted_pos else 0.0
        recall = true_pos / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    return scores


def confusion_matrix(predicted: np.ndarray, targets: np.ndarray, size: int) -> np.ndarray:
    matrix = np.zeros((size, size), dtype=int)
    np.add.at(matrix, (targets, predicted), 1)
    return matrix


def compute_metrics(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: list[str],
    card: ModelCard | None = None,
    uncalibrated_probs: np.ndarray | None = None,
    sources: list[str] | None = None,
) -> dict[str, Any]:
    """All figures for photos whose label the model knows (targets >= 0)."""
    known = targets >= 0
    probs, targets = probs[known], targets[known]
    if uncalibrated_probs is not None:
        uncalibrated_probs = uncalibrated_probs[known]
    if sources is not None:
        sources = [s for s, keep in zip(sources, known, strict=True) if keep]
    other_label = card.other_label if card else ("other" if "other" in labels else None)
    other_index = labels.index(other_label) if other_label in labels else None
    named = [i for i in range(len(labels)) if i != other_index]

    predicted = probs.argmax(axis=1)
    per_class = per_class_scores(predicted, targets, labels)
    named_with_support = [labels[i] for i in named if per_class[labels[i]]["support"] > 0]
    top3 = np.argsort(-probs, axis=1)[:, :3]

    malignant = [labels.index(m) for m in (card.malignant_labels if card else []) if m in labels]
    malignant_photos = np.isin(targets, malignant)
    if malignant and malignant_photos.any():
        caught = np.isin(predicted, malignant) | urgent_flags(
            probs, malignant, card.urgent_threshold
        )
        malignant_sensitivity = float(caught[malignant_photos].mean())
    else:
        malignant_sensitivity = None

    threshold = card.abstain_threshold if card else 0.0
    result = {
        "count": int(len(targets)),
        "accuracy": float((predicted == targets).mean()) if len(targets) else 0.0,
        "macro_f1": float(np.mean([per_class[label]["f1"] for label in named_with_support]))
        if named_with_support
        else 0.0,
        "top3": float((top3 == targets[:, None]).any(axis=1).mean()) if len(targets) else 0.0,
        "ece": expected_calibration_error(probs, targets),
        "ece_uncalibrated": expected_calibration_error(uncalibrated_probs, targets)
        if uncalibrated_probs is not None
        else None,
        "malignant_sensitivity": malignant_sensitivity,
        "other_confident_rate": confident_other_rate(probs, targets, other_index, threshold),
        "abstain_rate_named": _abstain_rate(probs, targets, named, other_index, threshold),
        "per_class": per_class,
        "labels": labels,
        "confusion": confusion_matrix(predicted, targets, len(labels)).tolist(),
    }
    if sources is not None:
        result["per_source"] = {
            source: _source_summary(probs, targets, labels, card, [s == source for s in sources])
            for source in sorted(set(sources))
        }
    return result


def _abstain_rate(probs, targets, named, other_index, threshold) -> float:
    """Share of photos of named conditions the bot would answer with "I can't tell"."""
    is_named = np.isin(targets, named)
    if not is_named.any():
        return 0.0
    top = probs[is_named].argmax(axis=1)
    abstain = (probs[is_named].max(axis=1) < threshold) | (top == other_index)
    return float(abstain.mean())


def _source_summary(probs, targets, labels, card, mask) -> dict[str, Any]:
    mask = np.asarray(mask)
    summary = compute_metrics(probs[mask], targets[mask], labels, card)
    return {
        key: summary[key]
        for key in (
            "count",
            "accuracy",
            "macro_f1",
            "top3",
            "malignant_sensitivity",
            "other_confident_rate",
        )
    }
