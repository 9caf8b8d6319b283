"""Reading request bodies that a client may have malformed, bloated or stalled on purpose.

aiohttp's parsers raise plain exceptions on a hostile body (a multipart without a boundary or
with the wrong one: ValueError; undecodable bytes: UnicodeDecodeError; an unknown charset:
LookupError). Unhandled, each is a 500 and a logged traceback; here each is the client's 400.

Size and time are bounded for the whole body, not per read: aiohttp bounds `read()`, `post()`
and each multipart part by `client_max_size`, but not a multipart body read part by part (a
body of many fields, each under the limit, was read whole: tens of MB), and no body read ever
times out (a client that stops half-way holds its connection and what it sent).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import BodyPartReader, web
from multidict import MultiDictProxy

from bot.web.keys import ASSISTANT
from diagnosis.intake import IntakeLimits

# UnicodeDecodeError and json.JSONDecodeError are ValueErrors; LookupError: unknown charset.
MALFORMED = (ValueError, LookupError)

# A chat turn's JSON, or one text field of a multipart turn: a few KB at most (texts are cut at
# 4,096 characters). Parsed JSON takes several times its size in Python objects: keep it small.
SMALL_BODY_BYTES = 64 * 1024


class UploadBudget:
    """Bytes of request bodies held at once (SKINCARE_UPLOAD_BUDGET_MB): a request reserves its
    declared length (the largest body when it declares none) before its body is read and gives
    it back once answered; the others wait, unread (TCP holds the rest of their bytes). A body
    larger than the whole budget still goes, alone."""

    def __init__(self, total_bytes: int):
        self.total = total_bytes
        self.used = 0
        self._room: asyncio.Condition | None = None  # made on first use: binds to that loop

    @asynccontextmanager
    async def held(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.total)
        if self._room is None:
            self._room = asyncio.Condition()
        async with self._room:
            await self._room.wait_for(lambda: self.used + size <= self.total)
            self.used += size
        try:
            yield
        finally:
            async with self._room:
                self.used -= size
                self._room.notify_all()


UPLOADS = web.AppKey("uploads", UploadBudget)


@web.middleware
async def hold_upload_memory(request: web.Request, handler):
    """Bodies past a chat turn's size wait for room in the upload budget before they are read:
    without it, 32 concurrent uploads near the 20 MB limit held about 1.3 GB."""
    declared = request.content_length
    if request.method != "POST" or (declared is not None and declared <= SMALL_BODY_BYTES):
        return await handler(request)
    size = request.client_max_size if declared is None else min(declared, request.client_max_size)
    async with request.config_dict[UPLOADS].held(size):
        return await handler(request)


def max_body_bytes(intake: IntakeLimits) -> int:
    """The largest request body: a little above the photo limit, so that an over-size photo gets
    our own "file too large" answer instead of a bare 413."""
    return intake.max_bytes + (1 << 20)


def too_large(what: str, limit: int) -> web.HTTPRequestEntityTooLarge:
    return web.HTTPRequestEntityTooLarge(
        max_size=limit, text=f"{what} is over the limit of {limit:,} bytes."
    )


def check_body_size(request: web.Request) -> None:
    """413 once more of the body has arrived than any request may send (parts skipped or read
    so far, all counted)."""
    if request.content.total_bytes > request.client_max_size:
        raise too_large("The request body", request.client_max_size)


@asynccontextmanager
async def body_deadline(request: web.Request) -> AsyncIterator[None]:
    """Reads of the body inside must finish within SKINCARE_WEB_BODY_TIMEOUT_S, else 408."""
    seconds = request.config_dict[ASSISTANT].settings.web_body_timeout_s
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError as error:
        raise web.HTTPRequestTimeout(
            text=f"The request body did not arrive within {seconds:g} s."
        ) from error


async def form_of(request: web.Request) -> MultiDictProxy:
    """The POSTed form (aiohttp caches it: later `request.post()` calls return the same)."""
    try:
        async with body_deadline(request):
            return await request.post()
    except MALFORMED as error:
        raise web.HTTPBadRequest(text=f"Malformed form body: {error}") from error


async def small_json(request: web.Request) -> object:
    """The body as JSON, refused (413) past SMALL_BODY_BYTES. Raises MALFORMED on bad JSON."""
    data = bytearray()
    async for chunk in request.content.iter_chunked(1 << 16):
        data.extend(chunk)
        if len(data) > SMALL_BODY_BYTES:
            raise too_large("A JSON body", SMALL_BODY_BYTES)
    return json.loads(data.decode(request.charset or "utf-8"))


async def small_field(part: BodyPartReader) -> str:
    """A multipart text field, refused (413) past SMALL_BODY_BYTES, raw or decoded (a gzip
    Content-Encoding could otherwise inflate a small part). Raises MALFORMED on bad text."""
    raw = bytearray()
    while chunk := await part.read_chunk(1 << 16):
        raw.extend(chunk)
        if len(raw) > SMALL_BODY_BYTES:
            raise too_large(f"The form field {part.name!r}", SMALL_BODY_BYTES)
    text = bytearray()
    async for piece in part.decode_iter(raw):
        text.extend(piece)
        if len(text) > SMALL_BODY_BYTES:
            raise too_large(f"The form field {part.name!r}", SMALL_BODY_BYTES)
    return text.decode(part.get_charset(default="utf-8"))
