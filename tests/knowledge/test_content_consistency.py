"""The shipped care content agrees with itself (issue 13, item 4: answers people can trust).

Facts that appear in several places (how long until it improves, when to see a doctor, drug names,
what is sold without a prescription in Korea) are checked against one another, so that an edit to
one file that is not carried to the others fails here instead of reaching a user:

- every time figure ("6–12 weeks", "6~12주", "within 2 weeks", "a few weeks", "몇 주") in a
  condition's FAQ answer about improvement time is one the condition file's `improvement_time`
  states; figures in answers about when to see a doctor are ones the condition file states there;
- English and Korean give the same figures (times and percentages), text by text;
- Korean drug names use the official spelling (식약처 / 약학정보원), not the variants below;
- sources are distinct pages, and every condition names at least one Korean public source;
- urgent conditions give no over-the-counter self-care;
- adapalene is never described as sold without a prescription in Korea;
- a care step that names a product carries that product's essential caveat itself (the result
  view shows the steps, not the ingredient list).
"""

from __future__ import annotations

import re
from collections import Counter

import pytest

from knowledge.content import load_conditions
from knowledge.faq import load_faq
from knowledge.models import LANGUAGES, Condition, FaqEntry, Triage

# ----------------------------------------------------------------------------- time figures

_NUMBER = r"\d+(?:\.\d+)?"
_EN_UNITS = {"day": "day", "week": "week", "month": "month", "year": "year"}
_KO_UNITS = {"일": "day", "주": "week", "개월": "month", "달": "month", "년": "year"}
_EN_TIME = re.compile(
    rf"(?<![\d.])({_NUMBER})(?:\s*(?:–|-|to|or)\s*({_NUMBER}))?\s*(day|week|month|year)s?\b"
    r"(?!\s+old)"
)
_KO_TIME = re.compile(rf"(?<![\d.])({_NUMBER})(?:\s*[–~\-]\s*({_NUMBER}))?\s*(일|주|개월|달|년)")
_EN_FEW = re.compile(r"\bfew (day|week|month)s\b")
_KO_FEW = {"며칠": "day", "몇 주": "week", "몇 달": "month", "몇 개월": "month"}
_PERCENT = re.compile(rf"(?<![\d.])({_NUMBER})(?:\s*[–~\-]\s*({_NUMBER}))?\s*%")

Figure = tuple[str, str, str]  # (low, high, unit): ("6", "12", "week"), ("few", "few", "week")


def time_figures(text: str, language: str, vague: bool = True) -> set[Figure]:
    """The durations a text states: numeric ranges and single values, and (if `vague`) "a few
    <unit>" / "몇 주". Vague ones are left out where wording legitimately differs between the
    languages ("in the first weeks" / "처음 몇 주")."""
    figures: set[Figure] = set()
    if language == "en":
        for low, high, unit in _EN_TIME.findall(text):
            figures.add((low, high or low, _EN_UNITS[unit]))
        for unit in _EN_FEW.findall(text) if vague else ():
            figures.add(("few", "few", unit))
    else:
        for low, high, unit in _KO_TIME.findall(text):
            figures.add((low, high or low, _KO_UNITS[unit]))
        for word, unit in _KO_FEW.items():
            if vague and word in text:
                figures.add(("few", "few", unit))
    return figures


def percent_figures(text: str) -> set[tuple[str, str]]:
    return {(low, high or low) for low, high in _PERCENT.findall(text)}


def show(figures: set[Figure]) -> list[str]:
    return sorted(
        f"{low}-{high} {unit}" if low != high else f"{low} {unit}" for low, high, unit in figures
    )


# --------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def conditions() -> dict[str, Condition]:
    return {condition.label: condition for condition in load_conditions()}


@pytest.fixture(scope="module")
def faq() -> list[FaqEntry]:
    return load_faq()


def field_texts(condition: Condition, name: str, language: str) -> list[str]:
    value = getattr(condition, name)
    if isinstance(value, dict):
        item = value.get(language, [])
        return [item] if isinstance(item, str) else list(item)
    return []


def paired_texts(condition: Condition) -> list[tuple[str, str, str]]:
    """(where, English, Korean) for every user-facing text of a condition, item by item."""
    pairs = []
    for name in ("names", "summary", "contagious", "improvement_time"):
        value = getattr(condition, name)
        pairs.append((name, value["en"], value["ko"]))
    for name in ("care_steps", "red_flags", "see_doctor_when"):
        value = getattr(condition, name)
        for index, (en, ko) in enumerate(
            zip(value.get("en", []), value.get("ko", []), strict=True)
        ):
            pairs.append((f"{name}[{index}]", en, ko))
    for index, ingredient in enumerate(condition.ingredients):
        for name in ("name", "use", "cautions"):
            value = getattr(ingredient, name)
            pairs.append((f"ingredients[{index}].{name}", value["en"], value["ko"]))
    return pairs


def all_texts(condition: Condition, language: str) -> list[str]:
    return [en if language == "en" else ko for _, en, ko in paired_texts(condition)]


# ------------------------------------------------------------------- the same figures everywhere


def test_english_and_korean_give_the_same_figures(conditions, faq):
    problems = []
    pairs = [
        (f"{label}.{where}", en, ko)
        for label, c in conditions.items()
        for where, en, ko in paired_texts(c)
    ]
    pairs += [(f"faq {entry.id}", entry.answer["en"], entry.answer["ko"]) for entry in faq]
    for where, en, ko in pairs:
        en_times, ko_times = time_figures(en, "en", False), time_figures(ko, "ko", False)
        if en_times != ko_times:
            problems.append(f"{where}: times en {show(en_times)} ≠ ko {show(ko_times)}")
        if percent_figures(en) != percent_figures(ko):
            problems.append(
                f"{where}: percentages en {percent_figures(en)} ≠ ko {percent_figures(ko)}"
            )
    assert not problems, "\n".join(problems)


# FAQ topics whose time figures must be ones the condition file states in the named fields.
FAQ_TOPIC_FIELDS = {
    "duration": ("improvement_time",),
    "treatment": ("improvement_time", "care_steps", "see_doctor_when"),
    "see-doctor": ("see_doctor_when", "red_flags", "care_steps"),
    "model-result": ("see_doctor_when", "red_flags", "improvement_time"),
}


def test_faq_time_figures_match_the_condition_file(conditions, faq):
    problems = []
    for entry in faq:
        if entry.label is None or entry.topic not in FAQ_TOPIC_FIELDS:
            continue
        condition = conditions[entry.label]
        fields = FAQ_TOPIC_FIELDS[entry.topic]
        for language in LANGUAGES:
            stated: set[Figure] = set()
            for name in fields:
                for text in field_texts(condition, name, language):
                    stated |= time_figures(text, language)
            extra = time_figures(entry.answer[language], language) - stated
            if extra:
                problems.append(
                    f"{entry.id} [{language}]: {show(extra)} not in {entry.label} "
                    f"{'/'.join(fields)} {show(stated)}"
                )
    assert not problems, "\n".join(problems)


def test_care_steps_about_improvement_time_match_it(conditions):
    """A care step that says how long treatment takes repeats `improvement_time`'s figures."""
    problems = []
    for label, condition in conditions.items():
        for language in LANGUAGES:
            stated = time_figures(condition.improvement_time[language], language, False)
            for step in condition.care_steps.get(language, []):
                about_time = ("patient" in step.lower()) or ("조급" in step)
                extra = time_figures(step, language, False) - stated
                if about_time and extra:
                    problems.append(f"{label} [{language}] step {step[:40]!r}: {show(extra)}")
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------- drug spellings

# The official Korean ingredient name (식약처 의약품안전나라 / 약학정보원) and the variants that
# must not appear in the Korean content. (User phrasings in FAQ questions may use any spelling.)
KOREAN_DRUG_NAMES = {
    "과산화벤조일": ("벤조일퍼옥사이드", "벤조일 퍼옥사이드", "벤조일과산화물"),
    "하이드로코르티손": ("히드로코르티손", "하이드로코티손", "히드로코티손", "하이드로코르티졸"),
    "아다팔렌": ("아다파렌", "아다팔린"),
    "클로트리마졸": ("클로트리마졸레", "클로트리마줄"),
    "테르비나핀": ("터비나핀", "테비나핀", "테르비나빈"),
    "베타메타손": ("베타메사손", "베타메타존"),
    "겐타마이신": ("젠타마이신", "겐타미신", "젠타미신"),
    "미코나졸": ("마이코나졸",),
    "케토코나졸": ("케토코나졸레",),
    "아시클로버": ("아사이클로버", "아시클로비르"),
}


def test_korean_drug_names_use_the_official_spelling(conditions, faq):
    texts = [(label, text) for label, c in conditions.items() for text in all_texts(c, "ko")]
    texts += [(entry.id, entry.answer["ko"]) for entry in faq]
    problems = [
        f"{where}: {variant!r} (use {official!r})"
        for where, text in texts
        for official, variants in KOREAN_DRUG_NAMES.items()
        for variant in variants
        if variant in text
    ]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------------- sources

KOREAN_SOURCE_DOMAINS = ("health.kdca.go.kr", "derma.or.kr", "health.kr", "nedrug.mfds.go.kr")


def test_each_source_is_a_distinct_named_page(conditions):
    problems = []
    for label, condition in conditions.items():
        names = Counter(source.name for source in condition.sources)
        urls = Counter(source.url for source in condition.sources)
        problems += [f"{label}: source name {n!r} ×{k}" for n, k in names.items() if k > 1]
        problems += [f"{label}: source url {u!r} ×{k}" for u, k in urls.items() if k > 1]
    assert not problems, "\n".join(problems)


def test_every_condition_names_a_korean_public_source(conditions):
    missing = [
        label
        for label, condition in conditions.items()
        if not any(
            domain in source.url for source in condition.sources for domain in KOREAN_SOURCE_DOMAINS
        )
    ]
    assert not missing, f"no Korean source: {missing}"


# ------------------------------------------------------------------------------ safety rules

OTC_PRODUCTS = {
    "en": (
        "hydrocortisone",
        "benzoyl peroxide",
        "adapalene",
        "salicylic acid",
        "clotrimazole",
        "miconazole",
        "terbinafine",
        "ketoconazole",
        "coal tar",
        "aciclovir",
        "emollient",
    ),
    "ko": (
        "하이드로코르티손",
        "과산화벤조일",
        "아다팔렌",
        "살리실산",
        "클로트리마졸",
        "미코나졸",
        "테르비나핀",
        "케토코나졸",
        "콜타르",
        "아시클로버",
        "보습제",
    ),
}


def test_urgent_conditions_never_list_over_the_counter_self_care(conditions):
    for label, condition in conditions.items():
        if condition.triage != Triage.URGENT:
            continue
        assert not any(condition.care_steps.get(language) for language in LANGUAGES), label
        assert not condition.ingredients, label
        for language in LANGUAGES:
            for text in all_texts(condition, language):
                named = [p for p in OTC_PRODUCTS[language] if p in text.lower()]
                assert not named, (label, named, text)


_OTC_WORDS = {
    "en": re.compile(
        r"over[- ]the[- ]counter|pharmac(?:y|ies)|without (?:a )?prescription|non-prescription",
        re.I,
    ),
    "ko": re.compile(r"일반의약품|약국|처방 없이|처방전 없이"),
}
_PRESCRIPTION_IN_KOREA = {
    "en": re.compile(r"prescription[- ]only in Korea|needs a prescription in Korea", re.I),
    "ko": re.compile(r"전문의약품"),
}
_ADAPALENE = {"en": "adapalene", "ko": "아다팔렌"}


def test_adapalene_is_never_described_as_sold_without_prescription_in_korea(conditions, faq):
    texts = [
        (f"{label}.{where}", language, en if language == "en" else ko)
        for label, c in conditions.items()
        for where, en, ko in paired_texts(c)
        for language in LANGUAGES
    ]
    texts += [(f"faq {e.id}", language, e.answer[language]) for e in faq for language in LANGUAGES]
    problems = []
    for where, language, text in texts:
        if _ADAPALENE[language] in text.lower() and _OTC_WORDS[language].search(text):
            if not _PRESCRIPTION_IN_KOREA[language].search(text):
                problems.append(f"{where} [{language}]: {text[:90]!r}")
    for label, condition in conditions.items():
        for ingredient in condition.ingredients:  # the list is headed "over-the-counter options"
            for language in LANGUAGES:
                if _ADAPALENE[language] in ingredient.name[language].lower():
                    problems.append(f"{label}: adapalene listed as an over-the-counter ingredient")
    assert not problems, "\n".join(problems)


# A care step naming the product must carry its essential caveat (all of the patterns).
STEP_CAVEATS = {
    "hydrocortisone": {
        "en": [r"face", r"child"],
        "ko": [r"얼굴", r"어린이|아이"],
    },
    "adapalene": {"en": [r"pregnan", r"prescription"], "ko": [r"임신", r"처방"]},
    "benzoyl peroxide": {"en": [r"bleach"], "ko": [r"탈색"]},
    "salicylic acid wart treatment": {"en": [r"face", r"diabetes"], "ko": [r"얼굴", r"당뇨"]},
}
_STEP_NAMES = {
    "hydrocortisone": {"en": "hydrocortisone", "ko": "하이드로코르티손"},
    "adapalene": {"en": "adapalene", "ko": "아다팔렌"},
    "benzoyl peroxide": {"en": "benzoyl peroxide", "ko": "과산화벤조일"},
    "salicylic acid wart treatment": {"en": "warts and verrucas", "ko": "손발 사마귀"},
}


def test_care_steps_carry_the_essential_caveat_of_the_product_they_name(conditions):
    problems = []
    for label, condition in conditions.items():
        for language in LANGUAGES:
            for step in condition.care_steps.get(language, []):
                for product, caveats in STEP_CAVEATS.items():
                    if _STEP_NAMES[product][language] not in step.lower():
                        continue
                    first = re.split(r"(?<=[.!?])\s+", step.strip())[0]
                    if re.search(r"^(?:do not|don't|avoid)\b|마세요\.?$", first, re.I):
                        continue  # a step warning against the product needs no usage caveat
                    missing = [p for p in caveats[language] if not re.search(p, step, re.I)]
                    if missing:
                        problems.append(
                            f"{label} [{language}] {product}: lacks {missing}: {step[:60]!r}"
                        )
    assert not problems, "\n".join(problems)


_COMBINATION = {
    "en": re.compile(r"combination", re.I),
    "ko": re.compile(r"복합"),
}


@pytest.mark.parametrize("label", ["fungal_infection", "other"])
def test_steroid_warnings_cover_combination_creams(conditions, label):
    """Korean pharmacies sell steroid + antifungal/antibiotic creams without a prescription."""
    condition = conditions[label]
    for language in LANGUAGES:
        steroid = "steroid" if language == "en" else "스테로이드"
        steps = [s for s in condition.care_steps[language] if steroid in s.lower()]
        assert steps, (label, language)
        assert any(_COMBINATION[language].search(step) for step in steps), (label, language, steps)


def test_psoriasis_and_lichen_planus_is_see_doctor_with_meanwhile_steps(conditions):
    condition = conditions["psoriasis_lichen_planus"]
    assert condition.triage == Triage.SEE_DOCTOR  # both need prescription treatment
    assert condition.care_steps["en"] and condition.care_steps["ko"]  # kept as "meanwhile" steps
    assert not condition.care_steps["en"][0].lower().startswith("see a doctor")
