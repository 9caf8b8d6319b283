"""The screening-point and abstention-point choosers, on hand-built probabilities."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diagnosis.training.screening import (
    choose_abstain_point,
    choose_rule_thresholds,
    choose_screening_threshold,
    coverage_row,
    cross_validated,
    referred,
)

# Labels of a toy model: 0 benign, 1 BCC, 2 melanoma, 3 other.
BENIGN, BCC, MEL, OTHER = 0, 1, 2, 3
MALIGNANT = [BCC, MEL]


def row(benign=0.0, bcc=0.0, mel=0.0, other=0.0):
    values = np.array([benign, bcc, mel, other], dtype=np.float64)
    return values / values.sum()


def test_threshold_is_the_kth_largest_score():
    scores = np.array([0.9, 0.5, 0.2, 0.1])
    assert choose_screening_threshold(scores, 0.75) == 0.2  # 3 of 4 must be referred
    assert choose_screening_threshold(scores, 0.5) == 0.5
    assert choose_screening_threshold(scores, 1.0) == 0.1
    assert choose_screening_threshold(scores, 0.76) == 0.1  # 3.04 photos: four are needed


def test_threshold_exactly_at_just_under_just_over():
    scores = np.array([0.9, 0.5, 0.2, 0.1])
    threshold = choose_screening_threshold(scores, 0.75)
    assert (scores >= threshold).mean() == 0.75  # exactly at: referred (>=)
    assert (scores >= np.nextafter(threshold, 1.0)).mean() == 0.5  # just over: one fewer
    # just under: the photo at 0.2 is still referred, and nothing else changes
    assert (scores >= np.nextafter(threshold, 0.0)).mean() == 0.75


def test_95_percent_of_93_photos_needs_89():
    scores = np.linspace(1.0, 0.01, 93)
    threshold = choose_screening_threshold(scores, 0.95)
    assert int((scores >= threshold).sum()) == 89  # ceil(0.95 * 93) = 89, at most 4 missed
    assert (scores >= threshold).mean() >= 0.95
    assert (scores >= np.nextafter(threshold, 1.0)).mean() < 0.95


def test_photos_referred_anyway_do_not_lower_the_threshold():
    scores = np.array([math.inf, math.inf, 0.3, 0.05])
    assert choose_screening_threshold(scores, 0.75) == 0.3
    assert choose_screening_threshold(np.array([math.inf, math.inf]), 1.0) == 1.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError):
        choose_screening_threshold(np.array([]), 0.95)
    with pytest.raises(ValueError):
        choose_screening_threshold(np.array([0.5]), 0.0)


def probs_and_targets():
    """Four malignant photos with BCC-only mass (melanoma 0), and harmless photos."""
    probs = np.stack(
        [
            row(benign=0.40, bcc=0.30, other=0.30),
            row(benign=0.50, bcc=0.20, other=0.30),
            row(benign=0.60, bcc=0.10, other=0.30),
            row(benign=0.65, bcc=0.05, other=0.30),
            row(benign=0.70, bcc=0.15, other=0.15),  # harmless, above 0.10
            row(benign=0.80, bcc=0.08, other=0.12),  # harmless, between 0.05 and 0.10
            row(benign=0.90, bcc=0.01, other=0.09),
            row(benign=0.20, bcc=0.02, other=0.78),
        ]
    )
    targets = np.array([BCC, BCC, BCC, BCC, BENIGN, BENIGN, BENIGN, OTHER])
    return probs, targets


@pytest.mark.parametrize("rule", ["sum", "max"])
def test_bcc_only_mass_sum_and_max_agree(rule):
    probs, targets = probs_and_targets()
    threshold = choose_rule_thresholds(probs, targets, MALIGNANT, rule, 0.75)
    assert threshold == pytest.approx(0.10)
    flags = referred(probs, MALIGNANT, rule, threshold)
    assert flags.tolist() == [True, True, True, False, True, False, False, False]


def test_per_class_with_bcc_only_mass():
    probs, targets = probs_and_targets()
    thresholds = choose_rule_thresholds(probs, targets, MALIGNANT, "per_class", 0.75)
    assert thresholds[BCC] == pytest.approx(0.10)
    assert thresholds[MEL] > 0.0  # melanoma at 0 everywhere must not refer every photo
    assert referred(probs, MALIGNANT, "per_class", thresholds)[:4].mean() == 0.75


def test_a_malignant_top_answer_is_referred_whatever_the_threshold():
    probs = np.stack([row(benign=0.3, mel=0.4, other=0.3), row(benign=0.9, mel=0.05, other=0.05)])
    assert referred(probs, MALIGNANT, "sum", 0.99).tolist() == [True, False]
    # and it does not pull the threshold down: the other photo sets it
    targets = np.array([MEL, MEL])
    assert choose_rule_thresholds(probs, targets, MALIGNANT, "sum", 1.0) == pytest.approx(0.05)


def test_cross_validation_runs_and_is_bounded():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=60)
    targets = rng.integers(0, 4, size=60)
    sensitivity, flagged = cross_validated(probs, targets, MALIGNANT, OTHER, "sum", repeats=2)
    assert 0.0 <= sensitivity <= 1.0 and 0.0 <= flagged <= 1.0


def test_abstain_point_needs_both_targets():
    # Two named photos answered at 0.6 and 0.3, one `other` photo read as benign at 0.5.
    probs = np.stack(
        [
            row(benign=0.6, other=0.4),
            row(benign=0.3, bcc=0.25, other=0.2, mel=0.25),
            row(0.5, 0.1, 0.1, 0.3),
        ]
    )
    targets = np.array([BENIGN, BENIGN, OTHER])
    at_half = coverage_row(probs, targets, OTHER, 0.5)
    assert at_half["other_answered"] == 1.0  # exactly at the threshold: answered
    assert coverage_row(probs, targets, OTHER, 0.51)["other_answered"] == 0.0
    # `other` is silenced above 0.5, but then half the named photos get "I can't tell".
    assert choose_abstain_point(probs, targets, OTHER, 0.15, 0.25) is None
    assert choose_abstain_point(probs, targets, OTHER, 0.15, 0.5) == pytest.approx(0.51)


@pytest.mark.parametrize("rule", ["sum", "max"])
def test_referral_exactly_at_and_just_under_the_threshold(rule):
    # Dyadic probabilities: the sum (0.5) and the max (0.25) are exact in floating point.
    probs = np.stack([row(benign=0.5, bcc=0.25, mel=0.25)])
    score = 0.5 if rule == "sum" else 0.25
    assert referred(probs, MALIGNANT, rule, score).tolist() == [True]  # exactly at
    assert referred(probs, MALIGNANT, rule, np.nextafter(score, 0.0)).tolist() == [True]
    assert referred(probs, MALIGNANT, rule, np.nextafter(score, 1.0)).tolist() == [False]
    # a malignant photo just under the chosen threshold is missed
    scores = np.array([0.9, 0.5, np.nextafter(0.2, 0.0), 0.2])
    threshold = choose_screening_threshold(scores, 0.75)
    assert threshold == 0.2 and (scores >= threshold).tolist() == [True, True, False, True]


def test_the_whole_analysis_writes_a_valid_card_and_keeps_the_checksums(tmp_path):
    """analyse -> report -> figures -> card, on made-up probabilities for the bundled labels."""
    import shutil

    from diagnosis.bundle import BUNDLED_MODEL_DIR, read_card, write_card
    from diagnosis.training.screening import (
        SplitData,
        analyse,
        format_report,
        save_figures,
        store_in_card,
    )

    shutil.copy(BUNDLED_MODEL_DIR / "model_card.json", tmp_path / "model_card.json")
    card = read_card(tmp_path)
    before = (card.weights_sha256, card.onnx_sha256, card.onnx_weights_sha256)
    rng = np.random.default_rng(0)
    data = {}
    for split in ("val", "test"):
        targets = np.arange(240) % len(card.labels)
        logits = rng.normal(size=(240, len(card.labels)))
        logits[np.arange(240), targets] += 2.0  # a model that is right more often than not
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        sources = np.where(np.arange(240) % 3 == 0, "isic", "dermnet")
        data[split] = SplitData(probs, targets, sources)
    out = analyse(card, data)
    assert [row["name"] for row in out["rules"]][0] == "today"
    assert {row["rule"] for row in out["rules"]} == {"sum", "max", "per_class"}
    for row in out["rules"][1:]:  # every val-chosen rule reaches 95 % on val
        assert row["val"]["sensitivity"] >= 0.95
    report = format_report(card, out)
    assert "adopted:" in report and "test/isic" in report
    paths = save_figures(card, data, out, tmp_path / "figures")
    assert all(path.stat().st_size > 1000 for path in paths)
    store_in_card(card, out)
    write_card(card, tmp_path)
    again = read_card(tmp_path)
    assert (again.weights_sha256, again.onnx_sha256, again.onnx_weights_sha256) == before
    assert again.metrics["screening"]["val_sensitivity"] == out["rules"][0]["val"]["sensitivity"]
