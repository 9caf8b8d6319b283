"""Fixtures shared by the bot's tests: a real SQLite store seeded with the shipped content, the
local Bot API server, and the bot running against it (a module may define its own instead)."""

from __future__ import annotations

import pytest

from knowledge.seed import seed
from knowledge.store.sqlite import SqliteStore

from telegram_server import FakeTelegram
from telegram_support import running_bot


@pytest.fixture
async def store(tmp_path):
    store = SqliteStore(tmp_path / "store.sqlite3")
    await store.connect()
    await seed(store)
    yield store
    await store.close()


@pytest.fixture
async def tg():
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def bot(tg, tmp_path):
    async with running_bot(tg, tmp_path / "db.sqlite3") as running:
        yield running
