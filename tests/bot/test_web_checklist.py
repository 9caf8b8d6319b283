"""The web chat offers the same checklist: its HTTP API end to end (the real app, the bundled
model, a real SQLite store), a real photo the model reads as eczema with melanoma 6 %."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import FormData

from bot.app import build_assistant
from bot.settings import Settings
from bot.web.app import build_web_app
from knowledge.checklist import PIGMENTED, QUESTIONS
from knowledge.config import StoreConfig

ECZEMA_MELANOMA_POSSIBLE = "eczema/dermnet-02358d75ea987d22.jpg"


@pytest.fixture
async def client(aiohttp_client_factory, tmp_path):
    settings = Settings(store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3"))
    client = await aiohttp_client_factory(build_web_app(build_assistant(settings)))
    assert (await client.get("/?lang=en")).status == 200  # the session cookie
    return client


async def post(client, **fields) -> list[dict]:
    response = await client.post("/api/chat", json=fields)
    assert response.status == 200, await response.text()
    return (await response.json())["replies"]


def choices(reply: dict) -> dict[str, str]:
    """A checklist question's buttons by answer: {"yes": "check:<id>:size:yes", ...}."""
    return {b["action"].rsplit(":", 1)[1]: b["action"] for row in reply["buttons"] for b in row}


@pytest.mark.parametrize(
    ("lang", "answers", "first", "outcome"),
    [
        ("en", {"bleeding": "yes"}, "Has it changed in size", "it bleeds"),
        ("ko", {}, "크기가 변했나요", "피부암 가능성이 낮아집니다"),
    ],
)
async def test_the_web_chat_asks_the_checklist_and_changes_the_advice(
    client, dataset_dir: Path, lang, answers, first, outcome
):
    form = FormData()
    form.add_field("kind", "photo")
    form.add_field("lang", lang)
    photo = (dataset_dir / ECZEMA_MELANOMA_POSSIBLE).read_bytes()
    form.add_field("photo", photo, filename="spot.jpg", content_type="image/jpeg")
    response = await client.post("/api/chat", data=form)
    *answer, question = (await response.json())["replies"]
    assert answer and first in question["text"]
    assert list(choices(question)) == ["yes", "no", "unsure", "skip"]
    for question_id in QUESTIONS[PIGMENTED]:
        pick = choices(question)[answers.get(question_id, "no")]
        [question] = await post(client, kind="button", action=pick, lang=lang)
    assert outcome in question["text"] and not question["buttons"]
