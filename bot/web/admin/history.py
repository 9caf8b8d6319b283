"""Every saved version of a condition, FAQ entry, clinic or checklist question's wording, and
rolling back to one."""

from __future__ import annotations

from aiohttp import web

from bot.web.admin.pages import actor, render, store_of, to_int
from knowledge.store import StaleWriteError
from knowledge.versions import KINDS, diff, history, rollback


async def history_page(request: web.Request) -> web.Response:
    kind, key = request.match_info["kind"], request.match_info["key"]
    if kind not in KINDS:
        raise web.HTTPNotFound()
    entries = await history(store_of(request), kind, key)
    current = entries[0].version if entries and entries[0].after is not None else 0
    if entries and entries[0].after is None:
        current = entries[0].version  # deleted: restoring creates it again
    rows = [{"entry": entry, "changes": diff(entry.before, entry.after)} for entry in entries]
    return render(
        request,
        "history",
        kind=kind,
        key=key,
        rows=rows,
        current=current,
        message=request.query.get("message"),
    )


async def rollback_to(request: web.Request) -> web.Response:
    kind, key = request.match_info["kind"], request.match_info["key"]
    if kind not in KINDS:
        raise web.HTTPNotFound()
    form = await request.post()
    try:
        await rollback(
            store_of(request),
            kind,
            key,
            to_int(form.get("to_version")),
            to_int(form.get("expected_version")),
            actor(request),
        )
        message = f"Rolled back to version {to_int(form.get('to_version'))}."
    except StaleWriteError as stale:
        message = f"Not rolled back: {stale}. Look at the newest version first."
    except (ValueError, LookupError) as error:
        message = f"Not rolled back: {error}"
    raise web.HTTPSeeOther(
        request.app.router["admin_history"].url_for(kind=kind, key=key).with_query(message=message)
    )
