"""Honest confidence: temperature scaling, calibration error, and the thresholds the bot acts on.

Everything here is fitted on the validation split only, so test figures stay unbiased.
"""

from __future__ import annotations

import numpy as np
import torch


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature that minimises validation NLL (Guo et al., 2017)."""
    logits_t = torch.as_tensor(logits, dtype=torch.float64)
    targets_t = torch.as_tensor(targets, dtype=torch.long)
    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)  # optimise log T: T > 0
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(logits_t / log_t.exp(), targets_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(np.clip(log_t.exp().item(), 0.05, 20.0))


def reliability_bins(
    probs: np.ndarray, targets: np.ndarray, bins: int = 15
) -> list[tuple[float, float, int]]:
    """(mean confidence, accuracy, count) per equal-width confidence bin."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    edges = np.linspace(0.0, 1.0, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            rows.append(
                (float(confidence[inside].mean()), float(correct[inside].mean()), int(inside.sum()))
            )
        else:
            rows.append(((low + high) / 2, 0.0, 0))
    return rows


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = 15) -> float:
    total = len(targets)
    if total == 0:
        return 0.0
    return float(
        sum(
            count / total * abs(conf - acc)
            for conf, acc, count in reliability_bins(probs, targets, bins)
        )
    )


def confident_other_rate(
    probs: np.ndarray, targets: np.ndarray, other_index: int | None, threshold: float
) -> float:
    """Share of `other` photos that get a named condition with confidence >= threshold."""
    if other_index is None:
        return 0.0
    is_other = targets == other_index
    if not is_other.any():
        return 0.0
    top = probs[is_other].argmax(axis=1)
    confident = (probs[is_other].max(axis=1) >= threshold) & (top != other_index)
    return float(confident.mean())


def choose_abstain_threshold(
    probs: np.ndarray,
    targets: np.ndarray,
    other_index: int | None,
    max_other_confident: float = 0.2,
) -> float:
    """The lowest threshold at which few enough `other` photos are answered confidently.

    Lowest, because every step up makes the bot say "I can't tell" to more photos of the
    conditions it does know.
    """
    for threshold in np.arange(0.20, 0.96, 0.01):
        if confident_other_rate(probs, targets, other_index, threshold) <= max_other_confident:
            return round(float(threshold), 2)
    return 0.95


def urgent_flags(probs: np.ndarray, malignant_indices: list[int], threshold: float) -> np.ndarray:
    """The referral rule: the malignant labels together are at least `threshold` likely."""
    if not malignant_indices:
        return np.zeros(len(probs), dtype=bool)
    return probs[:, malignant_indices].sum(axis=1) >= threshold


def choose_urgent_threshold(
    probs: np.ndarray,
    targets: np.ndarray,
    malignant_indices: list[int],
    min_sensitivity: float = 0.95,
) -> float:
    """The highest threshold that still refers `min_sensitivity` of malignant photos.

    Highest, so that benign photos are not sent to urgent care needlessly; never above 0.5.
    """
    malignant = np.isin(targets, malignant_indices)
    if not malignant.any():
        return 0.2
    for threshold in np.arange(0.50, 0.01, -0.01):
        flagged = urgent_flags(probs[malignant], malignant_indices, threshold)
        if flagged.mean() >= min_sensitivity:
            return round(float(threshold), 2)
    return 0.02
