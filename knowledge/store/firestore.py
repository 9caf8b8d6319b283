"""The production knowledge store: Cloud Firestore, through the async client.

Collections: `conditions`, `faq`, `clinics` (versioned documents), `feedback`, `users`,
`analyses`, `audit`, `admin_sessions`, and for delivery `outbox` and `seen_updates`. Each
document is the model's dataclass as a map, plus top-level fields for everything a query touches
(`key`, `label`, `geohash`, `lat`, `lon`, `version`, `created_ts`, `at_ts`, `user_key`), because
queries on nested fields are not portable (the test emulator cannot run them).

Versioned saves run in a transaction: read the stored version, compare it with the one the
editor started from, write version + 1 and the audit entry together. Two guards make a lost
update impossible even where transactions do not isolate (the test emulator does not):

- the audit entry of a change is *created* (precondition: must not exist) under an id derived
  from the revision it replaces (`rev`, a random token every write renews), and it is the first
  write of the commit. Two writers that read the same revision race for the same audit id, and
  the loser's commit fails before anything of it is written;
- a new document is written with `create` (must not exist), and an update or delete carries a
  `last_update_time` precondition (Firestore checks it; the emulator ignores it).

Every call has a deadline (`timeout`, default 5 s): an unreachable Firestore gives a
`StoreError` quickly, so the bot can fall back instead of hanging a chat.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import firebase_admin
from firebase_admin import credentials, firestore_async
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import if_transient_error
from google.api_core.retry_async import AsyncRetry
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import DefaultCredentialsError
from google.cloud import firestore
from google.cloud.firestore_v1 import async_transactional
from google.cloud.firestore_v1.base_query import FieldFilter

from knowledge.config import DEFAULT_FIRESTORE_TIMEOUT_S, StoreConfig
from knowledge.geo import geohash_ranges, haversine_km
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
    clinic_from_dict,
    condition_from_dict,
    faq_from_dict,
    question_from_dict,
    to_dict,
)
from knowledge.store.protocol import ImportResult, StaleWriteError, StoreError
from knowledge.store.rules import (
    check_action,
    check_key,
    claimed,
    content_of,
    now_iso,
    prepare_clinic,
    prepare_clinic_batch,
    rescheduled,
    timestamp,
)

T = TypeVar("T")
Document = TypeVar("Document", Condition, FaqEntry, Clinic, ChecklistQuestion)

PAGE_SIZE = 300  # documents per query page (lists page by `key`, never by cursor or offset)
DELETE_PAGE_SIZE = 400  # deletes per batch when forgetting a user
IMPORT_ATTEMPTS = 3
# Fields the store adds to a document beside the dataclass's own.
_KEY, _REV, _LOGGED_AT = "key", "rev", "logged_at"
_SAFE_ID = re.compile(r"^(?!__.*__$)(?!\.{1,2}$)(?!~)[^/]{1,500}$")


@dataclasses.dataclass(frozen=True)
class _Kind:
    name: str  # as in AuditEntry.kind
    collection: str
    key: str  # the dataclass field that names a document
    type: type
    from_dict: Callable[[dict[str, Any]], Any]

    def decode(self, data: dict[str, Any]) -> Any:
        """The dataclass from a stored document (without the fields the store added)."""
        return self.from_dict(_fields_of(self.type, data))


# The dataclasses' own top-level fields (label, geohash, lat, lon, version...) are what the
# queries use, so a versioned document needs no extra columns besides `key` and `rev`.
CONDITION = _Kind("condition", "conditions", "label", Condition, condition_from_dict)
FAQ = _Kind("faq", "faq", "id", FaqEntry, faq_from_dict)
CLINIC = _Kind("clinic", "clinics", "id", Clinic, clinic_from_dict)
QUESTION = _Kind("question", "questions", "id", ChecklistQuestion, question_from_dict)
FEEDBACK, USERS, AUDIT, ANALYSES = "feedback", "users", "audit", "analyses"
ADMIN_SESSIONS = "admin_sessions"
OUTBOX, OUTBOX_GUARDS, SEEN_UPDATES = "outbox", "outbox_guards", "seen_updates"
ALBUM_PHOTOS = "album_photos"


def _fields_of(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {field.name for field in dataclasses.fields(cls)}
    return {name: value for name, value in data.items() if name in names}


class _Conflict(Exception):
    """The stored document is not at the version the editor started from."""


def document_id(key: str) -> str:
    """A Firestore document id for `key` (the key itself, unless Firestore forbids it).

    Ids like "." or "__x__" or very long ones become a hash; the key itself is always kept in
    the document's `key` field, so nothing is ever decoded from an id.
    """
    if _SAFE_ID.match(key) and len(key.encode()) <= 1500:
        return key
    return "~" + hashlib.sha256(key.encode()).hexdigest()


class _EmulatorCredential(credentials.Base):
    """firebase-admin wants a credential object; the emulator takes anonymous calls."""

    def get_credential(self) -> AnonymousCredentials:
        return AnonymousCredentials()


class FirestoreStore:
    """`KnowledgeStore` on Cloud Firestore (or the emulator FIRESTORE_EMULATOR_HOST names)."""

    def __init__(
        self,
        client: firestore.AsyncClient,
        *,
        timeout: float = DEFAULT_FIRESTORE_TIMEOUT_S,
        on_close: Callable[[], None] | None = None,
    ):
        self._client = client
        self._timeout = timeout
        self._retry = AsyncRetry(
            predicate=if_transient_error, initial=0.1, maximum=1.0, multiplier=2.0, timeout=timeout
        )
        self._on_close = on_close
        self._abandoned: set[asyncio.Task] = set()
        self._closed = False

    @classmethod
    def from_config(cls, config: StoreConfig) -> FirestoreStore:
        """The store of `config.firestore_project`, each call under `config.firestore_timeout_s`.

        With FIRESTORE_EMULATOR_HOST set the client talks to that emulator, without credentials;
        otherwise it uses the application default credentials (the service account on Cloud
        Run, or `gcloud auth application-default login` on a workstation). Nothing is sent
        until the first call.
        """
        # The client reads FIRESTORE_EMULATOR_HOST from the process environment itself.
        if os.environ.get("FIRESTORE_EMULATOR_HOST"):
            credential: credentials.Base = _EmulatorCredential()
        else:
            credential = credentials.ApplicationDefault()
        # One app per store: the async client it caches is bound to the event loop that uses
        # it, so a store never shares it, and close() deletes the app again.
        app = firebase_admin.initialize_app(
            credential,
            {"projectId": config.firestore_project},
            name=f"skincare-store-{uuid.uuid4().hex}",
        )
        try:
            client = firestore_async.client(app)  # loads the credentials now
        except DefaultCredentialsError as error:
            firebase_admin.delete_app(app)
            raise StoreError(
                "no Google credentials for Firestore: set GOOGLE_APPLICATION_CREDENTIALS to a "
                "service account key file (or run on Google Cloud), or set "
                f"FIRESTORE_EMULATOR_HOST to use an emulator ({error})"
            ) from error
        return cls(
            client,
            timeout=config.firestore_timeout_s,
            on_close=lambda: firebase_admin.delete_app(app),
        )

    # ---- plumbing -------------------------------------------------------------------------

    async def _call(self, what: str, work: Awaitable[T]) -> T:
        """Run `work` under the store's deadline; Firestore's own errors become StoreError.

        Some client calls (begin/commit/rollback of a transaction) retry an unreachable server
        for up to a minute by themselves, so the deadline is enforced here: past it the work is
        cancelled and left to finish in the background (close() waits for it).
        """
        if self._closed:
            if asyncio.iscoroutine(work):
                work.close()
            raise StoreError("the Firestore store is closed")
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=self._timeout)
        except asyncio.CancelledError:
            self._abandon(task)
            raise
        if not done:
            self._abandon(task)
            raise StoreError(f"Firestore did not answer within {self._timeout:g} s ({what})")
        try:
            return task.result()
        except (StaleWriteError, LookupError):
            raise  # answers about the data, not failures of the store
        except Exception as error:
            cause = _backend_error(error)
            if cause is None:
                raise
            raise StoreError(f"Firestore failed ({what}): {cause}") from error

    def _abandon(self, task: asyncio.Task) -> None:
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: nobody is waiting for it any more

    def _collection(self, kind: _Kind | str):
        return self._client.collection(kind if isinstance(kind, str) else kind.collection)

    def _ref(self, kind: _Kind | str, key: str):
        return self._collection(kind).document(document_id(key))

    def _audit_ref(self, kind: _Kind, key: str, revision: str):
        return self._collection(AUDIT).document(f"{kind.name}:{document_id(key)}:{revision}")

    async def _read(self, ref, transaction=None):
        return await ref.get(transaction=transaction, retry=self._retry, timeout=self._timeout)

    async def _stream(self, query) -> list[dict[str, Any]]:
        return [
            snapshot.to_dict()
            async for snapshot in query.stream(retry=self._retry, timeout=self._timeout)
        ]

    async def _all(self, kind: _Kind | str, *filters: FieldFilter) -> list[dict[str, Any]]:
        """Every document of a collection matching `filters`, in `key` order, page by page."""
        found: list[dict[str, Any]] = []
        last: str | None = None
        while True:
            query = self._collection(kind)
            for condition in filters:
                query = query.where(filter=condition)
            if last is not None:
                query = query.where(filter=FieldFilter(_KEY, ">", last))
            page = await self._stream(query.order_by(_KEY).limit(PAGE_SIZE))
            found += page
            if len(page) < PAGE_SIZE:
                return found
            last = page[-1][_KEY]

    async def _delete_matching(self, query) -> int:
        """Delete every document `query` matches, a batch per page; how many were deleted."""
        deleted = 0
        while True:  # no cursor needed: what is deleted no longer matches
            page = [
                snapshot.reference
                async for snapshot in query.limit(DELETE_PAGE_SIZE).stream(
                    retry=self._retry, timeout=self._timeout
                )
            ]
            if not page:
                return deleted
            batch = self._client.batch()
            for ref in page:
                batch.delete(ref)
            await batch.commit(retry=self._retry, timeout=self._timeout)
            deleted += len(page)

    @staticmethod
    def _encode(kind: _Kind, doc: Any, revision: str) -> dict[str, Any]:
        return {**to_dict(doc), _KEY: getattr(doc, kind.key), _REV: revision}

    async def _last_actor(self, kind: _Kind, key: str) -> str:
        entries = await self._audit_entries(kind.name, key)
        return entries[-1].actor if entries else ""

    async def _stale(self, kind: _Kind, key: str, expected: int) -> StaleWriteError:
        snapshot = await self._read(self._ref(kind, key))
        if snapshot.exists:
            data = snapshot.to_dict()
            actual, changed_by = data["version"], data.get("updated_by", "")
        else:
            actual, changed_by = 0, await self._last_actor(kind, key)
        return StaleWriteError(kind.name, key, expected, actual, changed_by)

    def _audit_data(
        self, kind: _Kind, key: str, entry_id: str, version: int, actor: str, at: str,
        action: str, before: Any, after: Any,
    ) -> dict[str, Any]:  # fmt: skip
        entry = AuditEntry(
            id=entry_id,
            kind=kind.name,
            key=key,
            version=version,
            actor=actor,
            at=at,
            action=action,
            before=None if before is None else to_dict(before),
            after=None if after is None else to_dict(after),
        )
        return {**to_dict(entry), _LOGGED_AT: firestore.SERVER_TIMESTAMP}

    def _stage_write(
        self,
        transaction,
        kind: _Kind,
        doc: Any,
        snapshot,
        actor: str,
        version: int,
        action: str | None = None,
    ) -> tuple[Any, list[Callable[[], None]], list[Callable[[], None]]]:
        """The saved document, and the writes that store it: guards first, then the rest.

        `snapshot` is the stored document as read in this transaction. The guard writes are the
        ones that fail when someone else wrote meanwhile; they must come first in a commit, as
        the emulator applies a commit's writes one by one and stops at the first failure.
        """
        key = getattr(doc, kind.key)
        ref = self._ref(kind, key)
        saved = dataclasses.replace(doc, version=version, updated_by=actor, updated_at=now_iso())
        revision = uuid.uuid4().hex
        data = self._encode(kind, saved, revision)
        if snapshot is None or not snapshot.exists:
            audit_ref = self._audit_ref(kind, key, uuid.uuid4().hex)  # no revision to guard
            audit = self._audit_data(
                kind, key, audit_ref.id, version, actor, saved.updated_at, action or "create",
                None, saved,
            )  # fmt: skip
            guards = [lambda: transaction.create(ref, data)]
            rest = [lambda: transaction.create(audit_ref, audit)]
        else:
            stored = snapshot.to_dict()
            before = kind.decode(stored)
            audit_ref = self._audit_ref(kind, key, stored[_REV])
            audit = self._audit_data(
                kind, key, audit_ref.id, version, actor, saved.updated_at, action or "update",
                before, saved,
            )  # fmt: skip
            option = self._client.write_option(last_update_time=snapshot.update_time)
            guards = [lambda: transaction.create(audit_ref, audit)]
            rest = [lambda: transaction.update(ref, data, option=option)]
        return saved, guards, rest

    async def _save(
        self,
        kind: _Kind,
        doc: Document,
        expected_version: int,
        actor: str,
        action: str | None = None,
    ):
        key = check_key(kind.name, getattr(doc, kind.key))
        _check_version(expected_version)
        check_action(action)
        ref = self._ref(kind, key)

        @async_transactional
        async def save(transaction) -> Document:
            snapshot = await self._read(ref, transaction)
            version = snapshot.get("version") if snapshot.exists else 0
            if version != expected_version:
                raise _Conflict
            saved, guards, rest = self._stage_write(
                transaction, kind, doc, snapshot, actor, version + 1, action
            )
            for write in guards + rest:
                write()
            return saved

        async def work() -> Document:
            try:
                return await save(self._client.transaction())
            except (_Conflict, api_exceptions.AlreadyExists, api_exceptions.FailedPrecondition):
                raise await self._stale(kind, key, expected_version) from None

        return await self._call(f"save {kind.name} {key!r}", work())

    async def _delete(self, kind: _Kind, key: str, expected_version: int, actor: str) -> None:
        check_key(kind.name, key)
        _check_version(expected_version)
        ref = self._ref(kind, key)

        @async_transactional
        async def delete(transaction) -> None:
            snapshot = await self._read(ref, transaction)
            if not snapshot.exists and expected_version == 0:
                raise LookupError(f"there is no {kind.name} {key!r} to delete")
            if not snapshot.exists or snapshot.get("version") != expected_version:
                raise _Conflict
            stored = snapshot.to_dict()
            audit_ref = self._audit_ref(kind, key, stored[_REV])
            audit = self._audit_data(
                kind, key, audit_ref.id, expected_version + 1, actor, now_iso(), "delete",
                kind.decode(stored), None,
            )  # fmt: skip
            transaction.create(audit_ref, audit)  # the guard: first
            option = self._client.write_option(last_update_time=snapshot.update_time)
            transaction.delete(ref, option=option)

        async def work() -> None:
            try:
                await delete(self._client.transaction())
            except (
                _Conflict,
                api_exceptions.AlreadyExists,
                api_exceptions.FailedPrecondition,
                api_exceptions.NotFound,
            ):
                raise await self._stale(kind, key, expected_version) from None

        await self._call(f"delete {kind.name} {key!r}", work())

    async def _get(self, kind: _Kind, key: str) -> Any | None:
        async def work():
            snapshot = await self._read(self._ref(kind, key))
            return kind.decode(snapshot.to_dict()) if snapshot.exists else None

        return await self._call(f"get {kind.name} {key!r}", work())

    async def _list(self, kind: _Kind, *filters: FieldFilter) -> list:
        async def work():
            return [kind.decode(data) for data in await self._all(kind, *filters)]

        return await self._call(f"list {kind.collection}", work())

    async def ping(self) -> None:
        # One read of a document that never exists: the cheapest round trip Firestore has.
        await self._get(CONDITION, "__ping__")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in list(self._abandoned):
            task.cancel()
        if self._abandoned:
            await asyncio.wait(set(self._abandoned), timeout=self._timeout)
        # The async client has no close(); its gRPC channel is made on first use.
        api = getattr(self._client, "_firestore_api_internal", None)
        if api is not None:
            await api.transport.close()
        if self._on_close is not None:
            self._on_close()

    # ---- conditions -----------------------------------------------------------------------

    async def get_condition(self, label: str) -> Condition | None:
        return await self._get(CONDITION, label)

    async def list_conditions(self) -> list[Condition]:
        return await self._list(CONDITION)

    async def save_condition(
        self, condition: Condition, expected_version: int, actor: str, *, action: str | None = None
    ) -> Condition:
        return await self._save(CONDITION, condition, expected_version, actor, action)

    # ---- FAQ ------------------------------------------------------------------------------

    async def list_faq(self, label: str | None = None) -> list[FaqEntry]:
        if label is None:
            return await self._list(FAQ)
        return await self._list(FAQ, FieldFilter("label", "==", label))

    async def save_faq(
        self, entry: FaqEntry, expected_version: int, actor: str, *, action: str | None = None
    ) -> FaqEntry:
        return await self._save(FAQ, entry, expected_version, actor, action)

    async def delete_faq(self, entry_id: str, expected_version: int, actor: str) -> None:
        await self._delete(FAQ, entry_id, expected_version, actor)

    # ---- checklist questions ----------------------------------------------------------------

    async def list_questions(self) -> list[ChecklistQuestion]:
        return await self._list(QUESTION)

    async def save_question(
        self,
        question: ChecklistQuestion,
        expected_version: int,
        actor: str,
        *,
        action: str | None = None,
    ) -> ChecklistQuestion:
        return await self._save(QUESTION, question, expected_version, actor, action)

    # ---- clinics --------------------------------------------------------------------------

    async def get_clinic(self, clinic_id: str) -> Clinic | None:
        return await self._get(CLINIC, clinic_id)

    async def list_clinics(self) -> list[Clinic]:
        return await self._list(CLINIC)

    async def save_clinic(
        self, clinic: Clinic, expected_version: int, actor: str, *, action: str | None = None
    ) -> Clinic:
        return await self._save(CLINIC, prepare_clinic(clinic), expected_version, actor, action)

    async def delete_clinic(self, clinic_id: str, expected_version: int, actor: str) -> None:
        await self._delete(CLINIC, clinic_id, expected_version, actor)

    async def nearest_clinics(
        self,
        lat: float,
        lon: float,
        limit: int = 5,
        condition: str | None = None,
        max_km: float = 50.0,
    ) -> list[tuple[Clinic, float]]:
        ranges = geohash_ranges(lat, lon, max_km)  # also checks the point and the radius
        if limit <= 0:
            return []

        async def candidates(start: str, end: str) -> list[dict[str, Any]]:
            query = self._collection(CLINIC).where(filter=FieldFilter("geohash", ">=", start))
            query = query.where(filter=FieldFilter("geohash", "<", end))
            if condition is not None:
                query = query.where(filter=FieldFilter("treats", "array_contains", condition))
            return await self._stream(query)

        async def work() -> list[tuple[Clinic, float]]:
            pages = await asyncio.gather(*(candidates(start, end) for start, end in ranges))
            found = []
            for data in (data for page in pages for data in page):
                distance = haversine_km(lat, lon, data["lat"], data["lon"])
                if distance <= max_km:
                    found.append((CLINIC.decode(data), distance))
            found.sort(key=lambda pair: (pair[1], pair[0].id))
            return found[:limit]

        return await self._call("nearest clinics", work())

    async def import_clinics(self, clinics: list[Clinic], actor: str) -> ImportResult:
        """All clinics in one transaction (one commit).

        The batch is validated before anything is sent. Firestore applies a commit atomically;
        the emulator the tests use applies its writes one by one, so there a failure in the
        middle of a commit (only a concurrent edit can cause one, as the guards come first)
        could leave part of it. A commit is limited to 10 MiB: about 1,500 typical clinics.
        """
        batch = prepare_clinic_batch(clinics)

        @async_transactional
        async def import_all(transaction) -> ImportResult:
            refs = [self._ref(CLINIC, clinic.id) for clinic in batch]
            # AsyncTransaction.get_all awaits an async generator (a TypeError in
            # google-cloud-firestore 2.34); the client's get_all in the transaction is the same.
            reads = self._client.get_all(
                refs, transaction=transaction, retry=self._retry, timeout=self._timeout
            )
            snapshots = {snapshot.reference.path: snapshot async for snapshot in reads}
            result = ImportResult()
            guards, rest = [], []
            for clinic, ref in zip(batch, refs, strict=True):
                snapshot = snapshots.get(ref.path)
                if snapshot is None or not snapshot.exists:
                    result.created.append(clinic.id)
                    version = 0
                else:
                    stored = CLINIC.decode(snapshot.to_dict())
                    if content_of(stored) == content_of(clinic):
                        result.unchanged.append(clinic.id)
                        continue
                    result.updated.append(clinic.id)
                    version = stored.version
                _, clinic_guards, clinic_rest = self._stage_write(
                    transaction, CLINIC, clinic, snapshot, actor, version + 1
                )
                guards += clinic_guards
                rest += clinic_rest
            for write in guards + rest:
                write()
            return result

        async def work() -> ImportResult:
            # A concurrent edit makes a guard fail; the import replaces whatever is stored, so
            # it simply runs again on what is there now.
            attempts_left = IMPORT_ATTEMPTS
            while True:
                attempts_left -= 1
                try:
                    return await import_all(self._client.transaction())
                except (api_exceptions.AlreadyExists, api_exceptions.FailedPrecondition):
                    if attempts_left == 0:
                        raise

        return await self._call(f"import {len(batch)} clinics", work())

    # ---- feedback and users ---------------------------------------------------------------

    async def add_feedback(self, feedback: Feedback) -> None:
        check_key("feedback", feedback.id)
        data = {
            **to_dict(feedback),
            "created_ts": timestamp(feedback.created_at),
            # Newest first among equal times, as in SQLite. Seconds as a float: the emulator
            # refuses integers beyond 2**53, such as time.time_ns().
            "added_at": time.time(),
        }
        ref = self._ref(FEEDBACK, feedback.id)
        await self._call("add feedback", ref.set(data, retry=self._retry, timeout=self._timeout))

    async def list_feedback(self, limit: int = 50, since: str | None = None) -> list[Feedback]:
        if limit <= 0:
            return []
        query = self._collection(FEEDBACK)
        if since is not None:
            query = query.where(filter=FieldFilter("created_ts", ">=", timestamp(since)))
        query = query.order_by("created_ts", direction=firestore.Query.DESCENDING)
        query = query.order_by("added_at", direction=firestore.Query.DESCENDING).limit(limit)

        async def work() -> list[Feedback]:
            return [Feedback(**_fields_of(Feedback, data)) for data in await self._stream(query)]

        return await self._call("list feedback", work())

    async def get_user(self, user_key: str) -> UserState | None:
        async def work() -> UserState | None:
            snapshot = await self._read(self._ref(USERS, user_key))
            if not snapshot.exists:
                return None
            data = snapshot.to_dict()
            last_result = data.pop("last_result_json", None)
            data["last_result"] = None if last_result is None else json.loads(last_result)
            return UserState(**_fields_of(UserState, data))

        return await self._call("get user", work())

    async def save_user(self, state: UserState) -> None:
        check_key("user", state.user_key)
        data = to_dict(state)
        # As JSON text: whatever the classifier returns (lists of lists, keys with dots) fits,
        # where a Firestore map would refuse nested arrays.
        last_result = data.pop("last_result")
        data["last_result_json"] = (
            None if last_result is None else json.dumps(last_result, ensure_ascii=False)
        )
        data[_KEY] = state.user_key
        data["recent_messages"] = [float(value) for value in state.recent_messages]
        ref = self._ref(USERS, state.user_key)
        await self._call("save user", ref.set(data, retry=self._retry, timeout=self._timeout))

    async def delete_user(self, user_key: str) -> None:
        """Forget a user: their state and every piece of feedback they gave."""

        async def work() -> None:
            await self._ref(USERS, user_key).delete(retry=self._retry, timeout=self._timeout)
            query = self._collection(FEEDBACK).where(filter=FieldFilter("user_key", "==", user_key))
            await self._delete_matching(query)
            query = self._collection(ALBUM_PHOTOS).where(
                filter=FieldFilter("user_key", "==", user_key)
            )
            await self._delete_matching(query)

        await self._call("delete user", work())

    # ---- albums ---------------------------------------------------------------------------

    async def add_album_photo(self, photo: AlbumPhoto) -> None:
        check_key("album photo", photo.id)
        # `probabilities` as JSON text, like a user's last result: label keys may hold dots.
        data = to_dict(photo)
        data["probabilities"] = json.dumps(photo.probabilities)
        data["at_ts"] = timestamp(photo.at)
        ref = self._ref(ALBUM_PHOTOS, photo.id)
        await self._call("add album photo", ref.set(data, retry=self._retry, timeout=self._timeout))

    def _album_query(self, user_key: str, album: str):
        # Two equality filters on top-level fields: served by the single-field indexes.
        return (
            self._collection(ALBUM_PHOTOS)
            .where(filter=FieldFilter("user_key", "==", user_key))
            .where(filter=FieldFilter("album", "==", album))
        )

    async def album_photos(self, user_key: str, album: str) -> list[AlbumPhoto]:
        query = self._album_query(user_key, album)

        async def work() -> list[AlbumPhoto]:
            rows = await self._stream(query)
            # Sorted here rather than by an order_by, which would need a composite index.
            rows.sort(key=lambda data: (data["at_ts"], data["id"]))
            for data in rows:
                data["probabilities"] = json.loads(data["probabilities"])
            return [AlbumPhoto(**_fields_of(AlbumPhoto, data)) for data in rows]

        return await self._call("list album photos", work())

    async def delete_album(self, user_key: str, album: str) -> None:
        query = self._album_query(user_key, album)
        await self._call("delete album", self._delete_matching(query))

    # ---- analyses -------------------------------------------------------------------------

    async def record_analysis(self, record: AnalysisRecord) -> None:
        check_key("analysis", record.id)
        data = {**to_dict(record), "at_ts": timestamp(record.at)}
        ref = self._ref(ANALYSES, record.id)
        await self._call("record analysis", ref.set(data, retry=self._retry, timeout=self._timeout))

    async def list_analyses(self, since: str) -> list[AnalysisRecord]:
        # One range query on the top-level `at_ts` (seconds, so that any spelling of an instant
        # compares as the instant); a single-field index, nothing to declare.
        query = self._collection(ANALYSES).where(
            filter=FieldFilter("at_ts", ">=", timestamp(since))
        )
        query = query.order_by("at_ts")

        async def work() -> list[AnalysisRecord]:
            rows = await self._stream(query)
            return [AnalysisRecord(**_fields_of(AnalysisRecord, data)) for data in rows]

        return await self._call("list analyses", work())

    # ---- delivery: outbox and updates seen ------------------------------------------------
    # Every change of a queued reply (a claim, a reschedule) runs in a transaction that reads
    # it, and is guarded as versioned saves are (module docstring): its first write *creates*
    # `outbox_guards/<reply id>:<rev>` for the revision it read, and the reply gets a new `rev`.
    # Two replicas claiming the same revision race for one guard id and the loser's commit
    # fails before it writes anything, on the emulator too: a lease has one holder.

    async def enqueue_reply(self, reply: QueuedReply) -> None:
        check_key("queued reply", reply.id)
        ref = self._ref(OUTBOX, reply.id)
        data = {**to_dict(reply), _REV: uuid.uuid4().hex}
        await self._call("queue a reply", ref.set(data, retry=self._retry, timeout=self._timeout))

    async def pending_replies(self, limit: int = 500) -> list[QueuedReply]:
        if limit <= 0:
            return []
        query = self._collection(OUTBOX).order_by("seq").limit(limit)

        async def work() -> list[QueuedReply]:
            rows = await self._stream(query)
            rows.sort(key=lambda row: (row["seq"], row["id"]))  # ties: as SQLite orders them
            return [QueuedReply(**_fields_of(QueuedReply, row)) for row in rows]

        return await self._call("list queued replies", work())

    async def _change_reply(
        self, what: str, reply_id: str, change: Callable[[QueuedReply], QueuedReply | None]
    ) -> QueuedReply | None:
        """Read the reply in a transaction and write `change(reply)` back over it (None: no
        write); returns what was written, or None when someone else changed it meanwhile."""
        ref = self._ref(OUTBOX, reply_id)

        @async_transactional
        async def update(transaction) -> QueuedReply | None:
            snapshot = await self._read(ref, transaction)
            if not snapshot.exists:
                return None
            stored = snapshot.to_dict()
            changed = change(QueuedReply(**_fields_of(QueuedReply, stored)))
            if changed is not None:
                guard = self._ref(OUTBOX_GUARDS, f"{reply_id}:{stored[_REV]}")
                transaction.create(guard, {"reply_id": reply_id})  # the guard: first
                data = {**to_dict(changed), _REV: uuid.uuid4().hex}
                transaction.update(ref, data)
            return changed

        async def work() -> QueuedReply | None:
            try:
                return await update(self._client.transaction())
            except (api_exceptions.AlreadyExists, api_exceptions.NotFound):
                return None  # changed or deleted by someone else meanwhile

        return await self._call(what, work())

    async def claim_reply(
        self, reply_id: str, owner: str, now: float, lease_until: float
    ) -> QueuedReply | None:
        return await self._change_reply(
            "claim a queued reply", reply_id, lambda reply: claimed(reply, owner, now, lease_until)
        )

    async def reschedule_reply(self, reply_id: str, next_attempt: float, attempts: int) -> None:
        await self._change_reply(
            "reschedule a queued reply",
            reply_id,
            lambda reply: rescheduled(reply, next_attempt, attempts),
        )

    async def delete_reply(self, reply_id: str) -> None:
        async def work() -> None:
            await self._ref(OUTBOX, reply_id).delete(retry=self._retry, timeout=self._timeout)
            guards = self._collection(OUTBOX_GUARDS)
            await self._delete_matching(
                guards.where(filter=FieldFilter("reply_id", "==", reply_id))
            )

        await self._call("delete a queued reply", work())

    async def record_update(self, key: str, now: float, expires_at: float) -> bool:
        ref = self._ref(SEEN_UPDATES, key)
        data = {_KEY: key, "expires_at": expires_at}

        async def work() -> bool:
            try:
                # `create` fails when the document exists, atomically, on the emulator too.
                await ref.create(data, retry=self._retry, timeout=self._timeout)
                return True
            except api_exceptions.AlreadyExists:
                pass
            snapshot = await self._read(ref)
            if snapshot.exists and snapshot.get("expires_at") > now:
                return False
            # Expired (or purged meanwhile): renew it, unless another replica just did.
            try:
                if snapshot.exists:
                    option = self._client.write_option(last_update_time=snapshot.update_time)
                    await ref.update(data, option=option, retry=self._retry, timeout=self._timeout)
                else:
                    await ref.create(data, retry=self._retry, timeout=self._timeout)
            except (api_exceptions.FailedPrecondition, api_exceptions.AlreadyExists):
                return False
            return True

        return await self._call("record an update", work())

    async def purge_updates(self, now: float) -> int:
        query = self._collection(SEEN_UPDATES).where(filter=FieldFilter("expires_at", "<=", now))

        return await self._call("purge updates seen", self._delete_matching(query))

    # ---- audit ----------------------------------------------------------------------------

    async def _audit_entries(self, kind: str, key: str) -> list[AuditEntry]:
        query = self._collection(AUDIT).where(filter=FieldFilter("kind", "==", kind))
        query = query.where(filter=FieldFilter("key", "==", key))
        rows = await self._stream(query)
        # Commit time first (one clock for every replica), then the writer's own clock: the
        # emulator's commit times are only milliseconds apart.
        rows.sort(key=lambda row: (row.get(_LOGGED_AT), timestamp(row["at"]), row["version"]))
        return [AuditEntry(**_fields_of(AuditEntry, row)) for row in rows]

    async def audit_log(self, kind: str, key: str) -> list[AuditEntry]:
        return await self._call(f"audit log of {kind} {key!r}", self._audit_entries(kind, key))

    # ---- admin sessions -------------------------------------------------------------------

    async def create_admin_session(self, record: AdminSessionRecord) -> None:
        ref = self._ref(ADMIN_SESSIONS, record.id_hash)
        await self._call(
            "create admin session",
            ref.create(to_dict(record), retry=self._retry, timeout=self._timeout),
        )

    async def get_admin_session(self, id_hash: str) -> AdminSessionRecord | None:
        async def work() -> AdminSessionRecord | None:
            snapshot = await self._read(self._ref(ADMIN_SESSIONS, id_hash))
            if not snapshot.exists:
                return None
            return AdminSessionRecord(**_fields_of(AdminSessionRecord, snapshot.to_dict()))

        return await self._call("get admin session", work())

    async def touch_admin_session(self, id_hash: str, last_seen_ts: float) -> bool:
        async def work() -> bool:
            try:
                # `update` requires the document to exist: a deleted session stays deleted.
                await self._ref(ADMIN_SESSIONS, id_hash).update(
                    {"last_seen_ts": last_seen_ts}, retry=self._retry, timeout=self._timeout
                )
            except api_exceptions.NotFound:
                return False
            return True

        return await self._call("touch admin session", work())

    async def delete_admin_session(self, id_hash: str) -> None:
        ref = self._ref(ADMIN_SESSIONS, id_hash)
        await self._call(
            "delete admin session", ref.delete(retry=self._retry, timeout=self._timeout)
        )

    async def prune_admin_sessions(self, now_ts: float, password_fingerprint: str) -> int:
        async def work() -> int:
            # Few documents (one per signed-in admin): read them all and filter here, instead
            # of a `!=` query on the fingerprint.
            stale = [
                snapshot.reference
                async for snapshot in self._collection(ADMIN_SESSIONS).stream(
                    retry=self._retry, timeout=self._timeout
                )
                if snapshot.get("expires_ts") <= now_ts
                or snapshot.get("password_fingerprint") != password_fingerprint
            ]
            for ref in stale:
                await ref.delete(retry=self._retry, timeout=self._timeout)
            return len(stale)

        return await self._call("prune admin sessions", work())


def _check_version(expected_version: int) -> None:
    if expected_version < 0:
        raise ValueError(f"expected_version must be 0 (create) or more, not {expected_version}")


_BACKEND_ERRORS = (api_exceptions.GoogleAPIError, asyncio.TimeoutError)


def _backend_error(error: BaseException) -> BaseException | None:
    """The Firestore/gRPC error behind `error`, if any (also through an exception's context:
    a failed transaction's rollback can raise over the error that made it fail)."""
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _BACKEND_ERRORS) or type(current).__module__.startswith("grpc"):
            return current
        current = current.__cause__ or current.__context__
    return None
