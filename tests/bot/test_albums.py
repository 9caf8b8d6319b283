"""Several photos of one case (a Telegram album, or several photos in one web upload), answered
once: below the transports, over real PTB against FakeTelegram, and through the web chat's API.
The bundled model on ONNX Runtime, real photos from the shared dataset, a real SQLite store."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from aiohttp import FormData
from PIL import Image, ImageFilter

from bot.app import build_assistant
from bot.conversation import Chatter, Conversation, Reply, user_key
from bot.settings import Settings
from bot.web.app import build_web_app
from bot.web.keys import ASSISTANT
from diagnosis.bundle import BUNDLED_MODEL_DIR
from diagnosis.intake import open_photo
from diagnosis.serving import OnnxBackend, Predictor
from knowledge.config import StoreConfig
from knowledge.resilient import ResilientKnowledge

from helpers import image_bytes
from telegram_server import FakeTelegram
from telegram_support import buttons_of, replies_after, running_bot, text_of

ACNE_PHOTOS = ("acne/dermnet-0121064acd137936.jpg", "acne/dermnet-01fca6939cd391ec.jpg")
ALICE = Chatter(user_key("test-secret", "tg", 2001), "en")
BORA = Chatter(user_key("test-secret", "tg", 2002), "ko")


@pytest.fixture(scope="module")
def photos(dataset_dir: Path) -> list[bytes]:
    return [(dataset_dir / name).read_bytes() for name in ACNE_PHOTOS]


def blurred(data: bytes) -> bytes:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    return image_bytes(image.filter(ImageFilter.GaussianBlur(radius=6)), "JPEG", quality=92)


@pytest.fixture
async def predictor():
    predictor = Predictor(OnnxBackend(BUNDLED_MODEL_DIR), max_wait_ms=0)
    yield predictor
    await predictor.close()


def replica(store, predictor) -> Conversation:
    return Conversation(store, ResilientKnowledge(store), predictor)


async def single_probabilities(predictor, data: bytes) -> dict[str, float]:
    return (await predictor.predict(open_photo(data))).probabilities


def actions(reply: Reply) -> list[str]:
    return [button.action for row in reply.buttons for button in row]


# ---- below the transports ------------------------------------------------------------------


async def test_an_album_is_answered_once_with_the_mean_and_a_blurry_photo_left_out(
    store, predictor, photos
):
    conversation = replica(store, predictor)
    sent = [("file-1", photos[0]), ("file-2", blurred(photos[0])), ("file-3", photos[1])]
    ids = []
    for ref, data in sent:
        photo_id, now = await conversation.album_photo(ALICE, "album-1", data, ref)
        assert now == []  # nothing until the album is complete
        ids.append(photo_id)
    # Each photo's turn asks for the answer after the wait: only the last photo's gets it.
    assert await conversation.answer_album(ALICE, "album-1", ids[0]) == []
    assert await conversation.answer_album(ALICE, "album-1", ids[1]) == []
    [reply] = await conversation.answer_album(ALICE, "album-1", ids[2])
    assert "I looked at your 2 photos together" in reply.text
    assert "Photo 2 left out: blurry" in reply.text
    assert (
        "Most likely" in reply.text
        and "not a diagnosis: an automatic guess from 2 photos" in reply.text
    )

    state = await store.get_user(ALICE.key)
    result = state.last_result
    assert result["photo_refs"] == ["file-1", "file-3"]
    singles = [await single_probabilities(predictor, data) for data in (photos[0], photos[1])]
    for item in result["top"]:
        mean = (singles[0][item["label"]] + singles[1][item["label"]]) / 2
        assert item["prob"] == pytest.approx(mean, abs=1e-4)
    summed = {label: singles[0][label] + singles[1][label] for label in singles[0]}
    assert result["label"] == max(summed, key=summed.get)
    # A heatmap button per photo used, each fetching its own photo again.
    rid = result["id"]
    assert [a for a in actions(reply) if a.startswith("gradcam")] == [
        f"gradcam:{rid}.0",
        f"gradcam:{rid}.1",
    ]
    fetched = []

    async def load_photo(ref: str | None) -> bytes | None:
        fetched.append(ref)
        return dict(sent)[ref]

    [heatmap] = await conversation.button(ALICE, f"gradcam:{rid}.1", load_photo)
    assert heatmap.photo.startswith(b"\x89PNG") and fetched == ["file-3"]
    [missing] = await conversation.button(ALICE, f"gradcam:{rid}.5", load_photo)
    assert missing.photo is None and fetched == ["file-3"]
    # Answered: the album's photos are gone from the store; one analysis for the statistics.
    assert await store.album_photos(ALICE.key, "album-1") == []
    assert len(await store.list_analyses("2000-01-01T00:00:00Z")) == 1


async def test_an_albums_photos_are_numbered_as_sent_whatever_order_they_arrive_in(
    store, predictor, photos
):
    """Telegram's updates of one album are handled concurrently: they may reach the store in
    another order than they were sent. The answer numbers them by their message ids."""
    conversation = replica(store, predictor)
    arrivals = [
        (11, "file-1", photos[0]),
        (13, "file-3", photos[1]),
        (12, "file-2", blurred(photos[0])),  # sent second, arrived last
    ]
    ids = [
        (await conversation.album_photo(ALICE, "album-2", data, ref, sequence=message_id))[0]
        for message_id, ref, data in arrivals
    ]
    [reply] = await conversation.answer_album(ALICE, "album-2", ids[-1])  # the last to arrive
    assert "Photo 2 left out: blurry" in reply.text
    state = await store.get_user(ALICE.key)
    assert state.last_result["photo_refs"] == ["file-1", "file-3"]


async def test_the_photos_of_one_album_on_two_replicas_get_one_answer(store, predictor, photos):
    first, second = replica(store, predictor), replica(store, predictor)
    turns = [(first, photos[0]), (second, photos[1]), (first, photos[0])]
    ids = [
        (where, (await where.album_photo(BORA, "77", data, f"ref-{n}"))[0])
        for n, (where, data) in enumerate(turns)
    ]
    answers = [await where.answer_album(BORA, "77", photo_id) for where, photo_id in ids]
    assert [len(replies) for replies in answers] == [0, 0, 1]
    [reply] = answers[2]
    assert "보내 주신 사진 3장을 함께 살펴봤어요" in reply.text  # Korean, BORA's language
    assert "사진 3장으로 자동 추정한 것이며" in reply.text


async def test_an_album_of_only_blurry_photos_asks_for_a_retake(store, predictor, photos):
    conversation = replica(store, predictor)
    ids = [(await conversation.album_photo(ALICE, "g", blurred(data), None))[0] for data in photos]
    [reply] = await conversation.answer_album(ALICE, "g", ids[-1])
    assert "blurry" in reply.text and "take it again" in reply.text
    assert (await store.get_user(ALICE.key)).last_result is None


# ---- Telegram: an album sent with sendMediaGroup, over real PTB -----------------------------


async def test_a_telegram_album_gets_one_answer_with_a_heatmap_per_photo(tmp_path, photos):
    async with FakeTelegram() as tg, running_bot(tg, tmp_path / "db.sqlite3") as bot:
        user = tg.user(language_code="en")
        tg.send_media_group(user, [photos[0], blurred(photos[1]), photos[1]], caption="my chin")
        [result] = await replies_after(tg, user, 0, 1, timeout=60)
        text = text_of(result)
        assert "I looked at your 2 photos together" in text
        assert "Photo 2 left out: blurry" in text
        heatmaps = [a for a in buttons_of(result) if a.startswith("gradcam:")]
        assert len(heatmaps) == 2
        # The other photos' turns end in silence: a later message is the next thing the user
        # gets, and the album was analysed once.
        await asyncio.sleep(2 * bot.app[ASSISTANT].conversation.album_wait_s)
        tg.send_command(user, "/help")
        [_, help_reply] = await replies_after(tg, user, 0, 2, timeout=30)
        assert "/privacy" in text_of(help_reply)
        store = bot.app[ASSISTANT].store
        assert len(await store.list_analyses("2000-01-01T00:00:00Z")) == 1

        # "Where did it look?" for the album's second photo used: its own file is fetched.
        mark = tg.mark()
        tg.press_button(user, result, heatmaps[1])
        call = await tg.wait_for("sendPhoto", since=mark, timeout=60)
        assert call.upload.startswith(b"\x89PNG")
        [get_file] = [c for c in tg.calls("getFile") if c in tg.sent[mark:]]
        assert tg.file_bytes(get_file.params["file_id"]) == photos[1]
        assert not tg.bad_requests and not tg.unknown_calls


# ---- the web chat: several photos in one upload ------------------------------------------------


async def test_the_web_chat_answers_several_photos_once(aiohttp_client_factory, tmp_path, photos):
    settings = Settings(store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3"))
    client = await aiohttp_client_factory(build_web_app(build_assistant(settings)))
    assert (await client.get("/?lang=ko")).status == 200
    form = FormData()
    form.add_field("kind", "photo")
    form.add_field("lang", "ko")
    for number, data in enumerate([photos[0], photos[1], blurred(photos[0])]):
        form.add_field("photo", data, filename=f"{number}.jpg", content_type="image/jpeg")
    response = await client.post("/api/chat", data=form)
    assert response.status == 200, await response.text()
    [reply] = (await response.json())["replies"]
    assert "보내 주신 사진 2장을 함께 살펴봤어요" in reply["text"]
    assert "3번 사진은 뺐어요: 흐려요" in reply["text"]
    heatmaps = [b["action"] for row in reply["buttons"] for b in row if "gradcam" in b["action"]]
    assert [action.rsplit(".", 1)[1] for action in heatmaps] == ["0", "1"]

    # The page sends the photo of the pressed button again (the server keeps none).
    form = FormData()
    for key, value in {"kind": "button", "action": heatmaps[1], "lang": "ko"}.items():
        form.add_field(key, value)
    form.add_field("photo", photos[1], filename="1.jpg", content_type="image/jpeg")
    response = await client.post("/api/chat", data=form)
    [heatmap] = (await response.json())["replies"]
    assert heatmap["photo"].startswith("data:image/png;base64,")
