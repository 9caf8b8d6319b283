"""Telegram's webhook: updates POSTed by Telegram when SKINCARE_WEBHOOK_URL is set."""

from __future__ import annotations

import hmac
import logging
from urllib.parse import urlparse

from aiohttp import web

from bot.settings import Settings
from bot.web.bodies import MALFORMED
from bot.web.keys import ASSISTANT, TELEGRAM

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def setup_routes(app: web.Application, settings: Settings) -> None:
    if settings.telegram_token and settings.webhook_url:
        app.router.add_post(webhook_path(settings.webhook_url), telegram_webhook)


def webhook_path(url: str) -> str:
    """Where the webhook is served: the path of SKINCARE_WEBHOOK_URL (default /telegram)."""
    return urlparse(url).path.rstrip("/") or "/telegram"


async def telegram_webhook(request: web.Request) -> web.Response:
    """Updates from Telegram (webhook mode). Without the right secret header: 403, ignored."""
    transport = request.app.get(TELEGRAM)
    if transport is None:
        return web.Response(status=404)
    expected = request.app[ASSISTANT].settings.webhook_secret or ""
    given = request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        log.warning("webhook request with a missing or wrong secret token: refused")
        return web.Response(status=403, text="forbidden")
    try:
        update = await request.json()
    except MALFORMED:
        return web.Response(status=400, text="not JSON")
    try:
        await transport.process_webhook_update(update)
    except ValueError as error:  # JSON, but not an update (`[]`, `{"foo": 1}`, a string)
        log.warning("webhook body is not a Telegram update: refused (%s)", error)
        return web.Response(status=400, text="not an update")
    return web.Response(text="ok")
