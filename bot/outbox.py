"""No reply lost: replies the messenger would not take now wait in the store, and go out later.

A transport sends a reply at once and retries it briefly itself (bot/telegram.py); one that still
fails, because Telegram answers 5xx or nothing for longer than that, is put here: one
`QueuedReply` per message in the store's outbox (text, buttons, venue; never a photo). A
background task then sends what is due, strictly in order per chat, with exponential back-off
(1 s, 2 s, 4 s ... up to a minute between attempts) until it is delivered or older than
`give_up_s` (then dropped, with a log line that names neither the chat nor the text).

Because the outbox is in the store, queued replies survive a restart and are shared by every
replica: each takes a lease on a reply before sending it (`claim_reply`), so two replicas do not
send the same one. While a chat has replies queued, later replies to it are queued behind them
(`is_waiting`), so they cannot overtake. The list of waiting chats is refreshed from the store on
every poll: a reply queued by another replica holds back this one's within one poll interval.

Delivery is at least once: a reply whose send reached Telegram but whose answer was lost is sent
again (Telegram has no idempotency key to prevent that).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from enum import Enum

from bot.conversation import Reply
from knowledge.models import QueuedReply
from knowledge.store import KnowledgeStore, StoreError

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 60.0
LEASE_S = 60.0  # longer than one attempt at sending can take (timeouts included)
BATCH = 500  # queued replies read per poll
CHATS_AT_ONCE = 16  # chats drained concurrently (one reply at a time within each)
UPDATES_PURGE_EVERY_S = 3600.0


class Delivery(Enum):
    SENT = "sent"
    RETRY = "retry"  # the messenger is unreachable or failing: try again later
    UNDELIVERABLE = "undeliverable"  # refused for good (blocked by the user, a bad request)


Deliver = Callable[[int, Reply], Awaitable[Delivery]]


class Outbox:
    def __init__(
        self,
        store: KnowledgeStore,
        deliver: Deliver,
        lock_for: Callable[[int], asyncio.Lock],
        *,
        poll_s: float = 1.0,
        give_up_s: float = 900.0,
    ):
        self.store = store
        self.deliver = deliver
        self.lock_for = lock_for  # the transport's per-chat lock: live and queued replies alike
        self.poll_s = poll_s
        self.give_up_s = give_up_s
        self.owner = uuid.uuid4().hex  # this replica, as named in its leases
        self._waiting: set[int] = set()
        self._last_seq = 0.0
        self._task: asyncio.Task | None = None
        self._purged_at = 0.0

    # ---- the transport's side ------------------------------------------------------------

    def is_waiting(self, chat_id: int) -> bool:
        """Whether `chat_id` has replies queued: a new one must queue behind them."""
        return chat_id in self._waiting

    async def put(self, chat_id: int, replies: list[Reply]) -> bool:
        """Queue `replies` (in order) for `chat_id`; False when even the store failed (lost).

        Photos are not kept (the store never holds images): a photo reply is queued as its
        caption with its buttons, and one without a caption is dropped.
        """
        now = time.time()
        queued = []
        for reply in replies:
            if reply.photo is not None and not reply.text:
                log.warning("a photo without a caption could not be delivered: not queued")
                continue
            queued.append(
                QueuedReply(
                    id=uuid.uuid4().hex,
                    chat_id=chat_id,
                    seq=self._next_seq(now),
                    payload=json.dumps(reply.to_dict(), ensure_ascii=False),
                    created=now,
                    next_attempt=now + FIRST_RETRY_S,
                )
            )
        try:
            for entry in queued:
                await self.store.enqueue_reply(entry)
        except StoreError as error:
            log.error("%d replies could not be delivered nor queued: lost (%s)", len(queued), error)
            return False
        if queued:
            self._waiting.add(chat_id)
        return True

    def _next_seq(self, now: float) -> float:
        # Strictly increasing within this replica even when the clock does not move on.
        self._last_seq = max(now, self._last_seq + 1e-6)
        return self._last_seq

    # ---- the background task -------------------------------------------------------------

    async def start(self) -> None:
        await self._refresh()  # before any live reply: queued ones from before a restart first
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.drain()
                await self._purge_updates()
            except StoreError as error:
                log.warning("outbox: the store failed (%s); trying again", error)
            except Exception:  # the task must outlive any one bad poll
                log.exception("outbox: a poll failed")
            await asyncio.sleep(self.poll_s)

    async def _refresh(self) -> list[QueuedReply]:
        before = set(self._waiting)
        try:
            pending = await self.store.pending_replies(BATCH)
        except StoreError as error:
            log.warning("outbox: cannot read the queue (%s)", error)
            return []
        # Chats queued for while the store was being read stay waiting.
        self._waiting = {entry.chat_id for entry in pending} | (self._waiting - before)
        return pending

    async def drain(self) -> None:
        """Send what is due now, chat by chat, each chat's replies in order."""
        chats: dict[int, list[QueuedReply]] = {}
        for entry in await self._refresh():
            chats.setdefault(entry.chat_id, []).append(entry)
        limit = asyncio.Semaphore(CHATS_AT_ONCE)

        async def drain_one(chat_id: int, entries: list[QueuedReply]) -> None:
            async with limit:
                try:
                    await self._drain_chat(chat_id, entries)
                except StoreError as error:  # this chat waits for the next poll
                    log.warning("outbox: the store failed (%s); trying again", error)

        await asyncio.gather(*(drain_one(chat, entries) for chat, entries in chats.items()))

    async def _drain_chat(self, chat_id: int, entries: list[QueuedReply]) -> None:
        async with self.lock_for(chat_id):
            for entry in entries:
                now = time.time()
                if entry.next_attempt > now:
                    return  # not due yet: the rest waits behind it
                claimed = await self.store.claim_reply(entry.id, self.owner, now, now + LEASE_S)
                if claimed is None:
                    return  # another replica is sending this chat's replies
                if not await self._attempt(claimed, now):
                    return
            self._waiting.discard(chat_id)

    async def _attempt(self, entry: QueuedReply, now: float) -> bool:
        """One try at sending `entry`; True when it is done with (sent or dropped)."""
        outcome = await self.deliver(entry.chat_id, Reply.from_dict(json.loads(entry.payload)))
        attempts = entry.attempts + 1
        if outcome is Delivery.RETRY:
            if now - entry.created < self.give_up_s:
                delay = min(FIRST_RETRY_S * 2**attempts, MAX_RETRY_S)
                await self.store.reschedule_reply(entry.id, now + delay, attempts)
                return False
            log.warning(
                "outbox: a reply was dropped, undelivered after %d attempts in %.0f s",
                attempts,
                now - entry.created,
            )
        elif outcome is Delivery.UNDELIVERABLE:
            log.info("outbox: a queued reply was refused by the messenger: dropped")
        await self.store.delete_reply(entry.id)
        return True

    async def _purge_updates(self) -> None:
        """Forget the update ids past their expiry (bot/telegram.py records one per update)."""
        now = time.time()
        if now - self._purged_at >= UPDATES_PURGE_EVERY_S:
            self._purged_at = now
            await self.store.purge_updates(now)
