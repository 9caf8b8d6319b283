"""Seeding a store from the content files shipped in knowledge/content/.

`seed(store)` writes the care content, FAQ and clinics into it: what is missing is created, what
an earlier seed wrote from older content is updated, and what a person edited since (an admin
save) is kept and reported. Running it twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from knowledge.checklist import shipped_questions
from knowledge.content import CONTENT_DIR, load_clinics_csv, load_conditions
from knowledge.faq import load_faq
from knowledge.models import ChecklistQuestion, Clinic, Condition, FaqEntry
from knowledge.store.protocol import KnowledgeStore
from knowledge.store.rules import content_of


@dataclass
class SeedReport:
    """Per kind ("condition", "faq", "clinic"): the keys created, updated, unchanged, kept."""

    created: dict[str, list[str]] = field(default_factory=dict)
    updated: dict[str, list[str]] = field(default_factory=dict)
    unchanged: dict[str, list[str]] = field(default_factory=dict)
    kept: dict[str, list[str]] = field(default_factory=dict)  # edited by a person: not replaced

    @property
    def changed(self) -> bool:
        return any(self.created.values()) or any(self.updated.values())

    def summary(self) -> str:
        lines = []
        for kind in ("condition", "faq", "clinic", "question"):
            counts = ", ".join(
                f"{len(getattr(self, name).get(kind, []))} {name}"
                for name in ("created", "updated", "unchanged", "kept")
            )
            lines.append(f"{kind}: {counts}")
            for key in self.kept.get(kind, []):
                lines.append(f"  kept {kind} {key!r}: edited since the last seed, not replaced")
        return "\n".join(lines)


def _as_list(documents: Any) -> list:
    if isinstance(documents, Mapping):
        return list(documents.values())
    return list(documents)


def load_content() -> tuple[list[Condition], list[FaqEntry], list[Clinic]]:
    """Conditions, FAQ and clinics from knowledge/content/ (ContentError when they are wrong)."""
    return (
        _as_list(load_conditions()),
        _as_list(load_faq()),
        _as_list(load_clinics_csv(CONTENT_DIR / "clinics.csv")),
    )


async def seed(
    store: KnowledgeStore,
    actor: str = "seed",
    *,
    conditions: Iterable[Condition] | None = None,
    faq: Iterable[FaqEntry] | None = None,
    clinics: Iterable[Clinic] | None = None,
    questions: Iterable[ChecklistQuestion] | None = None,
) -> SeedReport:
    """Write the shipped content into `store`: missing documents, and those an earlier seed wrote
    from older content. A document someone else saved since is kept (listed in `report.kept`).

    Without arguments the documents come from knowledge/content/; tests pass their own.
    """
    if conditions is None and faq is None and clinics is None:
        conditions, faq, clinics = load_content()
        questions = shipped_questions() if questions is None else questions
    report = SeedReport()
    stored_conditions = {c.label: c for c in await store.list_conditions()}
    stored_faq = {entry.id: entry for entry in await store.list_faq()}
    stored_clinics = {clinic.id: clinic for clinic in await store.list_clinics()}
    stored_questions = {question.id: question for question in await store.list_questions()}
    plans = [
        ("condition", conditions or [], "label", stored_conditions, store.save_condition),
        ("faq", faq or [], "id", stored_faq, store.save_faq),
        ("clinic", clinics or [], "id", stored_clinics, store.save_clinic),
    ]
    if questions is not None:  # callers that pass their own content may leave the wording out
        plans.append(("question", questions, "id", stored_questions, store.save_question))
    for kind, documents, key_field, stored, save in plans:
        for name in ("created", "updated", "unchanged", "kept"):
            getattr(report, name)[kind] = []
        for document in documents:
            key = getattr(document, key_field)
            current = stored.get(key)
            if current is None:
                await save(document, 0, actor)
                report.created[kind].append(key)
            elif content_of(current) == content_of(document):
                report.unchanged[kind].append(key)
            elif current.updated_by == actor:
                await save(document, current.version, actor)
                report.updated[kind].append(key)
            else:
                report.kept[kind].append(key)
    return report
