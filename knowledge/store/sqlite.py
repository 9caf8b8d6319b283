"""The embedded knowledge store: one SQLite file, the default when nothing is configured.

Every document is kept as JSON next to the columns that queries need (label, geohash, lat/lon,
version, timestamps). All SQL runs on one connection in a worker thread (`asyncio.to_thread`)
behind a lock, so the event loop never waits on the disk and the connection is never used by
two threads at once. WAL mode lets another process (the `python -m knowledge` command line)
read while the bot writes. Every versioned write checks the stored version, writes the document
and appends its audit entry in one `BEGIN IMMEDIATE` transaction: all of it or none of it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

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
_SESSION_COLUMNS = ", ".join(field.name for field in dataclasses.fields(AdminSessionRecord))
log = logging.getLogger(__name__)
Document = TypeVar("Document", Condition, FaqEntry, Clinic, ChecklistQuestion)

SCHEMA_VERSION = 6
# MIGRATIONS[n] takes a database from user_version n to n + 1.
MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE conditions (
            label TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_by TEXT NOT NULL,
            updated_at TEXT NOT NULL, doc TEXT NOT NULL)""",
        """CREATE TABLE faq (
            id TEXT PRIMARY KEY, label TEXT, topic TEXT NOT NULL, version INTEGER NOT NULL,
            updated_by TEXT NOT NULL, updated_at TEXT NOT NULL, doc TEXT NOT NULL)""",
        "CREATE INDEX faq_label ON faq (label)",
        """CREATE TABLE clinics (
            id TEXT PRIMARY KEY, geohash TEXT NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
            version INTEGER NOT NULL, updated_by TEXT NOT NULL, updated_at TEXT NOT NULL,
            doc TEXT NOT NULL)""",
        "CREATE INDEX clinics_geohash ON clinics (geohash)",
        """CREATE TABLE feedback (
            id TEXT PRIMARY KEY, user_key TEXT NOT NULL, label TEXT NOT NULL,
            created_at TEXT NOT NULL, created_ts REAL NOT NULL, doc TEXT NOT NULL)""",
        "CREATE INDEX feedback_created ON feedback (created_ts)",
        "CREATE INDEX feedback_user ON feedback (user_key)",
        """CREATE TABLE users (
            user_key TEXT PRIMARY KEY, updated_at TEXT NOT NULL, doc TEXT NOT NULL)""",
        """CREATE TABLE audit (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
            key TEXT NOT NULL, version INTEGER NOT NULL, actor TEXT NOT NULL, at TEXT NOT NULL,
            action TEXT NOT NULL, before TEXT, after TEXT)""",
        "CREATE INDEX audit_key ON audit (kind, key)",
    ],
    [
        """CREATE TABLE analyses (
            id TEXT PRIMARY KEY, at TEXT NOT NULL, at_ts REAL NOT NULL, doc TEXT NOT NULL)""",
        "CREATE INDEX analyses_at ON analyses (at_ts)",
    ],
    [
        """CREATE TABLE admin_sessions (
            id_hash TEXT PRIMARY KEY, name TEXT NOT NULL, created_ts REAL NOT NULL,
            expires_ts REAL NOT NULL, last_seen_ts REAL NOT NULL,
            password_fingerprint TEXT NOT NULL)""",
    ],
    [  # delivery: the outbox of replies not delivered yet, and the updates already seen
        "CREATE TABLE outbox (id TEXT PRIMARY KEY, seq REAL NOT NULL, doc TEXT NOT NULL)",
        "CREATE INDEX outbox_seq ON outbox (seq)",
        "CREATE TABLE seen_updates (key TEXT PRIMARY KEY, expires_at REAL NOT NULL)",
        "CREATE INDEX seen_updates_expiry ON seen_updates (expires_at)",
    ],
    [
        """CREATE TABLE questions (
            id TEXT PRIMARY KEY, version INTEGER NOT NULL, updated_by TEXT NOT NULL,
            updated_at TEXT NOT NULL, doc TEXT NOT NULL)""",
    ],
    [
        """CREATE TABLE album_photos (
            id TEXT PRIMARY KEY, user_key TEXT NOT NULL, album TEXT NOT NULL,
            at_ts REAL NOT NULL, doc TEXT NOT NULL)""",
        "CREATE INDEX album_photos_album ON album_photos (user_key, album)",
    ],
]
assert len(MIGRATIONS) == SCHEMA_VERSION


@dataclasses.dataclass(frozen=True)
class _Kind:
    name: str  # as in AuditEntry.kind
    table: str
    key: str  # key column (and dataclass field)
    from_dict: Callable[[dict[str, Any]], Any]
    columns: Callable[[Any], dict[str, Any]]  # queried columns besides key/version/doc


CONDITION = _Kind("condition", "conditions", "label", condition_from_dict, lambda doc: {})
FAQ = _Kind("faq", "faq", "id", faq_from_dict, lambda doc: {"label": doc.label, "topic": doc.topic})
QUESTION = _Kind("question", "questions", "id", question_from_dict, lambda doc: {})
CLINIC = _Kind(
    "clinic",
    "clinics",
    "id",
    clinic_from_dict,
    lambda doc: {"geohash": doc.geohash, "lat": doc.lat, "lon": doc.lon},
)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, sort_keys=True)


class SqliteStore:
    """`KnowledgeStore` on one SQLite file, created (with its folder) on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file opened

    # ---- plumbing -------------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.to_thread(self._call, work)

    def _call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            try:
                return work(self._connection())
            except sqlite3.Error as error:
                raise StoreError(f"SQLite store {self.path}: {error}") from error

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"SQLite store {self.path} is closed")
        if self._conn is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise StoreError(f"cannot create {self.path.parent}: {error}") from error
            self._create_private()
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA busy_timeout = 5000")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
                self._migrate(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            self._identity = _identity(self.path)
        return self._conn

    def _create_private(self) -> None:
        """Create the file readable by its owner only (0600): it holds chat state and feedback.
        SQLite gives its -wal and -shm files the database file's mode, so they follow."""
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            mode = self.path.stat().st_mode & 0o777
            if mode & 0o077:
                log.warning(
                    "%s is readable by other users (mode %o): chmod 600 it", self.path, mode
                )
            return
        except OSError as error:
            raise StoreError(f"cannot create {self.path}: {error}") from error
        os.close(fd)

    async def ping(self) -> None:
        def check(conn: sqlite3.Connection) -> None:
            # A deleted or replaced file goes unnoticed by the open connection (it keeps the
            # old inode, and answers from it), so compare the path's file with the one opened.
            now = _identity(self.path)
            if now != self._identity:
                problem = "is gone" if now is None else "was replaced by another file"
                raise StoreError(f"SQLite store {self.path} {problem} since it was opened")
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()

        await self._run(check)

    def _migrate(self, conn: sqlite3.Connection) -> None:
        with _transaction(conn):
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {current}, newer than this program's "
                    f"{SCHEMA_VERSION}: upgrade the assistant or point SKINCARE_DB elsewhere"
                )
            for version in range(current, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
            if current != SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    async def connect(self) -> None:
        """Open (and create or migrate) the database now, to fail fast at start-up."""
        await self._run(lambda conn: None)

    async def close(self) -> None:
        def close() -> None:
            with self._lock:
                self._closed = True
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(close)

    # ---- versioned documents --------------------------------------------------------------

    def _get(self, conn: sqlite3.Connection, kind: _Kind, key: str) -> Any | None:
        row = conn.execute(f"SELECT doc FROM {kind.table} WHERE {kind.key} = ?", (key,)).fetchone()
        return kind.from_dict(json.loads(row[0])) if row else None

    def _list(self, conn: sqlite3.Connection, kind: _Kind, where: str = "", args=()) -> list:
        rows = conn.execute(
            f"SELECT doc FROM {kind.table} {where} ORDER BY {kind.key}", args
        ).fetchall()
        return [kind.from_dict(json.loads(row[0])) for row in rows]

    @staticmethod
    def _last_actor(conn: sqlite3.Connection, kind: _Kind, key: str) -> str:
        row = conn.execute(
            "SELECT actor FROM audit WHERE kind = ? AND key = ? ORDER BY seq DESC LIMIT 1",
            (kind.name, key),
        ).fetchone()
        return row[0] if row else ""

    def _stored(self, conn: sqlite3.Connection, kind: _Kind, key: str) -> tuple[int, str, Any]:
        """(version, updated_by, document) as stored; (0, last actor, None) when absent."""
        row = conn.execute(
            f"SELECT version, updated_by, doc FROM {kind.table} WHERE {kind.key} = ?", (key,)
        ).fetchone()
        if row is None:
            return 0, self._last_actor(conn, kind, key), None
        return row[0], row[1], kind.from_dict(json.loads(row[2]))

    def _write(
        self,
        conn: sqlite3.Connection,
        kind: _Kind,
        doc: Document,
        before: Document | None,
        version: int,
        actor: str,
        action: str | None = None,
    ) -> Document:
        """Store `doc` as `version` and audit it; call inside a transaction."""
        key = getattr(doc, kind.key)
        saved = dataclasses.replace(doc, version=version, updated_by=actor, updated_at=now_iso())
        columns = {
            kind.key: key,
            "version": saved.version,
            "updated_by": saved.updated_by,
            "updated_at": saved.updated_at,
            "doc": _dumps(to_dict(saved)),
            **kind.columns(saved),
        }
        names = ", ".join(columns)
        marks = ", ".join("?" for _ in columns)
        conn.execute(
            f"INSERT OR REPLACE INTO {kind.table} ({names}) VALUES ({marks})",
            tuple(columns.values()),
        )
        action = action or ("create" if before is None else "update")
        self._audit(conn, kind, key, version, actor, saved.updated_at, action, before, saved)
        return saved

    @staticmethod
    def _audit(conn, kind: _Kind, key, version, actor, at, action, before, after) -> None:
        conn.execute(
            "INSERT INTO audit (id, kind, key, version, actor, at, action, before, after) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                uuid.uuid4().hex,
                kind.name,
                key,
                version,
                actor,
                at,
                action,
                None if before is None else _dumps(to_dict(before)),
                None if after is None else _dumps(to_dict(after)),
            ),
        )

    async def _save(
        self,
        kind: _Kind,
        doc: Document,
        expected_version: int,
        actor: str,
        action: str | None = None,
    ):
        key = check_key(kind.name, getattr(doc, kind.key))
        check_action(action)
        if expected_version < 0:
            raise ValueError(f"expected_version must be 0 (create) or more, not {expected_version}")

        def save(conn: sqlite3.Connection) -> Document:
            with _transaction(conn):
                version, changed_by, before = self._stored(conn, kind, key)
                if version != expected_version:
                    raise StaleWriteError(kind.name, key, expected_version, version, changed_by)
                return self._write(conn, kind, doc, before, version + 1, actor, action)

        return await self._run(save)

    async def _delete(self, kind: _Kind, key: str, expected_version: int, actor: str) -> None:
        check_key(kind.name, key)

        def delete(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                version, changed_by, before = self._stored(conn, kind, key)
                if before is None and expected_version == 0:
                    raise LookupError(f"there is no {kind.name} {key!r} to delete")
                if version != expected_version:
                    raise StaleWriteError(kind.name, key, expected_version, version, changed_by)
                conn.execute(f"DELETE FROM {kind.table} WHERE {kind.key} = ?", (key,))
                self._audit(conn, kind, key, version + 1, actor, now_iso(), "delete", before, None)

        await self._run(delete)

    # ---- conditions -----------------------------------------------------------------------

    async def get_condition(self, label: str) -> Condition | None:
        return await self._run(lambda conn: self._get(conn, CONDITION, label))

    async def list_conditions(self) -> list[Condition]:
        return await self._run(lambda conn: self._list(conn, CONDITION))

    async def save_condition(
        self, condition: Condition, expected_version: int, actor: str, *, action: str | None = None
    ) -> Condition:
        return await self._save(CONDITION, condition, expected_version, actor, action)

    # ---- FAQ ------------------------------------------------------------------------------

    async def list_faq(self, label: str | None = None) -> list[FaqEntry]:
        if label is None:
            return await self._run(lambda conn: self._list(conn, FAQ))
        return await self._run(lambda conn: self._list(conn, FAQ, "WHERE label = ?", (label,)))

    async def save_faq(
        self, entry: FaqEntry, expected_version: int, actor: str, *, action: str | None = None
    ) -> FaqEntry:
        return await self._save(FAQ, entry, expected_version, actor, action)

    async def delete_faq(self, entry_id: str, expected_version: int, actor: str) -> None:
        await self._delete(FAQ, entry_id, expected_version, actor)

    # ---- checklist questions ----------------------------------------------------------------

    async def list_questions(self) -> list[ChecklistQuestion]:
        return await self._run(lambda conn: self._list(conn, QUESTION))

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
        return await self._run(lambda conn: self._get(conn, CLINIC, clinic_id))

    async def list_clinics(self) -> list[Clinic]:
        return await self._run(lambda conn: self._list(conn, CLINIC))

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
        where = " OR ".join("(geohash >= ? AND geohash < ?)" for _ in ranges)
        args = tuple(bound for pair in ranges for bound in pair)

        def query(conn: sqlite3.Connection) -> list[tuple[Clinic, float]]:
            rows = conn.execute(f"SELECT lat, lon, doc FROM clinics WHERE {where}", args)
            found = []
            for clinic_lat, clinic_lon, doc in rows:
                distance = haversine_km(lat, lon, clinic_lat, clinic_lon)
                if distance <= max_km:
                    clinic = clinic_from_dict(json.loads(doc))
                    if condition is None or condition in clinic.treats:
                        found.append((clinic, distance))
            found.sort(key=lambda pair: (pair[1], pair[0].id))
            return found[:limit]

        return await self._run(query)

    async def import_clinics(self, clinics: list[Clinic], actor: str) -> ImportResult:
        batch = prepare_clinic_batch(clinics)

        def import_all(conn: sqlite3.Connection) -> ImportResult:
            result = ImportResult()
            with _transaction(conn):
                for clinic in batch:
                    version, _, before = self._stored(conn, CLINIC, clinic.id)
                    if before is None:
                        result.created.append(clinic.id)
                    elif content_of(before) == content_of(clinic):
                        result.unchanged.append(clinic.id)
                        continue
                    else:
                        result.updated.append(clinic.id)
                    self._write(conn, CLINIC, clinic, before, version + 1, actor)
            return result

        return await self._run(import_all)

    # ---- feedback and users ---------------------------------------------------------------

    async def add_feedback(self, feedback: Feedback) -> None:
        check_key("feedback", feedback.id)
        created_ts = timestamp(feedback.created_at)

        def add(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO feedback "
                "(id, user_key, label, created_at, created_ts, doc) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    feedback.id,
                    feedback.user_key,
                    feedback.label,
                    feedback.created_at,
                    created_ts,
                    _dumps(to_dict(feedback)),
                ),
            )

        await self._run(add)

    async def list_feedback(self, limit: int = 50, since: str | None = None) -> list[Feedback]:
        if limit <= 0:
            return []
        since_ts = float("-inf") if since is None else timestamp(since)

        def query(conn: sqlite3.Connection) -> list[Feedback]:
            rows = conn.execute(
                "SELECT doc FROM feedback WHERE created_ts >= ? "
                "ORDER BY created_ts DESC, rowid DESC LIMIT ?",
                (since_ts, limit),
            ).fetchall()
            return [Feedback(**json.loads(row[0])) for row in rows]

        return await self._run(query)

    async def get_user(self, user_key: str) -> UserState | None:
        def get(conn: sqlite3.Connection) -> UserState | None:
            row = conn.execute("SELECT doc FROM users WHERE user_key = ?", (user_key,)).fetchone()
            return UserState(**json.loads(row[0])) if row else None

        return await self._run(get)

    async def save_user(self, state: UserState) -> None:
        check_key("user", state.user_key)
        doc = _dumps(to_dict(state))
        await self._run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO users (user_key, updated_at, doc) VALUES (?, ?, ?)",
                (state.user_key, state.updated_at, doc),
            )
        )

    async def delete_user(self, user_key: str) -> None:
        """Forget a user: their state and every piece of feedback they gave."""

        def delete(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                conn.execute("DELETE FROM users WHERE user_key = ?", (user_key,))
                conn.execute("DELETE FROM feedback WHERE user_key = ?", (user_key,))
                conn.execute("DELETE FROM album_photos WHERE user_key = ?", (user_key,))

        await self._run(delete)

    # ---- albums ---------------------------------------------------------------------------

    async def add_album_photo(self, photo: AlbumPhoto) -> None:
        check_key("album photo", photo.id)
        row = (photo.id, photo.user_key, photo.album, timestamp(photo.at), _dumps(to_dict(photo)))
        await self._run(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO album_photos (id, user_key, album, at_ts, doc) "
                "VALUES (?, ?, ?, ?, ?)",
                row,
            )
        )

    async def album_photos(self, user_key: str, album: str) -> list[AlbumPhoto]:
        def query(conn: sqlite3.Connection) -> list[AlbumPhoto]:
            rows = conn.execute(
                "SELECT doc FROM album_photos WHERE user_key = ? AND album = ? ORDER BY at_ts, id",
                (user_key, album),
            ).fetchall()
            return [AlbumPhoto(**json.loads(row[0])) for row in rows]

        return await self._run(query)

    async def delete_album(self, user_key: str, album: str) -> None:
        await self._run(
            lambda conn: conn.execute(
                "DELETE FROM album_photos WHERE user_key = ? AND album = ?", (user_key, album)
            )
        )

    # ---- analyses -------------------------------------------------------------------------

    async def record_analysis(self, record: AnalysisRecord) -> None:
        check_key("analysis", record.id)
        at_ts = timestamp(record.at)

        def add(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO analyses (id, at, at_ts, doc) VALUES (?, ?, ?, ?)",
                (record.id, record.at, at_ts, _dumps(to_dict(record))),
            )

        await self._run(add)

    async def list_analyses(self, since: str) -> list[AnalysisRecord]:
        since_ts = timestamp(since)

        def query(conn: sqlite3.Connection) -> list[AnalysisRecord]:
            rows = conn.execute(
                "SELECT doc FROM analyses WHERE at_ts >= ? ORDER BY at_ts, rowid", (since_ts,)
            ).fetchall()
            return [AnalysisRecord(**json.loads(row[0])) for row in rows]

        return await self._run(query)

    # ---- delivery: outbox and updates seen ------------------------------------------------

    async def enqueue_reply(self, reply: QueuedReply) -> None:
        check_key("queued reply", reply.id)
        await self._run(lambda conn: self._put_reply(conn, reply))

    @staticmethod
    def _put_reply(conn: sqlite3.Connection, reply: QueuedReply) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO outbox (id, seq, doc) VALUES (?, ?, ?)",
            (reply.id, reply.seq, _dumps(to_dict(reply))),
        )

    @staticmethod
    def _queued(conn: sqlite3.Connection, reply_id: str) -> QueuedReply | None:
        row = conn.execute("SELECT doc FROM outbox WHERE id = ?", (reply_id,)).fetchone()
        return QueuedReply(**json.loads(row[0])) if row else None

    async def pending_replies(self, limit: int = 500) -> list[QueuedReply]:
        def query(conn: sqlite3.Connection) -> list[QueuedReply]:
            rows = conn.execute(
                "SELECT doc FROM outbox ORDER BY seq, id LIMIT ?", (max(limit, 0),)
            ).fetchall()
            return [QueuedReply(**json.loads(row[0])) for row in rows]

        return await self._run(query)

    async def claim_reply(
        self, reply_id: str, owner: str, now: float, lease_until: float
    ) -> QueuedReply | None:
        def claim(conn: sqlite3.Connection) -> QueuedReply | None:
            with _transaction(conn):
                reply = self._queued(conn, reply_id)
                taken = None if reply is None else claimed(reply, owner, now, lease_until)
                if taken is not None:
                    self._put_reply(conn, taken)
                return taken

        return await self._run(claim)

    async def reschedule_reply(self, reply_id: str, next_attempt: float, attempts: int) -> None:
        def reschedule(conn: sqlite3.Connection) -> None:
            with _transaction(conn):
                reply = self._queued(conn, reply_id)
                if reply is not None:
                    self._put_reply(conn, rescheduled(reply, next_attempt, attempts))

        await self._run(reschedule)

    async def delete_reply(self, reply_id: str) -> None:
        await self._run(lambda conn: conn.execute("DELETE FROM outbox WHERE id = ?", (reply_id,)))

    async def record_update(self, key: str, now: float, expires_at: float) -> bool:
        def record(conn: sqlite3.Connection) -> bool:
            # One statement, so atomic: a new key is inserted, an expired one renewed, a live
            # one left alone (no row changed: a repeat).
            cursor = conn.execute(
                "INSERT INTO seen_updates (key, expires_at) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at "
                "WHERE seen_updates.expires_at <= ?",
                (key, expires_at, now),
            )
            return cursor.rowcount == 1

        return await self._run(record)

    async def purge_updates(self, now: float) -> int:
        def purge(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM seen_updates WHERE expires_at <= ?", (now,)).rowcount

        return await self._run(purge)

    # ---- audit ----------------------------------------------------------------------------

    async def audit_log(self, kind: str, key: str) -> list[AuditEntry]:
        def query(conn: sqlite3.Connection) -> list[AuditEntry]:
            rows = conn.execute(
                "SELECT id, kind, key, version, actor, at, action, before, after FROM audit "
                "WHERE kind = ? AND key = ? ORDER BY seq",
                (kind, key),
            ).fetchall()
            return [
                AuditEntry(
                    *row[:7],
                    before=None if row[7] is None else json.loads(row[7]),
                    after=None if row[8] is None else json.loads(row[8]),
                )
                for row in rows
            ]

        return await self._run(query)

    # ---- admin sessions -------------------------------------------------------------------

    async def create_admin_session(self, record: AdminSessionRecord) -> None:
        values = tuple(to_dict(record).values())
        await self._run(
            lambda conn: conn.execute(
                f"INSERT INTO admin_sessions ({_SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                values,
            )
        )

    async def get_admin_session(self, id_hash: str) -> AdminSessionRecord | None:
        def get(conn: sqlite3.Connection) -> AdminSessionRecord | None:
            row = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM admin_sessions WHERE id_hash = ?", (id_hash,)
            ).fetchone()
            return AdminSessionRecord(*row) if row else None

        return await self._run(get)

    async def touch_admin_session(self, id_hash: str, last_seen_ts: float) -> bool:
        def touch(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE admin_sessions SET last_seen_ts = ? WHERE id_hash = ?",
                (last_seen_ts, id_hash),
            )
            return cursor.rowcount == 1

        return await self._run(touch)

    async def delete_admin_session(self, id_hash: str) -> None:
        await self._run(
            lambda conn: conn.execute("DELETE FROM admin_sessions WHERE id_hash = ?", (id_hash,))
        )

    async def prune_admin_sessions(self, now_ts: float, password_fingerprint: str) -> int:
        def prune(conn: sqlite3.Connection) -> int:
            cursor = conn.execute(
                "DELETE FROM admin_sessions WHERE expires_ts <= ? OR password_fingerprint != ?",
                (now_ts, password_fingerprint),
            )
            return cursor.rowcount

        return await self._run(prune)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:  # SQLite may have rolled back already (disk full, ...)
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
