"""Running the real assistant (aiohttp server + python-telegram-bot) against FakeTelegram.

`running_bot` starts exactly what `python -m bot` starts (build_web_app with its start-up hooks:
store, conversation, Telegram transport) on a free local port, with the Bot API pointed at the
test's FakeTelegram, and stops it afterwards.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.app import build_assistant
from bot.settings import Settings
from bot.web.app import build_web_app
from knowledge.config import StoreConfig

from telegram_server import FakeTelegram


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningBot:
    app: web.Application
    settings: Settings
    url: str  # the aiohttp server, e.g. http://127.0.0.1:PORT


@asynccontextmanager
async def running_bot(
    tg: FakeTelegram, db_path: Path | None, port: int | None = None, **settings: Any
) -> AsyncIterator[RunningBot]:
    port = port or free_port()
    values: dict[str, Any] = {
        "telegram_token": tg.token,
        "telegram_base_url": tg.base_url,
        "telegram_base_file_url": tg.base_file_url,
        "web_port": port,
    }
    if db_path is not None:
        values["store"] = StoreConfig(sqlite_path=db_path)
    values.update(settings)
    config = Settings(**values)
    app = build_web_app(build_assistant(config))
    runner = web.AppRunner(app, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield RunningBot(app, config, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def text_of(message: dict) -> str:
    return message.get("text") or message.get("caption") or ""


def buttons_of(message: dict) -> list[str]:
    """The callback_data of every inline button under a message."""
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data", "") for row in markup.get("inline_keyboard", []) for b in row]


async def replies_after(tg: FakeTelegram, user, before: int, count: int = 1, timeout=30.0):
    """The bot's messages to `user` after the first `before` ones, once there are `count`."""
    messages = await tg.wait_for_messages(user.id, before + count, timeout=timeout)
    return messages[before:]
