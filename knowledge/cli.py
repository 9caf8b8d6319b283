"""Command line for the knowledge store (the one SKINCARE_STORE / SKINCARE_DB name; see
knowledge/config.py for every variable).

    python -m knowledge seed                  write the shipped content into the store
    python -m knowledge export DIR            write it back out as content files
    python -m knowledge import-clinics FILE   replace clinics from a CSV, all or nothing
    python -m knowledge nearest LAT LON [--condition LABEL] [--limit N] [--max-km KM] [--json]

Exit codes: 0 done, 1 the content, the CSV or the store was wrong (nothing was written),
2 usage or settings errors.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from envconfig import SettingsError
from knowledge.checklist import shipped_questions
from knowledge.config import StoreConfig
from knowledge.content import (
    CLINIC_COLUMNS,
    LIST_SEPARATOR,
    ContentError,
    load_clinics_csv,
    spreadsheet_safe,
)
from knowledge.faq import FaqFileError
from knowledge.models import LANGUAGES, Clinic, to_dict
from knowledge.seed import load_content, seed
from knowledge.store import KnowledgeStore, StaleWriteError, StoreError, open_store
from knowledge.store.rules import content_of

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
GENERAL_FAQ = "general"  # the FAQ file of entries about no condition in particular


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m knowledge", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("seed", help="write the content in knowledge/content/ into the store")
    export = commands.add_parser("export", help="write the store's content out as files")
    export.add_argument("directory", type=Path, metavar="DIR")
    clinics = commands.add_parser("import-clinics", help="create or replace clinics from a CSV")
    clinics.add_argument("csv_path", type=Path, metavar="FILE.csv")
    clinics.add_argument("--actor", default="cli-import", help="name written to the audit log")
    nearest = commands.add_parser("nearest", help="the clinics nearest to a place")
    nearest.add_argument("lat", type=float, metavar="LAT")
    nearest.add_argument("lon", type=float, metavar="LON")
    nearest.add_argument("--condition", metavar="LABEL", help="only clinics that treat it")
    nearest.add_argument("--limit", type=int, default=5, metavar="N")
    nearest.add_argument("--max-km", type=float, default=50.0, metavar="KM")
    nearest.add_argument("--json", action="store_true", help="print one JSON list")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = StoreConfig.from_env()
    except SettingsError as error:
        print(f"settings: {error}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "nearest":
        if args.limit < 1:
            print("--limit must be at least 1", file=sys.stderr)
            return EXIT_USAGE
        if not (-90 <= args.lat <= 90 and -180 <= args.lon <= 180 and args.max_km >= 0):
            print(
                "LAT must be within -90..90, LON within -180..180, --max-km >= 0", file=sys.stderr
            )
            return EXIT_USAGE
    # Files are read and checked before the store is opened: bad content touches nothing.
    try:
        if args.command == "seed":
            args.content = load_content()
        elif args.command == "import-clinics":
            args.clinics = load_clinics_csv(args.csv_path)  # ContentError lists every bad line
    except (ContentError, FaqFileError) as error:
        print(f"content: {error}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(f"cannot read {error.filename or 'the content files'}: {error}", file=sys.stderr)
        return EXIT_FAILED
    commands: dict[str, Callable[[KnowledgeStore, argparse.Namespace], Awaitable[int]]] = {
        "seed": seed_command,
        "export": export_command,
        "import-clinics": import_clinics_command,
        "nearest": nearest_command,
    }
    return asyncio.run(_with_store(config, commands[args.command], args))


async def _with_store(config: StoreConfig, command, args: argparse.Namespace) -> int:
    try:
        store = await open_store(config)
    except StoreError as error:
        print(f"store: {error}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return await command(store, args)
    except (StoreError, StaleWriteError, ValueError) as error:
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await store.close()


async def seed_command(store: KnowledgeStore, args: argparse.Namespace) -> int:
    conditions, faq, clinics = args.content
    report = await seed(
        store, conditions=conditions, faq=faq, clinics=clinics, questions=shipped_questions()
    )
    print(report.summary())
    return EXIT_OK


# ---- export -------------------------------------------------------------------------------


def clinic_row(clinic: Clinic) -> dict[str, str]:
    """A clinic as a row of knowledge/content/clinics.csv (what `load_clinics_csv` reads)."""
    localized = {
        f"{name}_{language}": getattr(clinic, name).get(language, "")
        for name in ("name", "address", "hours")
        for language in LANGUAGES
    }
    return {
        "id": clinic.id,
        **localized,
        "city": clinic.city,
        "district": clinic.district,
        "lat": repr(clinic.lat),
        "lon": repr(clinic.lon),
        "phone": clinic.phone,
        "languages": LIST_SEPARATOR.join(clinic.languages),
        "treats": LIST_SEPARATOR.join(clinic.treats),
        "sample": "true" if clinic.sample else "false",
    }


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


async def export_command(store: KnowledgeStore, args: argparse.Namespace) -> int:
    """The store as content files: conditions/<label>.json, faq/<label>.json (a list per label,
    general.json for entries without one) and clinics.csv, with the stored versions."""
    directory: Path = args.directory
    conditions = await store.list_conditions()
    faq = await store.list_faq()
    clinics = await store.list_clinics()
    (directory / "conditions").mkdir(parents=True, exist_ok=True)
    (directory / "faq").mkdir(parents=True, exist_ok=True)
    for condition in conditions:
        _write_json(directory / "conditions" / f"{condition.label}.json", to_dict(condition))
    by_file: dict[str, list[dict[str, Any]]] = {}
    for entry in faq:
        by_file.setdefault(entry.label or GENERAL_FAQ, []).append(to_dict(entry))
    for name, entries in sorted(by_file.items()):
        _write_json(directory / "faq" / f"{name}.json", entries)
    with (directory / "clinics.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CLINIC_COLUMNS)
        writer.writeheader()
        for clinic in clinics:
            # Coordinates are numbers, never formulas; every text cell is made inert.
            row = clinic_row(clinic)
            writer.writerow(
                {k: v if k in ("lat", "lon") else spreadsheet_safe(v) for k, v in row.items()}
            )
    print(
        f"exported {len(conditions)} conditions, {len(faq)} FAQ entries and "
        f"{len(clinics)} clinics to {directory}"
    )
    return EXIT_OK


# ---- clinics ------------------------------------------------------------------------------


async def import_clinics_command(store: KnowledgeStore, args: argparse.Namespace) -> int:
    clinics = args.clinics
    result = await store.import_clinics(clinics, args.actor)
    print(
        f"imported {len(clinics)} clinics from {args.csv_path}: {len(result.created)} created, "
        f"{len(result.updated)} updated, {len(result.unchanged)} unchanged"
    )
    return EXIT_OK


async def nearest_command(store: KnowledgeStore, args: argparse.Namespace) -> int:
    found = await store.nearest_clinics(
        args.lat, args.lon, limit=args.limit, condition=args.condition, max_km=args.max_km
    )
    if args.json:
        rows = [{**content_of(c), "distance_km": round(d, 3)} for c, d in found]
        print(json.dumps(rows, ensure_ascii=False))
        return EXIT_OK
    if not found:
        which = f" treating {args.condition}" if args.condition else ""
        print(f"no clinics{which} within {args.max_km:g} km")
        return EXIT_OK
    for rank, (clinic, distance) in enumerate(found, start=1):
        name = clinic.name.get("en") or clinic.name.get("ko", clinic.id)
        local = clinic.name.get("ko")
        label = f"{name} ({local})" if local and local != name else name
        sample = "  [sample data]" if clinic.sample else ""
        print(
            f"{rank}. {label}  {clinic.city}, {clinic.district}  {distance:.1f} km  "
            f"{clinic.phone}{sample}"
        )
    return EXIT_OK
