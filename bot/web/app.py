"""The root application: its keys, its routes (/healthz, the chat, the webhook, the admin panel
mounted at /admin) and the Telegram transport's lifecycle, so one process serves the web chat
and the bot together. `python -m bot` runs what `build_web_app` returns."""

from __future__ import annotations

import logging

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot.app import Assistant
from bot.settings import SettingsError
from bot.texts import TEMPLATES_DIR
from bot.web import chat, webhook
from bot.web.admin.app import build_admin_app
from bot.web.bodies import UPLOADS, UploadBudget, hold_upload_memory, max_body_bytes
from bot.web.keys import ASSISTANT, TELEGRAM, TEMPLATES
from bot.web.security import add_security_headers
from knowledge.store import StoreError

log = logging.getLogger(__name__)


def build_web_app(assistant: Assistant) -> web.Application:
    settings = assistant.settings
    app = web.Application(
        client_max_size=max_body_bytes(settings.intake), middlewares=[hold_upload_memory]
    )
    app[UPLOADS] = UploadBudget(settings.upload_budget_bytes)
    app[ASSISTANT] = assistant
    app[TEMPLATES] = template_environment()
    app.router.add_get("/healthz", healthz)
    chat.setup_routes(app)
    webhook.setup_routes(app, settings)
    # The admin's redirects, cookie paths and templates say /admin too: move them together.
    app.add_subapp("/admin", build_admin_app(settings))
    app.on_response_prepare.append(add_security_headers)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def template_environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=select_autoescape(["html", "j2"]),
    )


async def healthz(request: web.Request) -> web.Response:
    """200 while the process can answer; 503 when the store cannot be reached (or its file was
    deleted or replaced under it), so that an orchestrator restarts or stops routing to it."""
    assistant = request.app[ASSISTANT]
    store_problem = None
    if assistant.store is not None:
        try:
            await assistant.store.ping()
        except StoreError as error:
            # The details (a file path, a project id) go to the log, not to whoever asks.
            log.error("health check: the store is unreachable: %s", error)
            store_problem = "unreachable"
    body = {
        "status": "ok" if store_problem is None else "store_unreachable",
        "model_installed": assistant.predictor is not None,
        "model": assistant.model_version,
        "store": assistant.settings.store.kind if assistant.store is not None else None,
    }
    return web.json_response(body, status=200 if store_problem is None else 503)


async def start(app: web.Application) -> None:
    assistant = app[ASSISTANT]
    await assistant.open_knowledge()
    if assistant.settings.telegram_token:
        app[TELEGRAM] = await start_telegram(assistant)


async def stop(app: web.Application) -> None:
    transport = app.get(TELEGRAM)
    if transport is not None:
        await transport.stop()
    await app[ASSISTANT].close()


async def start_telegram(assistant: Assistant):
    # Imported here: only a process with a bot token needs python-telegram-bot loaded.
    from telegram.error import InvalidToken, TelegramError

    from bot.telegram import TelegramTransport

    transport = TelegramTransport(assistant.settings, assistant.conversation)
    try:
        await transport.start()
    except InvalidToken as exc:
        raise SettingsError(f"TELEGRAM_BOT_TOKEN: Telegram refused the token ({exc})") from exc
    except TelegramError as exc:
        where = "TELEGRAM_BASE_URL" if assistant.settings.telegram_base_url else "the network"
        raise SettingsError(
            f"TELEGRAM_BOT_TOKEN: cannot reach the Bot API (check {where}): {exc}"
        ) from exc
    return transport
