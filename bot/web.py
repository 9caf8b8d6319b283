"""The aiohttp server: the local web chat, its JSON API, Telegram's webhook and /healthz.

Handlers are thin: they unpack the request, call the Conversation (the same one Telegram
uses), and return its replies as JSON; the page renders them. The server also owns the
Telegram transport's lifecycle, so one process serves the web chat and the bot together.
"""

from __future__ import annotations

import base64
import hmac
import json
import logging
import secrets
from urllib.parse import urlparse

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot.admin_web import add_admin_routes
from bot.app import Assistant
from bot.conversation import Chatter, Reply, user_key
from bot.settings import PROJECT_ROOT, SettingsError
from bot.texts import default_texts
from diagnosis.analysis import analyse_photo

log = logging.getLogger(__name__)

ASSISTANT = web.AppKey("assistant", Assistant)
TEMPLATES = web.AppKey("templates", Environment)
TELEGRAM = web.AppKey("telegram", object)  # bot.telegram.TelegramTransport, when a token is set
LANGUAGES = ("en", "ko")
SESSION_COOKIE = "skincare_session"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEB_WORDS = (
    "button_send_location",
    "working",
    "you",
    "assistant",
    "send",
    "attach_photo",
    "type_here",
    "use_my_location",
    "page_title",
    "error_try_again",
)


def template_environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(PROJECT_ROOT / "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )


def pick_language(request: web.Request) -> str:
    chosen = request.query.get("lang", "")
    if chosen in LANGUAGES:
        return chosen
    accept = request.headers.get("Accept-Language", "").lower()
    return "ko" if accept.startswith("ko") else "en"


async def healthz(request: web.Request) -> web.Response:
    assistant = request.app[ASSISTANT]
    return web.json_response(
        {
            "status": "ok",
            "model_installed": assistant.predictor is not None,
            "model": assistant.model_version,
            "store": assistant.settings.store.kind if assistant.store is not None else None,
        }
    )


async def index(request: web.Request) -> web.Response:
    assistant = request.app[ASSISTANT]
    lang = pick_language(request)
    texts = default_texts()
    page = (
        request.app[TEMPLATES]
        .get_template("web/index.html.j2")
        .render(
            lang=lang,
            model_installed=assistant.predictor is not None,
            words={name: texts.word(name, lang) for name in WEB_WORDS},
        )
    )
    response = web.Response(text=page, content_type="text/html")
    _session(request, response)
    return response


def _session(request: web.Request, response: web.StreamResponse | None = None) -> str:
    """The browser's chat session id (a random cookie; the chat's only identity)."""
    session = request.cookies.get(SESSION_COOKIE, "")
    if not (16 <= len(session) <= 64 and session.replace("-", "").replace("_", "").isalnum()):
        session = secrets.token_urlsafe(24)
    if response is not None:
        response.set_cookie(
            SESSION_COOKIE, session, httponly=True, samesite="Strict", max_age=30 * 86400
        )
    return session


async def chat(request: web.Request) -> web.Response:
    """One chat turn. JSON `{"kind": "text"|"command"|"button"|"location", ...}`, or multipart
    with a `photo` (kind "photo", or "button" for the heatmap, which needs the photo again:
    the server does not keep it). Answers `{"replies": [...]}`, the Conversation's replies."""
    assistant = request.app[ASSISTANT]
    conversation = assistant.conversation
    session = request.cookies.get(SESSION_COOKIE)
    if conversation is None or not session:
        return web.json_response({"error": "no_session"}, status=400)
    fields, photo = await _read_chat_request(request, assistant.settings.intake.max_bytes)
    secret = assistant.settings.user_key_secret
    lang = fields.get("lang") if fields.get("lang") in LANGUAGES else pick_language(request)
    chatter = Chatter(key=user_key(secret, "web", session), language_code=lang)
    kind = fields.get("kind", "photo" if photo is not None else "")
    if kind == "photo":
        if photo is None:
            replies = await conversation.refuse(chatter, "file_too_large")
        else:
            replies = await conversation.photo(chatter, photo)
    elif kind == "text":
        replies = await conversation.text(chatter, str(fields.get("text", ""))[:4096])
    elif kind == "command":
        replies = await conversation.command(chatter, str(fields.get("name", "")))
    elif kind == "location":
        try:
            lat, lon = float(fields["lat"]), float(fields["lon"])
        except (KeyError, TypeError, ValueError):
            return web.json_response({"error": "bad_location"}, status=400)
        replies = await conversation.location(chatter, lat, lon)
    elif kind == "button":

        async def uploaded(_ref: str | None) -> bytes | None:
            return photo

        replies = await conversation.button(chatter, str(fields.get("action", "")), uploaded)
    else:
        return web.json_response({"error": "unknown_kind"}, status=400)
    return web.json_response({"replies": [_reply_json(reply) for reply in replies]})


def _reply_json(reply: Reply) -> dict:
    data = reply.to_dict()
    data["close_keyboard"] = reply.close_keyboard  # the page hides its location button then
    if reply.photo is not None:
        data["photo"] = "data:image/png;base64," + base64.b64encode(reply.photo).decode()
    return data


async def _read_chat_request(request: web.Request, max_bytes: int) -> tuple[dict, bytes | None]:
    """The request's fields and its photo (None: none sent, or over the size limit)."""
    if not request.content_type.startswith("multipart/"):
        try:
            fields = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            fields = {}
        return (fields if isinstance(fields, dict) else {}), None
    fields: dict = {}
    photo: bytes | None = None
    reader = await request.multipart()
    async for part in reader:
        if part.name == "photo":
            photo = await _read_part(part, max_bytes)
            if photo is None:
                fields.setdefault("kind", "photo")
                return fields, None
        elif part.name:
            fields[part.name] = (await part.text())[:4096]
    return fields, photo


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
    except (json.JSONDecodeError, UnicodeDecodeError):
        return web.Response(status=400, text="not JSON")
    await transport.process_webhook_update(update)
    return web.Response(text="ok")


async def analyse(request: web.Request) -> web.Response:
    """POST a photo (multipart field `photo`, or the raw body): the analysis as JSON."""
    assistant = request.app[ASSISTANT]
    if assistant.predictor is None:
        return web.json_response({"error": "no_model"}, status=503)
    limits = assistant.settings.intake
    data = await _read_photo(request, limits.max_bytes)
    if data is None:
        return web.json_response({"error": "file_too_large"}, status=413)
    result = await analyse_photo(data, assistant.predictor, limits, assistant.settings.quality)
    return web.json_response(result.to_dict(), status=422 if result.refused else 200)


async def _read_part(part, max_bytes: int) -> bytes | None:
    """A multipart field's bytes, or None once it passes `max_bytes` (read no further)."""
    data = bytearray()
    while chunk := await part.read_chunk(1 << 16):
        data.extend(chunk)
        if len(data) > max_bytes:
            return None
    return bytes(data)


async def _read_photo(request: web.Request, max_bytes: int) -> bytes | None:
    """The upload's bytes, or None when it is over the limit (read no further than that)."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if part.name == "photo":
                return await _read_part(part, max_bytes)
        return b""
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data.extend(chunk)
        if len(data) > max_bytes:
            return None
    return bytes(data)


def build_web_app(assistant: Assistant) -> web.Application:
    # The body limit sits a little above the photo limit so that an over-size photo gets our own
    # "file too large" answer instead of aiohttp's bare 413.
    app = web.Application(client_max_size=assistant.settings.intake.max_bytes + (1 << 20))
    app[ASSISTANT] = assistant
    app[TEMPLATES] = template_environment()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/", index)
    app.router.add_post("/api/analyse", analyse)
    app.router.add_post("/api/chat", chat)
    add_admin_routes(
        app, assistant.settings.admin_password_hash, assistant.settings.admin_session_secret
    )
    settings = assistant.settings
    if settings.telegram_token and settings.webhook_url:
        app.router.add_post(webhook_path(settings.webhook_url), telegram_webhook)

    async def start(app: web.Application) -> None:
        await app[ASSISTANT].open_knowledge()
        if settings.telegram_token:
            app[TELEGRAM] = await start_telegram(app[ASSISTANT])

    async def stop(app: web.Application) -> None:
        transport = app.get(TELEGRAM)
        if transport is not None:
            await transport.stop()
        await app[ASSISTANT].close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    return app


def webhook_path(url: str) -> str:
    """Where the webhook is served: the path of SKINCARE_WEBHOOK_URL (default /telegram)."""
    return urlparse(url).path.rstrip("/") or "/telegram"


async def start_telegram(assistant: Assistant):
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
