"""python-telegram-bot's HTTP requests over aiohttp instead of httpx.

Why: the bot spends most of its CPU per text message in the HTTP client. A profile of the load
benchmark's text phase put PTB's default stack (httpx, httpcore, anyio, h11) at about 40 % of the
bot's main-thread time; aiohttp's client does the same request in about a fifth of httpx's CPU
here (docs/performance.md). aiohttp is already the bot's web server, so nothing new is installed.

PTB's `BaseRequest` keeps everything Telegram-specific (parameters, errors from status codes,
RetryAfter on 429): this class only moves bytes, and maps aiohttp's failures, and answers that
are not JSON, to PTB's `TimedOut` / `NetworkError`, which bot/telegram.py retries.
"""

from __future__ import annotations

import json

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.request import BaseRequest, RequestData


class AiohttpRequest(BaseRequest):
    """One aiohttp session with a pool of keep-alive connections (PTB uses one instance for
    getUpdates and another for everything else)."""

    def __init__(
        self,
        connection_pool_size: int = 256,
        read_timeout: float | None = 5.0,
        write_timeout: float | None = 5.0,
        connect_timeout: float | None = 5.0,
        pool_timeout: float | None = 1.0,
        media_write_timeout: float | None = 20.0,
    ):
        self._pool_size = connection_pool_size
        self._read_timeout = read_timeout
        self._write_timeout = write_timeout
        self._connect_timeout = connect_timeout
        self._pool_timeout = pool_timeout
        self._media_write_timeout = media_write_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._pool_size),
                headers={"User-Agent": self.USER_AGENT},
                # Telegram's answers are JSON we hand to PTB as bytes; no cookies to keep.
                cookie_jar=aiohttp.DummyCookieJar(),
            )

    async def shutdown(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    @staticmethod
    def parse_json_payload(payload: bytes) -> dict:
        """The Bot API's JSON answer. Anything else (a proxy's HTML error page with status 200,
        a body cut short) is a NetworkError, which is retried, where PTB's own parser raises a
        plain TelegramError, which is not; and unlike PTB's, the body is not logged (it may
        echo a user's message)."""
        try:
            data = json.loads(payload)
        except ValueError:
            size = len(payload)
            raise NetworkError(f"Invalid server response ({size} bytes, not JSON)") from None
        if not isinstance(data, dict):
            raise NetworkError("Invalid server response (JSON, but not an object)")
        return data

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout=BaseRequest.DEFAULT_NONE,
        write_timeout=BaseRequest.DEFAULT_NONE,
        connect_timeout=BaseRequest.DEFAULT_NONE,
        pool_timeout=BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None or self._session.closed:
            raise RuntimeError("This AiohttpRequest is not initialized!")
        files = request_data.multipart_data if request_data else None
        read = self._read_timeout if _is_default(read_timeout) else read_timeout
        connect = self._connect_timeout if _is_default(connect_timeout) else connect_timeout
        pool = self._pool_timeout if _is_default(pool_timeout) else pool_timeout
        default_write = self._media_write_timeout if files else self._write_timeout
        write = default_write if _is_default(write_timeout) else write_timeout
        # aiohttp has no write timeout of its own: a stalled upload is bounded by the total,
        # the sum of all the others. sock_read restarts with every chunk received, as httpx's
        # read timeout does.
        timeout = aiohttp.ClientTimeout(
            total=_sum(pool, connect, write, read),
            connect=_sum(pool, connect),  # aiohttp's "connect": waiting for the pool + connecting
            sock_connect=connect,
            sock_read=read,
        )
        try:
            async with self._session.request(
                method, url, data=_body(request_data, files), timeout=timeout
            ) as response:
                return response.status, await response.read()
        except TimeoutError as exc:
            raise TimedOut from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(f"aiohttp.{type(exc).__name__}: {exc}") from exc


def _is_default(value) -> bool:
    return isinstance(value, type(BaseRequest.DEFAULT_NONE))


def _sum(*timeouts: float | None) -> float | None:
    return None if any(t is None for t in timeouts) else sum(timeouts)


def _body(request_data: RequestData | None, files: dict | None):
    """A JSON body, or multipart form data when there are files to upload (the Bot API takes
    both). JSON rather than PTB's URL-encoded form: percent-encoding every byte of a long
    Korean answer was a visible cost per message."""
    if request_data is None:
        return None
    if not files:
        return aiohttp.payload.BytesPayload(
            json.dumps(request_data.parameters).encode(), content_type="application/json"
        )
    fields = request_data.json_parameters
    form = aiohttp.FormData()
    for name, value in (fields or {}).items():
        form.add_field(name, value)
    for name, (filename, content, mime_type) in files.items():
        form.add_field(name, content, filename=filename, content_type=mime_type)
    return form
