"""The one interface every knowledge store implements (SQLite embedded, Firestore production).

All methods are async so the bot's event loop never waits on storage. Saves take the version
the editor started from: if the stored document has moved on, `StaleWriteError` says who
changed it, and nothing is written. The shared contract suite in tests/knowledge/ runs against
every adapter; an adapter is done when it passes.
"""

from __future__ import annotations

from typing import Protocol

from knowledge.models import (
    AuditEntry,
    Clinic,
    Condition,
    FaqEntry,
    Feedback,
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


class KnowledgeStore(Protocol):
    # Care content, one document per model label.
    async def get_condition(self, label: str) -> Condition | None: ...
    async def list_conditions(self) -> list[Condition]: ...
    async def save_condition(
        self, condition: Condition, expected_version: int, actor: str
    ) -> Condition: ...

    # FAQ.
    async def list_faq(self, label: str | None = None) -> list[FaqEntry]: ...
    async def save_faq(self, entry: FaqEntry, expected_version: int, actor: str) -> FaqEntry: ...
    async def delete_faq(self, entry_id: str, expected_version: int, actor: str) -> None: ...

    # Clinics.
    async def get_clinic(self, clinic_id: str) -> Clinic | None: ...
    async def list_clinics(self) -> list[Clinic]: ...
    async def save_clinic(self, clinic: Clinic, expected_version: int, actor: str) -> Clinic: ...
    async def delete_clinic(self, clinic_id: str, expected_version: int, actor: str) -> None: ...
    async def nearest_clinics(
        self,
        lat: float,
        lon: float,
        limit: int = 5,
        condition: str | None = None,
        max_km: float = 50.0,
    ) -> list[tuple[Clinic, float]]: ...  # (clinic, distance in km), nearest first

    # Feedback and users (no photos, no raw user ids).
    async def add_feedback(self, feedback: Feedback) -> None: ...
    async def list_feedback(self, limit: int = 50, since: str | None = None) -> list[Feedback]: ...
    async def get_user(self, user_key: str) -> UserState | None: ...
    async def save_user(self, state: UserState) -> None: ...
    async def delete_user(self, user_key: str) -> None: ...

    # Admin audit trail.
    async def audit_log(self, kind: str, key: str) -> list[AuditEntry]: ...

    async def close(self) -> None: ...
