"""Reading request bodies that a client may have malformed on purpose.

aiohttp's parsers raise plain exceptions on a hostile body (a multipart without a boundary or
with the wrong one: ValueError; undecodable bytes: UnicodeDecodeError; an unknown charset:
LookupError). Unhandled, each is a 500 and a logged traceback; here each is the client's 400.
"""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDictProxy

# UnicodeDecodeError and json.JSONDecodeError are ValueErrors; LookupError: unknown charset.
MALFORMED = (ValueError, LookupError)


async def form_of(request: web.Request) -> MultiDictProxy:
    """The POSTed form (aiohttp caches it: later `request.post()` calls return the same)."""
    try:
        return await request.post()
    except MALFORMED as error:
        raise web.HTTPBadRequest(text=f"Malformed form body: {error}") from error
