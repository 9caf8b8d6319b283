"""Rules every store adapter applies the same way, so the shared contract suite sees one behaviour.

Keys, save actions, clinic coordinates and geohashes, timestamps, and what counts as a
document's content (`content_of`: without the fields the store manages) are decided here once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from knowledge.geo import STORED_PRECISION, geohash_encode
from knowledge.models import Clinic, QueuedReply, to_dict

# Fields a store manages itself; two documents with the same content differ only in these.
MANAGED_FIELDS = ("version", "updated_by", "updated_at", "geohash")


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


# ---- delivery: the outbox's lease ----------------------------------------------------------


def claimed(reply: QueuedReply, owner: str, now: float, lease_until: float) -> QueuedReply | None:
    """`reply` leased to `owner`, or None while someone else's lease runs."""
    if reply.claimed_by != owner and reply.claimed_until > now:
        return None
    return dataclasses.replace(reply, claimed_by=owner, claimed_until=lease_until)


def rescheduled(reply: QueuedReply, next_attempt: float, attempts: int) -> QueuedReply:
    """`reply` after a failed attempt: due again at `next_attempt`, its lease released."""
    return dataclasses.replace(
        reply, next_attempt=next_attempt, attempts=attempts, claimed_by="", claimed_until=0.0
    )
