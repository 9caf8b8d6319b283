"""Clinics: search, create, edit, delete, and the CSV import (a dry run first)."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from bot.web.admin.pages import actor, conflict_of, edit_page, matches, render, store_of, to_int
from knowledge.cli import clinic_row
from knowledge.content import (
    CLINIC_COLUMNS,
    ContentError,
    clinic_from_row,
    decode_csv,
    parse_clinics_csv,
)
from knowledge.store import StaleWriteError
from knowledge.store.rules import content_of


async def clinic_list(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    clinics = [c for c in await store_of(request).list_clinics() if matches(query, c)]
    clinics.sort(key=lambda c: c.id)
    return render(request, "clinics", clinics=clinics, q=query)


def _clinic_form(request, row, expected_version, *args, **kwargs):
    return edit_page(
        request, "clinic_edit", expected_version, *args, row=row, columns=CLINIC_COLUMNS, **kwargs
    )


async def clinic_new(request: web.Request) -> web.Response:
    return _clinic_form(request, {column: "" for column in CLINIC_COLUMNS} | {"sample": "false"}, 0)


async def clinic_page(request: web.Request) -> web.Response:
    clinic = await store_of(request).get_clinic(request.match_info["clinic_id"])
    if clinic is None:
        raise web.HTTPNotFound(text="No such clinic.")
    return _clinic_form(request, clinic_row(clinic), clinic.version)


async def clinic_save(request: web.Request) -> web.Response:
    form = await request.post()
    row = {column: str(form.get(column, "")).strip() for column in CLINIC_COLUMNS}
    if "clinic_id" in request.match_info:
        row["id"] = request.match_info["clinic_id"]
    expected = to_int(form.get("expected_version"))
    problems: list[str] = []
    clinic = clinic_from_row(row, problems)
    if clinic is None:
        return _clinic_form(request, row, expected, problems, status=422)
    store = store_of(request)
    try:
        saved = await store.save_clinic(
            dataclasses.replace(clinic, updated_by=""), expected, actor(request)
        )
    except StaleWriteError as stale:
        current = await store.get_clinic(row["id"])
        return _clinic_form(
            request, row, stale.actual, conflict=conflict_of(stale, current, clinic), status=409
        )
    return _clinic_form(request, clinic_row(saved), saved.version, saved=True)


async def clinic_delete(request: web.Request) -> web.Response:
    form = await request.post()
    try:
        await store_of(request).delete_clinic(
            request.match_info["clinic_id"], to_int(form.get("expected_version")), actor(request)
        )
    except StaleWriteError as stale:
        raise web.HTTPConflict(text=f"Not deleted: {stale}.") from stale
    except LookupError as error:
        raise web.HTTPNotFound(text=str(error)) from error
    raise web.HTTPSeeOther("/admin/clinics")


async def clinic_import_page(request: web.Request) -> web.Response:
    return render(request, "clinic_import", report=None, csv_text="", problems=[], done=None)


async def clinic_import(request: web.Request) -> web.Response:
    """Upload a CSV: first a dry run (what would be created, updated, unchanged, or every bad
    line); the import itself only when the admin confirms the same text."""
    form = await request.post()
    upload = form.get("file")
    store = store_of(request)
    try:
        if upload is not None and hasattr(upload, "file"):
            csv_text = ""  # nothing readable to show back when the decoding fails
            csv_text = decode_csv(upload.file.read(), "the uploaded CSV")
        else:
            csv_text = str(form.get("csv_text", ""))
        clinics = parse_clinics_csv(csv_text, "the uploaded CSV")
    except ContentError as error:
        return _import_refused(request, csv_text, error.problems)
    existing = {clinic.id: clinic for clinic in await store.list_clinics()}
    report = {"create": [], "update": [], "unchanged": []}
    for clinic in clinics:
        old = existing.get(clinic.id)
        if old is None:
            report["create"].append(clinic.id)
        elif content_of(old) == content_of(clinic):
            report["unchanged"].append(clinic.id)
        else:
            report["update"].append(clinic.id)
    if form.get("confirm") != "yes":
        return render(
            request, "clinic_import", report=report, csv_text=csv_text, problems=[], done=None
        )
    try:
        result = await store.import_clinics(clinics, actor(request))
    except ValueError as error:
        return _import_refused(request, csv_text, [str(error)])
    return render(request, "clinic_import", report=None, csv_text="", problems=[], done=result)


def _import_refused(request: web.Request, csv_text: str, problems: list[str]) -> web.Response:
    """The import page again with every problem listed; nothing was imported."""
    return render(
        request,
        "clinic_import",
        status=422,
        report=None,
        csv_text=csv_text,
        problems=problems,
        done=None,
    )
