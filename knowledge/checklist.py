"""What a photo cannot show: the questions asked after an answer, and the written rules by which
the answers change the advice.

A photo cannot tell whether a mole is growing, bleeding or itching, or whether a rash comes with
fever. After an answer about a mole-like spot ("pigmented": a melanoma, naevus or keratosis in
the top 3, or any cancer tier) the assistant asks NICE NG12's weighted 7-point checklist and
about bleeding; after a rash, a few questions that change what to do. Every question can be
answered "not sure" or skipped.

The rules, each with its source (also listed in docs/model-report.md):
- `seven_point`: major signs (change in size, irregular shape, irregular colour) 2 points each,
  minor signs (7 mm or more, inflammation, oozing or crusting, change in sensation) 1 point each;
  3 points or more -> suspected-cancer referral, within 2 weeks (NICE NG12, recommendation 1.7.2).
- `bleeding`: a spot that bleeds without injury -> within 2 weeks (AAD, "Melanoma: signs and
  symptoms"; NICE NG12 1.7.2 counts oozing and crusting).
- `fever_spreading`: a rash spreading fast with fever or feeling unwell -> same day (NICE CKS
  Cellulitis: systemically unwell or rapidly spreading: same-day assessment; AAD rash red flags).
- `shingles_eye`: a possible shingles or herpes rash (viral infection in the top 3) on the
  forehead, nose tip or around the eye -> same day (NICE CKS Shingles: ophthalmic zoster,
  same-day ophthalmology; Hutchinson's sign).
- `lasting`: a rash over 2 weeks -> a doctor's check, not self-care only (AAD, "Rash: when to
  see a dermatologist").
- `baby_pregnancy`: a rash on a baby or in pregnancy -> a doctor's check (NHS, "Rashes in babies
  and children"; creams need a doctor's advice in pregnancy).
- `all_clear` (the only rule that lowers): inside the "a skin cancer can't be ruled out" tier
  only, every checklist sign and bleeding answered "no" (not "not sure", not skipped): the
  score is 0, under NG12's referral score, so the answer leaves the cancer tier; the advice
  stays a routine check, never lower. The "likely" tier is never lowered.

Pure functions of plain values: no store, no chat, no model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from knowledge.content import CONTENT_DIR, ContentError
from knowledge.models import LANGUAGES, ChecklistQuestion, Localized

CHECKLIST_FILE = CONTENT_DIR / "checklist.json"

PIGMENTED, RASH = "pigmented", "rash"
PIGMENTED_LABELS = frozenset(
    {
        "melanoma",
        "basal_cell_carcinoma",
        "melanocytic_nevus",
        "benign_keratosis",
        "seborrheic_keratosis_benign_tumor",
    }
)
RASH_LABELS = frozenset(
    {
        "eczema",
        "atopic_dermatitis",
        "psoriasis_lichen_planus",
        "fungal_infection",
        "viral_infection",
    }
)
SHINGLES_LABEL = "viral_infection"  # the group that holds shingles and herpes
MIN_PROB = 0.10  # a top-3 answer this likely makes its questions fit

# NICE NG12's weighted 7-point checklist: question id -> points for a "yes".
SEVEN_POINT = {
    "size": 2,
    "shape": 2,
    "colour": 2,
    "diameter": 1,
    "inflamed": 1,
    "crusting": 1,
    "sensation": 1,
}
REFERRAL_SCORE = 3  # NG12: 3 points or more -> suspected-cancer referral

# The questions of each group, in the order they are asked.
QUESTIONS: dict[str, tuple[str, ...]] = {
    PIGMENTED: (*SEVEN_POINT, "bleeding"),
    RASH: ("fever", "spreading", "eye", "baby_pregnancy", "long"),
}
QUESTION_IDS = frozenset(q for group in QUESTIONS.values() for q in group)


class Answer(StrEnum):
    YES = "yes"
    NO = "no"
    UNSURE = "unsure"


class Advice(StrEnum):
    """How soon to see someone, least urgent first (`rank`)."""

    SELF_CARE = "self_care"  # first-line care at home
    ROUTINE = "routine"  # a (routine) doctor's or dermatologist's check
    TWO_WEEKS = "two_weeks"  # suspected cancer: a dermatologist within 2 weeks
    SAME_DAY = "same_day"  # same-day care

    @property
    def rank(self) -> int:
        return list(Advice).index(self)


@dataclass(frozen=True)
class Rule:
    id: str
    advice: Advice  # what the rule raises the advice to (all_clear: the floor it keeps)
    source: str


RULES = {
    rule.id: rule
    for rule in (
        Rule("seven_point", Advice.TWO_WEEKS, "NICE NG12 1.7.2: weighted 7-point checklist >= 3"),
        Rule("bleeding", Advice.TWO_WEEKS, "AAD: Melanoma signs and symptoms (a mole that bleeds)"),
        Rule("fever_spreading", Advice.SAME_DAY, "NICE CKS Cellulitis; AAD rash red flags"),
        Rule("shingles_eye", Advice.SAME_DAY, "NICE CKS Shingles: ophthalmic zoster, same day"),
        Rule("lasting", Advice.ROUTINE, "AAD: Rash, when to see a dermatologist"),
        Rule("baby_pregnancy", Advice.ROUTINE, "NHS: Rashes in babies and children"),
        Rule("all_clear", Advice.ROUTINE, "NICE NG12 1.7.2: score 0, below the referral score"),
    )
}


@dataclass(frozen=True)
class Case:
    """The answer before any question: which questions fit, and the advice it gave."""

    group: str  # PIGMENTED or RASH
    advice: Advice
    cancer_tier: str  # "likely", "possible" or "" (no cancer referral)
    labels: tuple[str, ...]  # the top answers, most likely first


@dataclass(frozen=True)
class Decision:
    advice: Advice
    cancer_tier: str
    fired: tuple[str, ...]  # the rules whose condition held, in RULES order
    change: str  # "raised", "lowered", "unchanged"; "" when nothing was answered
    score: int  # the 7-point checklist score (pigmented)


def group_for(top: Iterable[tuple[str, float]], cancer_tier: str) -> str | None:
    """Which questions fit an answer, from its top answers (label, probability) and cancer
    tier: pigmented before rash (a cancer question matters more). A top-3 label under
    `MIN_PROB` does not count: the third answer of a confident acne photo is noise."""
    labels = {label for label, prob in top if prob >= MIN_PROB}
    if cancer_tier or labels & PIGMENTED_LABELS:
        return PIGMENTED
    if labels & RASH_LABELS:
        return RASH
    return None


def baseline_advice(level: str, cancer_tier: str) -> Advice:
    """The advice an answer gave, from its triage level and cancer tier."""
    if cancer_tier == "possible":
        return Advice.ROUTINE  # "can't be ruled out": a routine dermatology check
    if cancer_tier or level == "urgent":
        return Advice.TWO_WEEKS
    return Advice.SELF_CARE if level == "self_care" else Advice.ROUTINE


def seven_point_score(answers: Mapping[str, str]) -> int:
    return sum(points for q, points in SEVEN_POINT.items() if answers.get(q) == Answer.YES)


def fired_rules(case: Case, answers: Mapping[str, str]) -> tuple[str, ...]:
    def yes(question: str) -> bool:
        return answers.get(question) == Answer.YES

    conditions = {
        "seven_point": seven_point_score(answers) >= REFERRAL_SCORE,
        "bleeding": yes("bleeding"),
        "fever_spreading": yes("fever") and yes("spreading"),
        "shingles_eye": yes("eye") and SHINGLES_LABEL in case.labels,
        "lasting": yes("long"),
        "baby_pregnancy": yes("baby_pregnancy"),
        "all_clear": case.cancer_tier == "possible"
        and all(answers.get(q) == Answer.NO for q in QUESTIONS[PIGMENTED]),
    }
    return tuple(rule for rule in RULES if conditions[rule])


def decide(case: Case, answers: Mapping[str, str]) -> Decision:
    """The advice after the answers: raised to the most urgent fired rule, or (all_clear only)
    out of the "can't be ruled out" tier at a routine check."""
    answers = {q: a for q, a in answers.items() if q in QUESTIONS[case.group]}
    fired = fired_rules(case, answers)
    score = seven_point_score(answers)
    if not answers:
        return Decision(case.advice, case.cancer_tier, fired, "", score)
    advice, tier = case.advice, case.cancer_tier
    for rule in fired:
        if rule != "all_clear" and RULES[rule].advice.rank > advice.rank:
            advice = RULES[rule].advice
    if case.group == PIGMENTED and advice == Advice.TWO_WEEKS and tier != "likely":
        tier = "likely"  # the 2-week advice is the suspected-cancer referral
    if "all_clear" in fired:
        tier = ""  # leaves the cancer tier; advice stays Advice.ROUTINE, never lower
    if advice.rank > case.advice.rank or (tier == "likely" and case.cancer_tier != "likely"):
        change = "raised"
    elif tier != case.cancer_tier:
        change = "lowered"
    else:
        change = "unchanged"
    return Decision(advice, tier, fired, change, score)


def load_wording(path: Path = CHECKLIST_FILE) -> dict[str, Localized]:
    """Every question's wording in every language, from the content file (ContentError naming
    every problem when a question is missing, unknown or untranslated)."""
    try:
        items = json.loads(path.read_text(encoding="utf-8"))["questions"]
        wording = {item["id"]: dict(item["text"]) for item in items}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ContentError(path, [f"unreadable: {exc}"]) from exc
    problems = check_wording(wording)
    if problems:
        raise ContentError(path, problems)
    return wording


@cache
def shipped_wording() -> Mapping[str, Localized]:
    """The content file's wording, read once (do not modify)."""
    return load_wording()


def shipped_questions() -> list[ChecklistQuestion]:
    """The questions as the content file words them, for seeding a store."""
    return [ChecklistQuestion(id=q, text=dict(text)) for q, text in shipped_wording().items()]


def check_wording(wording: Mapping[str, Localized]) -> list[str]:
    """What is wrong with a set of question wordings (also the admin's check)."""
    problems = [f"question {q!r} is missing" for q in sorted(QUESTION_IDS - set(wording))]
    problems += [f"unknown question {q!r}" for q in sorted(set(wording) - QUESTION_IDS)]
    for question, text in wording.items():
        for lang in LANGUAGES:
            value = text.get(lang, "") if isinstance(text, Mapping) else ""
            if not isinstance(value, str) or not value.strip():
                problems.append(f"question {question!r} has no {lang} wording")
            elif len(value) > 200:
                problems.append(f"question {question!r} ({lang}) is over 200 characters")
    return problems
