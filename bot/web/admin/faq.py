"""The FAQ: search, create, edit, delete."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.conversation.views import condition_name
from bot.texts import default_texts, telegram_problems
from bot.web.admin.pages import actor, conflict_of, edit_page, matches, render, store_of, to_int
from knowledge.content import CONTENT_LABELS
from knowledge.faq import validate_faq
from knowledge.models import LANGUAGES, Condition, FaqEntry
from knowledge.store import StaleWriteError


async def faq_list(request: web.Request) -> web.Response:
    query = request.query.get("q", "").strip()
    entries = [e for e in await store_of(request).list_faq() if matches(query, e)]
    entries.sort(key=lambda e: (e.label or "", e.id))
    return render(request, "faq_list", entries=entries, q=query)


def faq_from_form(form: Any, entry_id: str) -> FaqEntry:
    label = str(form.get("label", "")).strip()
    return FaqEntry(
        id=entry_id,
        label=label or None,
        topic=str(form.get("topic", "")).strip(),
        questions={
            lang: [
                q.strip() for q in str(form.get(f"questions_{lang}", "")).splitlines() if q.strip()
            ]
            for lang in LANGUAGES
        },
        answer={lang: str(form.get(f"answer_{lang}", "")).strip() for lang in LANGUAGES},
    )


def _faq_form(request, entry, expected_version, *args, **kwargs):
    return edit_page(
        request, "faq_edit", expected_version, *args, entry=entry, labels=CONTENT_LABELS, **kwargs
    )


async def faq_new(request: web.Request) -> web.Response:
    empty = FaqEntry(id="", label=None, topic="", questions={}, answer={})
    return _faq_form(request, empty, 0)


async def faq_page(request: web.Request) -> web.Response:
    entry = await _find_faq(request, request.match_info["entry_id"])
    return _faq_form(request, entry, entry.version)


async def _find_faq(request: web.Request, entry_id: str) -> FaqEntry:
    for entry in await store_of(request).list_faq():
        if entry.id == entry_id:
            return entry
    raise web.HTTPNotFound(text=f"No FAQ entry {entry_id!r}.")


def render_faq_preview(
    entry: FaqEntry, condition: Condition | None
) -> tuple[dict[str, str], list[str]]:
    """The reply a user would get for this entry in each language (asked after a photo of its
    condition), and why Telegram would refuse it. An answer is sent as one message: one that
    needs several is refused here, where the admin can shorten it, not split mid-thought."""
    texts = default_texts()
    rendered: dict[str, str] = {}
    problems: list[str] = []
    for lang in LANGUAGES:
        try:
            rendered[lang] = texts.render(
                "faq_answer",
                lang,
                answer=entry.answer.get(lang, ""),
                about=condition_name(entry.label, condition, lang) if entry.label else None,
                scoped=entry.label is not None,
            )
        except Exception as error:  # noqa: BLE001 - any template failure blocks the save
            problems.append(f"the {lang} answer does not render: {error}")
            continue
        problems += [f"the {lang} answer: {p}" for p in telegram_problems(rendered[lang])]
    return rendered, problems


async def faq_save(request: web.Request) -> web.Response:
    form = await request.post()
    entry_id = request.match_info.get("entry_id") or str(form.get("id", "")).strip()
    entry = faq_from_form(form, entry_id)
    expected = to_int(form.get("expected_version"))
    problems = validate_faq([entry], CONTENT_LABELS)
    if not entry.topic:
        problems.append("topic: empty")
    store = store_of(request)
    condition = await store.get_condition(entry.label) if entry.label else None
    preview, reply_problems = render_faq_preview(entry, condition)
    problems += reply_problems
    if problems or form.get("action") == "preview":
        return _faq_form(
            request, entry, expected, problems, preview=preview, status=422 if problems else 200
        )
    try:
        saved = await store.save_faq(entry, expected, actor(request))
    except StaleWriteError as stale:
        current = next((e for e in await store.list_faq() if e.id == entry_id), None)
        conflict = conflict_of(stale, current, entry)
        if expected == 0:
            conflict["exists"] = True
        return _faq_form(request, entry, stale.actual, conflict=conflict, status=409)
    return _faq_form(request, saved, saved.version, saved=True, preview=preview)


async def faq_delete(request: web.Request) -> web.Response:
    form = await request.post()
    entry_id = request.match_info["entry_id"]
    try:
        await store_of(request).delete_faq(
            entry_id, to_int(form.get("expected_version")), actor(request)
        )
    except StaleWriteError as stale:
        raise web.HTTPConflict(text=f"Not deleted: {stale}.") from stale
    except LookupError as error:
        raise web.HTTPNotFound(text=str(error)) from error
    raise web.HTTPSeeOther("/admin/faq")
