"""Scale-out: two bot replicas in webhook mode behind a load balancer, one Firestore.

A round-robin balancer (a few lines of aiohttp, forwarding Telegram's webhook POSTs with their
headers) sends a user's photo to one replica and the follow-up question to the other. The
follow-up is answered about the photo's result, which only works if the per-user state lives
in the shared store and not in a replica's memory.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from pathlib import Path

import aiohttp
from aiohttp import web

from bot.web.keys import ASSISTANT
from knowledge.config import StoreConfig

from telegram_server import FakeTelegram
from telegram_support import free_port, replies_after, running_bot, text_of

ACNE_PHOTO = "acne/dermnet-0121064acd137936.jpg"


async def start_balancer(port: int, targets: list[str]) -> tuple[web.AppRunner, list[str]]:
    """Forwards each POST to the next target in turn; records which target got which request."""
    routed: list[str] = []
    turn = itertools.cycle(targets)
    session = aiohttp.ClientSession()

    async def forward(request: web.Request) -> web.Response:
        target = next(turn)
        routed.append(target)
        headers = {k: v for k, v in request.headers.items() if k.lower().startswith("x-")}
        async with session.post(
            target + request.path, data=await request.read(), headers=headers
        ) as response:
            return web.Response(status=response.status, body=await response.read())

    app = web.Application()
    app.router.add_post("/{path:.*}", forward)

    async def close_session(_app: web.Application) -> None:
        await session.close()

    app.on_cleanup.append(close_session)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, routed


async def test_two_replicas_share_one_conversation(
    firestore_emulator_host, monkeypatch, dataset_dir: Path
):
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator_host)
    balancer_port = free_port()
    webhook_url = f"http://127.0.0.1:{balancer_port}/telegram"
    async with FakeTelegram() as tg:
        store = StoreConfig(kind="firestore", firestore_project=f"replicas-{uuid.uuid4().hex[:12]}")
        replica = dict(store=store, webhook_url=webhook_url, db_path=None)
        async with (
            running_bot(tg, **replica) as first,
            running_bot(tg, **replica) as second,
        ):
            balancer, routed = await start_balancer(balancer_port, [first.url, second.url])
            try:
                assert tg.webhook_info()["url"] == webhook_url
                user = tg.user(language_code="en")
                tg.send_photo(user, (dataset_dir / ACNE_PHOTO).read_bytes())
                [result] = await replies_after(tg, user, 0, 1, timeout=60)
                assert "Top 3" in text_of(result)
                best = text_of(result).split("Most likely: ")[1].split(" (")[0]

                tg.send_text(user, "is it contagious?")
                [answer] = await replies_after(tg, user, 1, 1, timeout=30)
            finally:
                await balancer.cleanup()
    # The photo went to one replica and the question to the other...
    assert routed[:2] == [first.url, second.url]
    # ...and the second one knew the first one's result.
    assert f"{best} (your last result)" in text_of(answer)


async def test_an_album_split_over_two_replicas_is_answered_once(
    firestore_emulator_host, monkeypatch, dataset_dir: Path
):
    """Telegram delivers an album as one update per photo: round robin sends them to different
    replicas. The photos meet in the store, and only the replica with the last one answers."""
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", firestore_emulator_host)
    balancer_port = free_port()
    webhook_url = f"http://127.0.0.1:{balancer_port}/telegram"
    photo = (dataset_dir / ACNE_PHOTO).read_bytes()
    async with FakeTelegram() as tg:
        store = StoreConfig(kind="firestore", firestore_project=f"albums-{uuid.uuid4().hex[:12]}")
        replica = dict(store=store, webhook_url=webhook_url, db_path=None)
        async with (
            running_bot(tg, **replica) as first,
            running_bot(tg, **replica) as second,
        ):
            balancer, routed = await start_balancer(balancer_port, [first.url, second.url])
            try:
                user = tg.user(language_code="en")
                tg.send_media_group(user, [photo, photo])
                [result] = await replies_after(tg, user, 0, 1, timeout=60)
                # Long enough for both replicas' album turns to end: then a command's answer
                # must be the next message (a second answer to the album would come first).
                await asyncio.sleep(3 * first.app[ASSISTANT].conversation.album_wait_s)
                tg.send_command(user, "/help")
                [_, help_reply] = await replies_after(tg, user, 0, 2, timeout=30)
            finally:
                await balancer.cleanup()
    assert routed[:2] == [first.url, second.url]  # one photo each
    assert "I looked at your 2 photos together" in text_of(result)
    assert "/privacy" in text_of(help_reply)
