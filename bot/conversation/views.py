"""Turning content and numbers into what templates show: names, percentages, care content.

`Speaker` renders a template in the user's language into a `Reply`; the functions below make
the plain values templates take (no formatting in Python beyond that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from bot.conversation.replies import Reply
from bot.texts import Texts
from knowledge.models import Condition, Triage, UserState

# Probability -> the word that says how likely, highest first (words.j2 holds the words).
LIKELIHOOD_WORDS = ((0.8, "very_likely"), (0.5, "likely"), (0.25, "possible"))


@dataclass(frozen=True)
class Speaker:
    """Renders replies in the user's chosen language."""

    texts: Texts

    def reply(self, template: str, state: UserState, **context: Any) -> Reply:
        return Reply(text=self.texts.render(template, state.language, **context))

    def word(self, name: str, state: UserState) -> str:
        return self.texts.word(name, state.language)

    def likelihood(self, prob: float, state: UserState) -> str:
        for threshold, word in LIKELIHOOD_WORDS:
            if prob >= threshold:
                return self.word(word, state)
        return self.word("less_likely", state)


def condition_name(label: str, condition: Condition | None, lang: str, ranked: Any = None) -> str:
    """The condition's name from the care content; else the model card's; else the label."""
    if condition is not None and condition.names.get(lang):
        return condition.names[lang]
    if ranked is not None:
        return getattr(ranked, f"name_{lang}", label)
    return label.replace("_", " ")


def triage_level(condition: Condition | None, urgent: bool) -> str:
    if urgent:
        return str(Triage.URGENT)
    return str(condition.triage) if condition is not None else str(Triage.SEE_DOCTOR)


def condition_view(condition: Condition | None, lang: str) -> dict[str, Any] | None:
    """The care content in one language, as plain values for a template."""
    if condition is None:
        return None

    def pick(values: dict) -> Any:
        return values.get(lang) or values.get("en") or ([] if isinstance(values, dict) else "")

    return {
        "label": condition.label,
        "name": pick(condition.names) or condition.label,
        "summary": pick(condition.summary) or "",
        "triage": str(condition.triage),
        "care_steps": condition.care_steps.get(lang) or [],
        "red_flags": condition.red_flags.get(lang) or [],
        "see_doctor_when": condition.see_doctor_when.get(lang) or [],
        "ingredients": [
            {
                "name": item.name.get(lang, ""),
                "use": item.use.get(lang, ""),
                "cautions": item.cautions.get(lang, ""),
            }
            for item in condition.ingredients
        ],
        "contagious": condition.contagious.get(lang, ""),
        "improvement_time": condition.improvement_time.get(lang, ""),
        "sources": [{"name": s.name, "url": s.url} for s in condition.sources],
    }


def percent(prob: float) -> str:
    value = prob * 100
    return "<1%" if value < 1 else f"{value:.0f}%"


def map_url(lat: float, lon: float, name: str) -> str:
    return f"https://map.kakao.com/link/map/{quote(name or 'clinic')},{lat:.6f},{lon:.6f}"
