"""Seed care content and sample clinics, shipped as files in knowledge/content/, and their checks.

- `load_conditions()` reads one JSON document per model label (knowledge/content/conditions/) and
  refuses the whole set if any document is malformed or fails `validate_condition`.
- `load_clinics_csv()` reads the sample clinics and validates every row: a bad file raises
  `ContentError` naming ALL bad rows with their line numbers, and returns nothing.

The stores import these documents once (version 0, updated_by "seed"); later edits happen in the
store, through the admin tools, and `validate_condition` is the check those edits go through too.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path
from typing import Any

from knowledge.models import LANGUAGES, Clinic, Condition, Triage, condition_from_dict

CONTENT_DIR = Path(__file__).resolve().parent / "content"
CONDITIONS_DIR = CONTENT_DIR / "conditions"
CLINICS_CSV = CONTENT_DIR / "clinics.csv"

# The labels the shipped care content is written for: one file each in conditions/. The model's
# labels live in its bundle's card (diagnosis/); tests/test_labels.py checks that they agree.
CONTENT_LABELS = tuple(sorted(path.stem for path in CONDITIONS_DIR.glob("*.json")))
SERVICES = ("skin_cancer_surgery", "mohs_surgery", "paediatric", "laser", "dermoscopy")
KNOWN_TREATMENTS = frozenset(CONTENT_LABELS + SERVICES)

CLINIC_COLUMNS = (
    "id",
    "name_en",
    "name_ko",
    "address_en",
    "address_ko",
    "city",
    "district",
    "lat",
    "lon",
    "phone",
    "hours_en",
    "hours_ko",
    "languages",
    "treats",
    "sample",
)
LIST_SEPARATOR = "|"  # what the shipped CSV uses; ";" is read too (older exports)
_LIST_SPLIT = re.compile(r"[|;]")
_TRUE, _FALSE = ("true", "yes"), ("false", "no")

# Korea's bounding box (mainland and Jeju), generous enough for every real address.
KOREA_LAT = (33.0, 39.0)
KOREA_LON = (124.0, 132.0)

LANGUAGE_CODE = re.compile(r"^[a-z]{2}$")  # ISO 639-1 shape: "ko", "en", "zh", "ja"
PHONE = re.compile(r"^0\d{1,2}-\d{3,4}-\d{4}$")  # Korean landline, e.g. 02-555-0101

MIN_SOURCES = 2

# Limits on a clinic CSV (an admin's upload, a file given to the CLI): far above any real clinic
# list, low enough that a hostile or mistaken file is refused with a reason instead of filling
# memory and the store. Python's csv module stops at 131072 characters a field on its own, with
# an error that named no line; the field limit here is checked first and says where.
MAX_CLINIC_ROWS = 5000
MAX_FIELD_CHARS = 2000


class ContentError(ValueError):
    """Seed content is malformed; `problems` lists every problem found (nothing was loaded)."""

    def __init__(self, source: str | Path, problems: list[str]):
        self.source = str(source)
        self.problems = list(problems)
        listing = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"{self.source}: {len(self.problems)} problem(s)\n{listing}")


# ----------------------------------------------------------------------------------- conditions


def _check_localized(name: str, value: Any, problems: list[str]) -> None:
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a mapping of language to text")
        return
    for language in LANGUAGES:
        text = value.get(language)
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{name}: missing or empty {language!r} text")


def _check_localized_list(name: str, value: Any, problems: list[str], required: bool) -> None:
    """A per-language list. Required ones need items; every present list must match in length."""
    if not isinstance(value, dict):
        problems.append(f"{name}: must be a mapping of language to a list of texts")
        return
    if not required and not any(value.get(language) for language in LANGUAGES):
        return  # an empty optional list (e.g. no care steps) is fine in every shape
    lengths = {}
    for language in LANGUAGES:
        items = value.get(language)
        if not isinstance(items, list) or not items:
            problems.append(f"{name}: missing or empty {language!r} list")
            continue
        blank = [i for i, item in enumerate(items) if not isinstance(item, str) or not item.strip()]
        if blank:
            problems.append(f"{name}: empty {language!r} item(s) at {blank}")
        lengths[language] = len(items)
    if len(set(lengths.values())) > 1:
        problems.append(f"{name}: languages have different numbers of items {lengths}")


def validate_condition(condition: Condition) -> list[str]:
    """Everything wrong with one care-content document; an empty list means it is fine."""
    problems: list[str] = []
    if not isinstance(condition.label, str) or not condition.label.strip():
        problems.append("label: empty")
    try:
        triage: Triage | None = Triage(condition.triage)
    except ValueError:
        triage = None
        problems.append(f"triage: unknown value {condition.triage!r}")

    for name in ("names", "summary", "contagious", "improvement_time"):
        _check_localized(name, getattr(condition, name), problems)
    for name in ("red_flags", "see_doctor_when"):
        _check_localized_list(name, getattr(condition, name), problems, required=True)

    steps = condition.care_steps
    has_steps = isinstance(steps, dict) and any(steps.get(language) for language in LANGUAGES)
    if triage is Triage.SELF_CARE and not has_steps:
        problems.append("care_steps: a self_care condition needs first-line care steps")
    elif triage is Triage.URGENT and has_steps:
        problems.append("care_steps: an urgent condition must not give self-care steps")
    else:
        _check_localized_list("care_steps", steps, problems, required=False)

    for index, ingredient in enumerate(condition.ingredients or []):
        for name in ("name", "use", "cautions"):
            _check_localized(
                f"ingredients[{index}].{name}", getattr(ingredient, name, None), problems
            )

    sources = condition.sources or []
    if len(sources) < MIN_SOURCES:
        problems.append(f"sources: needs at least {MIN_SOURCES}, has {len(sources)}")
    for index, source in enumerate(sources):
        if not str(getattr(source, "name", "")).strip():
            problems.append(f"sources[{index}]: empty name")
        if not str(getattr(source, "url", "")).startswith("https://"):
            problems.append(f"sources[{index}]: url must start with https://")
    return problems


def load_conditions(dir: Path = CONTENT_DIR) -> list[Condition]:
    """Every condition document, sorted by label; `ContentError` if any is bad (none returned).

    `dir` is the content folder (its `conditions/` subfolder is read) or the conditions folder.
    """
    folder = Path(dir)
    if (folder / "conditions").is_dir():
        folder = folder / "conditions"
    paths = sorted(folder.glob("*.json"))
    if not paths:
        raise ContentError(folder, ["no condition documents (*.json) found"])
    problems: list[str] = []
    conditions: list[Condition] = []
    seen: dict[str, str] = {}
    for path in paths:
        try:
            condition = condition_from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (
            OSError,
            ValueError,
            TypeError,
            KeyError,
        ) as error:  # JSONDecodeError is a ValueError
            problems.append(f"{path.name}: cannot be read as a Condition ({error})")
            continue
        if condition.label != path.stem:
            problems.append(f"{path.name}: label {condition.label!r} does not match the file name")
        if condition.label in seen:
            problems.append(
                f"{path.name}: duplicate label {condition.label!r} (also {seen[condition.label]})"
            )
        seen[condition.label] = path.name
        problems += [f"{path.name}: {problem}" for problem in validate_condition(condition)]
        conditions.append(condition)
    if problems:
        raise ContentError(folder, problems)
    return sorted(conditions, key=lambda condition: condition.label)


# -------------------------------------------------------------------------------------- clinics


# A cell that starts with one of these is a formula to Excel/LibreOffice/Sheets (CSV injection:
# `=HYPERLINK("http://evil", "Call us")` in a clinic name becomes a live link in an admin's
# spreadsheet). Exports prefix such cells with "'", which spreadsheets show as text; imports
# take that one "'" off again, so export -> import gives back the same values.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: str) -> str:
    return "'" + value if value.startswith(FORMULA_START) else value


def _from_spreadsheet(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(FORMULA_START) else value


def _split(value: str) -> list[str]:
    return [item.strip() for item in _LIST_SPLIT.split(value) if item.strip()]


def _coordinate(name: str, text: str, bounds: tuple[float, float], problems: list[str]) -> float:
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{name} {text!r} is not a number")
        return math.nan
    if not math.isfinite(value) or not bounds[0] <= value <= bounds[1]:
        problems.append(f"{name} {text} is outside Korea ({bounds[0]:g}–{bounds[1]:g})")
    return value


def clinic_from_row(row: dict[str, Any], problems: list[str]) -> Clinic | None:
    """One CSV row (or admin form) as a Clinic; appends what is wrong with it to `problems`."""
    if None in row:
        problems.append(f"{len(row[None])} more field(s) than the header has")
    missing = [column for column in CLINIC_COLUMNS if not (row.get(column) or "").strip()]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    values = {
        column: _from_spreadsheet((row.get(column) or "").strip()).strip()
        for column in CLINIC_COLUMNS
    }

    lat = _coordinate("lat", values["lat"], KOREA_LAT, problems) if values["lat"] else math.nan
    lon = _coordinate("lon", values["lon"], KOREA_LON, problems) if values["lon"] else math.nan

    languages = _split(values["languages"])
    bad_languages = [code for code in languages if not LANGUAGE_CODE.match(code)]
    if bad_languages:
        problems.append(f"bad language code(s) {bad_languages} (two lowercase letters, e.g. ko)")
    treats = _split(values["treats"])
    unknown = [item for item in treats if item not in KNOWN_TREATMENTS]
    if unknown:
        problems.append(f"unknown treats entr(y/ies) {unknown}")
    if values["phone"] and not PHONE.match(values["phone"]):
        problems.append(f"bad phone {values['phone']!r} (e.g. 02-555-0101)")
    sample = values["sample"].lower()
    if values["sample"] and sample not in _TRUE + _FALSE:
        problems.append(f"sample must be true or false, not {values['sample']!r}")

    if problems:
        return None
    return Clinic(
        id=values["id"],
        name={"en": values["name_en"], "ko": values["name_ko"]},
        address={"en": values["address_en"], "ko": values["address_ko"]},
        city=values["city"],
        district=values["district"],
        lat=lat,
        lon=lon,
        phone=values["phone"],
        hours={"en": values["hours_en"], "ko": values["hours_ko"]},
        languages=languages,
        treats=treats,
        sample=sample in _TRUE,
        updated_by="seed",
    )


def load_clinics_csv(path: Path = CLINICS_CSV) -> list[Clinic]:
    """Every clinic in the CSV, in file order; `ContentError` listing every bad row (by line)."""
    path = Path(path)
    return parse_clinics_csv(decode_csv(path.read_bytes(), path), path)


def decode_csv(data: bytes, source: str | Path = "upload") -> str:
    """A CSV file's text; ContentError naming the first undecodable byte when it is not UTF-8.

    Decoding "with replacement" would store "�" in clinic names without a word to anyone. The
    usual culprit is Excel's "CSV" on a Korean Windows, which writes CP949 (EUC-KR), or Latin-1
    elsewhere: the message says how to save it right instead."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ContentError(
            source,
            [
                f"line {line}: the file is not UTF-8 (byte 0x{data[error.start]:02x} at offset "
                f"{error.start}); it looks like another encoding such as CP949/EUC-KR or "
                'Latin-1. Save it as "CSV UTF-8" (Excel) or convert it, e.g. '
                "iconv -f cp949 -t utf-8, and upload it again"
            ],
        ) from error


def _limited_rows(reader: csv.DictReader, path: str | Path):
    """The reader's rows, refused (ContentError) past MAX_CLINIC_ROWS or MAX_FIELD_CHARS."""
    count = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:  # the csv module's own field limit, or a broken quote
            raise ContentError(
                path,
                [
                    f"line {reader.line_num}: unreadable CSV ({error}); a field is too large "
                    f"(the limit is {MAX_FIELD_CHARS} characters) or a quote is not closed"
                ],
            ) from error
        count += 1
        if count > MAX_CLINIC_ROWS:
            raise ContentError(
                path, [f"too many rows: more than {MAX_CLINIC_ROWS} clinics in one file"]
            )
        long = [
            name
            for name, value in row.items()
            if isinstance(value, str) and len(value) > MAX_FIELD_CHARS
        ]
        if long:
            raise ContentError(
                path,
                [
                    f"line {reader.line_num}: field(s) {long} too large "
                    f"(the limit is {MAX_FIELD_CHARS} characters)"
                ],
            )
        yield row


def parse_clinics_csv(text: str, source: str | Path = "upload") -> list[Clinic]:
    """`load_clinics_csv` for CSV text (an admin's upload); errors name `source`."""
    path = source
    with io.StringIO(text.lstrip("\ufeff"), newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        missing_columns = [column for column in CLINIC_COLUMNS if column not in header]
        if missing_columns:
            raise ContentError(path, [f"line 1: header lacks column(s) {missing_columns}"])
        problems: list[str] = []
        clinics: list[Clinic] = []
        first_line: dict[str, int] = {}
        rows = _limited_rows(reader, path)
        for row in rows:
            # reader.line_num is the row's LAST physical line; step back over quoted newlines.
            newlines = sum(value.count("\n") for value in row.values() if isinstance(value, str))
            line = reader.line_num - newlines
            row_problems: list[str] = []
            clinic = clinic_from_row(row, row_problems)
            clinic_id = (row.get("id") or "").strip()
            if clinic_id:
                if clinic_id in first_line:
                    row_problems.append(
                        f"duplicate id {clinic_id!r} (first on line {first_line[clinic_id]})"
                    )
                else:
                    first_line[clinic_id] = line
            if row_problems:
                problems.append(f"line {line}: {'; '.join(row_problems)}")
            elif clinic is not None:
                clinics.append(clinic)
    if problems:
        raise ContentError(path, problems)
    if not clinics:
        raise ContentError(path, ["no clinics"])
    return clinics
