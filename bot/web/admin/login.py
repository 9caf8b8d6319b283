"""Signing in and out of the admin panel: the form (with a double-submit CSRF token), the
password check, the per-address rate limit, the signed session cookie."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from aiohttp import web

from bot.web.admin.auth import verify_password
from bot.web.admin.pages import LIMITER, SIGNER, render
from bot.web.keys import ASSISTANT

log = logging.getLogger(__name__)

SESSION_COOKIE = "skincare_admin"
LOGIN_COOKIE = "skincare_admin_login"  # double-submit CSRF token for the sign-in form


def _client(request: web.Request) -> str:
    return request.remote or "unknown"


async def login_page(request: web.Request) -> web.Response:
    token = request.cookies.get(LOGIN_COOKIE) or _new_token()
    response = render(request, "login", token=token, error=None, next=_next(request))
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict", path="/admin")
    return response


async def login(request: web.Request) -> web.Response:
    form = await request.post()
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or form.get("token") != cookie:
        raise web.HTTPForbidden(text="Invalid sign-in form: reload the page.")
    limiter = request.app[LIMITER]
    client = _client(request)
    if limiter.blocked(client):
        response = render(
            request, "login", token=cookie, error="Too many attempts. Wait 10 minutes.", next="/"
        )
        response.set_status(429)
        return response
    name = str(form.get("name", "")).strip()[:60]
    password = str(form.get("password", ""))
    if not name or not verify_password(
        password, request.config_dict[ASSISTANT].settings.admin_password_hash
    ):
        limiter.failed(client)
        log.warning("admin sign-in failed")
        response = render(
            request, "login", token=cookie, error="Wrong name or password.", next=_next(request)
        )
        response.set_status(401)
        return response
    limiter.succeeded(client)
    value, _ = request.app[SIGNER].issue(name)
    log.info("admin signed in")
    response = web.HTTPSeeOther(_next(request, form.get("next")))
    response.set_cookie(
        SESSION_COOKIE,
        value,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/admin",
    )
    raise response


async def logout(request: web.Request) -> web.Response:
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(SESSION_COOKIE, path="/admin")
    raise response


def _next(request: web.Request, value: Any = None) -> str:
    target = str(value or request.query.get("next") or "/admin/conditions")
    # Only local admin pages: never an open redirect.
    return target if target.startswith("/admin/") and "//" not in target else "/admin/conditions"


def _new_token() -> str:
    return secrets.token_urlsafe(24)
