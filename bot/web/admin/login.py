"""Signing in and out of the admin panel: the form (with a double-submit CSRF token), the
password check behind the failed sign-in back-off, the session cookie and its store record."""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any

from aiohttp import web

from bot.web.admin.auth import DEVICE_DAYS, throttle_keys, verify_password
from bot.web.admin.pages import PROXIES, SESSIONS, SIGNER, THROTTLE, render, store_of
from bot.web.admin.sessions import SESSION_S
from bot.web.clients import client_address, is_https
from bot.web.keys import ASSISTANT

log = logging.getLogger(__name__)

SESSION_COOKIE = "skincare_admin"
LOGIN_COOKIE = "skincare_admin_login"  # double-submit CSRF token for the sign-in form
DEVICE_COOKIE = "skincare_admin_device"  # a browser that signed in before (auth.throttle_keys)


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
    name = str(form.get("name", "")).strip()[:60]
    password = str(form.get("password", ""))
    device = request.app[SIGNER].device_of(request.cookies.get(DEVICE_COOKIE), name)
    keys = throttle_keys(client_address(request, request.app[PROXIES]), name, device)
    throttle = request.app[THROTTLE]
    wait_s = throttle.wait_s(keys)
    if wait_s > 0:
        # Not even checked: a guess made while waiting would tell the guesser something.
        log.warning("admin sign-in refused: waiting for the back-off")
        response = render(
            request, "login", token=cookie, error="wait", wait_s=math.ceil(wait_s), next="/"
        )
        response.set_status(429)
        response.headers["Retry-After"] = str(math.ceil(wait_s))
        return response
    if not name or not verify_password(
        password, request.config_dict[ASSISTANT].settings.admin_password_hash
    ):
        throttle.failed(keys)
        log.warning("admin sign-in failed")
        response = render(request, "login", token=cookie, error="wrong", next=_next(request))
        response.set_status(401)
        return response
    throttle.succeeded(keys)
    value, _ = await request.app[SESSIONS].open(store_of(request), name)
    log.info("admin signed in")
    response = web.HTTPSeeOther(_next(request, form.get("next")))
    secure = is_https(request, request.app[PROXIES])
    cookie_options: dict[str, Any] = {
        "httponly": True,
        "samesite": "Strict",
        "secure": secure,
        "path": "/admin",
    }
    response.set_cookie(SESSION_COOKIE, value, max_age=SESSION_S, **cookie_options)
    # This browser has now proven it is the admin's: its own back-off from now on.
    device_cookie = request.app[SIGNER].device_cookie(name)
    response.set_cookie(DEVICE_COOKIE, device_cookie, max_age=DEVICE_DAYS * 86400, **cookie_options)
    raise response


async def logout(request: web.Request) -> web.Response:
    # The record goes: the cookie (or a copy of it) opens nothing any more, on any replica.
    await request.app[SESSIONS].close(store_of(request), request.cookies.get(SESSION_COOKIE))
    log.info("admin signed out")
    response = web.HTTPSeeOther("/admin/login")
    response.del_cookie(SESSION_COOKIE, path="/admin")
    raise response


def _next(request: web.Request, value: Any = None) -> str:
    target = str(value or request.query.get("next") or "/admin/conditions")
    # Only local admin pages: never an open redirect.
    return target if target.startswith("/admin/") and "//" not in target else "/admin/conditions"


def _new_token() -> str:
    return secrets.token_urlsafe(24)
