"""The fake Bot API server (tests/telegram_server.py) against the real python-telegram-bot.

A tiny PTB Application runs over HTTP against the fake: polling and webhook mode, file upload and
download, callback queries, locations, injected 429 / 5xx / dropped connections, and the checks a
real server makes (parse modes, keyboards, unknown methods).
"""

from __future__ import annotations

import asyncio
import datetime as dtm
import io
import socket
import time

import aiohttp
import pytest
from PIL import Image
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    Update,
)
from telegram.error import (
    BadRequest,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import (
    AIORateLimiter,
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from telegram_server import FakeTelegram


def jpeg(color: tuple[int, int, int], size: tuple[int, int] = (640, 480)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def seconds(value: int | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


# -- the tiny bot --------------------------------------------------------------------------


async def on_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Check my skin", callback_data="go")]])
    await update.message.reply_text(
        f"<b>Hello</b>, {update.effective_user.first_name}!",
        parse_mode="HTML",
        reply_markup=keyboard,
    )


async def on_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    photo = update.message.photo[-1]
    file = await photo.get_file()
    data = await file.download_as_bytearray()
    await update.message.reply_text(f"{len(data)} bytes")
    await update.message.reply_photo(photo=bytes(data), caption="your photo")


async def on_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    document = update.message.document
    data = await (await document.get_file()).download_as_bytearray()
    await update.message.reply_text(f"{document.file_name} {document.mime_type} {len(data)}")


async def on_callback(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    await query.answer("On it")
    await query.edit_message_text(f"You pressed {query.data}")


async def on_location(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    location = update.message.location
    await update.message.reply_venue(
        latitude=location.latitude + 0.001,
        longitude=location.longitude,
        title="Skin Clinic",
        address="1 Main Street",
    )


async def on_text(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    keyboard = ReplyKeyboardMarkup(
        [[KeyboardButton("Share location", request_location=True)]], one_time_keyboard=True
    )
    await update.message.reply_chat_action("typing")
    await update.message.reply_text("Where are you?", reply_markup=keyboard)


def build_app(tg: FakeTelegram, **builder_options) -> Application:
    builder = tg.application_builder()
    for name, value in builder_options.items():
        builder = getattr(builder, name)(value)
    app = builder.build()
    app.add_handler(CommandHandler("start", on_start))
    app.add_handler(MessageHandler(filters.PHOTO, on_photo))
    app.add_handler(MessageHandler(filters.Document.ALL, on_document))
    app.add_handler(MessageHandler(filters.LOCATION, on_location))
    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, on_text))
    app.add_handler(CallbackQueryHandler(on_callback))
    return app


@pytest.fixture
async def tg():
    async with FakeTelegram() as server:
        yield server


@pytest.fixture
async def polling_app(tg):
    app = build_app(tg, concurrent_updates=True)
    await app.initialize()
    await app.start()
    await app.updater.start_polling(poll_interval=0, timeout=1)
    yield app
    await app.updater.stop()
    await app.stop()
    await app.shutdown()


# -- round trips ----------------------------------------------------------------------------


def test_token_and_urls_look_like_telegram():
    server = FakeTelegram()
    bot_id, secret = server.token.split(":")
    assert bot_id == str(server.bot_id) and len(secret) == 35 and secret.startswith("AA")


async def test_polling_round_trips(tg, polling_app):
    assert [c.method for c in tg.calls()][:2] == ["getMe", "deleteWebhook"]
    alice = tg.user(first_name="Alice", language_code="ko")

    tg.send_command(alice, "/start")
    [welcome] = await tg.wait_for_messages(alice.id, 1)
    assert welcome["text"] == "Hello, Alice!"
    assert welcome["entities"] == [{"type": "bold", "offset": 0, "length": 5}]
    assert welcome["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "go"
    call = await tg.wait_for("sendMessage")
    assert call.params["chat_id"] == alice.id and call.params["parse_mode"] == "HTML"

    update_id = tg.press_button(alice, welcome, "go")
    await tg.wait_for("editMessageText")
    assert tg.callback_answer(update_id)["text"] == "On it"
    [edited] = tg.messages_to(alice)
    assert edited["message_id"] == welcome["message_id"]
    assert edited["text"] == "You pressed go" and "reply_markup" not in edited
    assert "edit_date" in edited
    with pytest.raises(ValueError, match="no button"):
        tg.press_button(alice, edited, "go")  # the keyboard is gone

    original = jpeg((200, 120, 90))
    tg.send_photo(alice, original, caption="my cheek")
    photo_sizes = tg.updates[max(tg.updates)]["message"]["photo"]
    assert [(s["width"], s["height"]) for s in photo_sizes] == [(90, 68), (640, 480)]
    messages = await tg.wait_for_messages(alice.id, 3)
    assert messages[1]["text"] == f"{len(original)} bytes"
    assert messages[2]["caption"] == "your photo"
    assert messages[2]["photo"][-1]["width"] == 640
    [send_photo] = tg.calls("sendPhoto")
    assert send_photo.upload == original  # what the bot downloaded is what the user uploaded
    assert tg.downloads == [tg.calls("getFile")[0].result["file_path"]]

    tg.send_text(alice, "hello")
    await tg.wait_for_messages(alice.id, 4)
    keyboard = tg.reply_keyboard(alice)
    assert keyboard["keyboard"][0][0] == {"text": "Share location", "request_location": True}
    assert tg.calls("sendChatAction")[0].params["action"] == "typing"

    tg.send_location(alice, 37.5665, 126.978)
    venue_call = await tg.wait_for("sendVenue")
    venue = venue_call.result["venue"]
    assert venue["title"] == "Skin Clinic" and venue["location"]["latitude"] == pytest.approx(
        37.5675
    )

    tg.send_document(alice, b"%PDF-1.4 test", "report.pdf")
    messages = await tg.wait_for_messages(alice.id, 6)
    assert messages[-1]["text"] == "report.pdf application/pdf 13"

    tg.send_sticker(alice)  # no handler: nothing is sent, nothing breaks
    await tg.wait_consumed(max(tg.updates))
    assert tg.unknown_calls == [] and tg.bad_requests == []


async def test_an_album_arrives_as_one_update_per_photo_with_one_media_group_id(tg):
    app = build_app(tg)
    seen: list[tuple[str | None, str | None, bytes]] = []

    async def on_album_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.message
        data = bytes(await (await message.photo[-1].get_file()).download_as_bytearray())
        seen.append((message.media_group_id, message.caption, data))

    app.handlers[0].clear()
    app.add_handler(MessageHandler(filters.PHOTO, on_album_photo))
    photos = [jpeg((200, 40, 40)), jpeg((40, 200, 40)), jpeg((40, 40, 200))]
    alice = tg.user()
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=1)
        updates = tg.send_media_group(alice, photos, caption="my arm")
        for _ in range(200):  # until the handler has downloaded all three
            if len(seen) == 3:
                break
            await asyncio.sleep(0.05)
        await app.updater.stop()
        await app.stop()
    assert len(set(updates)) == 3
    groups = {group for group, _, _ in seen}
    assert len(groups) == 1 and groups.pop().isdigit()
    assert [caption for _, caption, _ in seen] == ["my arm", None, None]
    assert [data for _, _, data in seen] == photos  # in the order sent, each its own file
    other = tg.send_media_group(alice, photos[:2])
    assert tg.updates[other[0]]["message"]["media_group_id"] != seen[0][0]
    with pytest.raises(ValueError, match="2 to 10"):
        tg.send_media_group(alice, photos[:1])


async def test_dozens_of_concurrent_users(tg, polling_app):
    users = [tg.user(first_name=f"User{n}") for n in range(40)]
    photos = {
        user.id: jpeg((n * 6, 255 - n * 6, 100), (320 + n, 240)) for n, user in enumerate(users)
    }

    async def conversation(user):
        tg.send_command(user, "/start")
        await tg.wait_for_messages(user.id, 1, timeout=15)
        tg.send_photo(user, photos[user.id])
        return await tg.wait_for_messages(user.id, 3, timeout=15)

    results = await asyncio.gather(*(conversation(user) for user in users))
    for user, messages in zip(users, results, strict=True):
        assert messages[0]["text"] == f"Hello, {user.first_name}!"
        assert messages[1]["text"] == f"{len(photos[user.id])} bytes"
        assert [m["message_id"] for m in messages] == [2, 4, 5]  # per-chat message ids
        assert {m["chat"]["id"] for m in messages} == {user.id}
    uploads = {c.chat_id: c.upload for c in tg.calls("sendPhoto")}
    assert uploads == photos
    assert tg.unknown_calls == [] and tg.bad_requests == []


# -- failures --------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_retry_after_and_server_errors_reach_ptb(tg):
    alice = tg.user()
    tg.send_text(alice, "hi")
    async with tg.application_builder().build().bot as bot:
        tg.fail_next("sendMessage", error_code=429, retry_after=3)
        with pytest.raises(RetryAfter) as raised:
            await bot.send_message(alice.id, "flood")
        assert seconds(raised.value.retry_after) == 3
        tg.fail_next("sendMessage", error_code=500)
        with pytest.raises(NetworkError, match="Internal Server Error"):
            await bot.send_message(alice.id, "boom")
        tg.fail_next("sendMessage", error_code=502)
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_message(alice.id, "gateway")
        tg.drop_next("sendMessage")
        with pytest.raises(NetworkError):
            await bot.send_message(alice.id, "dropped")
        assert tg.messages_to(alice) == []  # none of them was carried out
        await bot.send_message(alice.id, "fine")

    assert [m["text"] for m in tg.messages_to(alice)] == ["fine"]
    assert [(f.kind, f.error_code) for f in tg.injected_failures] == [
        ("error", 429),
        ("error", 500),
        ("error", 502),
        ("drop", None),
    ]
    assert [c.injected for c in tg.sent if c.method == "sendMessage"] == [
        "error",
        "error",
        "error",
        "drop",
        None,
    ]


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_rate_limiter_retries_after_429(tg):
    alice = tg.user()
    tg.send_text(alice, "hi")
    app = tg.application_builder().rate_limiter(AIORateLimiter(max_retries=1)).build()
    async with app:
        tg.fail_next("sendMessage", error_code=429, retry_after=1)
        message = await app.bot.send_message(alice.id, "after a pause")
    assert message.text == "after a pause"
    first, second = [c for c in tg.sent if c.method == "sendMessage"]
    assert first.error_code == 429 and second.ok
    assert second.time - first.time >= 1.0


async def test_slow_answer_times_out(tg):
    alice = tg.user()
    tg.send_text(alice, "hi")
    request = HTTPXRequest(read_timeout=0.3)
    async with tg.application_builder().request(request).build().bot as bot:
        tg.delay_next("sendMessage", seconds=0.6)
        with pytest.raises(TimedOut):
            await bot.send_message(alice.id, "slow")


async def test_an_answer_that_is_not_json_reaches_ptb_and_is_not_carried_out(tg):
    alice = tg.user()
    tg.send_text(alice, "hi")
    async with tg.application_builder().build().bot as bot:
        tg.garble_next("sendMessage", status=200)
        with pytest.raises(TelegramError, match="Invalid server response"):
            await bot.send_message(alice.id, "garbled")
        tg.garble_next("sendMessage", status=503)
        with pytest.raises(NetworkError, match="Service Unavailable"):
            await bot.send_message(alice.id, "garbled too")
        await bot.send_message(alice.id, "fine")
    assert [m["text"] for m in tg.messages_to(alice)] == ["fine"]
    assert [(f.kind, f.error_code) for f in tg.injected_failures] == [
        ("garble", 200),
        ("garble", 503),
    ]


# -- webhook --------------------------------------------------------------------------------


async def test_webhook_delivers_with_secret_header(tg):
    port = free_port()
    app = build_app(tg)
    await app.initialize()
    await app.start()
    bob = tg.user(first_name="Bob")
    try:
        tg.send_command(bob, "/start")  # queued before the webhook exists: delivered after
        await app.updater.start_webhook(
            listen="127.0.0.1",
            port=port,
            url_path="telegram",
            webhook_url=f"http://127.0.0.1:{port}/telegram",
            secret_token="s3cret-Token_1",
        )
        [welcome] = await tg.wait_for_messages(bob.id, 1)
        tg.press_button(bob, welcome, "go")
        await tg.wait_for("editMessageText")
        assert tg.webhook_info()["url"] == f"http://127.0.0.1:{port}/telegram"
        assert tg.webhook_info()["pending_update_count"] == 0
        # PTB sets the webhook before its server listens: the first POST may be refused and
        # is retried, as Telegram does.
        deliveries = [d for d in tg.webhook_deliveries if d.status == 200]
        assert sorted(d.update_id for d in deliveries) == sorted(tg.updates)
        assert {d.secret_token for d in tg.webhook_deliveries} == {"s3cret-Token_1"}

        # PTB's webhook refuses a request without the secret: the header is what let them in.
        async with aiohttp.ClientSession() as session:
            body = tg.updates[min(tg.updates)]
            async with session.post(f"http://127.0.0.1:{port}/telegram", json=body) as reply:
                assert reply.status == 403

        with pytest.raises(Exception, match="webhook is active"):
            await app.bot.get_updates()
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert tg.unknown_calls == []


async def test_webhook_retries_until_the_bot_answers(tg):
    port = free_port()
    received = []

    async def hook(request):
        received.append(await request.json())
        status = 500 if len(received) == 1 else 200
        return aiohttp.web.Response(status=status)

    hook_app = aiohttp.web.Application()
    hook_app.router.add_post("/hook", hook)
    runner = aiohttp.web.AppRunner(hook_app)
    await runner.setup()
    await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with tg.application_builder().build().bot as bot:
            await bot.set_webhook(f"http://127.0.0.1:{port}/hook")
        carol = tg.user()
        update_id = tg.send_text(carol, "hello")
        await tg.wait_consumed(update_id)
        assert [u["update_id"] for u in received] == [update_id, update_id]
        assert "500" in tg.webhook_info()["last_error_message"]
        # As when Telegram missed the answer: the same update once more, whole.
        tg.deliver_again(update_id)
        await tg.wait_consumed(update_id)
        assert received[2] == received[1] == tg.updates[update_id]
    finally:
        await runner.cleanup()


# -- what a real server refuses ----------------------------------------------------------------


async def test_server_checks_like_telegram(tg):
    alice = tg.user()
    stranger = tg.user()
    tg.send_text(alice, "hi")
    async with tg.application_builder().build().bot as bot:
        with pytest.raises(BadRequest, match="(?i)can.t parse entities"):
            await bot.send_message(alice.id, "1 < 2", parse_mode="HTML")
        with pytest.raises(BadRequest, match="reserved"):
            await bot.send_message(alice.id, "Done.", parse_mode="MarkdownV2")
        ok = await bot.send_message(alice.id, "*Done*\\.", parse_mode="MarkdownV2")
        assert ok.text == "Done." and ok.entities[0].type == "bold"
        with pytest.raises(BadRequest, match="(?i)button_data_invalid"):
            await bot.send_message(
                alice.id,
                "x",
                reply_markup=InlineKeyboardMarkup(
                    [[InlineKeyboardButton("b", callback_data="x" * 65)]]
                ),
            )
        with pytest.raises(BadRequest, match="(?i)not modified"):
            await bot.edit_message_text(
                "*Done*\\.", chat_id=alice.id, message_id=ok.message_id, parse_mode="MarkdownV2"
            )
        edited = await bot.edit_message_text("Done.", chat_id=alice.id, message_id=ok.message_id)
        assert edited.entities == ()  # the bold is gone: that is a modification
        with pytest.raises(BadRequest, match="(?i)message text is empty"):
            await bot.send_message(alice.id, " ")
        with pytest.raises(BadRequest, match="(?i)chat not found"):
            await bot.send_message(999, "who?")
        with pytest.raises(Forbidden, match="initiate"):
            await bot.send_message(stranger.id, "spam")
        tg.block(alice)
        with pytest.raises(Forbidden, match="blocked"):
            await bot.send_message(alice.id, "still there?")
        tg.unblock(alice)
        with pytest.raises(EndPointNotFound):
            await bot.do_api_request("sendHologram", api_kwargs={"chat_id": alice.id})
        assert await bot.set_my_commands([("start", "Start"), ("help", "Help")])
        assert [c.command for c in await bot.get_my_commands()] == ["start", "help"]
        assert await bot.delete_message(alice.id, ok.message_id)
        assert await bot.close() and await bot.log_out()

    assert [c.method for c in tg.unknown_calls] == ["sendHologram"]
    assert len(tg.bad_requests) == 9
    assert tg.messages_to(alice) == []

    wrong = Application.builder().token("1:AA" + "x" * 33).base_url(tg.base_url).build()
    with pytest.raises(InvalidToken):
        async with wrong.bot:  # initialize() calls getMe
            pass
    assert tg.unauthorized == ["getMe"]


async def test_long_polling_answers_as_soon_as_an_update_arrives(tg):
    dave = tg.user()
    async with tg.application_builder().build().bot as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=10))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        update_id = tg.send_text(dave, "/help me", reply_to=None)
        [update] = await poll
        assert time.monotonic() - started < 1.0
        assert update.update_id == update_id
        assert update.message.text == "/help me"
        assert update.message.entities[0].type == "bot_command"
        assert update.message.from_user.language_code == "en"
        assert await bot.get_updates(offset=update_id + 1, timeout=0) == ()
        assert tg.is_consumed(update_id)


async def test_file_ids_captions_and_keyboard_edits(tg):
    erin = tg.user(language_code="ko")
    tg.send_photo(erin, jpeg((10, 20, 30)))
    user_photo = tg.updates[max(tg.updates)]["message"]["photo"]
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("More", callback_data="more")]])
    async with tg.application_builder().build().bot as bot:
        sent = await bot.send_photo(
            erin.id, user_photo[-1]["file_id"], caption="<i>again</i>", parse_mode="HTML"
        )
        assert sent.photo[-1].file_id == user_photo[-1]["file_id"]
        data = await (await bot.get_file(sent.photo[-1].file_id)).download_as_bytearray()
        assert bytes(data) == tg.file_bytes(user_photo[-1]["file_id"])
        edited = await bot.edit_message_caption(
            erin.id, sent.message_id, caption="new", reply_markup=keyboard
        )
        assert edited.caption == "new" and edited.reply_markup == keyboard
        tg.press_button(erin, sent.message_id, "more")
        cleared = await bot.edit_message_reply_markup(erin.id, sent.message_id)
        assert cleared.reply_markup is None
        with pytest.raises(BadRequest, match="(?i)not modified"):
            await bot.edit_message_reply_markup(erin.id, sent.message_id)
        with pytest.raises(BadRequest, match="(?i)wrong file identifier"):
            await bot.send_photo(erin.id, "AgACAgIAAxkBAAI-unknown")
        await bot.send_message(erin.id, "*old* style", parse_mode="Markdown")
        await bot.set_my_commands([("start", "시작")], language_code="ko")
        assert [c.command for c in await bot.get_my_commands(language_code="ko")] == ["start"]
        assert await bot.get_my_commands() == ()
        assert await bot.delete_webhook(drop_pending_updates=True)
    assert tg.pending_updates == []
    assert [m.get("caption", m.get("text")) for m in tg.messages_to(erin)] == ["new", "old style"]
    assert tg.commands(language_code="ko") == [{"command": "start", "description": "시작"}]
