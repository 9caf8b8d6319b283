"""A fake Telegram Bot API server for end-to-end tests with the real python-telegram-bot.

It speaks the HTTP protocol the way PTB 22 uses it: JSON, URL-encoded or multipart requests to
``/bot<TOKEN>/<method>``, answers ``{"ok": true, "result": ...}`` or
``{"ok": false, "error_code": N, "description": "...", "parameters": {...}}``, dates in integer
Unix seconds, and file downloads at ``/file/bot<TOKEN>/<file_path>``. Point PTB at it with::

    async with FakeTelegram() as tg:
        app = (
            Application.builder()
            .token(tg.token)
            .base_url(tg.base_url)
            .base_file_url(tg.base_file_url)
            .build()
        )  # or: tg.application_builder().build()
        alice = tg.user(first_name="Alice", language_code="ko")
        tg.send_command(alice, "/start")
        [reply] = await tg.wait_for_messages(alice.id, 1)

The test plays the users (``send_text``, ``send_photo``, ``press_button``, ...: each queues an
update and returns its update_id; updates go to ``getUpdates`` or, once ``setWebhook`` was
called, are POSTed to the webhook) and looks at what the bot did: ``sent`` holds every call the
bot made (``BotCall``: method, decoded params, uploaded files, time, result or error),
``messages_to(chat_id)`` the messages the bot sent to a chat as they are now (edits applied,
deleted ones left out). ``unknown_calls`` and ``bad_requests`` hold the calls a real server would
have refused, so a test can assert that there were none.

Like the real server it checks what it is sent: HTML / MarkdownV2 / Markdown parse modes (a stray
``<`` or an unescaped ``.`` is a 400), text and caption lengths, inline keyboards (callback_data
1-64 bytes), the chat (unknown: 400, blocked or never contacted: 403), "message is not modified",
answering a callback query twice, and file identifiers.

Failure injection: ``fail_next`` (429 with ``retry_after``, 500, 502, ...), ``garble_next`` (an
answer that is not JSON, e.g. a proxy's HTML page with status 200), ``drop_next`` (the
connection is closed without an answer: a network error for the client) and ``delay_next``;
none of these carries the call out. ``deliver_again`` POSTs an update to the webhook once more,
as Telegram does when it did not get the webhook's answer in time.

Everything runs on the test's event loop; the update-injecting methods are plain (synchronous)
methods, the waiting ones are coroutines. Many concurrent users are fine: each private chat has
its own message ids, webhook updates of one chat are delivered in order, chats in parallel.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import mimetypes
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import aiohttp
from aiohttp import web

__all__ = [
    "BotCall",
    "FakeTelegram",
    "FakeUser",
    "InjectedFailure",
    "StoredFile",
    "Upload",
    "WaitTimeout",
    "WebhookDelivery",
]

# Methods the server implements, by canonical name (Telegram accepts any letter case).
METHODS = (
    "getMe",
    "getUpdates",
    "setWebhook",
    "deleteWebhook",
    "getWebhookInfo",
    "sendMessage",
    "sendPhoto",
    "sendDocument",
    "sendChatAction",
    "sendLocation",
    "sendVenue",
    "answerCallbackQuery",
    "editMessageText",
    "editMessageCaption",
    "editMessageReplyMarkup",
    "deleteMessage",
    "setMyCommands",
    "getMyCommands",
    "deleteMyCommands",
    "getFile",
    "close",
    "logOut",
)

# Form values that are always strings; every other form value is JSON-decoded when it is a
# JSON number, boolean, object or array (PTB sends ints, bools and objects JSON-encoded).
_TEXT_PARAMS = frozenset(
    {
        "action",
        "address",
        "business_connection_id",
        "callback_query_id",
        "caption",
        "custom_emoji_id",
        "data",
        "description",
        "document",
        "emoji",
        "file_id",
        "foursquare_id",
        "foursquare_type",
        "google_place_id",
        "google_place_type",
        "inline_message_id",
        "ip_address",
        "language_code",
        "message_effect_id",
        "name",
        "parse_mode",
        "photo",
        "query",
        "secret_token",
        "short_description",
        "sticker",
        "text",
        "thumbnail",
        "title",
        "url",
    }
)

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

_INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)

_COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_TEXT_COMMAND_RE = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{3,32})?(?![\w@])")

MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA = 64
MAX_DOWNLOAD = 20 * 1024 * 1024


class ApiError(Exception):
    """An error answer of the Bot API (raised inside method implementations)."""

    def __init__(self, code: int, description: str, parameters: dict | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.parameters = parameters


class WaitTimeout(AssertionError):
    """A ``wait_for*`` method ran out of time; the message says what was expected and seen."""


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _now() -> int:
    return int(time.time())


# ---------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class FakeUser:
    """A Telegram user in a private chat with the bot (chat id == user id)."""

    id: int
    first_name: str = "Test"
    language_code: str | None = "en"
    last_name: str | None = None
    username: str | None = None

    @property
    def chat_id(self) -> int:
        return self.id

    def to_dict(self) -> dict:
        data: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        if self.language_code:
            data["language_code"] = self.language_code
        return data

    def chat_dict(self) -> dict:
        data: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            data["last_name"] = self.last_name
        if self.username:
            data["username"] = self.username
        return data


@dataclass
class Upload:
    """A file part of a multipart request."""

    field: str
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class BotCall:
    """One request the bot made, with the answer it got.

    ``params`` are decoded (ints, bools, dicts as the bot meant them); uploaded file parts are in
    ``files`` (field name -> Upload), not in ``params``. ``time`` is ``time.monotonic()`` when
    the request arrived. ``injected`` names the failure the test injected ("error", "drop",
    "delay") or is None.
    """

    method: str
    params: dict
    files: dict[str, Upload]
    time: float
    ok: bool = False
    result: Any = None
    error_code: int | None = None
    description: str | None = None
    injected: str | None = None

    @property
    def chat_id(self) -> int | str | None:
        return self.params.get("chat_id")

    @property
    def upload(self) -> bytes | None:
        """The bytes of the single uploaded file, if any."""
        if not self.files:
            return None
        return next(iter(self.files.values())).data

    def __repr__(self) -> str:
        state = "ok" if self.ok else f"{self.error_code} {self.description!r}"
        params = {k: v for k, v in self.params.items() if k != "reply_markup"}
        extra = f" files={list(self.files)}" if self.files else ""
        tag = f" injected={self.injected}" if self.injected else ""
        return f"<BotCall {self.method} {params}{extra} -> {state}{tag}>"


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # photo, document, sticker
    data: bytes
    file_path: str
    mime_type: str | None = None
    file_name: str | None = None
    width: int = 0
    height: int = 0

    @property
    def file_size(self) -> int:
        return len(self.data)


@dataclass
class WebhookDelivery:
    """One POST of an update to the webhook: HTTP status (None: no connection) and error."""

    update_id: int
    url: str
    secret_token: str | None
    status: int | None
    error: str | None
    time: float


@dataclass
class InjectedFailure:
    method: str
    kind: str  # error, garble, drop, delay
    error_code: int | None
    time: float


@dataclass
class _Fault:
    methods: frozenset[str] | None  # None: every method but getUpdates
    remaining: int
    kind: str
    error_code: int | None = None
    retry_after: int | None = None
    description: str | None = None
    delay: float = 0.0

    def matches(self, method: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.methods is None:
            return method != "getUpdates"
        return method in self.methods


_MISSING = object()


# ---------------------------------------------------------------------------------------------
# Formatting (parse_mode) as the Bot API parses it


class _ParseError(Exception):
    pass


class _TextBuilder:
    def __init__(self, source: str):
        self.source = source
        self.parts: list[str] = []
        self.pos16 = 0
        self.entities: list[dict] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos16 += _utf16_len(text)

    def entity(self, kind: str, start: int, **extra: Any) -> None:
        length = self.pos16 - start
        if length > 0:
            self.entities.append({"type": kind, "offset": start, "length": length, **extra})

    def byte_offset(self, index: int) -> int:
        return len(self.source[:index].encode())

    def result(self) -> tuple[str, list[dict]]:
        entities = sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.parts), entities


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_TAG_RE = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9-]*)"
    r"((?:\s+[A-Za-z-]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s>\"']+))?)*)\s*>"
)
_HTML_ATTR_RE = re.compile(r"([A-Za-z-]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s>\"']+)))?")
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|lt|gt|amp|quot);")
_HTML_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}


def _html_unescape(value: str) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1)
        if name.startswith("#x") or name.startswith("#X"):
            return chr(int(name[2:], 16))
        if name.startswith("#"):
            return chr(int(name[1:]))
        return _HTML_NAMED[name]

    return _HTML_ENTITY_RE.sub(one, value)


def parse_html(text: str) -> tuple[str, list[dict]]:
    """Telegram's HTML parse mode: (plain text, entities) or _ParseError."""
    out = _TextBuilder(text)
    stack: list[dict] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "<":
            match = _HTML_TAG_RE.match(text, i)
            offset = out.byte_offset(i)
            if match is None:
                name = re.match(r"</?([A-Za-z0-9-]*)", text[i:]).group(1)
                raise _ParseError(f'Unsupported start tag "{name}" at byte offset {offset}')
            closing, name, raw_attrs = match.group(1) == "/", match.group(2).lower(), match.group(3)
            if closing:
                if not stack:
                    raise _ParseError(f'Unexpected end tag "{name}" at byte offset {offset}')
                top = stack.pop()
                if top["name"] != name:
                    raise _ParseError(
                        f'Unmatched end tag at byte offset {offset}, expected "</{top["name"]}>", '
                        f'found "</{name}>"'
                    )
                if top["type"]:
                    out.entity(top["type"], top["start"], **top["extra"])
            else:
                kind = _HTML_TAGS.get(name)
                if kind is None:
                    raise _ParseError(f'Unsupported start tag "{name}" at byte offset {offset}')
                attrs = {}
                for attr in _HTML_ATTR_RE.finditer(raw_attrs):
                    value = next((g for g in attr.group(2, 3, 4) if g is not None), "")
                    attrs[attr.group(1).lower()] = _html_unescape(value)
                extra: dict[str, Any] = {}
                if name == "span" and attrs.get("class") != "tg-spoiler":
                    raise _ParseError(
                        f'Tag "span" must have class "tg-spoiler" at byte offset {offset}'
                    )
                if name == "a":
                    if attrs.get("href"):
                        extra["url"] = attrs["href"]
                    else:
                        kind = None
                if name == "blockquote" and "expandable" in attrs:
                    kind = "expandable_blockquote"
                if name == "tg-emoji":
                    if "emoji-id" not in attrs:
                        raise _ParseError(
                            f'Tag "tg-emoji" must have attribute "emoji-id" at byte offset {offset}'
                        )
                    extra["custom_emoji_id"] = attrs["emoji-id"]
                if name == "code" and stack and stack[-1]["name"] == "pre":
                    language = attrs.get("class", "")
                    if language.startswith("language-"):
                        stack[-1]["extra"]["language"] = language[len("language-") :]
                    kind = None  # the code inside a pre is part of the pre entity
                stack.append({"name": name, "type": kind, "start": out.pos16, "extra": extra})
            i = match.end()
            continue
        if char == "&":
            match = _HTML_ENTITY_RE.match(text, i)
            if match:
                out.add(_html_unescape(match.group(0)))
                i = match.end()
                continue
        out.add(char)
        i += 1
    if stack:
        raise _ParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1]["name"]}"')
    return out.result()


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_MARKERS = {
    "*": "bold",
    "_": "italic",
    "__": "underline",
    "~": "strikethrough",
    "||": "spoiler",
}
_ENTITY_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "code": "Code",
    "pre": "Pre",
}


def _scan_code(text: str, start: int, fence: str) -> tuple[str, int] | None:
    """Content of a MarkdownV2 code/pre span from ``start`` up to ``fence`` (escapes: ` and \\)."""
    parts = []
    i = start
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in "`\\":
            parts.append(text[i + 1])
            i += 2
            continue
        if text.startswith(fence, i):
            return "".join(parts), i + len(fence)
        parts.append(text[i])
        i += 1
    return None


def parse_markdown_v2(text: str) -> tuple[str, list[dict]]:
    """Telegram's MarkdownV2 parse mode: (plain text, entities) or _ParseError."""
    out = _TextBuilder(text)
    stack: list[dict] = []
    quote_start: int | None = None
    i = 0
    line_start = True
    while i < len(text):
        char = text[i]
        offset = out.byte_offset(i)
        if char == "\\" and i + 1 < len(text) and 1 <= ord(text[i + 1]) <= 126:
            out.add(text[i + 1])
            i += 2
            line_start = False
            continue
        if char == "`":
            fence = "```" if text.startswith("```", i) else "`"
            scanned = _scan_code(text, i + len(fence), fence)
            if scanned is None:
                name = "Pre" if fence == "```" else "Code"
                raise _ParseError(f"Can't find end of {name} entity at byte offset {offset}")
            content, i = scanned
            start = out.pos16
            if fence == "```":
                language = ""
                first, newline, rest = content.partition("\n")
                if newline and first and not re.search(r"\s", first):
                    language, content = first, rest
                out.add(content)
                out.entity("pre", start, **({"language": language} if language else {}))
            else:
                out.add(content)
                out.entity("code", start)
            line_start = False
            continue
        if char in "*_~|":
            marker = char
            if text.startswith("__", i):
                marker = "__"
            elif char == "|":
                if not text.startswith("||", i):
                    raise _ParseError(
                        "Character '|' is reserved and must be escaped with the preceding '\\'"
                    )
                marker = "||"
            if stack and stack[-1]["marker"] == marker:
                top = stack.pop()
                out.entity(top["type"], top["start"])
            else:
                stack.append(
                    {
                        "marker": marker,
                        "type": _MDV2_MARKERS[marker],
                        "start": out.pos16,
                        "offset": offset,
                    }
                )
            i += len(marker)
            line_start = False
            continue
        if char == "[":
            stack.append({"marker": "[", "type": "text_link", "start": out.pos16, "offset": offset})
            i += 1
            line_start = False
            continue
        if char == "]" and stack and stack[-1]["marker"] == "[":
            top = stack.pop()
            if not text.startswith("(", i + 1):
                raise _ParseError(
                    f"Can't find end of TextUrl entity at byte offset {top['offset']}"
                )
            url_parts = []
            j = i + 2
            while j < len(text) and text[j] != ")":
                if text[j] == "\\" and j + 1 < len(text):
                    j += 1
                url_parts.append(text[j])
                j += 1
            if j >= len(text):
                raise _ParseError(f"Can't find end of a URL at byte offset {out.byte_offset(i)}")
            url = "".join(url_parts)
            if url.startswith("tg://emoji?id="):
                out.entity("custom_emoji", top["start"], custom_emoji_id=url.split("=", 1)[1])
            else:
                out.entity("text_link", top["start"], url=url)
            i = j + 1
            line_start = False
            continue
        if char == ">" and line_start:
            if quote_start is None:
                quote_start = out.pos16
            i += 1
            line_start = False
            continue
        if char in _MDV2_RESERVED:
            raise _ParseError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        if char == "\n":
            if quote_start is not None and not text.startswith(">", i + 1):
                out.entity("blockquote", quote_start)
                quote_start = None
            out.add(char)
            i += 1
            line_start = True
            continue
        out.add(char)
        i += 1
        line_start = False
    if quote_start is not None:
        out.entity("blockquote", quote_start)
    if stack:
        top = stack[-1]
        name = _ENTITY_NAMES.get(top["type"], top["type"])
        raise _ParseError(f"Can't find end of {name} entity at byte offset {top['offset']}")
    return out.result()


def parse_markdown(text: str) -> tuple[str, list[dict]]:
    """Telegram's legacy Markdown parse mode (no nesting, escapes only for _ * ` [)."""
    out = _TextBuilder(text)
    i = 0
    while i < len(text):
        char = text[i]
        offset = out.byte_offset(i)
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "_*`[":
            out.add(text[i + 1])
            i += 2
            continue
        if char in "*_`":
            fence = "```" if text.startswith("```", i) else char
            end = text.find(fence, i + len(fence))
            if end < 0:
                raise _ParseError(f"Can't find end of the entity starting at byte offset {offset}")
            content = text[i + len(fence) : end]
            start = out.pos16
            kind = {"*": "bold", "_": "italic", "`": "code", "```": "pre"}[fence]
            extra: dict[str, Any] = {}
            if fence == "```":
                first, newline, rest = content.partition("\n")
                if newline and first and not re.search(r"\s", first):
                    extra["language"], content = first, rest
            out.add(content)
            out.entity(kind, start, **extra)
            i = end + len(fence)
            continue
        if char == "[":
            match = re.compile(r"\[([^\]]*)\]\(([^)]*)\)").match(text, i)
            if match is None:
                raise _ParseError(f"Can't find end of the entity starting at byte offset {offset}")
            start = out.pos16
            out.add(match.group(1))
            out.entity("text_link", start, url=match.group(2))
            i = match.end()
            continue
        out.add(char)
        i += 1
    return out.result()


_PARSERS = {"html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}


def render_text(
    text: Any, parse_mode: Any, entities: Any, *, what: str = "text"
) -> tuple[str, list[dict]]:
    """Text as the Bot API stores it after parsing: plain text and its entities."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if parse_mode:
        parser = _PARSERS.get(str(parse_mode).lower())
        if parser is None:
            raise _bad(f"unsupported parse_mode {parse_mode!r}")
        try:
            return parser(text)
        except _ParseError as exc:
            raise _bad(f"can't parse entities: {exc}") from None
    if entities is None:
        return text, []
    if not isinstance(entities, list) or not all(
        isinstance(e, dict) and {"type", "offset", "length"} <= e.keys() for e in entities
    ):
        raise _bad(f"can't parse {what} entities JSON object")
    return text, entities


# ---------------------------------------------------------------------------------------------
# Images


def _image_size(data: bytes) -> tuple[int, int]:
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:
        return 0, 0


def _thumbnail(data: bytes, side: int = 90) -> tuple[bytes, int, int]:
    """A small JPEG version of an image, as Telegram makes for photos (the data if not an image)."""
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            image = image.convert("RGB")
            image.thumbnail((side, side))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=80)
            return buffer.getvalue(), image.width, image.height
    except Exception:
        return data, 0, 0


# ---------------------------------------------------------------------------------------------
# The server


class FakeTelegram:
    """A local Telegram Bot API server; see the module docstring."""

    def __init__(
        self,
        *,
        bot_id: int = 123456789,
        bot_username: str = "skincare_test_bot",
        bot_first_name: str = "Skin Care Test Bot",
        token: str | None = None,
    ):
        self._token = token or f"{bot_id}:AA{secrets.token_urlsafe(33)[:33]}"
        self._bot_user = {
            "id": bot_id,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._methods = {name.lower(): name for name in METHODS}

        # What the test looks at.
        self.sent: list[BotCall] = []
        self.unknown_calls: list[BotCall] = []
        self.bad_requests: list[BotCall] = []
        self.unauthorized: list[str] = []
        self.injected_failures: list[InjectedFailure] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self.downloads: list[str] = []
        self.updates: dict[int, dict] = {}
        self.callback_answers: dict[str, dict] = {}

        # State.
        self._users: dict[int, FakeUser] = {}
        self._next_user_id = 10_000_001
        self._open_chats: set[int] = set()
        self._blocked: set[int] = set()
        self._next_update_id = 100_000_001
        self._queue: list[dict] = []
        self._consumed: set[int] = set()
        self._messages: dict[tuple[int, int], dict] = {}
        self._deleted: set[tuple[int, int]] = set()
        self._bot_messages: dict[int, list[int]] = {}
        self._next_message_id: dict[int, int] = {}
        self._reply_keyboards: dict[int, dict] = {}
        self._callbacks: dict[str, int] = {}  # query id -> update id
        self._files: dict[str, StoredFile] = {}
        self._paths: dict[str, StoredFile] = {}
        self._photo_sets: dict[str, list[dict]] = {}
        self._file_counter = 0
        self._album_counter = 0
        self._commands: dict[tuple[str, str], list[dict]] = {}
        self._faults: list[_Fault] = []
        self._poll_generation = 0

        self._webhook_url = ""
        self._webhook_secret: str | None = None
        self._webhook_max_connections = 40
        self._webhook_semaphore = asyncio.Semaphore(40)
        self._webhook_last_error: tuple[int, str] | None = None
        self._webhook_allowed_updates: list[str] | None = None
        self._in_delivery: set[int] = set()
        self._delivery_tasks: set[asyncio.Task] = set()
        self._chat_locks: dict[Any, asyncio.Lock] = {}

        self._changed = asyncio.Event()
        self._updates_changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port: int | None = None
        self._closing = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> FakeTelegram:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        self._runner = web.AppRunner(
            app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None
        )
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        self._session = aiohttp.ClientSession()
        self._closing = False
        return self

    async def stop(self) -> None:
        self._closing = True
        self._notify(updates=True)
        for task in list(self._delivery_tasks):
            task.cancel()
        if self._delivery_tasks:
            await asyncio.gather(*self._delivery_tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- addresses ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeTelegram is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder.base_url`` (PTB appends the token)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``ApplicationBuilder.base_file_url`` (PTB appends the token)."""
        return f"{self.url}/file/bot"

    @property
    def token(self) -> str:
        return self._token

    @property
    def bot_user(self) -> dict:
        """The bot's User object, as getMe returns it."""
        return dict(self._bot_user)

    @property
    def bot_id(self) -> int:
        return self._bot_user["id"]

    @property
    def bot_username(self) -> str:
        return self._bot_user["username"]

    def application_builder(self):
        """``telegram.ext.Application.builder()`` with token, base_url and base_file_url set."""
        from telegram.ext import Application

        return (
            Application.builder()
            .token(self.token)
            .base_url(self.base_url)
            .base_file_url(self.base_file_url)
        )

    # -- users (the test side) ------------------------------------------------------------

    def user(
        self,
        id: int | None = None,  # noqa: A002 - the Telegram field name
        first_name: str = "Test",
        language_code: str | None = "en",
        *,
        last_name: str | None = None,
        username: str | None = None,
    ) -> FakeUser:
        """A user (new id unless given); a private chat with the bot has the same id."""
        if id is None:
            id = self._next_user_id
            self._next_user_id += 1
        user = FakeUser(id, first_name, language_code, last_name, username)
        self._users[id] = user
        return user

    def block(self, user: FakeUser | int) -> None:
        """The user blocks the bot: sends to their chat answer 403."""
        self._blocked.add(self._chat_id_of(user))

    def unblock(self, user: FakeUser | int) -> None:
        self._blocked.discard(self._chat_id_of(user))

    def send_text(self, user: FakeUser, text: str, *, reply_to: dict | int | None = None) -> int:
        """A text message; /commands in it get bot_command entities, as clients send them."""
        entities = [
            {
                "type": "bot_command",
                "offset": _utf16_len(text[: m.start()]),
                "length": _utf16_len(m.group(0)),
            }
            for m in _TEXT_COMMAND_RE.finditer(text)
        ]
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return self._inject_message(user, content, reply_to)

    def send_command(self, user: FakeUser, command: str, args: str = "") -> int:
        """``/command [args]`` with the bot_command entity at offset 0."""
        command = command if command.startswith("/") else f"/{command}"
        text = f"{command} {args}" if args else command
        content = {
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": _utf16_len(command)}],
        }
        return self._inject_message(user, content, None)

    def send_photo(
        self,
        user: FakeUser,
        data: bytes,
        *,
        caption: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> int:
        """A photo as Telegram delivers it: PhotoSize list, small thumbnail first, then the full
        size whose file holds exactly ``data``."""
        content: dict[str, Any] = {"photo": self._store_photo(bytes(data), width, height)}
        if caption:
            content["caption"] = caption
        return self._inject_message(user, content, None)

    def send_media_group(
        self, user: FakeUser, photos: list[bytes], *, caption: str | None = None
    ) -> list[int]:
        """An album, as a user's client sends it (sendMediaGroup, 2 to 10 photos): the bot gets
        one message per photo, each its own update, all with the same ``media_group_id``; a
        caption comes with the first photo only. Returns the update ids."""
        if not 2 <= len(photos) <= 10:
            raise ValueError("an album holds 2 to 10 photos")
        self._album_counter += 1
        group = str(13_000_000_000_000_000 + self._album_counter)  # Telegram's look: digits
        updates = []
        for number, data in enumerate(photos):
            content: dict[str, Any] = {
                "media_group_id": group,
                "photo": self._store_photo(bytes(data), None, None),
            }
            if caption and number == 0:
                content["caption"] = caption
            updates.append(self._inject_message(user, content, None))
        return updates

    def send_document(
        self,
        user: FakeUser,
        data: bytes,
        file_name: str = "file.bin",
        mime_type: str | None = None,
        *,
        caption: str | None = None,
    ) -> int:
        mime_type = mime_type or mimetypes.guess_type(file_name)[0] or "application/octet-stream"
        stored = self._store_file("document", bytes(data), file_name=file_name, mime_type=mime_type)
        content: dict[str, Any] = {"document": self._document_dict(stored)}
        if caption:
            content["caption"] = caption
        return self._inject_message(user, content, None)

    def send_location(self, user: FakeUser, latitude: float, longitude: float) -> int:
        content = {"location": {"latitude": float(latitude), "longitude": float(longitude)}}
        return self._inject_message(user, content, None)

    def send_sticker(self, user: FakeUser, emoji: str = "👍", data: bytes | None = None) -> int:
        stored = self._store_file(
            "sticker", data or b"RIFF\x00\x00\x00\x00WEBPVP8 ", mime_type="image/webp"
        )
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "set_name": "TestStickers",
            "file_size": stored.file_size,
        }
        return self._inject_message(user, {"sticker": sticker}, None)

    def press_button(
        self,
        user: FakeUser,
        message: dict | int,
        callback_data: str,
        *,
        strict: bool = True,
    ) -> int:
        """The user presses an inline button of a bot message (dict or message_id in the user's
        chat). With ``strict`` the message must exist and show a button with that data now."""
        chat_id = user.id
        message_id = message["message_id"] if isinstance(message, dict) else int(message)
        if isinstance(message, dict):
            chat_id = message["chat"]["id"]
        stored = self._messages.get((chat_id, message_id))
        if strict:
            if stored is None or (chat_id, message_id) in self._deleted:
                raise ValueError(f"no message {message_id} in chat {chat_id} to press a button of")
            buttons = [
                b.get("callback_data")
                for row in stored.get("reply_markup", {}).get("inline_keyboard", [])
                for b in row
            ]
            if callback_data not in buttons:
                raise ValueError(
                    f"message {message_id} has no button with callback_data {callback_data!r}; "
                    f"it has {buttons}"
                )
        self._register(user)
        query_id = str(secrets.randbits(62) | (1 << 62))
        query: dict[str, Any] = {
            "id": query_id,
            "from": user.to_dict(),
            "chat_instance": str(-(abs(hash(("chat", chat_id))) % 10**18)),
            "data": callback_data,
        }
        if stored is not None:
            query["message"] = copy.deepcopy(stored)
        else:
            query["message"] = {"message_id": message_id, "chat": user.chat_dict(), "date": 0}
        update_id = self.inject_update({"callback_query": query})
        self._callbacks[query_id] = update_id
        return update_id

    def inject_update(self, body: dict) -> int:
        """Queue any update body (without update_id); returns its update_id."""
        if self._port is None:
            raise RuntimeError("start() the FakeTelegram before sending updates")
        update_id = self._next_update_id
        self._next_update_id += 1
        update = {"update_id": update_id, **copy.deepcopy(body)}
        self.updates[update_id] = update
        self._queue.append(update)
        if self._webhook_url:
            self._schedule_delivery(update)
        self._notify(updates=True)
        return update_id

    # -- what the bot did (the test side) -------------------------------------------------

    def calls(self, method: str | None = None) -> list[BotCall]:
        """Successful calls, of one method or all."""
        return [c for c in self.sent if c.ok and (method is None or c.method == method)]

    def mark(self) -> int:
        """A position in ``sent``, for ``wait_for(..., since=mark)``."""
        return len(self.sent)

    def messages_to(self, chat_id: int | FakeUser, *, include_deleted: bool = False) -> list[dict]:
        """Messages the bot sent to a chat, in order, as they are now (edits applied)."""
        chat_id = self._chat_id_of(chat_id)
        return [
            copy.deepcopy(self._messages[(chat_id, mid)])
            for mid in self._bot_messages.get(chat_id, [])
            if include_deleted or (chat_id, mid) not in self._deleted
        ]

    def message(self, chat_id: int | FakeUser, message_id: int) -> dict | None:
        """Any message (user's or bot's) as it is now; None if unknown or deleted."""
        key = (self._chat_id_of(chat_id), message_id)
        if key in self._deleted or key not in self._messages:
            return None
        return copy.deepcopy(self._messages[key])

    def reply_keyboard(self, chat_id: int | FakeUser) -> dict | None:
        """The reply keyboard (ReplyKeyboardMarkup dict) the bot last set in a chat, if any."""
        markup = self._reply_keyboards.get(self._chat_id_of(chat_id))
        return copy.deepcopy(markup) if markup else None

    def callback_answer(self, update_id: int) -> dict | None:
        """The answerCallbackQuery params for the callback query of an update, if answered."""
        query_id = self.updates[update_id]["callback_query"]["id"]
        return self.callback_answers.get(query_id)

    def file_bytes(self, file_id: str) -> bytes:
        return self._files[file_id].data

    def commands(self, scope: dict | None = None, language_code: str = "") -> list[dict]:
        return copy.deepcopy(self._commands.get(self._commands_key(scope, language_code), []))

    def is_consumed(self, update_id: int) -> bool:
        """Confirmed by getUpdates offset, or delivered to the webhook with a 2xx answer."""
        return update_id in self._consumed

    @property
    def pending_updates(self) -> list[dict]:
        return copy.deepcopy(self._queue)

    def webhook_info(self) -> dict:
        info: dict[str, Any] = {
            "url": self._webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._queue),
        }
        if self._webhook_url:
            info["max_connections"] = self._webhook_max_connections
            if self._webhook_allowed_updates is not None:
                info["allowed_updates"] = list(self._webhook_allowed_updates)
        if self._webhook_last_error:
            info["last_error_date"], info["last_error_message"] = self._webhook_last_error
        return info

    async def wait_for(
        self,
        what: str | Callable[[BotCall], bool],
        timeout: float = 5.0,
        *,
        since: int = 0,
    ) -> BotCall:
        """The first call in ``sent[since:]`` that is a successful call of the method named
        ``what``, or for which ``what(call)`` is true (any call, failed ones too); waits for it."""
        if isinstance(what, str):
            method = what

            def predicate(call: BotCall) -> bool:
                return call.ok and call.method == method

            description = f"a successful {method} call"
        else:
            predicate, description = what, f"a call matching {what!r}"

        def check() -> Any:
            for call in self.sent[since:]:
                if predicate(call):
                    return call
            return _MISSING

        return await self._wait(check, timeout, description)

    async def wait_for_messages(
        self, chat_id: int | FakeUser, count: int = 1, timeout: float = 5.0
    ) -> list[dict]:
        """Waits until the bot has sent at least ``count`` (not deleted) messages to the chat;
        returns them all (``messages_to``)."""
        chat_id = self._chat_id_of(chat_id)

        def check() -> Any:
            messages = self.messages_to(chat_id)
            return messages if len(messages) >= count else _MISSING

        return await self._wait(check, timeout, f"{count} bot message(s) in chat {chat_id}")

    async def wait_consumed(self, update_id: int, timeout: float = 5.0) -> None:
        """Waits until the bot has confirmed (getUpdates offset) or accepted (webhook) an update."""

        def check() -> Any:
            return True if update_id in self._consumed else _MISSING

        await self._wait(check, timeout, f"update {update_id} to be consumed")

    # -- failure injection ----------------------------------------------------------------

    def fail_next(
        self,
        method: str | Iterable[str] = "*",
        times: int = 1,
        error_code: int = 429,
        retry_after: int | None = 1,
        description: str | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` ("*": any but getUpdates) answer an error:
        429 "Too Many Requests: retry after N" with ``parameters.retry_after`` by default, or
        500, 502, ... (``retry_after`` only goes with 429)."""
        if description is None:
            if error_code == 429:
                description = f"Too Many Requests: retry after {retry_after}"
            else:
                try:
                    description = HTTPStatus(error_code).phrase
                except ValueError:
                    description = f"Error {error_code}"
        self._faults.append(
            _Fault(
                self._fault_methods(method),
                times,
                "error",
                error_code=error_code,
                retry_after=retry_after if error_code == 429 else None,
                description=description,
            )
        )

    def garble_next(
        self, method: str | Iterable[str] = "*", times: int = 1, status: int = 200
    ) -> None:
        """The next ``times`` calls of ``method`` are answered with an HTML page and ``status``
        instead of the Bot API's JSON (as a proxy in front of it might); not carried out."""
        self._faults.append(_Fault(self._fault_methods(method), times, "garble", error_code=status))

    def drop_next(self, method: str | Iterable[str] = "*", times: int = 1) -> None:
        """The next ``times`` calls of ``method`` get their connection closed without an
        answer (PTB raises NetworkError); the call is not carried out."""
        self._faults.append(_Fault(self._fault_methods(method), times, "drop"))

    def delay_next(self, method: str | Iterable[str] = "*", seconds: float = 1.0, times: int = 1):
        """The next ``times`` calls of ``method`` are answered ``seconds`` late (PTB raises
        TimedOut if that passes its read timeout; the call is carried out all the same)."""
        self._faults.append(_Fault(self._fault_methods(method), times, "delay", delay=seconds))

    def clear_failures(self) -> None:
        self._faults.clear()

    def _fault_methods(self, method: str | Iterable[str]) -> frozenset[str] | None:
        names = [method] if isinstance(method, str) else list(method)
        if "*" in names:
            return None
        unknown = [n for n in names if n.lower() not in self._methods]
        if unknown:
            raise ValueError(f"FakeTelegram does not implement {unknown}")
        return frozenset(self._methods[n.lower()] for n in names)

    def _take_fault(self, method: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # -- HTTP -----------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        name = request.match_info["method"]
        if request.match_info["token"] != self._token:
            self.unauthorized.append(name)
            return self._answer_error(ApiError(401, "Unauthorized"))
        try:
            params, files = await self._read_params(request)
        except ApiError as exc:
            call = BotCall(name, {}, {}, arrived)
            return self._finish(call, exc)
        method = self._methods.get(name.lower())
        if method is None:
            call = BotCall(name, params, files, arrived)
            self.unknown_calls.append(call)
            return self._finish(call, ApiError(404, "Not Found: method not found"))

        call = BotCall(method, params, files, arrived)
        fault = self._take_fault(method)
        if fault is not None:
            call.injected = fault.kind
            self.injected_failures.append(
                InjectedFailure(method, fault.kind, fault.error_code, arrived)
            )
            if fault.kind == "error":
                parameters = {"retry_after": fault.retry_after} if fault.retry_after else None
                return self._finish(call, ApiError(fault.error_code, fault.description, parameters))
            if fault.kind == "garble":
                call.ok, call.error_code = False, fault.error_code
                call.description = "not JSON"
                self._record(call)
                page = "<html><body><h1>Service Unavailable</h1></body></html>"
                return web.Response(status=fault.error_code, text=page, content_type="text/html")
            if fault.kind == "drop":
                call.description = "connection dropped"
                self._record(call)
                if request.transport is not None:
                    request.transport.abort()
                await asyncio.sleep(10)  # the handler is cancelled as the connection is lost
                raise ConnectionResetError("dropped")
            await asyncio.sleep(fault.delay)

        try:
            implementation = getattr(self, f"_api_{method}")
            result = implementation(call)
            if asyncio.iscoroutine(result):
                result = await result
        except ApiError as exc:
            return self._finish(call, exc)
        call.ok = True
        call.result = result
        self._record(call)
        return web.json_response({"ok": True, "result": result})

    def _finish(self, call: BotCall, error: ApiError) -> web.Response:
        call.ok = False
        call.error_code = error.code
        call.description = error.description
        if call.injected is None and 400 <= error.code < 500 and error.code != 409:
            self.bad_requests.append(call)
        self._record(call)
        return self._answer_error(error)

    @staticmethod
    def _answer_error(error: ApiError) -> web.Response:
        body: dict[str, Any] = {
            "ok": False,
            "error_code": error.code,
            "description": error.description,
        }
        if error.parameters:
            body["parameters"] = error.parameters
        return web.json_response(body, status=error.code)

    async def _read_params(self, request: web.Request) -> tuple[dict, dict[str, Upload]]:
        raw: dict[str, Any] = dict(request.query)
        files: dict[str, Upload] = {}
        typed: dict[str, Any] = {}
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    raise _bad("can't parse JSON object") from None
                if not isinstance(body, dict):
                    raise _bad("parameters must be a JSON object")
                typed = body
            elif request.content_type in (
                "multipart/form-data",
                "application/x-www-form-urlencoded",
            ):
                form = await request.post()
                for key, value in form.items():
                    if isinstance(value, web.FileField):
                        data = value.file.read()
                        files[key] = Upload(key, value.filename, value.content_type, data)
                    else:
                        raw[key] = value
            else:
                await request.read()
        params = {key: self._coerce(key, value) for key, value in raw.items()}
        params.update(typed)
        return params, files

    @staticmethod
    def _coerce(key: str, value: str) -> Any:
        if key in _TEXT_PARAMS or not isinstance(value, str):
            return value
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        if isinstance(decoded, bool | int | float | list | dict):
            return decoded
        return value

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        stored = self._paths.get(path)
        if request.match_info["token"] != self._token or stored is None:
            return web.json_response(
                {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
            )
        self.downloads.append(path)
        self._notify()
        return web.Response(
            body=stored.data, content_type=stored.mime_type or "application/octet-stream"
        )

    # -- bookkeeping ----------------------------------------------------------------------

    def _record(self, call: BotCall) -> None:
        self.sent.append(call)
        self._notify()

    def _notify(self, *, updates: bool = False) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        if updates:
            self._updates_changed.set()
            self._updates_changed = asyncio.Event()

    async def _wait(self, check: Callable[[], Any], timeout: float, description: str) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = self._changed
            result = check()
            if result is not _MISSING:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n  ".join(repr(c) for c in self.sent[-8:] if c.method != "getUpdates")
                raise WaitTimeout(
                    f"timed out after {timeout}s waiting for {description}; recent calls:\n  "
                    f"{recent or '(none)'}"
                )
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass

    def _chat_id_of(self, chat: FakeUser | int | str) -> int:
        if isinstance(chat, FakeUser):
            return chat.id
        return int(chat)

    def _register(self, user: FakeUser) -> None:
        self._users.setdefault(user.id, user)
        self._open_chats.add(user.id)

    def _new_message_id(self, chat_id: int) -> int:
        message_id = self._next_message_id.get(chat_id, 1)
        self._next_message_id[chat_id] = message_id + 1
        return message_id

    def _inject_message(self, user: FakeUser, content: dict, reply_to: dict | int | None) -> int:
        self._register(user)
        message_id = self._new_message_id(user.id)
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": user.to_dict(),
            "chat": user.chat_dict(),
            "date": _now(),
            **content,
        }
        if reply_to is not None:
            reply_id = reply_to["message_id"] if isinstance(reply_to, dict) else int(reply_to)
            target = self._messages.get((user.id, reply_id))
            if target is not None:
                message["reply_to_message"] = self._without_reply(target)
        self._messages[(user.id, message_id)] = message
        return self.inject_update({"message": message})

    @staticmethod
    def _without_reply(message: dict) -> dict:
        return {k: copy.deepcopy(v) for k, v in message.items() if k != "reply_to_message"}

    def _next_file_number(self) -> int:
        self._file_counter += 1
        return self._file_counter

    def _store_file(
        self,
        kind: str,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        width: int = 0,
        height: int = 0,
    ) -> StoredFile:
        prefix = {
            "photo": "AgACAgIAAxkBAAI",
            "document": "BQACAgIAAxkBAAI",
            "sticker": "CAACAgIAAxkBAAI",
        }
        number = self._next_file_number()
        extension = {"photo": ".jpg", "sticker": ".webp"}.get(kind)
        if extension is None:
            extension = (mimetypes.guess_extension(mime_type or "") if mime_type else None) or (
                "." + file_name.rsplit(".", 1)[1] if file_name and "." in file_name else ""
            )
        stored = StoredFile(
            file_id=prefix.get(kind, "BQACAgIAAxkBAAI") + secrets.token_urlsafe(48),
            file_unique_id="AQAD" + secrets.token_urlsafe(12),
            kind=kind,
            data=data,
            file_path=f"{kind}s/file_{number}{extension}",
            mime_type=mime_type,
            file_name=file_name,
            width=width,
            height=height,
        )
        self._files[stored.file_id] = stored
        self._paths[stored.file_path] = stored
        return stored

    def _store_photo(self, data: bytes, width: int | None, height: int | None) -> list[dict]:
        full_width, full_height = _image_size(data)
        full_width, full_height = width or full_width, height or full_height
        thumb, thumb_width, thumb_height = _thumbnail(data)
        sizes = []
        for blob, w, h in ((thumb, thumb_width, thumb_height), (data, full_width, full_height)):
            stored = self._store_file("photo", blob, mime_type="image/jpeg", width=w, height=h)
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "width": w,
                    "height": h,
                    "file_size": stored.file_size,
                }
            )
        for size in sizes:
            self._photo_sets[size["file_id"]] = sizes
        return copy.deepcopy(sizes)

    @staticmethod
    def _document_dict(stored: StoredFile) -> dict:
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
        }
        if stored.file_name:
            document["file_name"] = stored.file_name
        if stored.mime_type:
            document["mime_type"] = stored.mime_type
        return document

    def _confirm(self, offset: int) -> None:
        if offset > 0:
            confirmed = [u for u in self._queue if u["update_id"] < offset]
        elif offset < 0:
            confirmed = self._queue[: max(0, len(self._queue) + offset)]
        else:
            return
        if confirmed:
            ids = {u["update_id"] for u in confirmed}
            self._queue = [u for u in self._queue if u["update_id"] not in ids]
            self._consumed |= ids
            self._notify()

    # -- webhook delivery -----------------------------------------------------------------

    def deliver_again(self, update_id: int) -> None:
        """POST an update the webhook already got (and answered) once more."""
        if not self._webhook_url:
            raise RuntimeError("deliver_again needs a webhook (setWebhook)")
        update = self.updates[update_id]
        self._consumed.discard(update_id)
        self._queue.append(update)
        self._schedule_delivery(update)

    def _schedule_delivery(self, update: dict) -> None:
        if update["update_id"] in self._in_delivery:
            return
        self._in_delivery.add(update["update_id"])
        task = asyncio.get_running_loop().create_task(self._deliver(update))
        self._delivery_tasks.add(task)
        task.add_done_callback(self._delivery_tasks.discard)

    @staticmethod
    def _update_chat(update: dict) -> Any:
        for key in ("message", "edited_message", "callback_query"):
            body = update.get(key)
            if body:
                message = body.get("message", body)
                if "chat" in message:
                    return message["chat"]["id"]
                return ("user", body.get("from", {}).get("id"))
        return ("update", update["update_id"])

    async def _deliver(self, update: dict) -> None:
        update_id = update["update_id"]
        lock = self._chat_locks.setdefault(self._update_chat(update), asyncio.Lock())
        attempt = 0
        try:
            async with lock:
                while not self._closing:
                    url, secret = self._webhook_url, self._webhook_secret
                    if not url or all(u["update_id"] != update_id for u in self._queue):
                        return
                    headers = {"Content-Type": "application/json"}
                    if secret:
                        headers["X-Telegram-Bot-Api-Secret-Token"] = secret
                    status, error = None, None
                    async with self._webhook_semaphore:
                        try:
                            async with self._session.post(
                                url,
                                data=json.dumps(update),
                                headers=headers,
                                timeout=aiohttp.ClientTimeout(total=10),
                            ) as response:
                                status = response.status
                                await response.read()
                                if not 200 <= status < 300:
                                    error = (
                                        f"Wrong response from the webhook: {status} "
                                        f"{response.reason}"
                                    )
                        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                            error = f"Connection failed: {exc.__class__.__name__}: {exc}"
                    self.webhook_deliveries.append(
                        WebhookDelivery(update_id, url, secret, status, error, time.monotonic())
                    )
                    if error is None:
                        self._queue = [u for u in self._queue if u["update_id"] != update_id]
                        self._consumed.add(update_id)
                        self._notify()
                        return
                    self._webhook_last_error = (_now(), error)
                    self._notify()
                    attempt += 1
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
        finally:
            self._in_delivery.discard(update_id)

    # -- sending checks -------------------------------------------------------------------

    def _target_chat(self, params: dict) -> int:
        chat_id = params.get("chat_id")
        if chat_id in (None, ""):
            raise _bad("chat_id is empty")
        try:
            chat_id = int(chat_id)
        except (TypeError, ValueError):
            raise _bad("chat not found") from None
        if chat_id not in self._users:
            raise _bad("chat not found")
        if chat_id in self._blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id not in self._open_chats:
            raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
        return chat_id

    @staticmethod
    def _check_markup(markup: Any, *, inline_only: bool = False) -> dict | None:
        if markup is None:
            return None
        if isinstance(markup, str):
            try:
                markup = json.loads(markup)
            except ValueError:
                raise _bad("can't parse reply keyboard markup JSON object") from None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            rows = markup["inline_keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad(
                    'field "inline_keyboard" of the InlineKeyboardMarkup should be an Array of '
                    "Arrays"
                )
            for row in rows:
                for button in row:
                    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                        raise _bad("can't parse inline keyboard button: Text must be a String")
                    if not button["text"].strip():
                        raise _bad("BUTTON_TEXT_INVALID")
                    actions = [a for a in _INLINE_BUTTON_ACTIONS if a in button]
                    if len(actions) != 1:
                        raise _bad(
                            "can't parse inline keyboard button: Text buttons are unallowed in "
                            "the inline keyboard"
                        )
                    if "callback_data" in button:
                        data = button["callback_data"]
                        size = len(data.encode()) if isinstance(data, str) else 0
                        if not 1 <= size <= MAX_CALLBACK_DATA:
                            raise _bad("BUTTON_DATA_INVALID")
                    if "url" in button and not re.match(r"^(https?|tg)://\S+$", str(button["url"])):
                        raise _bad(f"inline keyboard button URL '{button['url']}' is invalid")
            return markup
        if inline_only:
            raise _bad("inline keyboard expected")
        if "keyboard" in markup:
            rows = markup["keyboard"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise _bad(
                    'field "keyboard" of the ReplyKeyboardMarkup should be an Array of Arrays'
                )
            for row in rows:
                for button in row:
                    text = button if isinstance(button, str) else (button or {}).get("text")
                    if not isinstance(text, str) or not text.strip():
                        raise _bad("can't parse keyboard button: Text must be a non-empty String")
            return markup
        if markup.get("remove_keyboard") is True or markup.get("force_reply") is True:
            return markup
        raise _bad("can't parse reply keyboard markup JSON object")

    def _send(self, call: BotCall, content: dict) -> dict:
        """Checks chat, markup and reply, stores a new bot message and returns it."""
        params = call.params
        chat_id = self._target_chat(params)
        markup = self._check_markup(params.get("reply_markup"))
        reply_to = None
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            reply_id, allow = reply.get("message_id"), reply.get("allow_sending_without_reply")
        else:
            reply_id = params.get("reply_to_message_id")
            allow = params.get("allow_sending_without_reply")
        if reply_id is not None:
            target_key = (chat_id, int(reply_id))
            if target_key in self._messages and target_key not in self._deleted:
                reply_to = self._without_reply(self._messages[target_key])
            elif not allow:
                raise _bad("message to be replied not found")

        message: dict[str, Any] = {
            "message_id": self._new_message_id(chat_id),
            "from": dict(self._bot_user),
            "chat": self._users[chat_id].chat_dict(),
            "date": _now(),
        }
        if reply_to is not None:
            message["reply_to_message"] = reply_to
        message.update(content)
        if markup is not None:
            if markup.get("inline_keyboard"):
                message["reply_markup"] = markup
            elif "keyboard" in markup:
                self._reply_keyboards[chat_id] = markup
            elif markup.get("remove_keyboard"):
                self._reply_keyboards.pop(chat_id, None)
        self._messages[(chat_id, message["message_id"])] = message
        self._bot_messages.setdefault(chat_id, []).append(message["message_id"])
        return copy.deepcopy(message)

    def _caption(self, params: dict) -> dict:
        caption = params.get("caption")
        if caption in (None, ""):
            return {}
        text, entities = render_text(
            caption, params.get("parse_mode"), params.get("caption_entities"), what="caption"
        )
        if len(text) > MAX_CAPTION:
            raise _bad("message caption is too long")
        content: dict[str, Any] = {"caption": text}
        if entities:
            content["caption_entities"] = entities
        return content

    def _text(self, params: dict) -> dict:
        text, entities = render_text(
            params.get("text"), params.get("parse_mode"), params.get("entities")
        )
        if not text.strip():
            raise _bad("message text is empty")
        if len(text) > MAX_TEXT:
            raise _bad("message is too long")
        content: dict[str, Any] = {"text": text}
        if entities:
            content["entities"] = entities
        return content

    def _input_file(self, call: BotCall, name: str, kind: str) -> tuple[StoredFile | None, Any]:
        """The file of parameter ``name``: an upload (a part of that name or attach://), a
        file_id of a stored file of ``kind``, or a URL (not fetched: None)."""
        value = call.params.get(name)
        upload = call.files.get(name)
        if upload is None and isinstance(value, str) and value.startswith("attach://"):
            upload = call.files.get(value[len("attach://") :])
            if upload is None:
                raise _bad(f"file {value} not found in the request")
        if upload is not None:
            return None, upload
        if not value:
            raise _bad(f"there is no {name} in the request")
        if isinstance(value, str) and re.match(r"^https?://", value):
            return None, value
        stored = self._files.get(str(value))
        if stored is None:
            raise _bad("wrong file identifier/HTTP URL specified")
        if stored.kind != kind:
            raise _bad(f"wrong file identifier: can't use file of type {stored.kind} as {kind}")
        return stored, None

    def _stored_message(self, params: dict, *, action: str) -> tuple[tuple[int, int], dict]:
        if params.get("inline_message_id"):
            raise _bad(f"message to {action} not found")
        if params.get("chat_id") in (None, ""):
            raise _bad("chat_id is empty")
        if params.get("message_id") in (None, ""):
            raise _bad("message identifier is not specified")
        try:
            key = (int(params["chat_id"]), int(params["message_id"]))
        except (TypeError, ValueError):
            raise _bad(f"message to {action} not found") from None
        if key not in self._messages or key in self._deleted:
            raise _bad(f"message to {action} not found")
        return key, self._messages[key]

    def _edit(self, call: BotCall, changes: dict, remove: Iterable[str]) -> dict:
        key, message = self._stored_message(call.params, action="edit")
        if message.get("from", {}).get("id") != self.bot_id:
            raise _bad("message can't be edited")
        markup = self._check_markup(call.params.get("reply_markup"), inline_only=True)
        new = {k: v for k, v in message.items() if k not in remove and k != "reply_markup"}
        new.update(changes)
        if markup and markup.get("inline_keyboard"):
            new["reply_markup"] = markup
        compare = ("text", "entities", "caption", "caption_entities", "reply_markup")
        if all(new.get(k) == message.get(k) for k in compare):
            raise _bad(
                "message is not modified: specified new message content and reply markup are "
                "exactly the same as a current content and reply markup of the message"
            )
        new["edit_date"] = _now()
        self._messages[key] = new
        return copy.deepcopy(new)

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        scope = scope or {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(language_code or "")

    # -- the Bot API methods --------------------------------------------------------------

    def _api_getMe(self, call: BotCall) -> dict:
        return dict(self._bot_user)

    async def _api_getUpdates(self, call: BotCall) -> list[dict]:
        params = call.params
        if self._webhook_url:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use "
                "deleteWebhook to delete the webhook first",
            )
        try:
            offset = int(params.get("offset") or 0)
            limit = min(max(int(params.get("limit") or 100), 1), 100)
            timeout = max(float(params.get("timeout") or 0), 0.0)
        except (TypeError, ValueError):
            raise _bad("wrong parameter in getUpdates request") from None
        self._confirm(offset)
        self._poll_generation += 1
        generation = self._poll_generation
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._queue:
                return copy.deepcopy(self._queue[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                return []
            event = self._updates_changed
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                pass
            if self._webhook_url:
                raise ApiError(409, "Conflict: terminated by setWebhook request")
            if generation != self._poll_generation:
                raise ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one "
                    "bot instance is running",
                )

    def _api_setWebhook(self, call: BotCall) -> bool:
        params = call.params
        url = str(params.get("url") or "")
        secret = params.get("secret_token")
        if secret not in (None, "") and not _SECRET_RE.match(str(secret)):
            raise _bad("secret token contains unallowed characters")
        if url and not re.match(r"^https?://[^/\s]+", url):
            raise _bad("bad webhook: invalid webhook URL specified")
        max_connections = int(params.get("max_connections") or 40)
        if not 1 <= max_connections <= 100:
            raise _bad("bad webhook: max_connections must be between 1 and 100")
        if params.get("drop_pending_updates"):
            self._queue.clear()
        self._webhook_url = url
        self._webhook_secret = str(secret) if secret else None
        self._webhook_max_connections = max_connections
        self._webhook_semaphore = asyncio.Semaphore(max_connections)
        self._webhook_allowed_updates = params.get("allowed_updates")
        self._webhook_last_error = None
        self._notify(updates=True)
        if url:
            for update in list(self._queue):
                self._schedule_delivery(update)
        return True

    def _api_deleteWebhook(self, call: BotCall) -> bool:
        if call.params.get("drop_pending_updates"):
            self._queue.clear()
        self._webhook_url = ""
        self._webhook_secret = None
        self._webhook_last_error = None
        return True

    def _api_getWebhookInfo(self, call: BotCall) -> dict:
        return self.webhook_info()

    def _api_sendMessage(self, call: BotCall) -> dict:
        return self._send(call, self._text(call.params))

    def _api_sendPhoto(self, call: BotCall) -> dict:
        caption = self._caption(call.params)
        self._target_chat(call.params)
        stored, source = self._input_file(call, "photo", "photo")
        if stored is not None:
            sizes = copy.deepcopy(self._photo_sets[stored.file_id])
        elif isinstance(source, Upload):
            sizes = self._store_photo(source.data, None, None)
        else:  # a URL: Telegram would fetch it; here the file is empty
            sizes = self._store_photo(b"", 1, 1)
        return self._send(call, {"photo": sizes, **caption})

    def _api_sendDocument(self, call: BotCall) -> dict:
        caption = self._caption(call.params)
        self._target_chat(call.params)
        stored, source = self._input_file(call, "document", "document")
        if stored is None:
            if isinstance(source, Upload):
                file_name = source.filename or "document"
                mime = source.content_type or mimetypes.guess_type(file_name)[0]
                data = source.data
            else:
                file_name, mime, data = source.rsplit("/", 1)[-1] or "document", None, b""
            stored = self._store_file(
                "document",
                data,
                file_name=file_name,
                mime_type=mime or "application/octet-stream",
            )
        return self._send(call, {"document": self._document_dict(stored), **caption})

    def _api_sendChatAction(self, call: BotCall) -> bool:
        self._target_chat(call.params)
        if call.params.get("action") not in _CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    @staticmethod
    def _location(params: dict) -> dict:
        try:
            latitude, longitude = float(params["latitude"]), float(params["longitude"])
        except (KeyError, TypeError, ValueError):
            raise _bad("latitude and longitude must be numbers") from None
        if not -90 <= latitude <= 90 or not -180 <= longitude <= 180:
            raise _bad("wrong latitude or longitude")
        location: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
        if params.get("horizontal_accuracy") is not None:
            location["horizontal_accuracy"] = float(params["horizontal_accuracy"])
        return location

    def _api_sendLocation(self, call: BotCall) -> dict:
        return self._send(call, {"location": self._location(call.params)})

    def _api_sendVenue(self, call: BotCall) -> dict:
        params = call.params
        location = self._location(params)
        for key in ("title", "address"):
            if not str(params.get(key) or "").strip():
                raise _bad(f"venue {key} is empty")
        venue: dict[str, Any] = {
            "location": location,
            "title": str(params["title"]),
            "address": str(params["address"]),
        }
        for key in ("foursquare_id", "foursquare_type", "google_place_id", "google_place_type"):
            if params.get(key):
                venue[key] = params[key]
        return self._send(call, {"venue": venue, "location": location})

    def _api_answerCallbackQuery(self, call: BotCall) -> bool:
        query_id = str(call.params.get("callback_query_id") or "")
        if query_id not in self._callbacks or query_id in self.callback_answers:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        if len(str(call.params.get("text") or "")) > 200:
            raise _bad("MESSAGE_TOO_LONG")
        self.callback_answers[query_id] = dict(call.params)
        return True

    def _api_editMessageText(self, call: BotCall) -> dict:
        _, message = self._stored_message(call.params, action="edit")
        if "text" not in message:
            raise _bad("there is no text in the message to edit")
        content = self._text(call.params)
        return self._edit(call, content, remove=("text", "entities"))

    def _api_editMessageCaption(self, call: BotCall) -> dict:
        _, message = self._stored_message(call.params, action="edit")
        if "text" in message:
            raise _bad("there is no caption in the message to edit")
        content = self._caption(call.params)
        return self._edit(call, content, remove=("caption", "caption_entities"))

    def _api_editMessageReplyMarkup(self, call: BotCall) -> dict:
        return self._edit(call, {}, remove=())

    def _api_deleteMessage(self, call: BotCall) -> bool:
        key, _ = self._stored_message(call.params, action="delete")
        self._deleted.add(key)
        return True

    def _api_setMyCommands(self, call: BotCall) -> bool:
        commands = call.params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad("can't parse commands JSON object")
        for command in commands:
            if not isinstance(command, dict):
                raise _bad("can't parse BotCommand JSON object")
            if not _COMMAND_RE.match(str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description") or "")) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
        key = self._commands_key(call.params.get("scope"), call.params.get("language_code"))
        self._commands[key] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    def _api_getMyCommands(self, call: BotCall) -> list[dict]:
        return self.commands(call.params.get("scope"), call.params.get("language_code") or "")

    def _api_deleteMyCommands(self, call: BotCall) -> bool:
        key = self._commands_key(call.params.get("scope"), call.params.get("language_code"))
        self._commands.pop(key, None)
        return True

    def _api_getFile(self, call: BotCall) -> dict:
        stored = self._files.get(str(call.params.get("file_id") or ""))
        if stored is None:
            raise _bad("invalid file_id")
        if stored.file_size > MAX_DOWNLOAD:
            raise _bad("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": stored.file_path,
        }

    def _api_close(self, call: BotCall) -> bool:
        return True

    def _api_logOut(self, call: BotCall) -> bool:
        return True
