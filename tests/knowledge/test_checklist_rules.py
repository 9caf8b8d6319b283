"""The checklist's written rules (knowledge/checklist.py): each raises, lowers or keeps the
advice exactly as its source says, and no answer lowers a "likely" cancer or goes below a check."""

from __future__ import annotations

import itertools
import json

import pytest

from knowledge.checklist import (
    PIGMENTED,
    QUESTION_IDS,
    QUESTIONS,
    RASH,
    RULES,
    SEVEN_POINT,
    Advice,
    Case,
    baseline_advice,
    check_wording,
    decide,
    group_for,
    load_wording,
)
from knowledge.content import ContentError

NEVUS = ("melanocytic_nevus", "benign_keratosis", "melanoma")
RASHY = ("eczema", "fungal_infection", "psoriasis_lichen_planus")
POSSIBLE = Case(PIGMENTED, Advice.ROUTINE, "possible", NEVUS)
LIKELY = Case(PIGMENTED, Advice.TWO_WEEKS, "likely", ("melanoma", *NEVUS[:2]))
BENIGN_MOLE = Case(PIGMENTED, Advice.ROUTINE, "", NEVUS)
SELF_CARE_RASH = Case(RASH, Advice.SELF_CARE, "", RASHY)
ALL_NO = {q: "no" for q in QUESTIONS[PIGMENTED]}


def test_group_follows_the_top_answers_and_the_cancer_tier():
    def top(*labels):
        return [(label, 0.5) for label in labels]

    assert group_for(top(*NEVUS), "") == PIGMENTED
    assert group_for(top(*RASHY), "") == RASH
    assert group_for(top(*RASHY), "possible") == PIGMENTED  # any cancer tier asks the checklist
    assert group_for(top("acne", "other"), "") is None
    # A third answer under 10 % is noise: a confident acne answer gets no questions.
    assert group_for([("acne", 0.85), ("eczema", 0.099), ("melanoma", 0.01)], "") is None
    assert group_for([("acne", 0.85), ("eczema", 0.10)], "") == RASH


@pytest.mark.parametrize(
    ("level", "tier", "advice"),
    [
        ("urgent", "likely", Advice.TWO_WEEKS),
        ("abstain", "likely", Advice.TWO_WEEKS),
        ("self_care", "possible", Advice.ROUTINE),
        ("see_doctor", "", Advice.ROUTINE),
        ("abstain", "", Advice.ROUTINE),
        ("self_care", "", Advice.SELF_CARE),
    ],
)
def test_baseline_advice(level, tier, advice):
    assert baseline_advice(level, tier) == advice


def test_seven_point_score_of_three_raises_to_a_two_week_referral():
    decision = decide(BENIGN_MOLE, {"size": "yes", "diameter": "yes"})
    assert decision.score == 3
    assert decision.fired == ("seven_point",)
    assert (decision.advice, decision.cancer_tier, decision.change) == (
        Advice.TWO_WEEKS,
        "likely",
        "raised",
    )


def test_a_score_of_two_changes_nothing():
    decision = decide(POSSIBLE, {"size": "yes"})
    assert (decision.score, decision.fired, decision.change) == (2, (), "unchanged")
    assert (decision.advice, decision.cancer_tier) == (Advice.ROUTINE, "possible")


def test_every_score_from_the_weights():
    for answers in itertools.product(("yes", "no"), repeat=len(SEVEN_POINT)):
        given = dict(zip(SEVEN_POINT, answers, strict=True))
        expected = sum(SEVEN_POINT[q] for q, a in given.items() if a == "yes")
        decision = decide(BENIGN_MOLE, given)
        assert decision.score == expected
        assert ("seven_point" in decision.fired) == (expected >= 3)


def test_bleeding_raises_the_possible_tier_to_two_weeks():
    decision = decide(POSSIBLE, {"bleeding": "yes"})
    assert decision.fired == ("bleeding",)
    assert (decision.advice, decision.cancer_tier, decision.change) == (
        Advice.TWO_WEEKS,
        "likely",
        "raised",
    )


def test_fever_with_a_spreading_rash_means_same_day():
    decision = decide(SELF_CARE_RASH, {"fever": "yes", "spreading": "yes"})
    assert decision.fired == ("fever_spreading",)
    assert (decision.advice, decision.change) == (Advice.SAME_DAY, "raised")
    # Either alone is not the rule.
    assert decide(SELF_CARE_RASH, {"fever": "yes", "spreading": "no"}).fired == ()


def test_near_the_eye_is_same_day_only_when_shingles_is_possible():
    shingles = Case(RASH, Advice.ROUTINE, "", ("viral_infection", "eczema", "acne"))
    decision = decide(shingles, {"eye": "yes"})
    assert (decision.fired, decision.advice) == (("shingles_eye",), Advice.SAME_DAY)
    assert decide(SELF_CARE_RASH, {"eye": "yes"}).change == "unchanged"


@pytest.mark.parametrize("question", ["long", "baby_pregnancy"])
def test_a_long_rash_or_a_baby_or_pregnancy_needs_a_check_not_self_care(question):
    decision = decide(SELF_CARE_RASH, {question: "yes"})
    assert (decision.advice, decision.change) == (Advice.ROUTINE, "raised")
    assert decision.fired == ({"long": "lasting"}.get(question, question),)


def test_same_day_raises_even_a_likely_cancer_never_lowers_it():
    likely_rash = Case(RASH, Advice.TWO_WEEKS, "likely", ("viral_infection",))
    assert decide(likely_rash, {"eye": "yes"}).advice == Advice.SAME_DAY
    decision = decide(LIKELY, ALL_NO)
    assert (decision.advice, decision.cancer_tier, decision.change) == (
        Advice.TWO_WEEKS,
        "likely",
        "unchanged",
    )
    assert "all_clear" not in decision.fired


def test_all_no_lowers_the_possible_tier_to_a_routine_check_not_below():
    decision = decide(POSSIBLE, ALL_NO)
    assert decision.fired == ("all_clear",)
    assert (decision.advice, decision.cancer_tier, decision.change) == (
        Advice.ROUTINE,
        "",
        "lowered",
    )


@pytest.mark.parametrize("question", QUESTIONS[PIGMENTED])
@pytest.mark.parametrize("instead", ["unsure", None])
def test_one_unsure_or_skipped_answer_keeps_the_possible_tier(question, instead):
    answers = dict(ALL_NO)
    if instead is None:
        del answers[question]
    else:
        answers[question] = instead
    decision = decide(POSSIBLE, answers)
    assert (decision.cancer_tier, decision.change) == ("possible", "unchanged")


def test_nothing_answered_is_no_change_at_all():
    decision = decide(POSSIBLE, {})
    assert (decision.advice, decision.cancer_tier, decision.change) == (
        Advice.ROUTINE,
        "possible",
        "",
    )


def test_answers_to_the_other_groups_questions_are_ignored():
    assert decide(SELF_CARE_RASH, {"size": "yes", "shape": "yes"}).change == ""


def test_no_answers_ever_lower_the_advice_below_where_it_started():
    cases = [POSSIBLE, LIKELY, BENIGN_MOLE, SELF_CARE_RASH]
    for case in cases:
        for answers in itertools.product(("yes", "no", "unsure"), repeat=3):
            for questions in itertools.combinations(QUESTIONS[case.group], 3):
                decision = decide(case, dict(zip(questions, answers, strict=True)))
                assert decision.advice.rank >= case.advice.rank
                if case.cancer_tier == "likely":
                    assert decision.cancer_tier == "likely"


def test_every_rule_names_its_source():
    for rule in RULES.values():
        assert any(name in rule.source for name in ("NICE", "AAD", "NHS")), rule.id


def test_the_shipped_wording_has_every_question_in_both_languages():
    wording = load_wording()
    assert set(wording) == QUESTION_IDS
    assert all(text["en"] and text["ko"] for text in wording.values())


def test_wording_problems_are_all_named(tmp_path):
    wording = load_wording()
    wording.pop("size")
    wording["shape"] = {"en": "Irregular?", "ko": " "}
    wording["extra"] = {"en": "?", "ko": "?"}
    assert check_wording(wording) == [
        "question 'size' is missing",
        "unknown question 'extra'",
        "question 'shape' has no ko wording",
    ]
    path = tmp_path / "checklist.json"
    path.write_text(json.dumps({"questions": [{"id": "size"}]}))
    with pytest.raises(ContentError, match="unreadable"):
        load_wording(path)
