"""End to end: the real python-telegram-bot Application over HTTP against a local Bot API server.

Each test starts the whole assistant (as `python -m bot` does) with TELEGRAM_BASE_URL pointed at
FakeTelegram, plays a user, and checks what the bot sent: texts, keyboards, photos, venues.
The bundled model and real photos from the shared dataset are used throughout.
"""

from __future__ import annotations

import io
from pathlib import Path

import aiohttp
import pytest
from PIL import Image, ImageFilter

from bot.conversation import user_key
from bot.web.keys import ASSISTANT

from telegram_support import buttons_of, free_port, replies_after, running_bot, text_of

ACNE_PHOTO = "acne/dermnet-0121064acd137936.jpg"
MELANOMA_LAT, MELANOMA_LON = 37.4986, 127.0284  # Gangnam, next to the sample clinics


@pytest.fixture
def acne_photo(dataset_dir: Path) -> bytes:
    return (dataset_dir / ACNE_PHOTO).read_bytes()


def chatter_key(bot, user) -> str:
    return user_key(bot.settings.telegram_token, "tg", user.id)


async def result_label(bot, user) -> str:
    state = await bot.app[ASSISTANT].store.get_user(chatter_key(bot, user))
    return state.last_result["label"]


async def send_photo_and_get_result(tg, user, photo: bytes) -> dict:
    before = len(tg.messages_to(user.id))
    tg.send_photo(user, photo)
    [result] = await replies_after(tg, user, before, 1, timeout=60)
    return result


async def test_start_in_the_users_language(tg, bot):
    alice = tg.user(first_name="Alice", language_code="en")
    minsu = tg.user(first_name="민수", language_code="ko")
    tg.send_command(alice, "/start")
    tg.send_command(minsu, "/start")
    [english] = await tg.wait_for_messages(alice.id, 1, timeout=15)
    [korean] = await tg.wait_for_messages(minsu.id, 1, timeout=15)
    assert "skin-care assistant" in text_of(english)
    assert "not a diagnosis" in text_of(english)
    assert "close" in text_of(english).lower()  # how to take a good photo
    assert "피부 관리 도우미" in text_of(korean) and "진단이 아닙니다" in text_of(korean)
    assert not tg.bad_requests and not tg.unknown_calls


async def test_a_real_photo_gets_a_result_with_buttons_and_a_heatmap(tg, bot, acne_photo):
    user = tg.user(language_code="en")
    mark = tg.mark()
    result = await send_photo_and_get_result(tg, user, acne_photo)
    # The user saw "typing..." before the answer.
    action = await tg.wait_for("sendChatAction", since=mark)
    answer = await tg.wait_for("sendMessage", since=mark)
    assert action.time <= answer.time
    text = text_of(result)
    assert "Top 3" in text and "%" in text and "not a diagnosis" in text
    # On a phone the first lines are what is read: the answer, how urgent, the next step.
    headline, urgency = text.splitlines()[:2]
    assert headline.startswith("Most likely: Acne")
    assert urgency.startswith("Not urgent. Next step") and "First-line care" not in text
    actions = buttons_of(result)
    assert {a.split(":")[0] for a in actions} == {
        "gradcam",
        "care",
        "more",
        "clinic",
        "feedback",
    }

    # "Where did it look?" downloads the photo again and sends the Grad-CAM heatmap.
    gradcam = next(a for a in actions if a.startswith("gradcam:"))
    mark = tg.mark()
    update = tg.press_button(user, result, gradcam)
    call = await tg.wait_for("sendPhoto", since=mark, timeout=60)
    png = call.upload
    assert png.startswith(b"\x89PNG")
    assert Image.open(io.BytesIO(png)).size[0] >= 100
    assert "Where the model looked" in call.params.get("caption", "")
    assert tg.callback_answer(update) is not None  # the button's spinner was stopped

    # "Care tips" sends the condition's care content, with its sources.
    mark = tg.mark()
    tg.press_button(user, result, next(a for a in actions if a.startswith("care:")))
    await tg.wait_for(
        lambda c: c.ok and "not a diagnosis" in c.params.get("text", ""), since=mark, timeout=15
    )
    care = "\n".join(c.params["text"] for c in tg.calls("sendMessage") if c in tg.sent[mark:])
    assert "care tips" in care and "Sources" in care and "Red flags" in care

    # "More" sends the long sections: first-line care, red flags, sources.
    before = len(tg.messages_to(user.id))
    tg.press_button(user, result, next(a for a in actions if a.startswith("more:")))
    [more] = await replies_after(tg, user, before, 1, timeout=15)
    assert "First-line care" in text_of(more) and "Sources" in text_of(more)

    # "Was this right?" stores feedback and thanks the user.
    before = len(tg.messages_to(user.id))
    tg.press_button(user, result, next(a for a in actions if a.startswith("feedback:yes")))
    [thanks] = await replies_after(tg, user, before, 1, timeout=15)
    assert "Thank you" in text_of(thanks)
    [feedback] = await bot.app[ASSISTANT].store.list_feedback()
    assert feedback.correct is True and feedback.label == await result_label(bot, user)
    assert not tg.bad_requests and not tg.unknown_calls


async def test_a_blurry_photo_gets_retake_advice(tg, bot, acne_photo):
    user = tg.user(language_code="en")
    image = Image.open(io.BytesIO(acne_photo)).convert("RGB").filter(ImageFilter.GaussianBlur(6))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    reply = await send_photo_and_get_result(tg, user, buffer.getvalue())
    text = text_of(reply)
    assert "blurry" in text and "take it again" in text
    assert "Top 3" not in text and not buttons_of(reply)


async def test_a_non_image_document_is_refused_clearly(tg, bot):
    user = tg.user(language_code="ko")
    before = len(tg.messages_to(user.id))
    tg.send_document(user, b"%PDF-1.4 not a photo", file_name="report.pdf")
    [reply] = await replies_after(tg, user, before, 1, timeout=15)
    assert "이미지가 아니에요" in text_of(reply)


async def test_an_image_sent_as_a_file_is_analysed(tg, bot, acne_photo):
    user = tg.user(language_code="en")
    before = len(tg.messages_to(user.id))
    tg.send_document(user, acne_photo, file_name="spot.jpg", mime_type="image/jpeg")
    [reply] = await replies_after(tg, user, before, 1, timeout=60)
    assert "Top 3" in text_of(reply) or "can't tell" in text_of(reply)


async def test_stickers_and_unknown_commands_get_a_helpful_reply(tg, bot):
    user = tg.user(language_code="en")
    tg.send_sticker(user)
    [sticker_reply] = await tg.wait_for_messages(user.id, 1, timeout=15)
    assert "stickers" in text_of(sticker_reply) and "photo" in text_of(sticker_reply)
    tg.send_command(user, "/frobnicate")
    [_, unknown] = await tg.wait_for_messages(user.id, 2, timeout=15)
    assert "/frobnicate" in text_of(unknown) and "/help" in text_of(unknown)


async def test_find_a_clinic_by_location_sends_venues(tg, bot, acne_photo):
    user = tg.user(language_code="en")
    result = await send_photo_and_get_result(tg, user, acne_photo)
    clinic = next(a for a in buttons_of(result) if a.startswith("clinic:"))
    before = len(tg.messages_to(user.id))
    tg.press_button(user, result, clinic)
    [ask] = await replies_after(tg, user, before, 1, timeout=15)
    keyboard = tg.reply_keyboard(user.id)
    assert keyboard is not None
    assert keyboard["keyboard"][0][0].get("request_location") is True
    assert "location" in text_of(ask)

    mark = tg.mark()
    tg.send_location(user, MELANOMA_LAT, MELANOMA_LON)
    await tg.wait_for("sendVenue", since=mark, timeout=15)
    listing = await tg.wait_for(
        lambda c: c.ok and c.method == "sendMessage" and "km" in c.params.get("text", ""),
        since=mark,
        timeout=15,
    )
    assert "Dermatology" in listing.params["text"] and "☎️" in listing.params["text"]
    venues = [c for c in tg.sent[mark:] if c.method == "sendVenue" and c.ok]
    assert venues and all(abs(float(c.params["latitude"]) - MELANOMA_LAT) < 0.1 for c in venues)


async def test_a_typed_district_finds_clinics_in_korean(tg, bot):
    user = tg.user(language_code="ko")
    tg.send_command(user, "/clinics")
    [ask] = await tg.wait_for_messages(user.id, 1, timeout=15)
    assert "위치" in text_of(ask)
    mark = tg.mark()
    tg.send_text(user, "해운대구")
    await tg.wait_for("sendVenue", since=mark, timeout=15)
    listing = next(c for c in tg.sent[mark:] if c.method == "sendMessage")
    assert "피부과" in listing.params["text"] and "km" in listing.params["text"]


async def test_follow_up_questions_in_english_and_korean(tg, bot, acne_photo):
    user = tg.user(language_code="en")
    await send_photo_and_get_result(tg, user, acne_photo)
    before = len(tg.messages_to(user.id))
    tg.send_text(user, "is it contagious?")
    [english] = await replies_after(tg, user, before, 1, timeout=15)
    assert "your last result" in text_of(english) and "contagious" in text_of(english)
    tg.send_text(user, "스테로이드 연고 써도 되나요?")
    [korean] = await replies_after(tg, user, before + 1, 1, timeout=15)
    assert "스테로이드" in text_of(korean) and "마지막 결과" in text_of(korean)
    tg.send_text(user, "what's the weather tomorrow in Paris?")
    [nothing] = await replies_after(tg, user, before + 2, 1, timeout=15)
    assert "don't have an answer" in text_of(nothing)


async def test_replies_survive_429_and_network_errors(tg, bot):
    user = tg.user(language_code="en")
    tg.fail_next("sendMessage", times=2, error_code=429, retry_after=1)
    tg.send_command(user, "/help")
    [reply] = await tg.wait_for_messages(user.id, 1, timeout=20)
    assert "What I can do" in text_of(reply)
    failures = [c for c in tg.sent if c.method == "sendMessage" and not c.ok]
    assert len(failures) == 2  # refused twice, delivered on the third try

    tg.drop_next("sendMessage", times=1)
    tg.send_command(user, "/privacy")
    [_, privacy] = await tg.wait_for_messages(user.id, 2, timeout=20)
    assert "Privacy" in text_of(privacy)


async def test_forget_deletes_what_the_bot_keeps(tg, bot, acne_photo):
    user = tg.user(language_code="en")
    result = await send_photo_and_get_result(tg, user, acne_photo)
    before = len(tg.messages_to(user.id))
    tg.send_command(user, "/forget")
    [done] = await replies_after(tg, user, before, 1, timeout=15)
    assert "deleted everything" in text_of(done)
    assert await bot.app[ASSISTANT].store.get_user(chatter_key(bot, user)) is None
    tg.press_button(user, result, next(a for a in buttons_of(result) if a.startswith("care:")))
    [stale] = await replies_after(tg, user, before + 1, 1, timeout=15)
    assert "older answer" in text_of(stale)


async def test_language_command_switches_language(tg, bot):
    user = tg.user(language_code="en")
    tg.send_command(user, "/language")
    [choice] = await tg.wait_for_messages(user.id, 1, timeout=15)
    tg.press_button(user, choice, "lang:ko")
    [_, done] = await tg.wait_for_messages(user.id, 2, timeout=15)
    assert "한국어" in text_of(done)
    tg.send_command(user, "/help")
    [*_, help_reply] = await tg.wait_for_messages(user.id, 3, timeout=15)
    assert "할 수 있는 일" in text_of(help_reply)


async def test_webhook_mode_checks_the_secret(tg, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram/hook"
    async with running_bot(tg, tmp_path / "db.sqlite3", port=port, webhook_url=url) as running:
        assert tg.webhook_info()["url"] == url
        user = tg.user(language_code="en")
        update_id = tg.send_command(user, "/start")
        [welcome] = await tg.wait_for_messages(user.id, 1, timeout=15)
        assert "skin-care assistant" in text_of(welcome)
        assert tg.is_consumed(update_id)

        body = {
            "update_id": 999,
            "message": {
                "message_id": 5,
                "date": 0,
                "chat": {"id": user.id, "type": "private"},
                "from": user.to_dict(),
                "text": "/help",
                "entities": [{"type": "bot_command", "offset": 0, "length": 5}],
            },
        }
        mark = tg.mark()
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"X-Telegram-Bot-Api-Secret-Token": "wrong"}):
                async with session.post(url, json=body, headers=headers) as response:
                    assert response.status == 403
            secret = running.settings.webhook_secret
            headers = {"X-Telegram-Bot-Api-Secret-Token": secret}
            async with session.post(url, json=body, headers=headers) as response:
                assert response.status == 200
        # Only the update with the right secret was processed: exactly one /help answer.
        call = await tg.wait_for("sendMessage", since=mark, timeout=15)
        assert "What I can do" in call.params["text"]
        helps = [c for c in tg.sent[mark:] if c.method == "sendMessage"]
        assert len(helps) == 1


async def test_a_reply_telegram_would_refuse_goes_out_as_plain_text(tg, bot):
    from bot.web.keys import TELEGRAM

    user = tg.user(language_code="en")
    tg.send_command(user, "/start")  # the user writes first: the bot may answer
    await tg.wait_for_messages(user.id, 1, timeout=15)
    mark = tg.mark()
    # An unclosed tag and a bare "<" (a broken template): Telegram would refuse it with HTML on.
    await bot.app[TELEGRAM]._send_text(user.id, "<b>Care tips: 1 < 2 &amp; more", None)
    call = await tg.wait_for("sendMessage", since=mark, timeout=15)
    assert call.params["text"] == "Care tips: 1 < 2 & more"
    assert "parse_mode" not in call.params


async def test_no_log_record_at_any_level_shows_the_bot_token(tg, tmp_path, caplog):
    import logging

    caplog.set_level(logging.DEBUG)  # every logger: PTB, aiohttp, asyncio, ours
    async with running_bot(tg, tmp_path / "db.sqlite3") as running:
        user = tg.user(language_code="en")
        tg.send_command(user, "/start")
        await tg.wait_for_messages(user.id, 1, timeout=15)
        token = running.settings.telegram_token
    assert len(caplog.records) > 20  # the exchange was logged in detail
    secret = token.split(":", 1)[1]
    leaks = [r for r in caplog.records if secret in r.getMessage() or secret in (r.exc_text or "")]
    assert not leaks, [f"{r.name}: {r.getMessage()[:200]}" for r in leaks[:5]]
    assert secret not in caplog.text


# ---- referral tiers and what follows them (issue 13) ------------------------------------------
# Two real photos the bundled model reads as eczema with some melanoma probability: 17 % (over
# the card's cancer_likely_threshold) and 6 % (between urgent_threshold and it). Named here, not
# searched for with the prediction code, so a change of model or thresholds shows up as a failure.
ECZEMA_MELANOMA_LIKELY = "eczema/dermnet-5df9143413414aaf.jpg"
ECZEMA_MELANOMA_POSSIBLE = "eczema/dermnet-02358d75ea987d22.jpg"


async def answer_with_buttons(tg, user, photo: bytes) -> tuple[str, dict]:
    """The whole answer to a photo (a long one comes in parts, the buttons under the last)."""
    before = len(tg.messages_to(user.id))
    tg.send_photo(user, photo)
    count = 1
    while True:
        messages = await replies_after(tg, user, before, count, timeout=60)
        if buttons_of(messages[-1]):
            # Then the checklist's first question (a cancer tier asks it): wait for it, so that
            # it is not taken for the reply to what the test sends next.
            await replies_after(tg, user, before, count + 1, timeout=15)
            return "\n".join(text_of(m) for m in messages), messages[-1]
        count += 1


async def test_a_likely_cancer_scopes_the_follow_up_and_the_clinic_search(tg, bot, dataset_dir):
    user = tg.user(language_code="en")
    text, result = await answer_with_buttons(
        tg, user, (dataset_dir / ECZEMA_MELANOMA_LIKELY).read_bytes()
    )
    assert "Most likely: <b>Eczema" in text or "Most likely: Eczema" in text
    assert "skin cancer is among the likely possibilities" in text and "Melanoma" in text
    assert "17%" in text and "within 2 weeks" in text and "First-line care" not in text
    # "How do I treat it?" and "is it contagious?" are about the melanoma, not the eczema.
    before = len(tg.messages_to(user.id))
    tg.send_text(user, "is it contagious?")
    [answer] = await replies_after(tg, user, before, 1, timeout=15)
    assert "Melanoma" in text_of(answer) and "your last result" in text_of(answer)
    assert "eczema" not in text_of(answer).lower()
    # The clinic search looks for clinics that see melanoma.
    clinic = next(a for a in buttons_of(result) if a.startswith("clinic:"))
    assert buttons_of(result)[0] == clinic  # seeing a doctor is the advice: first button
    tg.press_button(user, result, clinic)
    await replies_after(tg, user, before + 1, 1, timeout=15)
    mark = tg.mark()
    tg.send_location(user, MELANOMA_LAT, MELANOMA_LON)
    listing = await tg.wait_for(
        lambda c: c.ok and c.method == "sendMessage" and "km" in c.params.get("text", ""),
        since=mark,
        timeout=15,
    )
    assert "Melanoma" in listing.params["text"] and "Eczema" not in listing.params["text"]
    assert not tg.bad_requests


async def test_a_possible_cancer_is_named_beside_the_self_care_in_korean(tg, bot, dataset_dir):
    user = tg.user(language_code="ko")
    text, result = await answer_with_buttons(
        tg, user, (dataset_dir / ECZEMA_MELANOMA_POSSIBLE).read_bytes()
    )
    assert "피부암일 가능성을 배제할 수 없어요: 흑색종 6%" in text
    assert "정기 진료" in text and "2주 이내" not in text
    # The eczema self-care is kept, behind "더 보기" (More).
    before = len(tg.messages_to(user.id))
    tg.press_button(user, result, next(a for a in buttons_of(result) if a.startswith("more:")))
    more = "\n".join(text_of(m) for m in await replies_after(tg, user, before, 1, timeout=15))
    assert "기본 관리 방법" in more and "2주 이내" not in more
    assert not tg.bad_requests
