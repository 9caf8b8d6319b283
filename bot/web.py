"""The aiohttp server: health check, the local web page and a JSON photo endpoint.

Handlers are thin: they unpack the request, call diagnosis, render a template or JSON.
"""

from __future__ import annotations

import logging

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from bot.app import Assistant
from bot.settings import PROJECT_ROOT
from diagnosis.analysis import analyse_photo

log = logging.getLogger(__name__)

ASSISTANT = web.AppKey("assistant", Assistant)
TEMPLATES = web.AppKey("templates", Environment)
LANGUAGES = ("en", "ko")


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
            "store": assistant.settings.store if assistant.store is not None else None,
        }
    )


async def index(request: web.Request) -> web.Response:
    assistant = request.app[ASSISTANT]
    page = (
        request.app[TEMPLATES]
        .get_template("web/index.html.j2")
        .render(lang=pick_language(request), model_installed=assistant.predictor is not None)
    )
    return web.Response(text=page, content_type="text/html")


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


async def _read_photo(request: web.Request, max_bytes: int) -> bytes | None:
    """The upload's bytes, or None when it is over the limit (read no further than that)."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if part.name == "photo":
                data = bytearray()
                while chunk := await part.read_chunk(1 << 16):
                    data.extend(chunk)
                    if len(data) > max_bytes:
                        return None
                return bytes(data)
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

    async def open_knowledge(app: web.Application) -> None:
        await app[ASSISTANT].open_knowledge()

    async def close_assistant(app: web.Application) -> None:
        await app[ASSISTANT].close()

    app.on_startup.append(open_knowledge)
    app.on_cleanup.append(close_assistant)
    return app
