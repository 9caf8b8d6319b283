"""End to end (real python-telegram-bot over HTTP against FakeTelegram): places typed at any
point of the conversation, places with no known clinic, and follow-up questions that only the
sentence encoder understands, in English and Korean."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.web.keys import ASSISTANT

from telegram_support import replies_after, running_bot, text_of

ACNE_PHOTO = "acne/dermnet-0121064acd137936.jpg"
BUSAN_LAT = 35.16  # the sample clinics in Busan are all within 0.2 degrees of this


@pytest.fixture
async def bot(tg, tmp_path):
    # A busy test machine may take more than the default second to encode a question.
    async with running_bot(tg, tmp_path / "db.sqlite3", faq_encoding_wait_s=30.0) as running:
        # The FAQ's phrasings are encoded in the background at start-up: wait for it, so that
        # the questions below are matched by meaning and not only by words.
        await running.app[ASSISTANT].warming
        yield running


async def ask(tg, user, text: str, count: int = 1) -> list[dict]:
    before = len(tg.messages_to(user.id))
    tg.send_text(user, text)
    return await replies_after(tg, user, before, count, timeout=30)


async def test_a_city_typed_right_after_a_result_lists_its_clinics(tg, bot, dataset_dir: Path):
    user = tg.user(language_code="en")
    before = len(tg.messages_to(user.id))
    tg.send_photo(user, (dataset_dir / ACNE_PHOTO).read_bytes())
    await replies_after(tg, user, before, 1, timeout=60)

    mark = tg.mark()
    [listing] = await ask(tg, user, "Busan")
    assert "clinics near Busan" in text_of(listing)
    assert "☎️" in text_of(listing) and "Sorry" not in text_of(listing)
    venue = await tg.wait_for("sendVenue", since=mark, timeout=15)
    assert abs(float(venue.params["latitude"]) - BUSAN_LAT) < 0.3


@pytest.mark.parametrize(
    ("language", "text", "place"),
    [
        ("en", "find a dermatologist in Busan", "Busan"),
        ("en", "where is a dermatologist near Gangnam", "Gangnam-gu, Seoul"),
        ("ko", "강남역 근처 피부과 알려줘", "서울 강남구"),
        ("ko", "부산", "부산"),
    ],
)
async def test_a_place_asked_for_anywhere_gets_clinics(tg, bot, language, text, place):
    user = tg.user(language_code=language)
    [listing] = await ask(tg, user, text)
    assert place in text_of(listing) and "km" in text_of(listing)


@pytest.mark.parametrize(
    ("language", "text", "expected"),
    [
        ("en", "Jeju", ["near Jeju", "is Gwangju (about"]),
        ("ko", "제주도 피부과 있어요?", ["제주 근처", "곳은 광주(약"]),
        ("en", "find a dermatologist in Xyz", ["near Xyz yet"]),
    ],
)
async def test_an_unknown_place_says_so_and_what_to_do(tg, bot, language, text, expected):
    user = tg.user(language_code=language)
    [reply] = await ask(tg, user, text)
    for part in expected:
        assert part in text_of(reply)
    keyboard = tg.reply_keyboard(user.id)
    assert keyboard is not None and keyboard["keyboard"][0][0].get("request_location") is True


async def test_a_question_with_a_place_word_still_gets_the_faq(tg, bot):
    user = tg.user(language_code="ko")
    # "수성" is water-based here, not Suseong-gu (Daegu).
    [reply] = await ask(tg, user, "여드름에 수성 연고 써도 되나요?")
    assert "km" not in text_of(reply) and "스테로이드" in text_of(reply)


@pytest.mark.parametrize(
    ("language", "question", "after_photo", "expected"),
    [
        ("en", "how long does benzoyl peroxide take to work?", False, "6 to 12 weeks"),
        ("en", "can I use hydrocortisone?", True, "hydrocortisone"),
        ("ko", "아토피 보습제는 어떤 게 좋아요?", False, "보습제"),
        ("ko", "점이 커지면 어떻게 해야 하나요?", False, "커지거나"),
    ],
)
async def test_new_questions_are_understood_in_both_languages(
    tg, bot, dataset_dir, language, question, after_photo, expected
):
    user = tg.user(language_code=language)
    if after_photo:  # a follow-up to an acne result
        before = len(tg.messages_to(user.id))
        tg.send_photo(user, (dataset_dir / ACNE_PHOTO).read_bytes())
        await replies_after(tg, user, before, 1, timeout=60)
    [answer] = await ask(tg, user, question)
    assert expected in text_of(answer)
    assert "don't have an answer" not in text_of(answer)
    assert "답을 드리기 어려워요" not in text_of(answer)
