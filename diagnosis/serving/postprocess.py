"""From logits to the answer the bot gives: temperature scaling, top-3, abstention, urgency.

The same for every back-end, in numpy: whichever library computed the logits, the card's
temperature, abstention threshold and referral rule turn them into a `Prediction` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from diagnosis.bundle import ModelCard

TOP_K = 3


@dataclass(frozen=True)
class RankedLabel:
    label: str
    name_en: str
    name_ko: str
    prob: float


@dataclass(frozen=True)
class Prediction:
    top: tuple[RankedLabel, ...]  # the TOP_K most likely labels, most likely first
    probabilities: dict[str, float]  # every label, temperature-scaled
    abstain: bool  # True: the model should say "I can't tell"
    urgent: bool  # True: possible skin cancer, whatever the top answer (card's referral rule)
    model_version: str
    # When urgent: True for the strong tier ("a skin cancer is likely"), False for "a skin cancer
    # can't be ruled out" (card's cancer_likely_threshold).
    cancer_likely: bool = True

    @property
    def best(self) -> RankedLabel:
        return self.top[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "top": [
                {"label": r.label, "name_en": r.name_en, "name_ko": r.name_ko, "prob": r.prob}
                for r in self.top
            ],
            "abstain": self.abstain,
            "urgent": self.urgent,
            "cancer_likely": self.urgent and self.cancer_likely,
            "model": self.model_version,
        }


def calibrated_probabilities(logits: np.ndarray, card: ModelCard) -> np.ndarray:
    """Softmax of temperature-scaled logits, row by row, in float64 (no overflow)."""
    scaled = np.asarray(logits, dtype=np.float64) / card.temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def predictions_from_logits(logits: np.ndarray, card: ModelCard) -> list[Prediction]:
    return [
        prediction_from_probabilities(row, card) for row in calibrated_probabilities(logits, card)
    ]


def combined_probabilities(rows: np.ndarray) -> np.ndarray:
    """Several photos of one case as one answer: the mean of their calibrated probabilities.

    Measured against single photos on val and test (tools/album_accuracy.py, docs/model-report.md);
    a mean keeps the result calibrated-looking and lets one clear photo outweigh a vague one.
    """
    return np.asarray(rows, dtype=np.float64).mean(axis=0)


def combine_predictions(probabilities: list[dict[str, float]], card: ModelCard) -> Prediction:
    """One `Prediction` for several photos of the same spot (an album), from each photo's
    `Prediction.probabilities` (a label the card lacks counts as 0)."""
    rows = [[probs.get(label, 0.0) for label in card.labels] for probs in probabilities]
    return prediction_from_probabilities(combined_probabilities(np.array(rows)), card)


def prediction_from_probabilities(probs: np.ndarray, card: ModelCard) -> Prediction:
    order = np.argsort(-probs, kind="stable")[:TOP_K]
    top = tuple(
        RankedLabel(
            label=card.labels[i],
            name_en=card.display_name(card.labels[i], "en"),
            name_ko=card.display_name(card.labels[i], "ko"),
            prob=round(float(probs[i]), 4),
        )
        for i in order
    )
    best = top[0]
    # The unrounded probability: a top answer of 0.43996 is under a 0.44 threshold even though
    # it is shown as 44 %.
    abstain = float(probs[order[0]]) < card.abstain_threshold or best.label == card.other_label
    malignant = sum(float(probs[card.labels.index(label)]) for label in card.malignant_labels)
    urgent = bool(card.malignant_labels) and malignant >= card.urgent_threshold
    likely_at = card.cancer_likely_threshold
    cancer_likely = urgent and (
        likely_at is None or best.label in card.malignant_labels or malignant >= likely_at
    )
    return Prediction(
        top=top,
        probabilities={label: float(p) for label, p in zip(card.labels, probs, strict=True)},
        abstain=abstain,
        urgent=urgent,
        model_version=card.version,
        cancer_likely=cancer_likely,
    )
