"""Opening the configured store, seeding it from the content files, and rules every adapter shares.

`open_store(settings)` gives the `KnowledgeStore` that SKINCARE_STORE names. `seed(store)` writes
the care content, FAQ and clinics shipped in knowledge/content/ into it: what is missing is
created, what an earlier seed wrote from older content is updated, and what a person edited since
(an admin save) is kept and reported. Running it twice changes nothing the second time.

The helpers below (`prepare_clinic`, `content_of`, `timestamp`, ...) are the rules both adapters
apply the same way, so the shared contract suite sees one behaviour.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from knowledge.geo import STORED_PRECISION, geohash_encode
from knowledge.models import Clinic, Condition, FaqEntry, to_dict
from knowledge.store import KnowledgeStore

if TYPE_CHECKING:
    from bot.settings import Settings

# Fields a store manages itself; two documents with the same content differ only in these.
MANAGED_FIELDS = ("version", "updated_by", "updated_at", "geohash")


async def open_store(settings: Settings) -> KnowledgeStore:
    """The store SKINCARE_STORE names, opened now so a bad path or project fails at start-up."""
    if settings.store == "sqlite":
        from knowledge.sqlite_store import SqliteStore

        store = SqliteStore(settings.db_path)
        await store.connect()
        return store
    if settings.store == "firestore":
        from knowledge.firestore_store import FirestoreStore

        store = FirestoreStore.from_settings(settings)
        if inspect.isawaitable(store):
            store = await store
        return store
    raise ValueError(f"unknown store {settings.store!r}")


# ---- rules shared by the adapters ---------------------------------------------------------


def now_iso() -> str:
    """Now in ISO 8601, UTC, with microseconds (what every store writes as updated_at)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def timestamp(value: str) -> float:
    """Seconds since the epoch of an ISO 8601 time; one without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def check_key(kind: str, key: Any) -> str:
    if not isinstance(key, str) or not key.strip():
        raise ValueError(f"a {kind} needs a non-empty id, not {key!r}")
    if "/" in key:  # Firestore document ids cannot hold one; refuse it everywhere alike
        raise ValueError(f"a {kind} id cannot contain '/': {key!r}")
    return key


# What a caller may name as a save's audit action; otherwise it is "create" or "update".
SAVE_ACTIONS = ("rollback",)


def check_action(action: str | None) -> str | None:
    if action is not None and action not in SAVE_ACTIONS:
        raise ValueError(f"a save's action is one of {SAVE_ACTIONS} or None, not {action!r}")
    return action


def prepare_clinic(clinic: Clinic) -> Clinic:
    """The clinic with its geohash filled in; ValueError for an id or place that cannot be."""
    check_key("clinic", clinic.id)
    try:
        geohash = geohash_encode(float(clinic.lat), float(clinic.lon), STORED_PRECISION)
    except (TypeError, ValueError):
        raise ValueError(
            f"clinic {clinic.id!r} has impossible coordinates ({clinic.lat}, {clinic.lon})"
        ) from None
    return dataclasses.replace(
        clinic, lat=float(clinic.lat), lon=float(clinic.lon), geohash=geohash
    )


def prepare_clinic_batch(clinics: Iterable[Clinic]) -> list[Clinic]:
    """Every clinic of an import, prepared; or ValueError naming each problem, before any write."""
    batch, seen, problems = [], set(), []
    for position, clinic in enumerate(clinics, start=1):
        try:
            prepared = prepare_clinic(clinic)
        except ValueError as error:
            problems.append(f"item {position}: {error}")
            continue
        if prepared.id in seen:
            problems.append(f"item {position}: clinic id {prepared.id!r} appears twice")
        seen.add(prepared.id)
        batch.append(prepared)
    if problems:
        raise ValueError("clinic import refused, nothing written: " + "; ".join(problems))
    return batch


def content_of(document: Any) -> dict[str, Any]:
    """A document as a dict without the fields the store manages (to compare contents)."""
    data = to_dict(document)
    for name in MANAGED_FIELDS:
        data.pop(name, None)
    return data


# ---- seeding ------------------------------------------------------------------------------


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
        for kind in ("condition", "faq", "clinic"):
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
    from knowledge.content import CONTENT_DIR, load_clinics_csv, load_conditions
    from knowledge.faq import load_faq

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
) -> SeedReport:
    """Write the shipped content into `store`: missing documents, and those an earlier seed wrote
    from older content. A document someone else saved since is kept (listed in `report.kept`).

    Without arguments the documents come from knowledge/content/; tests pass their own.
    """
    if conditions is None and faq is None and clinics is None:
        conditions, faq, clinics = load_content()
    report = SeedReport()
    stored_conditions = {c.label: c for c in await store.list_conditions()}
    stored_faq = {entry.id: entry for entry in await store.list_faq()}
    stored_clinics = {clinic.id: clinic for clinic in await store.list_clinics()}
    plans = [
        ("condition", conditions or [], "label", stored_conditions, store.save_condition),
        ("faq", faq or [], "id", stored_faq, store.save_faq),
        ("clinic", clinics or [], "id", stored_clinics, store.save_clinic),
    ]
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
