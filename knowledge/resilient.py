"""Reading knowledge so that a store outage does not break the chat.

The conversation reads care content and FAQ through `ResilientKnowledge`: every good answer from
the store is kept in memory, and when the store fails (Firestore down, a network cut) the last
good content is served instead. Clinic search has no sensible stale answer (a closed clinic is
worse than none), so it raises `ClinicSearchUnavailable` and the bot says so.
"""

from __future__ import annotations

import logging

from knowledge.models import Clinic, Condition, FaqEntry
from knowledge.store import KnowledgeStore, StoreError

log = logging.getLogger(__name__)


class ClinicSearchUnavailable(Exception):
    """The store cannot search clinics right now; the bot tells the user to try later."""


class ResilientKnowledge:
    def __init__(self, store: KnowledgeStore):
        self.store = store
        self._conditions: dict[str, Condition] = {}
        self._faq: dict[str | None, list[FaqEntry]] = {}
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

    @property
    def loaded(self) -> tuple[int, int]:
        """How many conditions and FAQ entries the last good `warm` holds in memory."""
        return len(self._conditions), len(self._faq.get(None, []))

    async def condition(self, label: str) -> Condition | None:
        try:
            condition = await self.store.get_condition(label)
        except StoreError as exc:
            self._mark_down(exc)
            return self._conditions.get(label)
        self._mark_up()
        if condition is not None:
            self._conditions[label] = condition
        return condition

    async def faq(self, label: str | None = None) -> list[FaqEntry]:
        """FAQ entries about `label`, or all of them when `label` is None."""
        try:
            entries = await self.store.list_faq(label)
        except StoreError as exc:
            self._mark_down(exc)
            return list(self._faq.get(label, []))
        self._mark_up()
        self._faq[label] = entries
        return entries

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
