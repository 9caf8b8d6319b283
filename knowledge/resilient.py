"""Reading knowledge so that a store outage does not break the chat.

The conversation reads care content and FAQ through `ResilientKnowledge`: every good answer from
the store is kept in memory, and when the store fails (Firestore down, a network cut) the last
good content is served instead. Clinic search has no sensible stale answer (a closed clinic is
worse than none), so it raises `ClinicSearchUnavailable` and the bot says so.
"""

from __future__ import annotations

import logging
import time

from knowledge.checklist import shipped_wording
from knowledge.models import Clinic, Condition, FaqEntry, Localized
from knowledge.store import KnowledgeStore, StoreError

log = logging.getLogger(__name__)


class ClinicSearchUnavailable(Exception):
    """The store cannot search clinics right now; the bot tells the user to try later."""


# Care content is read for every answer: listing and decoding the FAQ took 1.8 ms of the ~9 ms
# of CPU a text message cost (docs/performance.md), so what was read this recently is reused.
# This process's own admin edits are seen at once (`forget`); another replica's within this time.
FRESH_S = 1.0


class ResilientKnowledge:
    def __init__(self, store: KnowledgeStore, fresh_s: float = FRESH_S):
        self.store = store
        self.fresh_s = fresh_s
        self._conditions: dict[str, Condition] = {}
        self._faq: dict[str | None, list[FaqEntry]] = {}
        # Monotonic times of the last good store reads, by what was read.
        self._condition_read_at: dict[str, float] = {}
        self._faq_read_at: dict[str | None, float] = {}
        # The checklist's wording: the shipped file's until the store has answered once.
        self._questions: dict[str, Localized] = dict(shipped_wording())
        self._questions_read_at: float | None = None
        self.healthy = True  # whether the last call reached the store

    async def warm(self) -> None:
        """Load all care content and FAQ, so that an outage right after start-up is covered."""
        try:
            conditions = await self.store.list_conditions()
            faq = await self.store.list_faq()
        except StoreError as exc:
            self._mark_down(exc)
            return
        self._mark_up()
        self._conditions = {condition.label: condition for condition in conditions}
        by_label: dict[str | None, list[FaqEntry]] = {}
        for entry in faq:
            by_label.setdefault(entry.label, []).append(entry)
        # Key None means "all entries", as in `faq(None)`; general entries have label None too.
        by_label[None] = list(faq)
        self._faq = by_label
        self.forget()

    @property
    def loaded(self) -> tuple[int, int]:
        """How many conditions and FAQ entries the last good `warm` holds in memory."""
        return len(self._conditions), len(self._faq.get(None, []))

    async def condition(self, label: str) -> Condition | None:
        """The care content of `label` (read from the store at most every `fresh_s`)."""
        if self._fresh(self._condition_read_at.get(label)):
            return self._conditions.get(label)
        try:
            condition = await self.store.get_condition(label)
        except StoreError as exc:
            self._mark_down(exc)
            return self._conditions.get(label)
        self._mark_up()
        if condition is not None:
            self._conditions[label] = condition
        else:
            self._conditions.pop(label, None)
        self._condition_read_at[label] = time.monotonic()
        return condition

    async def faq(self, label: str | None = None) -> list[FaqEntry]:
        """FAQ entries about `label`, or all of them when `label` is None (read from the store
        at most every `fresh_s`). While fresh, the same list is returned: do not modify it."""
        if self._fresh(self._faq_read_at.get(label)):
            return self._faq[label]
        try:
            entries = await self.store.list_faq(label)
        except StoreError as exc:
            self._mark_down(exc)
            return list(self._faq.get(label, []))
        self._mark_up()
        self._faq[label] = entries
        self._faq_read_at[label] = time.monotonic()
        return entries

    async def questions(self) -> dict[str, Localized]:
        """The checklist's wording by question id (an admin's edits; the shipped wording of any
        question the store lacks)."""
        if self._fresh(self._questions_read_at):
            return self._questions
        try:
            stored = await self.store.list_questions()
        except StoreError as exc:
            self._mark_down(exc)
            return self._questions
        self._mark_up()
        self._questions = {**shipped_wording(), **{q.id: q.text for q in stored}}
        self._questions_read_at = time.monotonic()
        return self._questions

    def forget(self) -> None:
        """After a change to the content in this process: the next calls read the store."""
        self._condition_read_at.clear()
        self._faq_read_at.clear()
        self._questions_read_at = None

    def _fresh(self, read_at: float | None) -> bool:
        return read_at is not None and time.monotonic() - read_at < self.fresh_s

    async def nearest_clinics(
        self,
        lat: float,
        lon: float,
        limit: int = 5,
        condition: str | None = None,
        max_km: float = 50.0,
    ) -> list[tuple[Clinic, float]]:
        try:
            found = await self.store.nearest_clinics(lat, lon, limit, condition, max_km)
        except StoreError as exc:
            self._mark_down(exc)
            raise ClinicSearchUnavailable(str(exc)) from exc
        self._mark_up()
        return found

    def _mark_down(self, exc: StoreError) -> None:
        if self.healthy:
            log.warning("knowledge store unavailable, serving the last good content: %s", exc)
        self.healthy = False

    def _mark_up(self) -> None:
        if not self.healthy:
            log.info("knowledge store reachable again")
        self.healthy = True
