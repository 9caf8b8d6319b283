"""Every chat template, in both languages, rendered with realistic contexts and checked as a user
(and Telegram's HTML parser) would read it."""

from __future__ import annotations

import dataclasses
import random
import re

import pytest
from jinja2 import nodes
from markupsafe import escape

from bot.conversation.views import condition_view, percent
from bot.texts import (
    LANGUAGES,
    MessageSplitError,
    Texts,
    plain_text,
    split_message,
    telegram_problems,
)
from diagnosis.intake import RejectReason
from diagnosis.quality import QualityIssue
from knowledge.content import CONTENT_LABELS, load_conditions
from knowledge.models import Triage

from telegram_server import parse_html

LEVELS = ("urgent", "self_care", "see_doctor", "abstain")
HIDDEN = {"_common", "words"}  # imported by the others, never rendered on their own

DISCLAIMER = {"en": "This is not a diagnosis", "ko": "이 결과는 진단이 아닙니다"}
SELF_CARE_HEADING = {"en": "First-line care", "ko": "기본 관리 방법"}
CANT_TELL = {"en": "I can't tell confidently", "ko": "자신 있게 말하기 어려워요"}
SEE_DERMATOLOGIST = {"en": "see a dermatologist", "ko": "피부과 전문의"}
# English sentences of the templates that must never leak into a Korean reply.
ENGLISH_PHRASES = (
    "This is not a diagnosis",
    "not a diagnosis",
    "First-line care",
    "Most likely",
    "Top 3",
    "See a doctor when",
    "Red flags",
    "When to get it checked",
    "Please see a dermatologist",
    "can't tell",
    "Sources:",
    "Over-the-counter",
    "How long it takes",
    "Send a photo",
    "Sorry",
    "Thank you",
)
HANGUL = re.compile(r"[\uac00-\ud7a3]")
# Four English words in a row (file formats such as "JPEG, PNG" are not words).
ENGLISH_RUN = re.compile(r"\b[A-Za-z]?[a-z]+\b(?:[ ,'-]+\b[A-Za-z]?[a-z]+\b){3,}")


@pytest.fixture(scope="module")
def texts() -> Texts:
    return Texts()


@pytest.fixture(scope="module")
def conditions():
    return {condition.label: condition for condition in load_conditions()}


def ranked_for(label: str, conditions, lang: str) -> list[dict]:
    """Top 3 as `Conversation._result` passes it: the label first, then two others."""
    others = [other for other in CONTENT_LABELS if other != label][:2]
    probs = (0.81, 0.12, 0.004)
    likelihood = {"en": "very likely", "ko": "가능성 매우 높음"}[lang]
    return [
        {
            "label": name,
            "name": conditions[name].names[lang],
            "percent": percent(prob),
            "likelihood": likelihood,
            "triage": str(conditions[name].triage),
        }
        for name, prob in zip([label, *others], probs, strict=True)
    ]


def contexts(conditions, lang: str) -> dict[str, dict]:
    """A realistic context for every template, as the conversation passes it."""
    acne = condition_view(conditions["acne"], lang)
    ko = lang == "ko"
    return {
        "admin_feedback": {
            "entries": [
                {
                    "when": "2025-03-01 10:00",
                    "name": acne["name"],
                    "correct": False,
                    "model_version": "lite0-224-v1",
                    "comment": "사진이 흐렸어요 & <b>" if ko else "Blurry photo & <b>",
                },
                {
                    "when": "2025-03-01 09:00",
                    "name": acne["name"],
                    "correct": True,
                    "model_version": "lite0-224-v1",
                    "comment": "",
                },
            ]
        },
        "admin_reload": {"ok": True, "conditions": 11, "faq": 48},
        "admin_stats": {
            "periods": [
                {
                    "name": name,
                    "photos": photos,
                    "by_transport": [("tg", photos - 1), ("web", 1)] if photos else [],
                    "abstain_rate": "25%" if photos else None,
                    "urgent_rate": "10%" if photos else None,
                    "checklist": [("seven_point", 2), ("all_clear", 1)] if photos else [],
                    "right": 3 if photos else 0,
                    "wrong": 1 if photos else 0,
                    "feedback": (
                        [{"name": acne["name"], "right": 3, "wrong": 1}] if photos else []
                    ),
                }
                for name, photos in (("day", 0), ("week", 12))
            ]
        },
        "ask_location": {},
        "care": {"level": "self_care", "urgent": False, "condition": acne},
        "checklist_question": {
            "group": "pigmented",
            "first": True,
            "number": 1,
            "total": 8,
            "question": "크기가 변했나요?" if ko else "Has it changed in size?",
        },
        "checklist_outcome": {
            "change": "raised",
            "advice": "two_weeks",
            "fired": ["seven_point", "bleeding"],
            "score": 4,
            "group": "pigmented",
        },
        "clinics": {
            "clinics": [
                {
                    "name": "강남 피부 & 레이저 의원" if ko else "Gangnam Skin & Laser Clinic",
                    "address": "서울 강남구 테헤란로 123" if ko else "123 Teheran-ro, Seoul",
                    "phone": "02-555-0101",
                    "hours": "월-금 9:00-18:00" if ko else "Mon-Fri 9:00-18:00",
                    "distance_km": 1.23,
                    "map_url": "https://map.kakao.com/link/map/a%20b,37.5,127.0",
                    "sample": True,
                    "card": True,
                },
                {
                    "name": "한빛 피부과" if ko else "Hanbit Dermatology",
                    "address": "서울 강남구 역삼로 45" if ko else "45 Yeoksam-ro, Seoul",
                    "phone": "02-555-0102",
                    "hours": "월-금 9:00-18:00" if ko else "Mon-Fri 9:00-18:00",
                    "distance_km": 2.5,
                    "map_url": "https://map.kakao.com/link/map/c,37.5,127.0",
                    "sample": True,
                    "card": False,
                },
            ],
            "place": "강남구" if ko else "Gangnam",
            "condition_name": acne["name"],
            "any_sample": True,
        },
        "faq_answer": {
            "answer": "아니요, 전염되지 않아요." if ko else "No, it is not contagious.",
            "about": acne["name"],
            "scoped": True,
        },
        "faq_no_match": {
            "topics": ["사진은 어떻게 되나요?" if ko else "What happens to my photo?"]
        },
        "faq_which_condition": {"names": [acne["name"], "습진" if ko else "Eczema"]},
        "feedback_already": {},
        "feedback_thanks": {"correct": True},
        "forgotten": {},
        "heatmap": {"name": acne["name"]},
        "heatmap_unavailable": {},
        "help": {"model_installed": True},
        "language": {},
        "language_set": {},
        "no_clinics": {"radius_km": 50},
        "no_clinics_near_place": {
            "place": "제주" if ko else "Jeju",
            "nearest": "광주" if ko else "Gwangju",
            "nearest_km": 186,
        },
        "no_model": {},
        "privacy": {"model_installed": True},
        "rejected": {"reason": "too_small", "max_mb": 20, "min_side": 64},
        "result": {
            "level": "self_care",
            "urgent": False,
            "ranked": ranked_for("acne", conditions, lang),
            "condition": acne,
        },
        "result_more": {"level": "self_care", "urgent": False, "condition": acne},
        "retake": {"issues": ["blurry", "too_dark"]},
        "slow_down": {"window_s": 60},
        "stale_button": {},
        "start": {"model_installed": False},
        "store_down": {},
        "unknown_command": {"command": "foo"},
        "unsupported": {"what": "sticker"},
    }


# ---- checks ----------------------------------------------------------------------------------

_TAG = re.compile(r'<(/?)(b|i|a)(?: href="([^"<>]*)")?>')
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


def assert_telegram_html(text: str) -> None:
    """Only <b>, <i>, <a href="...">, properly nested; no raw <, > or & outside them."""
    stack: list[str] = []
    for match in _TAG.finditer(text):
        closing, tag, href = match.groups()
        if closing:
            assert href is None, match.group(0)
            assert stack and stack[-1] == tag, f"unbalanced {match.group(0)!r} in {text!r}"
            stack.pop()
        else:
            assert (tag == "a") == (href is not None), match.group(0)
            if href is not None:
                assert re.match(r"https?://", href), href
            stack.append(tag)
    assert not stack, f"unclosed {stack} in {text!r}"
    rest = _TAG.sub("", text)
    assert "<" not in rest and ">" not in rest, f"raw angle bracket in {rest!r}"
    assert "&" not in _ENTITY.sub("", rest), f"raw & in {rest!r}"


def assert_korean(text: str, name: str) -> None:
    assert HANGUL.search(text), f"{name}: no Hangul in {text!r}"
    for phrase in ENGLISH_PHRASES:
        assert phrase not in text, f"{name}: English {phrase!r} in a Korean reply"
    if name == "language":  # the choice is asked in both languages on purpose
        return
    # No English sentence of a template: links (source names) and product codes are fine.
    plain = re.sub(r"<a [^>]*>.*?</a>", "", text)
    plain = _TAG.sub("", plain)
    runs = ENGLISH_RUN.findall(plain)
    assert not runs, f"{name}: English text in a Korean reply: {runs}"


def rendered(texts: Texts, conditions, template: str, lang: str, **context) -> str:
    text = texts.render(template, lang, **{**contexts(conditions, lang)[template], **context})
    assert text.strip(), f"{lang}/{template} rendered nothing"
    assert_telegram_html(text)
    if lang == "ko":
        assert_korean(text, template)
    return text


# ---- every template, both languages --------------------------------------------------------


def test_every_template_exists_in_both_languages(texts, conditions):
    names = {lang: set(texts.template_names(lang)) - HIDDEN for lang in LANGUAGES}
    assert names["en"] == names["ko"]
    assert names["en"] == set(contexts(conditions, "en")), "a template without a test context"
    for lang in LANGUAGES:
        assert HIDDEN <= set(texts.template_names(lang))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_template_renders(texts, conditions, lang):
    for template in contexts(conditions, lang):
        rendered(texts, conditions, template, lang)


def test_words_exist_in_both_languages(texts):
    def variables(lang: str) -> set[str]:
        source = texts.environment.loader.get_source(texts.environment, f"{lang}/words.j2")[0]
        tree = texts.environment.parse(source)
        return {node.target.name for node in tree.find_all(nodes.Assign)}

    names = {lang: variables(lang) for lang in LANGUAGES}
    assert names["en"] == names["ko"]
    assert {"button_care", "button_clinic", "very_likely", "less_likely"} <= names["en"]
    for name in names["en"]:
        english, korean = texts.word(name, "en"), texts.word(name, "ko")
        assert english.strip() and korean.strip()
        assert HANGUL.search(korean), f"words.j2 {name}: {korean!r} is not Korean"


# ---- results and care, for every condition, level and urgency -----------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("label", CONTENT_LABELS)
def test_result_and_care_for_every_label_level_and_urgency(texts, conditions, lang, label):
    condition = condition_view(conditions[label], lang)
    first_step = str(escape(condition["care_steps"][0])) if condition["care_steps"] else None
    for level in LEVELS:
        for urgent in (False, True):
            context = {
                "level": level,
                "urgent": urgent,
                "ranked": ranked_for(label, conditions, lang),
                "condition": condition,
            }
            where = f"{lang}/{label}/{level}/urgent={urgent}"
            result = rendered(texts, conditions, "result", lang, **context)
            more = rendered(texts, conditions, "result_more", lang, **context)
            care = rendered(texts, conditions, "care", lang, **context)
            for text in (result, more, care):
                assert DISCLAIMER[lang] in text, where
            if urgent or level == "urgent":
                for text in (result, more, care):
                    assert SELF_CARE_HEADING[lang] not in text, where
                    assert SEE_DERMATOLOGIST[lang] in text, where
                    assert first_step is None or first_step not in text, where
            elif level == "self_care" and first_step is not None:
                # The first message is short: the steps are behind "More" and "Care tips".
                assert SELF_CARE_HEADING[lang] in more and first_step not in result, where
                assert first_step in more and first_step in care, where
            if level == "abstain":
                assert CANT_TELL[lang] in result, where
                assert first_step is None or first_step not in more, where


def test_self_care_conditions_have_care_steps(conditions):
    for condition in conditions.values():
        if condition.triage == Triage.SELF_CARE:
            assert all(condition.care_steps.get(lang) for lang in LANGUAGES), condition.label


@pytest.mark.parametrize("lang", LANGUAGES)
def test_content_cannot_inject_markup(texts, conditions, lang):
    hostile = dataclasses.replace(
        conditions["acne"],
        summary={lang: "<script>alert(1)</script> Tom & Jerry's <b>spots</b>"},
        care_steps={lang: ["Wash <i>gently</i> & often", "Use a </b> cream"]},
        names={lang: "Acne <img src=x>"},
    )
    condition = condition_view(hostile, lang)
    ranked = ranked_for("acne", conditions, lang)
    ranked[0]["name"] = condition["name"]
    for template in ("result", "result_more", "care"):
        text = texts.render(
            template, lang, level="self_care", urgent=False, ranked=ranked, condition=condition
        )
        assert_telegram_html(text)
        assert "<script>" not in text and "<img" not in text
        assert "Acne &lt;img src=x&gt;" in text
        if template != "result":  # the first message names the answer; the others say more
            assert "&lt;script&gt;" in text or template == "care"
            assert "Wash &lt;i&gt;gently&lt;/i&gt; &amp; often" in text


def test_the_checks_catch_bad_text(texts, conditions):
    for bad in ("<u>x</u>", "<b>x", "<b>x</i>", "a < b", "x & y", '<a href="javascript:x">y</a>'):
        with pytest.raises(AssertionError):
            assert_telegram_html(bad)
    english = texts.render("result", "en", **contexts(conditions, "en")["result"])
    with pytest.raises(AssertionError):
        assert_korean(english + " 한국어", "result")
    with pytest.raises(AssertionError):
        assert_korean("안녕하세요. Please send me a photo", "start")


def test_percent_below_one_is_escaped(texts, conditions):
    text = rendered(texts, conditions, "result", "en")
    assert "&lt;1%" in text  # the third item is 0.4%


# ---- messages chosen by a reason -----------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_rejected_has_a_sentence_per_reason(texts, conditions, lang):
    fallback = rendered(texts, conditions, "rejected", lang, reason="something_new")
    sentences = {
        reason: rendered(texts, conditions, "rejected", lang, reason=str(reason))
        for reason in RejectReason
    }
    assert len(set(sentences.values())) == len(RejectReason)
    assert fallback not in sentences.values()
    assert "20" in sentences[RejectReason.FILE_TOO_LARGE]
    assert "64" in sentences[RejectReason.TOO_SMALL]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_clinic_list_leaves_the_venue_cards_address_and_map_to_them(texts, conditions, lang):
    carded, listed = contexts(conditions, lang)["clinics"]["clinics"]
    text = rendered(texts, conditions, "clinics", lang)
    for clinic in (carded, listed):  # every clinic once, with what only the list says
        assert text.count(str(escape(clinic["name"]))) == 1
        assert clinic["phone"] in text and str(escape(clinic["hours"])) in text
    assert str(escape(carded["address"])) not in text and carded["map_url"] not in text
    assert str(escape(listed["address"])) in text and listed["map_url"] in text


@pytest.mark.parametrize(
    "name, particle",
    [
        ("습진", "이라고"),  # ends in a consonant (batchim)
        ("여드름", "이라고"),
        ("사마귀", "라고"),  # ends in a vowel
        ("아토피 피부염", "이라고"),
        ("흑색종(멜라노마)", "라고"),  # read to the last syllable inside the brackets
        ("지루각화증 (양성)", "이라고"),
        ("BCC", "(이)라고"),  # not Hangul: both forms, as a person writes it
    ],
)
def test_the_korean_particle_follows_the_last_syllable(texts, name, particle):
    text = texts.render("heatmap", "ko", name=name)
    assert f"<b>{escape(name)}</b>{particle} 판단할 때" in text


@pytest.mark.parametrize("lang", LANGUAGES)
def test_retake_has_advice_per_issue(texts, conditions, lang):
    without = rendered(texts, conditions, "retake", lang, issues=[])
    advice = {}
    for issue in QualityIssue:
        text = rendered(texts, conditions, "retake", lang, issues=[str(issue)])
        advice[issue] = [line for line in text.split("\n") if line.startswith("•")]
        assert len(advice[issue]) == 1, (issue, text)
        assert text != without
    assert len({tuple(lines) for lines in advice.values()}) == len(QualityIssue)
    both = rendered(texts, conditions, "retake", lang, issues=["blurry", "too_dark"])
    assert advice[QualityIssue.BLURRY][0] in both and advice[QualityIssue.TOO_DARK][0] in both


# ---- splitting long replies ----------------------------------------------------------------


def _words(text: str) -> str:
    return "".join(text.split())


def _long_text(rng: random.Random) -> str:
    pieces = []
    for _ in range(rng.randint(1, 400)):
        kind = rng.random()
        if kind < 0.05:
            pieces.append("x" * rng.randint(4000, 13000))  # one enormous line
        elif kind < 0.15:
            pieces.append("")  # blank line
        else:
            words = [
                rng.choice(["acne", "여드름", "<b>care</b>", "&amp;", "🙂", "a"])
                for _ in range(rng.randint(1, 300))
            ]
            pieces.append(" ".join(words))
    return "\n".join(pieces)


@pytest.mark.parametrize("limit", [4096, 100, 30])
def test_split_message_keeps_every_part_under_the_limit_and_loses_nothing(limit):
    rng = random.Random(limit)
    for _ in range(60):
        text = _long_text(rng)
        parts = split_message(text, limit)
        assert parts
        assert all(0 < len(part) <= limit for part in parts), [len(p) for p in parts]
        # What the user reads is all there (tags carried over a cut are re-opened, not text).
        assert _words("".join(plain_text(p) for p in parts)) == _words(plain_text(text))
        for part in parts[:20]:
            assert telegram_problems(part, limit) == [], part
            parse_html(part)  # the test Bot API server's parser, as Telegram's: no error
        if len(text) <= limit:
            assert parts == [text]


def test_split_message_never_cuts_a_tag_or_an_entity_and_carries_formatting_over():
    link = '<a href="https://example.org/a?b=1&amp;c=2">'
    text = "<b>" + "bold words " * 40 + "</b>\n" + link + "&lt;link&gt; " * 30 + "</a> &amp; end"
    for limit in range(60, 200, 7):
        parts = split_message(text, limit)
        for part in parts:
            assert len(part) <= limit and telegram_problems(part, limit) == [], (limit, part)
            parse_html(part)
        assert _words("".join(plain_text(p) for p in parts)) == _words(plain_text(text))
        # A cut inside the link re-opens the link, with its address, in the next part.
        linked = [p for p in parts if "link" in plain_text(p)]
        assert len(linked) > 1 and all(p.startswith(link) or link in p for p in linked)
        assert all(p.count("<b>") == p.count("</b>") for p in parts)


def test_split_message_refuses_a_limit_that_cannot_hold_the_tags():
    with pytest.raises(MessageSplitError):
        split_message('<a href="https://example.org/' + "x" * 200 + '">x</a> ' * 3, 100)


def test_telegram_problems_names_what_telegram_would_refuse():
    assert telegram_problems('<b>fine</b> &amp; <a href="https://x.org">ok</a>') == []
    assert any("never closed" in p for p in telegram_problems("<b>open"))
    assert any("</i>" in p for p in telegram_problems("<b>x</i>"))
    assert any("unsupported tag <div>" in p for p in telegram_problems("<div>x</div>"))
    assert any("bare '<'" in p for p in telegram_problems("1 < 2"))
    assert any("bare '&'" in p for p in telegram_problems("salt & pepper"))
    assert any("no visible text" in p for p in telegram_problems("<b> </b>"))
    assert any("over the limit" in p for p in telegram_problems("a" * 4097))
    assert telegram_problems("&lt;" * 4000) == []  # the limit counts what the user reads


def test_split_message_prefers_line_boundaries():
    lines = [f"line {i} " + "word " * 40 for i in range(300)]
    text = "\n".join(lines)
    parts = split_message(text)
    assert len(parts) > 1
    for part in parts:
        assert all(line in lines for line in part.split("\n"))
    assert "\n".join(parts) == text


RULED_OUT = {"en": "A skin cancer can't be ruled out", "ko": "피부암일 가능성을 배제할 수 없어요"}
WITHIN_TWO_WEEKS = {"en": "within 2 weeks", "ko": "2주 이내"}


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("label", CONTENT_LABELS)
def test_every_referral_tier_names_the_cancer_and_how_likely(texts, conditions, lang, label):
    condition = condition_view(conditions[label], lang)
    first_step = str(escape(condition["care_steps"][0])) if condition["care_steps"] else None
    for cancer_label, tier, urgent in (
        ("melanoma", "likely", True),
        ("basal_cell_carcinoma", "likely", True),
        ("melanoma", "possible", False),
        ("basal_cell_carcinoma", "possible", False),
    ):
        signs = conditions[cancer_label].red_flags[lang]
        cancer = {
            "label": cancer_label,
            "name": conditions[cancer_label].names[lang],
            "percent": "6%",
            "tier": tier,
            "warning_signs": signs,
        }
        for level in LEVELS:
            if tier == "possible" and level == "urgent":
                continue  # a "possible" answer keeps the benign answer's own level
            context = {
                "level": level,
                "urgent": urgent,
                "ranked": ranked_for(label, conditions, lang),
                "condition": condition,
                "cancer": cancer,
                "emergency_signs": [],
            }
            where = f"{lang}/{label}/{level}/{cancer_label}/{tier}"
            for template in ("result", "result_more", "care"):
                if template == "result_more" and (tier == "possible" or level == "abstain"):
                    continue  # "More" of such a result is about the benign answer alone
                text = rendered(texts, conditions, template, lang, **context)
                # Which cancer, and how likely, whatever the tier.
                assert str(escape(cancer["name"])) in text, where
                assert "6%" in text, where
                if tier == "likely":
                    assert WITHIN_TWO_WEEKS[lang] in text, where
                    assert first_step is None or first_step not in text, where
                else:
                    assert RULED_OUT[lang] in text, where
                    assert str(escape(signs[0])) in text, where  # its own warning signs
                    assert WITHIN_TWO_WEEKS[lang] not in text.split(RULED_OUT[lang])[1][:400]
                    if level == "self_care" and first_step is not None and template == "care":
                        assert first_step in text, where  # self-care kept


@pytest.mark.parametrize("lang", LANGUAGES)
def test_i_cant_tell_lists_the_emergency_signs(texts, conditions, lang):
    signs = conditions["other"].red_flags[lang]
    context = {
        "level": "abstain",
        "urgent": False,
        "ranked": ranked_for("other", conditions, lang),
        "condition": condition_view(conditions["other"], lang),
        "cancer": None,
        "emergency_signs": signs,
    }
    text = rendered(texts, conditions, "result", lang, **context)
    assert "119" in text and all(str(escape(sign)) in text for sign in signs)


# ---- the checklist's outcome line, every change and rule ---------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(
    ("change", "advice", "fired", "says"),
    [
        ("raised", "same_day", ["fever_spreading"], {"en": "get care today", "ko": "오늘 진료"}),
        ("raised", "same_day", ["shingles_eye"], {"en": "near the eye", "ko": "눈 주위"}),
        ("raised", "two_weeks", ["seven_point"], {"en": "within 2 weeks", "ko": "2주 이내"}),
        ("raised", "two_weeks", ["bleeding"], {"en": "it bleeds", "ko": "피가 남"}),
        ("raised", "routine", ["lasting"], {"en": "over 2 weeks", "ko": "2주 넘게"}),
        ("raised", "routine", ["baby_pregnancy"], {"en": "pregnancy", "ko": "임신"}),
        ("lowered", "routine", ["all_clear"], {"en": "routine check", "ko": "정기 진료"}),
        ("unchanged", "routine", [], {"en": "don't change", "ko": "그대로"}),
        ("", "routine", [], {"en": "No answers", "ko": "답이 없어"}),
    ],
)
def test_checklist_outcome_says_how_the_advice_changed(
    texts, conditions, lang, change, advice, fired, says
):
    text = rendered(
        texts, conditions, "checklist_outcome", lang, change=change, advice=advice, fired=fired
    )
    assert says[lang] in text
    assert len(text.splitlines()) == 1, "one line"
