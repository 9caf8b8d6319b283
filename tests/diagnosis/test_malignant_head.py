"""tools/malignant_head.py: its screening-point chooser, its cross-validation and its logistic
head, on synthetic scores and features (no photos, no model)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

from malignant_head import (  # noqa: E402
    choose_threshold,
    cross_validated_point,
    fit_logistic,
    point_figures,
    roc_auc,
)

# Labels of a toy model: 0 benign, 1 BCC, 2 melanoma, 3 other.
BENIGN, BCC, MEL, OTHER = 0, 1, 2, 3
MALIGNANT = [BCC, MEL]


def test_threshold_refers_the_share_asked_for_counting_photos_referred_anyway():
    scores = np.array([0.9, 0.1, 0.5, 0.2, 0.3, 0.05])
    is_malignant = np.array([True, True, True, True, False, False])
    always = np.array([False, True, False, False, False, False])  # malignant top answer
    # 3 of 4 malignant photos: the one at 0.1 is referred anyway, so 0.9 and 0.5 suffice.
    assert choose_threshold(scores, is_malignant, always, 0.75) == 0.5
    # All 4: the lowest malignant score not referred anyway, 0.2 (not the 0.1 one).
    assert choose_threshold(scores, is_malignant, always, 1.0) == 0.2
    assert choose_threshold(scores, is_malignant, np.zeros(6, bool), 1.0) == 0.1


def test_point_figures_separate_named_and_other_photos():
    targets = np.array([MEL, BCC, BENIGN, BENIGN, OTHER, OTHER, OTHER, OTHER])
    scores = np.array([0.8, 0.1, 0.6, 0.1, 0.7, 0.7, 0.7, 0.1])
    always = np.array([False, False, False, False, False, False, False, True])
    figures = point_figures(scores, always, 0.5, targets, MALIGNANT, OTHER)
    assert figures["referred"] == 0.5 and figures["missed"] == 1 and figures["malignant"] == 2
    assert figures["flagged_named"] == 0.5  # one of the two benign photos
    assert figures["flagged_other"] == 1.0  # three by score, one referred anyway
    assert figures["flagged"] == pytest.approx(5 / 6)


def test_cross_validation_fits_on_the_other_folds_only():
    rng = np.random.default_rng(1)
    targets = np.repeat([BENIGN, BCC, MEL, OTHER], [60, 20, 20, 50])
    is_malignant = np.isin(targets, MALIGNANT)
    scores = np.where(is_malignant, rng.uniform(0.5, 1.0, 150), rng.uniform(0.0, 0.5, 150))
    masks = []

    def fit_scores(mask):
        masks.append(mask.copy())
        return scores

    referred, flagged = cross_validated_point(
        fit_scores, targets, MALIGNANT, np.zeros(150, bool), folds=5, repeats=2
    )
    # Separable: no benign photo is ever flagged; the threshold leaves out the lowest ~5 % of
    # the malignant photos it was chosen on, so a few held-out ones fall under it too.
    assert flagged == 0.0
    assert 0.9 <= referred < 1.0
    assert len(masks) == 10
    for repeat in (masks[:5], masks[5:]):
        held_out = sum((~mask).astype(int) for mask in repeat)
        assert (held_out == 1).all()  # each photo is held out exactly once per repeat
        for mask in repeat:  # stratified: each fold holds 4 of each malignant label
            assert (~mask & (targets == MEL)).sum() == 4 and (~mask & (targets == BCC)).sum() == 4


def test_cross_validated_sensitivity_can_fall_short_of_the_target():
    # Malignant scores spread over the benign range: a threshold chosen for 95 % on 4/5 of the
    # photos refers fewer on the held-out fifth, and the pooled figure says so.
    rng = np.random.default_rng(0)
    targets = np.repeat([BENIGN, MEL], [200, 40])
    scores = np.concatenate([rng.uniform(0, 1, 200), rng.uniform(0.2, 1, 40)])
    referred, flagged = cross_validated_point(
        lambda mask: scores, targets, MALIGNANT, np.zeros(240, bool), folds=5, repeats=5
    )
    assert referred < 0.95
    assert 0.5 < flagged < 1.0


def test_balanced_logistic_head_finds_the_rare_malignant_cluster():
    rng = np.random.default_rng(0)
    benign = rng.normal(0.0, 1.0, (380, 8))
    malignant = rng.normal(0.0, 1.0, (20, 8)) + np.array([2.0] + [0.0] * 7)
    x = np.concatenate([benign, malignant])
    is_malignant = np.repeat([False, True], [380, 20])
    score = fit_logistic(x, is_malignant, 1e-3)(x)
    # Class weights: the 5 % malignant photos still score above one half on the whole.
    assert np.median(score[is_malignant]) > 0.5 > np.median(score[~is_malignant])
    assert score[is_malignant].mean() > score[~is_malignant].mean() + 0.3


def test_auc_counts_pairs_ordered_and_ties_half():
    positive = np.array([True, True, False, False])
    assert roc_auc(np.array([0.9, 0.8, 0.1, 0.2]), positive) == 1.0
    assert roc_auc(np.array([0.1, 0.2, 0.9, 0.8]), positive) == 0.0
    assert roc_auc(np.array([0.5, 0.9, 0.5, 0.1]), positive) == 0.875  # 3 pairs won, 1 tie
