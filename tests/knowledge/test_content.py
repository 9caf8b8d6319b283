"""The shipped care content and sample clinics, and the loader's validation of bad files."""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest

from knowledge.content import (
    CLINIC_COLUMNS,
    CLINICS_CSV,
    CONTENT_DIR,
    KNOWN_TREATMENTS,
    ContentError,
    load_clinics_csv,
    load_conditions,
    validate_condition,
)
from knowledge.models import (
    LANGUAGES,
    Condition,
    Ingredient,
    Source,
    Triage,
    condition_from_dict,
    to_dict,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_CARD = REPO_ROOT / "diagnosis" / "bundled" / "model_card.json"
HANGUL = re.compile(r"[\uac00-\ud7a3]")
GANGNAM_STATION = (37.4979, 127.0276)
CITIES = ("Seoul", "Busan", "Incheon", "Daegu", "Daejeon", "Gwangju", "Suwon", "Seongnam")

EXPECTED_TRIAGE = {
    "melanoma": Triage.URGENT,
    "basal_cell_carcinoma": Triage.URGENT,
    "acne": Triage.SELF_CARE,
    "atopic_dermatitis": Triage.SELF_CARE,
    "eczema": Triage.SELF_CARE,
    "fungal_infection": Triage.SELF_CARE,
    # both need prescription treatment; its self-care steps are kept as "meanwhile" steps
    "psoriasis_lichen_planus": Triage.SEE_DOCTOR,
    "benign_keratosis": Triage.SEE_DOCTOR,
    "melanocytic_nevus": Triage.SEE_DOCTOR,
    "seborrheic_keratosis_benign_tumor": Triage.SEE_DOCTOR,
    "viral_infection": Triage.SEE_DOCTOR,
    "other": Triage.SEE_DOCTOR,
}


@pytest.fixture(scope="module")
def model_labels() -> list[str]:
    return json.loads(MODEL_CARD.read_text(encoding="utf-8"))["labels"]


@pytest.fixture(scope="module")
def conditions() -> dict[str, Condition]:
    return {condition.label: condition for condition in load_conditions()}


@pytest.fixture(scope="module")
def clinics():
    return load_clinics_csv(CLINICS_CSV)


def texts(condition: Condition, language: str) -> list[str]:
    """Every user-facing text of one language in a condition document."""
    out = [
        condition.names[language],
        condition.summary[language],
        condition.contagious[language],
        condition.improvement_time[language],
    ]
    for field in ("care_steps", "red_flags", "see_doctor_when"):
        out += getattr(condition, field).get(language, [])
    for ingredient in condition.ingredients:
        out += [ingredient.name[language], ingredient.use[language], ingredient.cautions[language]]
    return out


def km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6371 * math.asin(math.sqrt(h))


# ------------------------------------------------------------------------------------ conditions


def test_every_model_label_has_a_condition_file(model_labels, conditions):
    files = {path.stem for path in (CONTENT_DIR / "conditions").glob("*.json")}
    assert set(model_labels) == files
    assert set(model_labels) == set(conditions)


def test_condition_files_are_exactly_condition_documents():
    for path in sorted((CONTENT_DIR / "conditions").glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        condition = condition_from_dict(data)
        assert to_dict(condition) == data, path.name  # nothing extra, nothing missing
        assert data["version"] == 0 and data["updated_by"] == "seed" and data["updated_at"] == ""


def test_every_condition_validates(conditions):
    problems = {label: validate_condition(condition) for label, condition in conditions.items()}
    assert problems == {label: [] for label in conditions}


@pytest.mark.parametrize("label", sorted(EXPECTED_TRIAGE))
def test_triage_levels(conditions, label):
    assert conditions[label].triage == EXPECTED_TRIAGE[label]


def test_self_care_conditions_give_four_to_seven_steps(conditions):
    for label, condition in conditions.items():
        if condition.triage == Triage.SELF_CARE:
            for language in LANGUAGES:
                assert 4 <= len(condition.care_steps[language]) <= 7, (label, language)


def test_urgent_conditions_give_no_self_care_and_say_two_weeks(conditions):
    for label in ("melanoma", "basal_cell_carcinoma"):
        condition = conditions[label]
        assert not any(condition.care_steps.get(language) for language in LANGUAGES)
        assert not condition.ingredients
        assert any("2 weeks" in text for text in condition.see_doctor_when["en"]), label
        assert any("2주" in text for text in condition.see_doctor_when["ko"]), label
        assert any("dermatologist" in text for text in condition.see_doctor_when["en"]), label


def test_melanoma_lists_the_abcde_signs(conditions):
    flags = conditions["melanoma"].red_flags["en"]
    for letter, word in zip(
        "ABCDE", ("Asymmetry", "Border", "Colour", "Diameter", "Evolving"), strict=True
    ):
        assert any(flag.startswith(f"{letter} — {word}") for flag in flags), letter


def test_both_languages_everywhere_and_korean_is_korean(conditions):
    for label, condition in conditions.items():
        english, korean = texts(condition, "en"), texts(condition, "ko")
        assert len(english) == len(korean), label
        assert all(text.strip() for text in english + korean), label
        for text in korean:
            assert HANGUL.search(text), (label, text)
        for text in english:
            assert not HANGUL.search(text), (label, text)


def test_sources_are_named_public_pages(conditions):
    known = (
        "nhs.uk",
        "aad.org",
        "dermnetnz.org",
        "nice.org.uk",
        "mayoclinic.org",
        "derma.or.kr",
        "health.kdca.go.kr",
        "nedrug.mfds.go.kr",
    )
    for label, condition in conditions.items():
        assert len(condition.sources) >= 2, label
        for source in condition.sources:
            assert source.url.startswith("https://"), source
            assert any(domain in source.url for domain in known), source


# -------------------------------------------------------------------------- validate_condition


def good_condition(**overrides) -> Condition:
    both = {"en": "text", "ko": "글"}
    values = dict(
        label="acne",
        names=dict(both),
        summary=dict(both),
        triage=Triage.SELF_CARE,
        care_steps={"en": ["wash", "wait"], "ko": ["세안", "기다림"]},
        ingredients=[Ingredient(name=dict(both), use=dict(both), cautions=dict(both))],
        red_flags={"en": ["flag"], "ko": ["경고"]},
        see_doctor_when={"en": ["when"], "ko": ["언제"]},
        contagious=dict(both),
        improvement_time=dict(both),
        sources=[Source("NHS", "https://www.nhs.uk/a/"), Source("AAD", "https://www.aad.org/b")],
    )
    values.update(overrides)
    return Condition(**values)


def test_validate_condition_accepts_a_good_document():
    assert validate_condition(good_condition()) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"summary": {"en": "only English"}}, "summary: missing or empty 'ko'"),
        ({"names": {"en": "", "ko": "이름"}}, "names: missing or empty 'en'"),
        ({"red_flags": {"en": [], "ko": []}}, "red_flags: missing or empty"),
        ({"see_doctor_when": {"en": ["a"]}}, "see_doctor_when: missing or empty 'ko'"),
        ({"contagious": {}}, "contagious: missing or empty"),
        ({"improvement_time": {"en": "x", "ko": " "}}, "improvement_time: missing or empty 'ko'"),
        ({"sources": [Source("NHS", "https://www.nhs.uk/")]}, "sources: needs at least 2"),
        ({"care_steps": {}}, "self_care condition needs first-line care steps"),
        ({"triage": Triage.URGENT}, "urgent condition must not give self-care steps"),
        ({"triage": "emergency"}, "triage: unknown value 'emergency'"),
        ({"care_steps": {"en": ["a", "b"], "ko": ["가"]}}, "different numbers of items"),
        (
            {"ingredients": [Ingredient({"en": "x"}, {"en": "x", "ko": "x"}, {"en": "x"})]},
            "ingredients[0].name: missing or empty 'ko'",
        ),
    ],
)
def test_validate_condition_finds_problems(overrides, expected):
    problems = validate_condition(good_condition(**overrides))
    assert any(expected in problem for problem in problems), problems


def test_urgent_condition_without_steps_is_fine():
    condition = good_condition(triage=Triage.URGENT, care_steps={"en": [], "ko": []})
    assert validate_condition(condition) == []
    assert validate_condition(replace(condition, care_steps={})) == []


def test_load_conditions_refuses_a_folder_with_a_bad_document(tmp_path, conditions):
    folder = tmp_path / "conditions"
    folder.mkdir()
    good = to_dict(conditions["acne"])
    (folder / "acne.json").write_text(json.dumps(good), encoding="utf-8")
    bad = dict(to_dict(conditions["melanoma"]), care_steps={"en": ["rest"], "ko": ["휴식"]})
    (folder / "melanoma.json").write_text(json.dumps(bad), encoding="utf-8")
    (folder / "eczema.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ContentError) as caught:
        load_conditions(tmp_path)
    text = str(caught.value)
    assert "melanoma.json: care_steps" in text and "eczema.json" in text
    assert "acne.json" not in text

    (folder / "melanoma.json").unlink()
    (folder / "eczema.json").unlink()
    assert [c.label for c in load_conditions(folder)] == ["acne"]


# --------------------------------------------------------------------------------------- clinics


def test_at_least_forty_sample_clinics(clinics):
    assert len(clinics) >= 40
    assert all(clinic.sample for clinic in clinics)
    assert all(clinic.name["ko"].startswith("샘플") for clinic in clinics)
    assert all(clinic.name["en"].startswith("Sample") for clinic in clinics)
    assert len({clinic.id for clinic in clinics}) == len(clinics)


def test_every_city_has_several_clinics_for_each_urgent_label(clinics):
    assert {clinic.city for clinic in clinics} == set(CITIES)
    for city in CITIES:
        for label in ("melanoma", "basal_cell_carcinoma"):
            count = sum(1 for c in clinics if c.city == city and label in c.treats)
            assert count >= 2, (city, label, count)


def test_several_clinics_near_gangnam_station_treat_acne(clinics):
    near = [c for c in clinics if km(GANGNAM_STATION, (c.lat, c.lon)) <= 1.0]
    assert sum(1 for c in near if "acne" in c.treats) >= 3


def test_clinic_fields_are_complete(clinics):
    seoul_districts = {c.district for c in clinics if c.city == "Seoul"}
    assert len(seoul_districts) >= 5
    for clinic in clinics:
        for field in ("name", "address", "hours"):
            value = getattr(clinic, field)
            assert value["en"] and HANGUL.search(value["ko"]), (clinic.id, field)
        assert "ko" in clinic.languages
        assert set(clinic.treats) <= KNOWN_TREATMENTS
        assert re.fullmatch(r"0\d{1,2}-555-01\d\d", clinic.phone), clinic.phone


GOOD_ROW = {
    "id": "t-1",
    "name_en": "Sample Test Dermatology",
    "name_ko": "샘플 테스트피부과의원",
    "address_en": "2F, 1 Test-ro, Gangnam-gu, Seoul",
    "address_ko": "서울특별시 강남구 테스트로 1, 2층",
    "city": "Seoul",
    "district": "Gangnam-gu",
    "lat": "37.4979",
    "lon": "127.0276",
    "phone": "02-555-0199",
    "hours_en": "Mon–Fri 09:00–18:00",
    "hours_ko": "평일 09:00–18:00",
    "languages": "ko|en",
    "treats": "acne|melanoma|dermoscopy",
    "sample": "true",
}


def write_csv(path: Path, rows: list[dict], columns=CLINIC_COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_load_clinics_csv_accepts_a_good_file(tmp_path):
    second = dict(GOOD_ROW, id="t-2", lat="35.1578", lon="129.0600", city="Busan", languages="ko")
    clinics = load_clinics_csv(write_csv(tmp_path / "good.csv", [GOOD_ROW, second]))
    assert [c.id for c in clinics] == ["t-1", "t-2"]
    first = clinics[0]
    assert first.name == {"en": "Sample Test Dermatology", "ko": "샘플 테스트피부과의원"}
    assert (first.lat, first.lon) == (37.4979, 127.0276)
    assert first.languages == ["ko", "en"] and first.treats == ["acne", "melanoma", "dermoscopy"]
    assert first.sample is True and first.geohash == "" and first.version == 0


def test_load_clinics_csv_reads_semicolon_lists_and_yes_no(tmp_path):
    row = dict(GOOD_ROW, languages="ko;en", treats="acne;laser", sample="no")
    (clinic,) = load_clinics_csv(write_csv(tmp_path / "old.csv", [row]))
    assert clinic.languages == ["ko", "en"] and clinic.treats == ["acne", "laser"]
    assert clinic.sample is False
    with pytest.raises(ContentError, match="sample must be true or false"):
        load_clinics_csv(write_csv(tmp_path / "bad.csv", [dict(GOOD_ROW, sample="maybe")]))


def test_load_clinics_csv_reports_every_bad_line(tmp_path):
    rows = [
        GOOD_ROW,  # line 2: fine
        dict(GOOD_ROW, id="t-3", phone=""),  # line 3: missing field
        dict(GOOD_ROW, id="t-4", lat="51.5072"),  # line 4: London
        dict(GOOD_ROW, id="t-5", lon="139.69"),  # line 5: Tokyo
        dict(GOOD_ROW, id="t-6", treats="acne|tattoo_removal"),  # line 6: unknown treatment
        dict(GOOD_ROW, id="t-7", languages="ko|Korean"),  # line 7: bad language code
        dict(GOOD_ROW),  # line 8: duplicate of line 2
        dict(GOOD_ROW, id="t-9"),  # line 9: fine
        dict(GOOD_ROW, id="t-10", lat="north"),  # line 10: not a number
    ]
    with pytest.raises(ContentError) as caught:
        load_clinics_csv(write_csv(tmp_path / "bad.csv", rows))
    problems = caught.value.problems
    lines = [int(re.match(r"line (\d+):", problem).group(1)) for problem in problems]
    assert lines == [3, 4, 5, 6, 7, 8, 10]
    text = "\n".join(problems)
    assert "line 3: missing phone" in text
    assert "line 4: lat 51.5072 is outside Korea" in text
    assert "line 5: lon 139.69 is outside Korea" in text
    assert "tattoo_removal" in text
    assert "'Korean'" in text
    assert "line 8: duplicate id 't-1' (first on line 2)" in text
    assert "line 10: lat 'north' is not a number" in text


def test_load_clinics_csv_rejects_short_rows_and_missing_columns(tmp_path):
    path = tmp_path / "short.csv"
    good = ",".join(f'"{GOOD_ROW[column]}"' for column in CLINIC_COLUMNS)
    path.write_text(",".join(CLINIC_COLUMNS) + "\n" + good + "\n" + "t-2,Only a name\n", "utf-8")
    with pytest.raises(ContentError) as caught:
        load_clinics_csv(path)
    assert len(caught.value.problems) == 1 and caught.value.problems[0].startswith(
        "line 3: missing"
    )

    columns = [column for column in CLINIC_COLUMNS if column != "treats"]
    with pytest.raises(ContentError, match="header lacks"):
        load_clinics_csv(write_csv(tmp_path / "no_treats.csv", [GOOD_ROW], columns=columns))


def test_clinic_csv_limits_on_rows_and_field_size_are_refused_with_a_reason():
    from knowledge.content import MAX_CLINIC_ROWS, MAX_FIELD_CHARS, parse_clinics_csv

    header, first, *_ = CLINICS_CSV.read_text(encoding="utf-8").splitlines()
    long_name = first.replace(",", "," + "x" * (MAX_FIELD_CHARS + 1) + " ", 1)
    with pytest.raises(ContentError) as refused:
        parse_clinics_csv(f"{header}\n{long_name}\n", "upload.csv")
    assert "line 2" in str(refused.value) and "too large" in str(refused.value)
    assert f"limit is {MAX_FIELD_CHARS}" in str(refused.value)

    many = "\n".join([header] + [first] * (MAX_CLINIC_ROWS + 1))
    with pytest.raises(ContentError) as refused:
        parse_clinics_csv(many, "upload.csv")
    assert f"more than {MAX_CLINIC_ROWS} clinics" in str(refused.value)
