"""The web chat: the page, its JSON API (POST /api/chat, /api/analyse).

Handlers are thin: they unpack the request, call the Conversation (the same one Telegram
uses), and return its replies as JSON; the page renders them.
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
from collections.abc import AsyncIterator

from aiohttp import web

from bot.conversation import Chatter, Reply, user_key
from bot.texts import default_texts
from bot.web.bodies import MALFORMED, body_deadline, check_body_size, small_field, small_json
from bot.web.keys import ASSISTANT, TEMPLATES
from bot.web.security import csp_nonce
from diagnosis.analysis import analyse_photo
from diagnosis.intake import IntakeLimits
from knowledge.geo import is_coordinate
from knowledge.models import LANGUAGES

SESSION_COOKIE = "skincare_session"
MAX_PHOTOS = 10  # one turn's photos of one case, as many as a Telegram album holds
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{32}")  # secrets.token_urlsafe(24): 24 bytes, base64url
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


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_post("/api/analyse", analyse)
    app.router.add_post("/api/chat", chat)


def pick_language(request: web.Request) -> str:
    chosen = request.query.get("lang", "")
    if chosen in LANGUAGES:
        return chosen
    accept = request.headers.get("Accept-Language", "").lower()
    return "ko" if accept.startswith("ko") else "en"


async def index(request: web.Request) -> web.Response:
    assistant = request.app[ASSISTANT]
    lang = pick_language(request)
    texts = default_texts()
    page = (
        request.app[TEMPLATES]
        .get_template("web/index.html.j2")
        .render(
            lang=lang,
            csp_nonce=csp_nonce(request),
            model_installed=assistant.predictor is not None,
            words={name: texts.word(name, lang) for name in WEB_WORDS},
        )
    )
    response = web.Response(text=page, content_type="text/html")
    _session(request, response)
    return response


def is_issued_session(value: str | None) -> bool:
    """Whether `value` has the shape of an id this server issues (`secrets.token_urlsafe(24)`).
    The id is the chat's only identity: a client must not pick its own (a short guessable one,
    another format), so anything else is replaced by a fresh one."""
    return value is not None and SESSION_ID.fullmatch(value) is not None


def _session(request: web.Request, response: web.StreamResponse | None = None) -> str:
    """The browser's chat session id (a random cookie; the chat's only identity)."""
    session = request.cookies.get(SESSION_COOKIE, "")
    if not is_issued_session(session):
        session = secrets.token_urlsafe(24)
    if response is not None:
        response.set_cookie(
            SESSION_COOKIE, session, httponly=True, samesite="Strict", max_age=30 * 86400
        )
    return session


async def chat(request: web.Request) -> web.Response:
    """One chat turn. JSON `{"kind": "text"|"command"|"button"|"location", ...}`, or multipart
    with a `photo` (kind "photo", or "button" for the heatmap, which needs the photo again:
    the server does not keep it); several `photo` fields are several photos of one case,
    answered once. Answers `{"replies": [...]}`, the Conversation's replies."""
    assistant = request.app[ASSISTANT]
    conversation = assistant.conversation
    session = request.cookies.get(SESSION_COOKIE)
    if conversation is None or not session:
        return web.json_response({"error": "no_session"}, status=400)
    if not is_issued_session(session):
        # Refused like a missing one, with a fresh id set: the page's next turn works.
        response = web.json_response({"error": "no_session"}, status=400)
        _session(request, response)
        return response
    try:
        async with body_deadline(request):
            fields, photos = await _read_chat_request(request, assistant.settings.intake)
    except MALFORMED:
        return web.json_response({"error": "bad_body"}, status=400)
    secret = assistant.settings.user_key_secret
    lang = fields.get("lang") if fields.get("lang") in LANGUAGES else pick_language(request)
    chatter = Chatter(key=user_key(secret, "web", session), language_code=lang)
    photo = photos[0] if photos else None
    kind = fields.get("kind", "photo" if photos else "")
    if kind == "photo" and len(photos) > 1:
        replies = await conversation.photos(chatter, photos)
    elif kind == "photo":
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
            lat = lon = math.nan
        if not is_coordinate(lat, lon):  # "NaN", "inf" and 91 all parse as floats
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
    if reply.photo is not None:
        data["photo"] = "data:image/png;base64," + base64.b64encode(reply.photo).decode()
    return data


async def _read_chat_request(
    request: web.Request, limits: IntakeLimits
) -> tuple[dict, list[bytes | None]]:
    """The request's fields and its photos, in order (None for one over the size limit, after
    which nothing more is read; photos beyond MAX_PHOTOS are not read at all)."""
    if not request.content_type.startswith("multipart/"):
        try:
            fields = await small_json(request)
        except (json.JSONDecodeError, UnicodeDecodeError, LookupError):
            fields = {}
        return (fields if isinstance(fields, dict) else {}), []
    fields: dict = {}
    photos: list[bytes | None] = []
    reader = await request.multipart()
    async for part in reader:
        if part.name == "photo":
            if len(photos) == MAX_PHOTOS:
                break
            photos.append(await _read_part(part, limits))
            if photos[-1] is None:  # over the limit: read no further than that
                break
        elif part.name:
            fields[part.name] = (await small_field(part))[:4096]
        check_body_size(request)
    return fields, photos


async def analyse(request: web.Request) -> web.Response:
    """POST a photo (multipart field `photo`, or the raw body): the analysis as JSON."""
    assistant = request.app[ASSISTANT]
    if assistant.predictor is None:
        return web.json_response({"error": "no_model"}, status=503)
    limits = assistant.settings.intake
    try:
        async with body_deadline(request):
            data = await _read_photo(request, limits)
    except MALFORMED:
        return web.json_response({"error": "bad_body"}, status=400)
    if data is None:
        return web.json_response({"error": "file_too_large"}, status=413)
    result = await analyse_photo(
        data,
        assistant.predictor,
        limits,
        assistant.settings.quality,
        slots=assistant.decode_slots,
    )
    return web.json_response(result.to_dict(), status=422 if result.refused else 200)


async def _read_part(part, limits: IntakeLimits) -> bytes | None:
    """A multipart field's bytes, or None once they are too large (read no further)."""

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await part.read_chunk(1 << 16):
            yield chunk

    return await _read_limited(chunks(), limits)


async def _read_limited(chunks: AsyncIterator[bytes], limits: IntakeLimits) -> bytes | None:
    """The chunks joined, or None once they are too large (read no further). Joined once at the
    end: a growing bytearray and its bytes() copy held up to three copies of a photo at once
    (a dozen 12 MB uploads arriving together: about 450 MB), a list and its join two."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if not limits.fits(size):
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _read_photo(request: web.Request, limits: IntakeLimits) -> bytes | None:
    """The upload's bytes, or None when it is over the limit (read no further than that)."""
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if part.name == "photo":
                return await _read_part(part, limits)
            check_body_size(request)  # the parts skipped are read too, to the void
        return b""
    return await _read_limited(request.content.iter_chunked(1 << 16), limits)
