"""What every admin page uses: the sub-app's keys, rendering, the store, the edit form's
conflict notice, and the form helpers."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.web.admin.auth import AdminSession, LoginThrottle, SessionSigner
from bot.web.admin.sessions import AdminSessions
from bot.web.keys import ASSISTANT, TEMPLATES
from knowledge.models import LANGUAGES, to_dict
from knowledge.store import KnowledgeStore, StaleWriteError
from knowledge.store.rules import content_of
from knowledge.versions import diff

SIGNER = web.AppKey("admin_signer", SessionSigner)
SESSIONS = web.AppKey("admin_sessions", AdminSessions)
THROTTLE = web.AppKey("admin_throttle", LoginThrottle)
PROXIES = web.AppKey("admin_trusted_proxies", tuple)  # Settings.trusted_proxies
SESSION = web.RequestKey("admin_session", AdminSession)  # the signed-in admin


def render(request: web.Request, page: str, status: int = 200, **context: Any) -> web.Response:
    session: AdminSession | None = request.get(SESSION)
    csrf = request.app[SIGNER].csrf_token(session) if session else ""
    html = (
        request.config_dict[TEMPLATES]
        .get_template(f"admin/{page}.html.j2")
        .render(admin=session, csrf=csrf, languages=LANGUAGES, **context)
    )
    return web.Response(text=html, content_type="text/html", status=status)


def store_of(request: web.Request) -> KnowledgeStore:
    return request.config_dict[ASSISTANT].store


def edit_page(
    request: web.Request,
    page: str,
    expected_version: int,
    problems=(),
    conflict: dict | None = None,
    saved: bool = False,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """An edit form (FAQ entry or clinic) with its problems, conflict or "saved" notice."""
    return render(
        request,
        page,
        status=status,
        expected_version=expected_version,
        problems=list(problems),
        conflict=conflict,
        saved=saved,
        is_new=expected_version == 0 and not saved,
        **context,
    )


def conflict_of(stale: StaleWriteError, current: Any, mine: Any) -> dict:
    return {
        "changed_by": stale.changed_by or "someone",
        "version": stale.actual,
        "changes": diff(content_of(current) if current else None, content_of(mine)),
    }


def actor(request: web.Request) -> str:
    return f"admin:{request[SESSION].name}"


def to_int(value: Any, default: int = 0) -> int:
    try:
        return int(str(value))
    except ValueError:
        return default


def matches(query: str, document: Any) -> bool:
    return not query or query.lower() in str(to_dict(document)).lower()
