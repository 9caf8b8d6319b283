"""The triage decisions from hand-built probabilities: exactly at, just under and just over
each threshold (the referral, the "likely" tier, "I can't tell"), and the shipped card."""

from __future__ import annotations

import numpy as np
import pytest

from diagnosis.bundle import BUNDLED_MODEL_DIR, BundleError, read_card
from diagnosis.serving.postprocess import combine_predictions, prediction_from_probabilities
from diagnosis.training.screening import choose_likely_threshold

from helpers import make_card

URGENT, LIKELY, ABSTAIN = 0.05, 0.15, 0.44


@pytest.fixture
def card():
    return make_card(
        urgent_threshold=URGENT, cancer_likely_threshold=LIKELY, abstain_threshold=ABSTAIN
    )


def probabilities(card, **mass: float) -> np.ndarray:
    """The given labels' probabilities, the rest on eczema (the benign top answer)."""
    probs = np.zeros(len(card.labels))
    for label, prob in mass.items():
        probs[card.labels.index(label)] = prob
    probs[card.labels.index("eczema")] += 1.0 - probs.sum()
    return probs


def decide(card, **mass: float):
    return prediction_from_probabilities(probabilities(card, **mass), card)


@pytest.mark.parametrize(
    "mass, urgent, likely",
    [
        ({"melanoma": URGENT - 1e-6}, False, False),  # just under: not referred
        ({"melanoma": URGENT}, True, False),  # exactly at: referred (>=), "can't be ruled out"
        ({"melanoma": URGENT + 1e-6}, True, False),
        ({"basal_cell_carcinoma": 0.06}, True, False),  # BCC alone counts
        ({"melanoma": 0.03, "basal_cell_carcinoma": 0.03}, True, False),  # together they do
        ({"melanoma": LIKELY - 1e-6}, True, False),  # just under the likely tier
        ({"melanoma": LIKELY}, True, True),  # exactly at: likely (>=)
        ({"basal_cell_carcinoma": 0.10, "melanoma": 0.06}, True, True),
        ({"melanoma": 0.7}, True, True),  # the top answer: likely whatever the threshold
    ],
)
def test_referral_and_its_tier(card, mass, urgent, likely):
    prediction = decide(card, **mass)
    assert prediction.urgent is urgent
    assert (prediction.urgent and prediction.cancer_likely) is likely


def test_a_malignant_top_answer_is_the_likely_tier_even_under_its_threshold():
    card = make_card(urgent_threshold=URGENT, cancer_likely_threshold=0.9)
    prediction = decide(card, melanoma=0.6)  # eczema 0.4
    assert prediction.best.label == "melanoma"
    assert prediction.urgent and prediction.cancer_likely


def test_cards_without_tiers_keep_every_referral_strong():
    card = make_card(urgent_threshold=URGENT)  # written before the tiers: no threshold
    prediction = decide(card, melanoma=0.06)
    assert prediction.urgent and prediction.cancer_likely


@pytest.mark.parametrize(
    "top, abstain",
    [(ABSTAIN - 1e-6, True), (ABSTAIN, False), (ABSTAIN + 1e-6, False)],
)
def test_i_cant_tell_below_the_abstain_threshold(card, top, abstain):
    probs = np.full(len(card.labels), (1.0 - top) / (len(card.labels) - 1))
    probs[card.labels.index("acne")] = top
    assert prediction_from_probabilities(probs, card).abstain is abstain


def test_other_on_top_is_always_i_cant_tell(card):
    assert decide(card, other=0.9).abstain


def test_a_likely_threshold_under_the_referral_threshold_is_refused():
    with pytest.raises(BundleError, match="cancer_likely_threshold"):
        make_card(urgent_threshold=0.1, cancer_likely_threshold=0.05).validate("card")


def test_the_shipped_card_refers_both_cancers_with_its_chosen_thresholds():
    card = read_card(BUNDLED_MODEL_DIR)
    assert sorted(card.malignant_labels) == ["basal_cell_carcinoma", "melanoma"]
    assert card.other_label == "other"
    assert card.urgent_threshold == pytest.approx(0.05)
    assert card.cancer_likely_threshold == pytest.approx(0.1281, abs=1e-4)
    assert card.abstain_threshold == pytest.approx(0.44)
    assert card.urgent_threshold <= card.cancer_likely_threshold


def test_the_likely_threshold_is_where_half_the_strong_tier_is_malignant():
    malignant = [1]  # labels: benign, melanoma
    # Sums 0.06 .. 0.5; the photos at 0.2 and above are malignant, four benign ones below:
    # from 0.07 up (three benign, three malignant), half of the strong tier is malignant.
    sums = np.array([0.06, 0.07, 0.08, 0.10, 0.20, 0.30, 0.50])
    targets = np.array([0, 0, 0, 0, 1, 1, 1])
    probs = np.stack([1 - sums, sums], axis=1)
    assert choose_likely_threshold(probs, targets, malignant, floor=0.05) == pytest.approx(0.07)
    # Asking for every strong photo to be malignant moves it up to the first malignant sum.
    assert choose_likely_threshold(
        probs, targets, malignant, floor=0.05, min_precision=1.0
    ) == pytest.approx(0.20)
    # Never under the referral threshold.
    assert choose_likely_threshold(probs, targets, malignant, floor=0.25) >= 0.25


def test_the_prediction_carries_names_rounded_probabilities_every_label_and_the_version(card):
    probs = probabilities(card, melanoma=0.123456, acne=0.2)
    prediction = prediction_from_probabilities(probs, card)
    best = prediction.best
    assert (best.label, best.prob) == ("eczema", round(float(probs.max()), 4))
    assert best.name_en == card.display_name("eczema", "en")
    assert best.name_ko == card.display_name("eczema", "ko")
    assert [item.prob for item in prediction.top] == [round(1 - 0.323456, 4), 0.2, 0.1235]
    assert prediction.probabilities == pytest.approx(dict(zip(card.labels, probs, strict=True)))
    assert prediction.model_version == card.version
    with pytest.raises(ValueError):  # a probability per label, no fewer
        prediction_from_probabilities(probs[:-1], card)


def test_ties_go_to_the_label_listed_first_in_the_card(card):
    probs = np.zeros(len(card.labels))
    probs[[card.labels.index("acne"), card.labels.index("eczema")]] = 0.5
    first = min(card.labels.index("acne"), card.labels.index("eczema"))
    assert prediction_from_probabilities(probs, card).best.label == card.labels[first]


def test_an_album_is_decided_on_the_mean_of_its_photos(card):
    # One photo says acne confidently; one is unsure (acne, psoriasis, eczema) and holds a
    # trace of melanoma. Together: acne at the mean, and the rules applied to the mean.
    unsure_mass = dict(acne=0.35, psoriasis_lichen_planus=0.3, melanoma=0.08)
    sure, unsure = decide(card, acne=0.9), decide(card, **unsure_mass)
    assert unsure.abstain and unsure.urgent  # alone: "I can't tell", and referred
    album = combine_predictions([sure.probabilities, unsure.probabilities], card)
    assert album.best.label == "acne" and album.best.prob == pytest.approx(0.625)
    assert album.probabilities["melanoma"] == pytest.approx(0.04)
    assert not album.abstain  # 0.625 >= 0.44
    assert not album.urgent  # 0.04 < 0.05
    # A label a stored photo lacks counts as 0 (a card with more labels than an old photo).
    partial = combine_predictions([{"acne": 1.0}, sure.probabilities], card)
    assert partial.probabilities["acne"] == pytest.approx(0.95)
