"""The one interface every knowledge store implements (SQLite embedded, Firestore production).

All methods are async so the bot's event loop never waits on storage. Saves take the version
the editor started from: if the stored document has moved on, `StaleWriteError` says who
changed it, and nothing is written. The shared contract suite in tests/knowledge/ runs against
every adapter; an adapter is done when it passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from knowledge.models import (
    AdminSessionRecord,
    AlbumPhoto,
    AnalysisRecord,
    AuditEntry,
    ChecklistQuestion,
    Clinic,
    Condition,
    FaqEntry,
    Feedback,
    QueuedReply,
    UserState,
)


class StoreError(Exception):
    """The store cannot be reached or answered with an error (the bot falls back)."""


class StaleWriteError(Exception):
    """Someone saved the document since the editor loaded it."""

    def __init__(self, kind: str, key: str, expected: int, actual: int, changed_by: str):
        super().__init__(
            f"{kind} {key!r} was changed by {changed_by or 'someone'} meanwhile "
            f"(version {actual}, edit started from {expected})"
        )
        self.kind, self.key = kind, key
        self.expected, self.actual, self.changed_by = expected, actual, changed_by


@dataclass
class ImportResult:
    """What `import_clinics` did, by clinic id (in batch order)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)  # same content: not written, no audit


class KnowledgeStore(Protocol):
    # Saves audit themselves as "create" or "update"; `action="rollback"` audits a save that
    # restores an earlier version instead (knowledge/versions.py). No other action is accepted.

    # Care content, one document per model label.
    async def get_condition(self, label: str) -> Condition | None: ...
    async def list_conditions(self) -> list[Condition]: ...
    async def save_condition(
        self, condition: Condition, expected_version: int, actor: str, *, action: str | None = None
    ) -> Condition: ...

    # FAQ (list_faq(None): every entry). Deletes follow the save rule; deleting a document
    # that does not exist with expected_version 0 raises LookupError.
    async def list_faq(self, label: str | None = None) -> list[FaqEntry]: ...
    async def save_faq(
        self, entry: FaqEntry, expected_version: int, actor: str, *, action: str | None = None
    ) -> FaqEntry: ...
    async def delete_faq(self, entry_id: str, expected_version: int, actor: str) -> None: ...

    # The wording of the checklist's questions (knowledge/checklist.py), by id.
    async def list_questions(self) -> list[ChecklistQuestion]: ...
    async def save_question(
        self,
        question: ChecklistQuestion,
        expected_version: int,
        actor: str,
        *,
        action: str | None = None,
    ) -> ChecklistQuestion: ...

    # Clinics.
    async def get_clinic(self, clinic_id: str) -> Clinic | None: ...
    async def list_clinics(self) -> list[Clinic]: ...
    async def save_clinic(
        self, clinic: Clinic, expected_version: int, actor: str, *, action: str | None = None
    ) -> Clinic: ...
    async def delete_clinic(self, clinic_id: str, expected_version: int, actor: str) -> None: ...
    async def nearest_clinics(
        self,
        lat: float,
        lon: float,
        limit: int = 5,
        condition: str | None = None,
        max_km: float = 50.0,
    ) -> list[tuple[Clinic, float]]: ...  # (clinic, distance in km), nearest first
    # A whole clinic list (e.g. a CSV) in ONE transaction: every clinic is created or replaced
    # (whatever its stored version; clinics not in the batch are kept), or, on any error,
    # nothing is written. Duplicate ids or impossible coordinates raise ValueError.
    async def import_clinics(self, clinics: list[Clinic], actor: str) -> ImportResult: ...

    # Feedback and users (no photos, no raw user ids).
    async def add_feedback(self, feedback: Feedback) -> None: ...
    async def list_feedback(self, limit: int = 50, since: str | None = None) -> list[Feedback]: ...
    # newest first; `since` is an ISO 8601 instant, inclusive. delete_user also deletes feedback.
    async def get_user(self, user_key: str) -> UserState | None: ...
    async def save_user(self, state: UserState) -> None: ...
    async def delete_user(self, user_key: str) -> None: ...

    # The photos of an album waiting to be answered together (delete_user deletes them too).
    # album_photos: in arrival order (`at`, then id), the same order for every replica.
    async def add_album_photo(self, photo: AlbumPhoto) -> None: ...
    async def album_photos(self, user_key: str, album: str) -> list[AlbumPhoto]: ...
    async def delete_album(self, user_key: str, album: str) -> None: ...

    # One record per analysed photo (no photo, no user key), for admin statistics. `since` is
    # an ISO 8601 instant, inclusive; oldest first (records of the same instant in any order).
    async def record_analysis(self, record: AnalysisRecord) -> None: ...
    async def list_analyses(self, since: str) -> list[AnalysisRecord]: ...

    # Admin audit trail, oldest first.
    async def audit_log(self, kind: str, key: str) -> list[AuditEntry]: ...

    # ---- admin sessions (bot/web/admin/sessions.py) ----------------------------------------
    # One record per signed-in admin, by the hash of its session id. `touch_admin_session`
    # updates last_seen_ts only while the record exists (False when it is gone), so a request
    # racing a sign-out never brings the session back. `prune_admin_sessions` deletes every
    # record expired at `now_ts` or opened with another password (fingerprint) and says how
    # many it deleted (so a new password hash ends every session opened with the old one).
    async def create_admin_session(self, record: AdminSessionRecord) -> None: ...
    async def get_admin_session(self, id_hash: str) -> AdminSessionRecord | None: ...
    async def touch_admin_session(self, id_hash: str, last_seen_ts: float) -> bool: ...
    async def delete_admin_session(self, id_hash: str) -> None: ...
    async def prune_admin_sessions(self, now_ts: float, password_fingerprint: str) -> int: ...
    # ---- Delivery: the outbox of replies not delivered yet, and updates already seen --------
    # (bot/outbox.py). Times are Unix seconds, passed in so that every replica's clock and the
    # tests' agree on what is due.
    async def enqueue_reply(self, reply: QueuedReply) -> None: ...
    # Every queued reply (up to `limit`), in `seq` order.
    async def pending_replies(self, limit: int = 500) -> list[QueuedReply]: ...
    # The reply with its lease taken by `owner` until `lease_until`, or None when another owner
    # holds an unexpired lease or the reply is gone.
    async def claim_reply(
        self, reply_id: str, owner: str, now: float, lease_until: float
    ) -> QueuedReply | None: ...
    # A failed attempt: try again at `next_attempt`; the lease is released. Gone: nothing happens.
    async def reschedule_reply(self, reply_id: str, next_attempt: float, attempts: int) -> None: ...
    async def delete_reply(self, reply_id: str) -> None: ...
    # True the first time `key` is recorded (or when its earlier record has expired), False for
    # a repeat: one atomic check-and-record, so two replicas never both get True.
    async def record_update(self, key: str, now: float, expires_at: float) -> bool: ...
    # Forget the records expired by `now`; how many were deleted.
    async def purge_updates(self, now: float) -> int: ...

    # Health: StoreError unless the store answers now (and, for a file, is still the file that
    # was opened). One cheap read; /healthz calls it.
    async def ping(self) -> None: ...

    async def close(self) -> None: ...
