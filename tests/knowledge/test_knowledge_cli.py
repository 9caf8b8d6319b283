"""`python -m knowledge ...`, run in-process against a SQLite file in tmp_path."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest

from knowledge.cli import clinic_row, main
from knowledge.content import CLINIC_COLUMNS, CONTENT_DIR, load_clinics_csv, load_conditions
from knowledge.faq import load_faq
from knowledge.models import condition_from_dict, faq_from_dict
from knowledge.seed import seed
from knowledge.store.rules import content_of
from knowledge.store.sqlite import SqliteStore

from knowledge_samples import make_clinic

SEOUL_CITY_HALL = ("37.5663", "126.9779")


@pytest.fixture
def db_path(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "data" / "knowledge.sqlite3"
    for name in ("SKINCARE_STORE", "SKINCARE_FIRESTORE_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SKINCARE_DB", str(path))
    return path


def run_on_store(path: Path, work):
    async def go():
        store = SqliteStore(path)
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.fixture
def filled_db(db_path, sample_conditions, sample_faq, sample_clinics) -> Path:
    run_on_store(
        db_path,
        lambda store: seed(
            store, conditions=sample_conditions, faq=sample_faq, clinics=sample_clinics
        ),
    )
    return db_path


def test_nearest_prints_clinics_nearest_first(filled_db, capsys):
    assert main(["nearest", *SEOUL_CITY_HALL]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("1. Clinic seoul-jung (seoul-jung 피부과)  Seoul, Jung-gu  0.4 km")
    assert "02-000-0000" in lines[0] and "[sample data]" in lines[0]
    assert lines[3].startswith("4. Clinic seoul-gangnam") and "Gangnam-gu" in lines[3]


def test_nearest_condition_limit_and_json(filled_db, capsys):
    assert main(["nearest", *SEOUL_CITY_HALL, "--condition", "melanoma", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["id"] for row in rows] == ["seoul-jongno", "seoul-gangnam"]
    assert rows[0]["distance_km"] < rows[1]["distance_km"]
    assert rows[0]["name"]["ko"] == "seoul-jongno 피부과" and rows[0]["phone"]
    assert main(["nearest", *SEOUL_CITY_HALL, "--limit", "1", "--json"]) == 0
    assert [row["id"] for row in json.loads(capsys.readouterr().out)] == ["seoul-jung"]
    busan = ["35.1152", "129.0422"]
    assert main(["nearest", *busan, "--max-km", "400", "--limit", "10", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 6


def test_nearest_with_nothing_near(filled_db, capsys):
    assert main(["nearest", "0", "0"]) == 0
    assert capsys.readouterr().out.strip() == "no clinics within 50 km"
    assert main(["nearest", "0", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    "args", [["nearest", "91", "0"], ["nearest", "0", "200"], ["nearest", "0", "0", "--limit", "0"]]
)
def test_nearest_usage_errors(db_path, capsys, args):
    assert main(args) == 2
    assert capsys.readouterr().err


@pytest.mark.parametrize(
    "name, value", [("SKINCARE_STORE", "postgres"), ("SKINCARE_FIRESTORE_TIMEOUT", "soon")]
)
def test_bad_settings_exit_2(db_path, monkeypatch, capsys, name, value):
    monkeypatch.setenv(name, value)
    assert main(["nearest", "0", "0"]) == 2
    assert f"settings: {name}" in capsys.readouterr().err
    assert not db_path.exists()


def test_unusable_database_exit_1(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SKINCARE_DB", str(blocker / "knowledge.sqlite3"))
    monkeypatch.delenv("SKINCARE_STORE", raising=False)
    assert main(["nearest", "0", "0"]) == 1
    assert "store" in capsys.readouterr().err


def test_export_writes_content_files(filled_db, tmp_path, sample_conditions, sample_faq, capsys):
    out = tmp_path / "export"
    assert main(["export", str(out)]) == 0
    assert "3 conditions, 4 FAQ entries and 6 clinics" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "conditions").iterdir()) == [
        "acne.json",
        "eczema.json",
        "melanoma.json",
    ]
    text = (out / "conditions" / "acne.json").read_text(encoding="utf-8")
    assert "한국어" in text, "Korean is written as is, not as escapes"
    acne = condition_from_dict(json.loads(text))
    assert content_of(acne) == content_of(sample_conditions[0])
    assert (acne.version, acne.updated_by) == (1, "seed")
    assert sorted(p.name for p in (out / "faq").iterdir()) == [
        "acne.json",
        "eczema.json",
        "general.json",
    ]
    exported_faq = [
        faq_from_dict(item)
        for path in sorted((out / "faq").glob("*.json"))
        for item in json.loads(path.read_text(encoding="utf-8"))
    ]
    assert sorted(content_of(e)["id"] for e in exported_faq) == sorted(e.id for e in sample_faq)
    assert {e.id: content_of(e) for e in exported_faq} == {e.id: content_of(e) for e in sample_faq}
    with (out / "clinics.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6 and {row["id"] for row in rows} >= {"busan-jung", "seoul-mapo"}


def test_export_reads_back_with_the_content_loaders(filled_db, tmp_path, sample_clinics):
    out = tmp_path / "export"
    assert main(["export", str(out)]) == 0
    loaded = {c.id: content_of(c) for c in load_clinics_csv(out / "clinics.csv")}
    assert loaded == {c.id: content_of(c) for c in sample_clinics}
    assert len(load_faq(out / "faq")) == 4


def test_seed_then_export_gives_back_the_shipped_content(db_path, tmp_path, capsys):
    assert main(["seed"]) == 0
    out = tmp_path / "export"
    assert main(["export", str(out)]) == 0

    def contents(documents, key):
        return {getattr(d, key): content_of(d) for d in documents}

    assert contents(load_conditions(out), "label") == contents(load_conditions(), "label")
    assert contents(load_faq(out / "faq"), "id") == contents(load_faq(), "id")
    assert contents(load_clinics_csv(out / "clinics.csv"), "id") == contents(
        load_clinics_csv(CONTENT_DIR / "clinics.csv"), "id"
    )


def test_import_clinics_from_csv(db_path, tmp_path, sample_clinics, capsys):
    exported = tmp_path / "export"
    exported.mkdir()
    with (exported / "clinics.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CLINIC_COLUMNS)
        writer.writeheader()
        writer.writerows(clinic_row(clinic) for clinic in sample_clinics)
    capsys.readouterr()
    assert main(["import-clinics", str(exported / "clinics.csv")]) == 0
    assert "6 created, 0 updated, 0 unchanged" in capsys.readouterr().out
    stored = run_on_store(db_path, lambda store: store.list_clinics())
    assert len(stored) == 6 and all(c.updated_by == "cli-import" for c in stored)
    assert main(["import-clinics", str(exported / "clinics.csv")]) == 0
    assert "0 created, 0 updated, 6 unchanged" in capsys.readouterr().out


def test_import_clinics_with_bad_rows_imports_nothing(db_path, tmp_path, capsys):
    run_on_store(db_path, lambda store: store.save_clinic(make_clinic("kept", 37.5, 127), 0, "x"))
    exported = tmp_path / "export"
    assert main(["export", str(exported)]) == 0
    with (exported / "clinics.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns, (row,) = reader.fieldnames, list(reader)
    rows = [
        {**row, "id": "new-1"},  # line 2
        {**row, "id": "new-2", "lat": "north"},  # line 3
        {**row, "id": "new-3"},  # line 4
        {**row, "id": "new-1"},  # line 5: a duplicate id
    ]
    bad_csv = tmp_path / "bad.csv"
    with bad_csv.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    capsys.readouterr()
    assert main(["import-clinics", str(bad_csv)]) == 1
    captured = capsys.readouterr()
    assert "line 3" in captured.err and "line 5" in captured.err
    assert "line 2:" not in captured.err and "line 4" not in captured.err
    assert "imported" not in captured.out
    stored = run_on_store(db_path, lambda store: store.list_clinics())
    assert [c.id for c in stored] == ["kept"]


def test_bad_or_missing_csv_exits_1_before_opening_the_store(db_path, tmp_path, capsys):
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("id,name_en\nx,y\n", encoding="utf-8")
    assert main(["import-clinics", str(bad_csv)]) == 1
    assert "line 1" in capsys.readouterr().err
    assert main(["import-clinics", str(tmp_path / "missing.csv")]) == 1
    assert "missing.csv" in capsys.readouterr().err
    assert not db_path.exists(), "the store is not even created"


def test_seed_twice_changes_nothing_the_second_time(db_path, capsys):
    assert main(["seed"]) == 0
    first = capsys.readouterr().out
    assert "condition:" in first and " 0 created" not in first.splitlines()[0]
    assert main(["seed"]) == 0
    second = capsys.readouterr().out
    for line in second.splitlines():
        if not line.startswith("  "):
            assert "0 created, 0 updated" in line, line


def test_export_makes_formula_cells_inert_and_import_reads_them_back(db_path, tmp_path):
    hostile = make_clinic(
        "seoul-evil",
        37.56,
        126.97,
        name={"en": '=HYPERLINK("http://evil.example","Call")', "ko": "@SUM(1+1)"},
        address={"en": "+1 Street", "ko": "-서울 1번지"},
        hours={"en": "\tMon-Fri", "ko": "월-금"},
    )
    run_on_store(db_path, lambda store: store.import_clinics([hostile], "test"))
    out = tmp_path / "export"
    assert main(["export", str(out)]) == 0
    with (out / "clinics.csv").open(newline="", encoding="utf-8") as handle:
        [row] = list(csv.DictReader(handle))
    # What a spreadsheet would evaluate now starts with "'": shown as text, never run.
    assert row["name_en"] == '\'=HYPERLINK("http://evil.example","Call")'
    assert row["name_ko"] == "'@SUM(1+1)" and row["address_en"] == "'+1 Street"
    assert row["address_ko"] == "'-서울 1번지"
    assert row["lat"] == "37.56" and row["id"] == "seoul-evil"
    [back] = load_clinics_csv(out / "clinics.csv")
    assert back.name == hostile.name and back.address == hostile.address


def test_a_csv_that_is_not_utf8_is_refused_naming_the_encoding(tmp_path):
    from knowledge.content import CLINICS_CSV, ContentError

    text = CLINICS_CSV.read_text(encoding="utf-8")
    header, first = text.splitlines()[:2]
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(
        f"{header}\n{first.replace('Clinic', 'Clínic', 1)}\n".encode("latin-1", "replace")
    )
    with pytest.raises(ContentError) as refused:
        load_clinics_csv(latin)
    message = str(refused.value)
    assert "line 2" in message and "not UTF-8" in message and "CP949" in message
