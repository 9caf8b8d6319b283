"""No reply lost: the whole bot against a Bot API server that fails longer than the bot retries.

Real PTB over HTTP against FakeTelegram with injected faults, the real aiohttp server, a real
SQLite store. A reply Telegram will not take within the bot's own few seconds of retries waits in
the store's outbox (bot/outbox.py) and goes out later: in order per chat, after a restart, once
across replicas, or is dropped after the configured time with a log line naming nobody. A
webhook update delivered twice is answered once.
"""

from __future__ import annotations

import asyncio
import json
import logging

from bot.conversation import Button, Reply, Venue
from bot.web.keys import ASSISTANT

from telegram_server import FakeTelegram
from telegram_support import free_port, running_bot, text_of

FAST_OUTBOX = {"outbox_poll_s": 0.1}
LIVE_ATTEMPTS = 5  # bot/telegram.py SEND_ATTEMPTS: what the bot retries before queueing


async def queued_replies(bot) -> list:
    return await bot.app[ASSISTANT].store.pending_replies()


async def wait_until_queued(bot, count: int = 1, timeout: float = 30.0) -> list:
    async with asyncio.timeout(timeout):
        while len(pending := await queued_replies(bot)) < count:
            await asyncio.sleep(0.05)
    return pending


def texts_to(tg: FakeTelegram, user) -> list[str]:
    return [text_of(message) for message in tg.messages_to(user.id)]


def test_a_reply_round_trips_through_its_json_without_the_photo():
    reply = Reply(
        text="<b>Acne</b> 여드름",
        buttons=[[Button("Care", "care:1"), Button("Map", "clinics:acne")], [Button("X", "x")]],
        photo=b"\x89PNG...",
        ask_location=True,
        location_button="📍",
        close_keyboard=True,
    )
    again = Reply.from_dict(json.loads(json.dumps(reply.to_dict())))
    assert again.photo is None  # photos are never stored
    assert again == Reply(**{**reply.__dict__, "photo": None})
    venue = Reply(venue=Venue("Clinic", "Seoul", 37.5, 127.0, "https://map.example/1"))
    assert Reply.from_dict(json.loads(json.dumps(venue.to_dict()))) == venue


async def test_a_reply_outlasts_an_outage_and_later_replies_keep_their_order(tmp_path):
    async with FakeTelegram() as tg, running_bot(tg, tmp_path / "db", **FAST_OUTBOX) as bot:
        user = tg.user(language_code="en")
        tg.send_command(user, "/start")
        await tg.wait_for_messages(user.id, 1, timeout=15)
        # Longer than the bot's own retries: HTML pages with status 200 (not JSON), then 502s.
        tg.garble_next("sendMessage", times=2, status=200)
        tg.fail_next("sendMessage", times=LIVE_ATTEMPTS, error_code=502)
        tg.send_command(user, "/help")
        [queued] = await wait_until_queued(bot)
        assert queued.chat_id == user.id and "What I can do" in queued.payload
        # Written while /help's answer waits: its answer must not overtake it.
        tg.send_command(user, "/privacy")
        messages = await tg.wait_for_messages(user.id, 3, timeout=30)
        assert await queued_replies(bot) == []
    assert "What I can do" in text_of(messages[1])
    assert "Privacy" in text_of(messages[2])
    failed = [c for c in tg.sent if c.method == "sendMessage" and not c.ok]
    assert len(failed) == 2 + LIVE_ATTEMPTS  # every fault was met, none skipped
    assert not tg.bad_requests


async def test_queued_replies_are_sent_after_a_restart(tmp_path):
    db = tmp_path / "db"
    async with FakeTelegram() as tg:
        user = tg.user(language_code="ko")
        async with running_bot(tg, db, **FAST_OUTBOX) as bot:
            tg.send_command(user, "/start")
            await tg.wait_for_messages(user.id, 1, timeout=15)
            tg.fail_next("sendMessage", times=10_000, error_code=500)  # down until restart
            tg.send_command(user, "/help")
            await wait_until_queued(bot)
        assert len(tg.messages_to(user.id)) == 1
        tg.clear_failures()
        async with running_bot(tg, db, **FAST_OUTBOX) as restarted:
            [_, help_reply] = await tg.wait_for_messages(user.id, 2, timeout=30)
            assert "할 수 있는 일" in text_of(help_reply)
            assert await queued_replies(restarted) == []


async def test_a_reply_undelivered_past_the_give_up_time_is_dropped_naming_nobody(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    async with FakeTelegram() as tg:
        settings = {**FAST_OUTBOX, "outbox_give_up_s": 1.0}
        async with running_bot(tg, tmp_path / "db", **settings) as bot:
            user = tg.user(language_code="en")
            tg.send_command(user, "/start")
            await tg.wait_for_messages(user.id, 1, timeout=15)
            tg.fail_next("sendMessage", times=10_000, error_code=502)
            tg.send_command(user, "/help")
            await wait_until_queued(bot)
            async with asyncio.timeout(30):
                while await queued_replies(bot):
                    await asyncio.sleep(0.05)
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].levelno == logging.WARNING
    assert str(user.id) not in dropped[0].getMessage()
    assert "What I can do" not in caplog.text  # no reply's words in the log
    assert len(tg.messages_to(user.id)) == 1


async def test_the_same_webhook_update_twice_is_answered_once(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    async with FakeTelegram() as tg, running_bot(tg, tmp_path / "db", port=port, webhook_url=url):
        user = tg.user(language_code="en")
        update_id = tg.send_command(user, "/start")
        await tg.wait_for_messages(user.id, 1, timeout=15)
        tg.deliver_again(update_id)  # as when Telegram missed the bot's 200
        await tg.wait_consumed(update_id)
        tg.send_command(user, "/help")
        await tg.wait_for_messages(user.id, 2, timeout=15)
        # The next update of the chat was answered, and it is the second message: no repeat.
        messages = tg.messages_to(user.id)
    assert [d.status for d in tg.webhook_deliveries if d.update_id == update_id] == [200, 200]
    assert len(messages) == 2
    assert "skin-care assistant" in text_of(messages[0])
    assert "What I can do" in text_of(messages[1])


async def test_two_replicas_send_a_queued_reply_once(tmp_path):
    db = tmp_path / "db"  # one store file shared by both replicas
    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"  # updates reach the first; both drain the outbox
    async with (
        FakeTelegram() as tg,
        running_bot(tg, db, port=port, webhook_url=url, **FAST_OUTBOX) as first,
        running_bot(tg, db, webhook_url=url, **FAST_OUTBOX),
    ):
        user = tg.user(language_code="en")
        tg.send_command(user, "/start")
        await tg.wait_for_messages(user.id, 1, timeout=15)
        tg.fail_next("sendMessage", times=LIVE_ATTEMPTS, error_code=502)
        # The queued reply's send then takes 1.5 s: ~15 polls of the other replica meanwhile.
        tg.delay_next("sendMessage", seconds=1.5)
        tg.send_command(user, "/help")
        await wait_until_queued(first)
        async with asyncio.timeout(30):
            while await queued_replies(first):
                await asyncio.sleep(0.05)
        await tg.wait_for(lambda call: call.injected == "delay", timeout=10)
    # A second send would have started during the delayed one's 1.5 s and been answered at once.
    helps = [c for c in tg.sent if c.ok and "What I can do" in c.params.get("text", "")]
    assert len(helps) == 1
    assert len(tg.messages_to(user.id)) == 2
