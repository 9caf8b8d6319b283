"""The seed FAQ (knowledge/content/faq/): it loads, validates, and keeps its medical promises."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from knowledge.faq import FAQ_DIR, FaqFileError, load_faq, validate_faq
from knowledge.models import LANGUAGES, FaqEntry, to_dict

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_CARD = REPO_ROOT / "diagnosis" / "bundled" / "model_card.json"

# Conditions with a full FAQ (10+ entries, the core topics): the self-care ones, and psoriasis /
# lichen planus, which is see_doctor (it needs prescriptions) but has the same self-care questions.
SELF_CARE = {"acne", "atopic_dermatitis", "eczema", "fungal_infection", "psoriasis_lichen_planus"}
MALIGNANT = {"basal_cell_carcinoma", "melanoma"}
SELF_CARE_TOPICS = {"contagious", "duration", "steroid", "see-doctor", "model-result"}
GENERAL_TOPICS = {
    "privacy",
    "diagnosis",
    "photo-tips",
    "emergency",
    "delete-data",
    "accuracy",
    "find-clinic",
    "languages",
}
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
NEGATION = re.compile(r"\b(?:not|don't|do not|avoid|never)\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def labels() -> list[str]:
    return json.loads(MODEL_CARD.read_text(encoding="utf-8"))["labels"]


@pytest.fixture(scope="module")
def entries() -> list[FaqEntry]:
    return load_faq()


def of_label(entries: list[FaqEntry], label: str | None) -> list[FaqEntry]:
    return [entry for entry in entries if entry.label == label]


def sentences(text: str) -> list[str]:
    return [part for part in re.split(r"(?<=[.!?])\s+", text.strip()) if part]


def normalised(text: str) -> str:
    return re.sub(r"[\s?!.,'\"]+", " ", text.casefold()).strip()


# The content files.


def test_all_files_load_and_validate(entries, labels):
    assert entries
    assert validate_faq(entries, labels) == []


def test_one_file_per_label_plus_general(labels):
    assert {path.stem for path in FAQ_DIR.glob("*.json")} == set(labels) | {"general"}


def test_each_file_holds_only_its_own_label():
    for path in sorted(FAQ_DIR.glob("*.json")):
        expected = None if path.stem == "general" else path.stem
        data = json.loads(path.read_text(encoding="utf-8"))
        assert {item["label"] for item in data} == {expected}, path.name


def test_ids_are_stable_label_topic_slugs(entries):
    for entry in entries:
        assert SLUG.fullmatch(entry.topic), entry.id
        assert entry.id == f"{entry.label or 'general'}-{entry.topic}"


def test_entries_are_seed_version_zero(entries):
    for entry in entries:
        assert (entry.version, entry.updated_by, entry.updated_at) == (0, "seed", ""), entry.id


def test_entry_counts_per_label(entries, labels):
    for label in labels:
        minimum = 10 if label in SELF_CARE else 5
        assert len(of_label(entries, label)) >= minimum, label
    assert len(of_label(entries, None)) >= 8


def test_self_care_conditions_cover_the_core_topics(entries):
    for label in SELF_CARE:
        topics = {entry.topic for entry in of_label(entries, label)}
        assert SELF_CARE_TOPICS <= topics, (label, SELF_CARE_TOPICS - topics)


def test_general_file_has_the_required_topics(entries):
    topics = {entry.topic for entry in of_label(entries, None)}
    assert GENERAL_TOPICS <= topics, GENERAL_TOPICS - topics


def test_phrasings_and_answers_are_sized(entries):
    for entry in entries:
        for language in LANGUAGES:
            phrasings = entry.questions[language]
            assert 3 <= len(phrasings) <= 5, (entry.id, language)
            assert len({normalised(text) for text in phrasings}) == len(phrasings), entry.id
            assert 2 <= len(sentences(entry.answer[language])) <= 5, (entry.id, language)


def test_no_phrasing_is_shared_by_two_entries(entries):
    seen: dict[str, str] = {}
    for entry in entries:
        for language in LANGUAGES:
            for text in entry.questions[language]:
                key = normalised(text)
                assert seen.setdefault(key, entry.id) == entry.id, (text, seen[key], entry.id)


# What the answers must say.


@pytest.mark.parametrize("label", ["acne", "fungal_infection"])
def test_steroid_answers_advise_against_steroids_for_acne_and_fungal(entries, label):
    steroid = [entry for entry in of_label(entries, label) if entry.topic == "steroid"]
    assert steroid
    for entry in steroid:
        english = entry.answer["en"]
        assert "steroid" in english.lower() and NEGATION.search(english), entry.id
        assert "스테로이드" in entry.answer["ko"] and "마세요" in entry.answer["ko"], entry.id


@pytest.mark.parametrize("label", ["atopic_dermatitis", "eczema"])
def test_eczema_steroid_answers_state_the_limits(entries, label):
    steroid = [entry for entry in of_label(entries, label) if entry.topic == "steroid"]
    assert steroid
    for entry in steroid:
        english, korean = entry.answer["en"], entry.answer["ko"]
        assert "hydrocortisone 1%" in english and "face" in english, entry.id
        assert "under 10" in english and re.search(r"broken|infected", english), entry.id
        assert "하이드로코르티손 1%" in korean and "얼굴" in korean and "10세" in korean, entry.id


def test_melanoma_and_bcc_answers_send_to_a_dermatologist(entries):
    malignant = [entry for entry in entries if entry.label in MALIGNANT]
    assert malignant
    for entry in malignant:
        assert "dermatologist" in entry.answer["en"], entry.id
        assert "피부과" in entry.answer["ko"], entry.id


def test_model_result_answers_say_it_is_not_a_diagnosis(entries):
    results = [e for e in entries if e.topic == "model-result" and e.label not in (None, "other")]
    assert len(results) == 11
    for entry in results:
        assert "not a diagnosis" in entry.answer["en"], entry.id
        assert re.search("진단(?:이|도) 아니", entry.answer["ko"]), entry.id


def test_general_answers_name_forget_and_119(entries):
    general = {entry.topic: entry for entry in of_label(entries, None)}
    for language in LANGUAGES:
        assert "/forget" in general["delete-data"].answer[language]
        assert "/forget" in general["privacy"].answer[language]
        assert "119" in general["emergency"].answer[language]


# validate_faq and load_faq themselves.


def make_entry(**changes) -> FaqEntry:
    values = dict(
        id="acne-contagious",
        label="acne",
        topic="contagious",
        questions={
            "en": ["Is acne contagious?", "can I catch acne"],
            "ko": ["여드름 옮아요?", "전염되나요?"],
        },
        answer={"en": "No. It is not contagious.", "ko": "아니요. 전염되지 않아요."},
    )
    values.update(changes)
    return FaqEntry(**values)


def test_validate_accepts_a_good_entry_and_a_general_one():
    general = make_entry(id="general-privacy", label=None, topic="privacy")
    assert validate_faq([make_entry(), general], ["acne"]) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"label": "rash"}, "unknown label 'rash'"),
        (
            {"questions": {"en": ["Is acne contagious?"], "ko": ["여드름 옮아요?", "전염?"]}},
            "'en' phrasing",
        ),
        ({"questions": {"en": ["a", "b"], "ko": ["여드름 옮아요?", "  "]}}, "'ko' phrasing"),
        ({"questions": {"en": ["a", "b"]}}, "'ko' phrasing"),
        ({"answer": {"en": "No.", "ko": "   "}}, "empty 'ko' answer"),
        ({"answer": {"ko": "아니요."}}, "empty 'en' answer"),
        (
            {"questions": {"en": ["a", "b"], "ko": ["여드름 옮아요?", "is it catching"]}},
            "without Hangul",
        ),
        ({"answer": {"en": "No.", "ko": "No, it is not."}}, "Korean answer without Hangul"),
        ({"id": ""}, "empty id"),
    ],
)
def test_validate_reports_each_problem(changes, expected):
    problems = validate_faq([make_entry(**changes)], ["acne"])
    assert any(expected in problem for problem in problems), problems


def test_validate_reports_duplicate_ids():
    problems = validate_faq([make_entry(), make_entry(topic="other")], ["acne"])
    assert problems == ["acne-contagious: duplicate id (2 entries)"]


def test_load_reads_every_json_file_in_order(tmp_path):
    first, second = make_entry(), make_entry(id="general-privacy", label=None, topic="privacy")
    (tmp_path / "b.json").write_text(json.dumps([to_dict(first)]), encoding="utf-8")
    (tmp_path / "a.json").write_text(
        json.dumps([to_dict(second)], ensure_ascii=False), encoding="utf-8"
    )
    (tmp_path / "notes.txt").write_text("not a FAQ file", encoding="utf-8")
    assert load_faq(tmp_path) == [second, first]
    assert load_faq(tmp_path / "missing") == []


@pytest.mark.parametrize(
    "content",
    ["[{", '{"id": "x"}', "[1]", '[{"id": "x", "nonsense": 1}]'],
)
def test_load_names_the_broken_file(tmp_path, content):
    (tmp_path / "broken.json").write_text(content, encoding="utf-8")
    with pytest.raises(FaqFileError, match="broken.json"):
        load_faq(tmp_path)
