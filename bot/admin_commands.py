"""What an admin can ask the bot in a chat: /stats, /reload, /feedback.

Transport-independent: each command returns the reply text, rendered from templates/chat/<lang>/
admin_*.j2. Which chat user is an admin is the transport's business (Telegram: the ids in
SKINCARE_ADMIN_TELEGRAM_IDS); the conversation only answers these commands when told so.
Everything shown is anonymous: analysis records and feedback, never photos or user keys.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.texts import Texts
from knowledge.models import AnalysisRecord, Feedback
from knowledge.resilient import ResilientKnowledge
from knowledge.store import KnowledgeStore, StoreError
from knowledge.store.rules import timestamp

log = logging.getLogger(__name__)

ADMIN_COMMANDS = ("stats", "reload", "feedback")
PERIODS = (("day", timedelta(days=1)), ("week", timedelta(days=7)))
# Feedback read for a week's statistics; far more than a week of "Was this right?" presses.
STATS_FEEDBACK_LIMIT = 10_000


class AdminCommands:
    def __init__(
        self,
        store: KnowledgeStore,
        knowledge: ResilientKnowledge,
        texts: Texts,
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.knowledge = knowledge
        self.texts = texts
        self.clock = clock

    async def run(self, name: str, lang: str) -> str:
        """The reply to the admin command `name` (one of ADMIN_COMMANDS)."""
        if name not in ADMIN_COMMANDS:
            raise ValueError(f"not an admin command: {name!r}")
        return await getattr(self, name)(lang)

    async def stats(self, lang: str) -> str:
        """Photos analysed, "I can't tell" rate, urgent share and "Was this right?" answers per
        label, over the last day and the last week."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        starts = {name: (now - span).isoformat() for name, span in PERIODS}
        oldest = starts[PERIODS[-1][0]]
        try:
            analyses = await self.store.list_analyses(oldest)
            feedback = await self.store.list_feedback(limit=STATS_FEEDBACK_LIMIT, since=oldest)
        except StoreError as exc:
            log.warning("admin /stats: store unavailable: %s", exc)
            return self.texts.render("store_down", lang)
        names = await self._names({r.label for r in analyses} | {f.label for f in feedback}, lang)
        periods = []
        for name, _ in PERIODS:
            start = timestamp(starts[name])
            periods.append(
                _period(
                    name,
                    [r for r in analyses if timestamp(r.at) >= start],
                    [f for f in feedback if timestamp(f.created_at) >= start],
                    names,
                )
            )
        return self.texts.render("admin_stats", lang, periods=periods)

    async def reload(self, lang: str) -> str:
        """Load all care content and FAQ again (the copy that covers a store outage)."""
        await self.knowledge.warm()
        conditions, faq = self.knowledge.loaded
        return self.texts.render(
            "admin_reload", lang, ok=self.knowledge.healthy, conditions=conditions, faq=faq
        )

    async def feedback(self, lang: str, limit: int = 10) -> str:
        """The latest "Was this right?" answers, newest first."""
        try:
            entries = await self.store.list_feedback(limit=limit)
        except StoreError as exc:
            log.warning("admin /feedback: store unavailable: %s", exc)
            return self.texts.render("store_down", lang)
        names = await self._names({entry.label for entry in entries}, lang)
        return self.texts.render(
            "admin_feedback",
            lang,
            entries=[
                {
                    "when": _when(entry.created_at),
                    "name": names.get(entry.label, entry.label),
                    "correct": entry.correct,
                    "model_version": entry.model_version,
                    "comment": entry.comment,
                }
                for entry in entries
            ],
        )

    async def _names(self, labels: set[str], lang: str) -> dict[str, str]:
        """Each label's display name in `lang` (the label itself when there is no content)."""
        names = {}
        for label in labels:
            condition = await self.knowledge.condition(label) if label else None
            names[label] = (condition.names.get(lang) if condition else None) or label or "?"
        return names


def _period(
    name: str, analyses: list[AnalysisRecord], feedback: list[Feedback], names: dict[str, str]
) -> dict[str, Any]:
    photos = len(analyses)
    right = Counter(f.label for f in feedback if f.correct is True)
    wrong = Counter(f.label for f in feedback if f.correct is False)
    labels = sorted(
        set(right) | set(wrong), key=lambda label: (-right[label] - wrong[label], label)
    )
    return {
        "name": name,  # "day" or "week"
        "photos": photos,
        "by_transport": sorted(Counter(r.transport for r in analyses).items()),
        "abstain_rate": _rate(sum(r.abstain for r in analyses), photos),
        "urgent_rate": _rate(sum(r.urgent for r in analyses), photos),
        # How often each checklist rule fired (knowledge/checklist.py), most often first.
        "checklist": Counter(rule for r in analyses for rule in r.checklist_rules).most_common(),
        "right": sum(right.values()),
        "wrong": sum(wrong.values()),
        "feedback": [
            {"name": names.get(label, label), "right": right[label], "wrong": wrong[label]}
            for label in labels
        ],
    }


def _rate(count: int, total: int) -> str | None:
    """ "12%" (None when there is nothing to divide by)."""
    if not total:
        return None
    return f"{100 * count / total:.0f}%"


def _when(moment: str) -> str:
    """An ISO 8601 time as "2025-03-01 10:00" in UTC."""
    try:
        return datetime.fromtimestamp(timestamp(moment), UTC).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return moment
