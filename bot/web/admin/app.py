"""The admin panel as its own application, mounted at /admin by the root app: care content, FAQ
and clinics, edited without code or restarts.

Plain HTML forms (templates/admin/), no JavaScript needed. Every change goes through the store's
versioned saves: the form carries the version it was loaded from, a save on top of someone
else's newer save is refused with their name and a side-by-side of both versions, and every
version can be rolled back (knowledge/versions.py). The conversation reads the store on each
answer, so a saved change is what the next user sees.

Security: a password (its scrypt hash is SKINCARE_ADMIN_PASSWORD_HASH), a signed HttpOnly
SameSite=Strict session cookie naming a session record in the store (`sessions.py`: sign-out
ends it on every replica), a CSRF token in every form, an exponential back-off on failed
sign-ins (`auth.LoginThrottle`); `require_admin`, this sub-app's own middleware, refuses every
route without a live session. aiohttp runs it only for requests routed to this sub-app: the chat
never meets it.
"""

from __future__ import annotations

import logging

from aiohttp import web

from bot.settings import Settings
from bot.web.admin import checklist, clinics, conditions, faq, history, login
from bot.web.admin.auth import LoginThrottle, SessionSigner
from bot.web.admin.pages import PROXIES, SESSION, SESSIONS, SIGNER, THROTTLE
from bot.web.admin.sessions import AdminSessions
from bot.web.bodies import form_of
from bot.web.keys import ASSISTANT
from knowledge.store import StoreError

log = logging.getLogger(__name__)


def build_admin_app(settings: Settings) -> web.Application:
    """Without a password hash the panel is closed (`require_admin` answers 404 to all)."""
    app = web.Application(middlewares=[require_admin])
    # The session secret as Settings resolved it (derived from the hash unless set).
    app[SIGNER] = SessionSigner(settings.admin_session_secret or "closed")
    app[SESSIONS] = AdminSessions(app[SIGNER], settings.admin_password_hash or "")
    app[THROTTLE] = LoginThrottle()
    app[PROXIES] = settings.trusted_proxies
    setup_routes(app)
    return app


def setup_routes(app: web.Application) -> None:
    """Paths below the mount point: "" is /admin itself, "/faq" is /admin/faq."""
    r = app.router
    r.add_get("", home)
    r.add_get("/login", login.login_page)
    r.add_post("/login", login.login)
    r.add_post("/logout", login.logout)
    r.add_get("/conditions", conditions.conditions)
    r.add_get("/conditions/{label}", conditions.condition_page)
    r.add_post("/conditions/{label}", conditions.save_condition)
    r.add_get("/history/{kind}/{key}", history.history_page, name="admin_history")
    r.add_post("/history/{kind}/{key}/rollback", history.rollback_to)
    r.add_get("/faq", faq.faq_list)
    r.add_get("/faq/new", faq.faq_new)
    r.add_post("/faq/new", faq.faq_save)
    r.add_get("/faq/{entry_id}", faq.faq_page)
    r.add_post("/faq/{entry_id}", faq.faq_save)
    r.add_post("/faq/{entry_id}/delete", faq.faq_delete)
    r.add_get("/checklist", checklist.checklist_page)
    r.add_post("/checklist/{question_id}", checklist.question_save)
    r.add_get("/clinics", clinics.clinic_list)
    r.add_get("/clinics/new", clinics.clinic_new)
    r.add_post("/clinics/new", clinics.clinic_save)
    r.add_get("/clinics/import", clinics.clinic_import_page)
    r.add_post("/clinics/import", clinics.clinic_import)
    r.add_get("/clinics/{clinic_id}", clinics.clinic_page)
    r.add_post("/clinics/{clinic_id}", clinics.clinic_save)
    r.add_post("/clinics/{clinic_id}/delete", clinics.clinic_delete)


# The sign-in form and its POST are the only routes open without a session.
OPEN_HANDLERS = (login.login_page, login.login)


@web.middleware
async def require_admin(request: web.Request, handler):
    """Every admin route but the sign-in page needs a session; every POST a CSRF token."""
    assistant = request.config_dict[ASSISTANT]
    if not assistant.settings.admin_password_hash:
        return web.Response(
            status=404, text="The admin panel is closed: set SKINCARE_ADMIN_PASSWORD_HASH."
        )
    if request.method == "POST":
        # Parsed here, once, for every route: a malformed body is a 400 before any handler runs,
        # and the handlers' own `request.post()` get aiohttp's cached result.
        form = await form_of(request)
    try:
        if request.match_info.handler in OPEN_HANDLERS:
            return await handler(request)
        session = await request.app[SESSIONS].read(
            assistant.store, request.cookies.get(login.SESSION_COOKIE)
        )
    except StoreError as error:
        # Without the store no session can be checked, opened or closed (sign-in and sign-out
        # write its record): refuse, and say it is temporary.
        log.error("admin: the store is unreachable: %s", error)
        raise web.HTTPServiceUnavailable(
            text="The store cannot be reached: try again in a moment."
        ) from error
    if session is None:
        if request.method == "GET":
            raise web.HTTPSeeOther(f"/admin/login?next={request.path}")
        raise web.HTTPForbidden(text="Sign in first.")
    if request.method == "POST":
        if not request.app[SIGNER].check_csrf(session, form.get("csrf")):
            raise web.HTTPForbidden(text="Invalid or missing CSRF token: reload the page.")
    request[SESSION] = session
    if request.method != "POST":
        return await handler(request)
    try:
        return await handler(request)
    finally:
        # Any admin change (a save, a delete, a rollback, an import) shows in this replica's
        # next answer; the conversation otherwise reuses content read in the last second.
        if assistant.knowledge is not None:
            assistant.knowledge.forget()


async def home(request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/admin/conditions")
