"""Admin commands in the chat (/stats, /reload, /feedback): the logic on a seeded SQLite store,
the conversation's admin gate and analysis records, and Telegram end to end."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from bot.admin_commands import AdminCommands
from bot.conversation import Chatter, Conversation, user_key
from bot.texts import default_texts
from diagnosis.bundle import BUNDLED_MODEL_DIR, load_bundle
from diagnosis.serving.postprocess import Prediction, RankedLabel
from knowledge.models import AnalysisRecord, Condition, FaqEntry, Feedback, Triage
from knowledge.resilient import ResilientKnowledge
from knowledge.seed import seed
from knowledge.store import StoreError
from knowledge.store.sqlite import SqliteStore

from helpers import image_bytes
from telegram_server import FakeTelegram
from telegram_support import replies_after, running_bot, text_of

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
ACNE_PHOTO = "acne/dermnet-0121064acd137936.jpg"


def make_condition(label: str) -> Condition:
    name = {"en": label.title(), "ko": f"{label} (한국어)"}
    return Condition(label, name, {"en": "About it.", "ko": "설명."}, Triage.SEE_DOCTOR)


def make_faq(entry_id: str, label: str | None = "acne", topic: str = "contagious") -> FaqEntry:
    questions = {"en": [f"{entry_id}?"], "ko": [f"{entry_id} 질문?"]}
    return FaqEntry(entry_id, label, topic, questions, {"en": "Answer.", "ko": "답변."})


def ago(**delta: float) -> str:
    return (NOW - timedelta(**delta)).isoformat()


def record(number: int, at: str, label="acne", abstain=False, urgent=False, transport="tg"):
    return AnalysisRecord(f"a{number}", at, label, abstain, urgent, "lite0-224-v1", transport)


def feedback(number: int, at: str, label="acne", correct: bool | None = True, comment=""):
    return Feedback(f"f{number}", f"tg-user{number}", label, correct, "lite0-224-v1", at, comment)


@pytest.fixture
async def store(tmp_path):
    store = SqliteStore(tmp_path / "store.sqlite3")
    await seed(
        store,
        conditions=[make_condition("acne"), make_condition("eczema"), make_condition("melanoma")],
        faq=[make_faq("acne-contagious"), make_faq("privacy-photos", None, "privacy")],
        clinics=[],
    )
    for item in [
        record(1, ago(hours=1)),
        record(2, ago(hours=2), label="melanoma", urgent=True),
        record(3, ago(hours=23), abstain=True, transport="web"),
        record(4, ago(days=3), label="eczema"),
        record(5, ago(days=6, hours=23)),
        record(6, ago(days=8), urgent=True),  # older than a week: not counted
    ]:
        await store.record_analysis(item)
    for item in [
        feedback(1, ago(hours=1), correct=True),
        feedback(2, ago(hours=2), correct=False, comment="It was a <b>mosquito</b> bite & more"),
        feedback(3, ago(days=2), label="eczema", correct=True),
        feedback(4, ago(days=2, hours=1), correct=None),  # no answer: not counted
        feedback(5, ago(days=9), label="melanoma", correct=False),  # older than a week
    ]:
        await store.add_feedback(item)
    yield store
    await store.close()


@pytest.fixture
def admin(store) -> AdminCommands:
    return AdminCommands(store, ResilientKnowledge(store), default_texts(), clock=NOW.timestamp)


def section(text: str, heading: str) -> str:
    """The lines of one period of /stats (up to the next heading)."""
    return text.split(heading, 1)[1].split("<b>", 1)[0]


async def test_stats_over_the_last_day_and_week(admin):
    text = await admin.stats("en")
    day, week = section(text, "Last 24 hours"), section(text, "Last 7 days")
    assert "Photos analysed: 3 (Telegram 2, web chat 1)" in day
    assert "answers: 33%" in day  # 1 of 3 was "I can't tell"
    assert 'Urgent ("see a dermatologist soon"): 33%' in day
    assert "1 yes, 1 no" in day and "Acne: 👍 1 · 👎 1" in day and "Eczema" not in day
    assert "Photos analysed: 5 (Telegram 4, web chat 1)" in week
    assert "answers: 20%" in week and 'soon"): 20%' in week
    assert "2 yes, 1 no" in week
    assert week.index("Acne: 👍 1 · 👎 1") < week.index("Eczema: 👍 1 · 👎 0")
    assert "Melanoma:" not in week, "feedback older than a week is left out"
    assert "tg-user" not in text and "mosquito" not in text


async def test_stats_count_each_checklist_rule_fired(admin, store):
    fired = [["seven_point", "bleeding"], ["all_clear"], ["seven_point"]]
    for number, rules in enumerate(fired, start=10):
        answered = record(number, ago(hours=3), label="melanocytic_nevus", urgent=True)
        await store.record_analysis(dataclasses.replace(answered, checklist_rules=rules))
    await store.record_analysis(record(20, ago(days=2)))
    day = section(await admin.stats("en"), "Last 24 hours")
    assert (
        "Checklist rules fired: 7-point score 3+ 2, bleeding 1, all no: cancer tier lifted 1" in day
    )
    korean = section(await admin.stats("ko"), "최근 7일")
    assert "체크리스트 규칙 적용: 7점 체크리스트 3점 이상 2, 출혈 1" in korean


async def test_stats_in_korean_and_with_nothing_recorded(admin, tmp_path):
    korean = await admin.stats("ko")
    assert "분석한 사진: 3장 (텔레그램 2, 웹 채팅 1)" in korean
    assert "acne (한국어): 👍 1 · 👎 1" in korean  # the condition's Korean name
    empty_store = SqliteStore(tmp_path / "empty.sqlite3")
    try:
        empty = AdminCommands(empty_store, ResilientKnowledge(empty_store), default_texts())
        text = await empty.stats("en")
    finally:
        await empty_store.close()
    assert text.count("Photos analysed: 0") == 2 and "answers: –" in text


async def test_feedback_lists_the_latest_without_user_keys(admin):
    text = await admin.feedback("en")
    lines = text.split("\n")
    assert lines[1] == "• 2025-03-10 11:00 UTC · Acne · 👍 right · model lite0-224-v1"
    assert lines[2].startswith("• 2025-03-10 10:00 UTC · Acne · 👎 wrong")
    assert "It was a &lt;b&gt;mosquito&lt;/b&gt; bite &amp; more" in lines[3]
    assert "Eczema · 👍 right" in text and "no answer" in text and "Melanoma" in text
    assert "tg-user" not in text
    two = await admin.feedback("ko", limit=2)
    assert two.count("•") == 2 and "👎 틀림" in two and "최근 피드백" in two


async def test_reload_counts_what_is_loaded(admin, store):
    text = await admin.reload("en")
    assert "3 conditions and 2 FAQ entries" in text and "Reloaded" in text
    await store.save_faq(make_faq("eczema-duration", "eczema", "duration"), 0, "admin")
    assert "3 conditions and 3 FAQ entries" in await admin.reload("en")
    assert "질환 정보 3개, 자주 묻는 질문 3개" in await admin.reload("ko")
    await store.close()  # an outage: the last good content is still served
    down = await admin.reload("en")
    assert "Could not reach the store" in down and "3 conditions and 3 FAQ entries" in down
    assert "Sorry, I cannot reach my database" in await admin.stats("en")
    assert "Sorry, I cannot reach my database" in await admin.feedback("en")


# ---- the conversation: who may ask, and what a photo records ----------------------------------

ALICE = Chatter(user_key("secret", "tg", 1), "en")
WEB = Chatter(user_key("secret", "web", "session"), "ko")


class FixedPredictor:
    """Answers every photo with one prediction (no model needed to test the records)."""

    def __init__(self, label: str, abstain=False, urgent=False):
        top = (RankedLabel(label, label, label, 0.8), RankedLabel("eczema", "e", "e", 0.1))
        self.prediction = Prediction(top, {label: 0.8}, abstain, urgent, "test-model-1")
        self.card = load_bundle(BUNDLED_MODEL_DIR).card  # the intake decodes at its input size

    async def predict(self, image):
        return self.prediction


@pytest.fixture
def photo(dataset_dir: Path) -> bytes:
    return (dataset_dir / ACNE_PHOTO).read_bytes()


async def test_admin_commands_answer_only_admins(store):
    conversation = Conversation(store, ResilientKnowledge(store), None)
    [stats] = await conversation.command(ALICE, "/stats", is_admin=True)
    assert "Statistics" in stats.text
    [feedback] = await conversation.command(ALICE, "/feedback@skin_bot", is_admin=True)
    assert "Latest feedback" in feedback.text
    [reload] = await conversation.command(ALICE, "reload", is_admin=True)
    assert "3 conditions" in reload.text
    for name in ("stats", "reload", "feedback"):
        [reply] = await conversation.command(ALICE, f"/{name}")
        assert f"I don't know the command /{name}" in reply.text
    [help_reply] = await conversation.command(ALICE, "/help", is_admin=True)
    assert "What I can do" in help_reply.text


async def test_each_answered_photo_is_recorded_anonymously(store, photo):
    since = datetime.now(UTC).isoformat()
    melanoma = FixedPredictor("melanoma", urgent=True)
    conversation = Conversation(store, ResilientKnowledge(store), melanoma)
    await conversation.photo(ALICE, photo, photo_ref="file-1")
    conversation.predictor = FixedPredictor("acne", abstain=True)
    await conversation.photo(WEB, photo)
    blurry = image_bytes(
        Image.open(io.BytesIO(photo)).convert("RGB").filter(ImageFilter.GaussianBlur(6)), "JPEG"
    )
    [retake] = await conversation.photo(ALICE, blurry)  # a retake is no analysis
    assert "retake" in retake.text.lower() or "photo" in retake.text.lower()
    recorded = await store.list_analyses(since)
    assert [(r.label, r.abstain, r.urgent, r.transport) for r in recorded] == [
        ("melanoma", False, True, "tg"),
        ("acne", True, False, "web"),
    ]
    assert all(r.model_version == "test-model-1" for r in recorded)
    assert ALICE.key not in str(recorded) and "file-1" not in str(recorded)


async def test_a_store_error_while_recording_does_not_lose_the_answer(store, photo):
    class RecordsDown:
        def __init__(self, store):
            self._store = store

        def __getattr__(self, name):
            return getattr(self._store, name)

        async def record_analysis(self, record):
            raise StoreError("analyses unavailable")

    down = RecordsDown(store)
    conversation = Conversation(down, ResilientKnowledge(down), FixedPredictor("acne"))
    result, *_checklist = await conversation.photo(ALICE, photo)  # eczema 10 %: rash questions
    assert "Acne" in result.text and result.buttons


# ---- Telegram end to end ------------------------------------------------------------------------


async def test_telegram_admin_gets_stats_and_others_do_not(tmp_path, photo):
    async with FakeTelegram() as tg:
        admin, other = tg.user(language_code="en"), tg.user(language_code="ko")
        ids = frozenset({admin.id})
        async with running_bot(tg, tmp_path / "db.sqlite3", admin_telegram_ids=ids):
            tg.send_photo(admin, photo)
            await tg.wait_for_messages(admin.id, 1, timeout=60)
            tg.send_command(admin, "/stats")
            [stats] = await replies_after(tg, admin, 1, 1, timeout=15)
            assert "Statistics" in text_of(stats)
            assert "Photos analysed: 1 (Telegram 1)" in text_of(stats)

            tg.send_command(other, "/stats")
            [refused] = await tg.wait_for_messages(other.id, 1, timeout=15)
            assert "/stats 는 모르는 명령어예요" in text_of(refused)
            assert "통계" not in text_of(refused)
        assert not tg.bad_requests and not tg.unknown_calls
