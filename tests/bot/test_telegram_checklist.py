"""End to end over real python-telegram-bot and HTTP (FakeTelegram): photo -> the checklist, one
question a message with inline buttons -> one line saying how the answers changed the advice.

A real photo the bundled model reads as eczema with melanoma 6 %: "a skin cancer can't be ruled
out" (the same photo as test_telegram_e2e.py's possible-cancer test)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.conversation import user_key
from bot.web.keys import ASSISTANT
from knowledge.checklist import PIGMENTED, QUESTIONS

from telegram_support import buttons_of, replies_after, text_of

ECZEMA_MELANOMA_POSSIBLE = "eczema/dermnet-02358d75ea987d22.jpg"


def is_question(message: dict) -> bool:
    return any(data.startswith("check:") for data in buttons_of(message))


async def photo_then_first_question(tg, user, photo: bytes) -> tuple[str, dict]:
    """The answer to a photo (text, possibly in parts) and the question message after it."""
    before = len(tg.messages_to(user.id))
    tg.send_photo(user, photo)
    count = 1
    while True:
        messages = await replies_after(tg, user, before, count, timeout=60)
        if is_question(messages[-1]):
            return "\n".join(text_of(m) for m in messages[:-1]), messages[-1]
        count += 1


async def answer(tg, user, question: dict, choice: str) -> dict:
    """Press `choice` ("yes", "no", "unsure", "skip") under `question`; the bot's next message."""
    [data] = [d for d in buttons_of(question) if d.endswith(f":{choice}")]
    before = len(tg.messages_to(user.id))
    tg.press_button(user, question, data)
    [reply] = await replies_after(tg, user, before, 1, timeout=15)
    return reply


@pytest.mark.parametrize(
    ("language", "answers", "outcome", "tier"),
    [
        ("en", {}, "Your answers make a skin cancer less likely", ""),
        ("ko", {"size": "yes", "colour": "yes"}, "2주 이내에 피부과 전문의", "likely"),
    ],
)
async def test_photo_checklist_changed_advice(
    tg, bot, dataset_dir: Path, language, answers, outcome, tier
):
    user = tg.user(language_code=language)
    photo = (dataset_dir / ECZEMA_MELANOMA_POSSIBLE).read_bytes()
    text, question = await photo_then_first_question(tg, user, photo)
    assert ("can't be ruled out" if language == "en" else "배제할 수 없어요") in text
    for number, question_id in enumerate(QUESTIONS[PIGMENTED], start=1):
        assert f"{number}/8" in text_of(question)
        assert len(buttons_of(question)) == 4  # Yes / No / Not sure / Skip
        question = await answer(tg, user, question, answers.get(question_id, "no"))
    assert outcome in text_of(question) and not buttons_of(question)
    key = user_key(bot.settings.telegram_token, "tg", user.id)
    state = await bot.app[ASSISTANT].store.get_user(key)
    assert state.last_result["cancer_tier"] == tier
    assert not tg.bad_requests


async def test_skip_ends_the_questions_at_once(tg, bot, dataset_dir: Path):
    user = tg.user(language_code="en")
    photo = (dataset_dir / ECZEMA_MELANOMA_POSSIBLE).read_bytes()
    _, question = await photo_then_first_question(tg, user, photo)
    reply = await answer(tg, user, question, "skip")
    assert text_of(reply) == "No answers: the advice above stands."
    assert not tg.bad_requests
