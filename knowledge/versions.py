"""Versions of care content, FAQ entries, clinics and checklist wording: history, readable
diffs and rollback.

Written against the `KnowledgeStore` protocol only, so it works on every adapter. The history
is the store's audit trail (every save and delete, with the document before and after). A
rollback is an ordinary versioned save of an earlier version's content: it creates a NEW version
(nothing is rewritten), `StaleWriteError` still refuses it when someone saved meanwhile, and its
audit entry says `action == "rollback"`. Restoring a deleted document is a rollback with
`expected_version=0` (the document does not exist now); like any create after a delete, the
restored document starts again at version 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from knowledge.models import (
    AuditEntry,
    clinic_from_dict,
    condition_from_dict,
    faq_from_dict,
    question_from_dict,
)
from knowledge.store import KnowledgeStore
from knowledge.store.rules import MANAGED_FIELDS

KINDS = ("condition", "faq", "clinic", "question")
_MISSING: Any = object()


@dataclass
class FieldChange:
    path: str  # e.g. "summary.en", "care_steps.ko[2]", "ingredients[0].name.en"
    before: Any  # None where the field did not exist (or the document did not)
    after: Any  # None where the field was removed (or the document deleted)


def diff(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[FieldChange]:
    """What changed from one version of a document to another, field by field (sorted by path
    name at each level, so the order is the same whichever store the versions came from).

    Maps and lists are walked down to their values (list items by position), so a changed care
    step reads as `care_steps.ko[2]`, not as the whole list. The fields the store manages
    (version, updated_by, updated_at, geohash) are left out. `None` stands for "no document"
    (created / deleted): every field is then listed as added / removed.
    """
    old = {k: v for k, v in (before or {}).items() if k not in MANAGED_FIELDS}
    new = {k: v for k, v in (after or {}).items() if k not in MANAGED_FIELDS}
    changes: list[FieldChange] = []
    _walk("", old, new, changes)
    return changes


def _walk(path: str, before: Any, after: Any, changes: list[FieldChange]) -> None:
    if before == after:
        return
    if _both(before, after, dict):
        before = {} if before is _MISSING else before
        after = {} if after is _MISSING else after
        for key in sorted(set(before) | set(after), key=str):
            child = f"{path}.{key}" if path else str(key)
            _walk(child, before.get(key, _MISSING), after.get(key, _MISSING), changes)
        return
    if _both(before, after, list):
        before = [] if before is _MISSING else before
        after = [] if after is _MISSING else after
        for index in range(max(len(before), len(after))):
            _walk(
                f"{path}[{index}]",
                before[index] if index < len(before) else _MISSING,
                after[index] if index < len(after) else _MISSING,
                changes,
            )
        return
    before = None if before is _MISSING else before
    after = None if after is _MISSING else after
    if before != after:  # a field that is None on one side and absent on the other: no change
        changes.append(FieldChange(path, before, after))


def _both(before: Any, after: Any, kind: type) -> bool:
    """Whether both sides are `kind` (or missing, with the other one `kind`)."""
    present = [value for value in (before, after) if value is not _MISSING]
    return bool(present) and all(isinstance(value, kind) for value in present)


def _check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind is one of {KINDS}, not {kind!r}")
    return kind


async def history(store: KnowledgeStore, kind: str, key: str) -> list[AuditEntry]:
    """Every change of one document, newest first (`diff(entry.before, entry.after)` each)."""
    return list(reversed(await store.audit_log(_check_kind(kind), key)))


async def version_of(
    store: KnowledgeStore, kind: str, key: str, version: int, entry_id: str | None = None
) -> AuditEntry:
    """The audit entry that created `version` (LookupError when there is none).

    A document deleted and created again starts over at version 1, so a number can name two
    entries: the newest one is taken (the document's current life), unless `entry_id` names
    the entry exactly.
    """
    return _find(await history(store, kind, key), kind, key, version, entry_id)


def _find(
    entries: list[AuditEntry], kind: str, key: str, version: int, entry_id: str | None
) -> AuditEntry:
    for entry in entries:  # newest first
        if entry.version == version and entry_id in (None, entry.id):
            return entry
    which = f" (audit entry {entry_id})" if entry_id else ""
    raise LookupError(f"{kind} {key!r} has no version {version}{which}")


async def rollback(
    store: KnowledgeStore,
    kind: str,
    key: str,
    to_version: int,
    expected_version: int,
    actor: str,
    *,
    entry_id: str | None = None,
) -> Any:
    """Save the content `key` had at `to_version` as a new version, audited as "rollback".

    `expected_version` is the version the admin was looking at: StaleWriteError, naming who
    saved meanwhile, when it has moved on. For a document that is deleted now, that is 0 (what
    the store holds) or the version of the deletion, the newest history entry. LookupError for a
    version that never existed; ValueError for a version that was a delete (nothing to restore).
    `entry_id` picks one audit entry where `to_version` is ambiguous (see `version_of`).
    Returns the saved document (Condition, FaqEntry, Clinic or ChecklistQuestion).
    """
    entries = await history(store, kind, key)
    entry = _find(entries, kind, key, to_version, entry_id)
    if entries and entries[0].action == "delete" and expected_version == entries[0].version:
        expected_version = 0  # the admin saw the deletion; the save checks it is still absent
    if entry.after is None:
        raise ValueError(
            f"version {to_version} of {kind} {key!r} is its deletion: roll back to a version "
            "before it"
        )
    if kind == "condition":
        return await store.save_condition(
            condition_from_dict(entry.after), expected_version, actor, action="rollback"
        )
    if kind == "faq":
        return await store.save_faq(
            faq_from_dict(entry.after), expected_version, actor, action="rollback"
        )
    if kind == "question":
        return await store.save_question(
            question_from_dict(entry.after), expected_version, actor, action="rollback"
        )
    return await store.save_clinic(
        clinic_from_dict(entry.after), expected_version, actor, action="rollback"
    )
