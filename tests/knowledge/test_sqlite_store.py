"""What only the SQLite adapter has: the file, its schema version, transactions, start-up."""

from __future__ import annotations

import sqlite3
import sys
import types

import pytest

from knowledge.config import StoreConfig
from knowledge.models import AdminSessionRecord, AnalysisRecord, UserState
from knowledge.store import StoreError, open_store
from knowledge.store.sqlite import MIGRATIONS, SCHEMA_VERSION, SqliteStore

from knowledge_samples import make_clinic, make_condition


async def test_file_and_folder_are_created_on_first_use(tmp_path):
    path = tmp_path / "deep" / "er" / "knowledge.sqlite3"
    store = SqliteStore(path)
    assert not path.parent.exists(), "nothing happens before the first use"
    await store.save_user(UserState(user_key="u"))
    await store.close()
    assert path.is_file()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_documents_survive_reopening(tmp_path):
    path = tmp_path / "knowledge.sqlite3"
    first = SqliteStore(path)
    saved = await first.save_condition(make_condition("acne"), 0, "alice")
    await first.close()
    second = SqliteStore(path)
    try:
        assert await second.get_condition("acne") == saved
        assert len(await second.audit_log("condition", "acne")) == 1
    finally:
        await second.close()


async def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "knowledge.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    store = SqliteStore(path)
    with pytest.raises(StoreError, match="newer"):
        await store.list_conditions()
    await store.close()


async def test_a_version_1_database_is_upgraded_and_keeps_its_data(tmp_path):
    path = tmp_path / "knowledge.sqlite3"
    with sqlite3.connect(path) as conn:  # as the first release left it
        for statement in MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 1")
        conn.execute(
            "INSERT INTO users (user_key, updated_at, doc) VALUES (?, ?, ?)",
            ("u", "", '{"user_key": "u", "language": "ko"}'),
        )
    conn.close()
    store = SqliteStore(path)
    try:
        assert (await store.get_user("u")).language == "ko"
        record = AnalysisRecord("a1", "2025-03-01T10:00:00+00:00", "acne", False, False, "v", "tg")
        await store.record_analysis(record)
        assert await store.list_analyses("2025-03-01T00:00:00Z") == [record]
        session = AdminSessionRecord("h" * 64, "Dr. Kim", 1.0, 2.0, 1.0, "fingerprint")
        await store.create_admin_session(session)
        assert await store.get_admin_session(session.id_hash) == session
        assert await store.list_questions() == []  # version 5's table
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 6
    conn.close()


async def test_a_closed_store_says_so(tmp_path):
    store = SqliteStore(tmp_path / "knowledge.sqlite3")
    await store.list_conditions()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.list_conditions()
    await store.close()  # twice is fine


async def test_unusable_path_is_a_store_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    store = SqliteStore(blocker / "knowledge.sqlite3")
    with pytest.raises(StoreError):
        await store.list_clinics()
    not_a_database = tmp_path / "garbage.sqlite3"
    not_a_database.write_bytes(b"this is not SQLite" * 100)
    with pytest.raises(StoreError):
        await SqliteStore(not_a_database).list_clinics()


async def test_a_failure_in_the_middle_of_an_import_rolls_everything_back(tmp_path, monkeypatch):
    store = SqliteStore(tmp_path / "knowledge.sqlite3")
    kept = await store.save_clinic(make_clinic("kept", 37.5, 127.0), 0, "editor")
    original_write = SqliteStore._write
    calls = []

    def failing_write(self, conn, kind, doc, before, version, actor):
        calls.append(doc.id)
        if len(calls) == 3:
            raise sqlite3.OperationalError("disk I/O error")
        return original_write(self, conn, kind, doc, before, version, actor)

    monkeypatch.setattr(SqliteStore, "_write", failing_write)
    batch = [make_clinic(f"c{i}", 37.5 + i / 100, 127.0) for i in range(5)]
    batch.append(make_clinic("kept", 37.0, 127.0))
    with pytest.raises(StoreError, match="disk I/O"):
        await store.import_clinics(batch, "importer")
    monkeypatch.undo()
    assert calls == ["c0", "c1", "c2"]
    assert await store.list_clinics() == [kept]
    assert await store.audit_log("clinic", "c0") == []
    await store.close()


async def test_open_store_opens_sqlite_now(tmp_path):
    config = StoreConfig.from_env({"SKINCARE_DB": str(tmp_path / "data" / "k.sqlite3")})
    store = await open_store(config)
    try:
        assert isinstance(store, SqliteStore)
        assert (tmp_path / "data" / "k.sqlite3").is_file(), "opened at start-up, not later"
    finally:
        await store.close()


async def test_open_store_builds_firestore_lazily(monkeypatch):
    made = []

    class FakeFirestoreStore:
        @classmethod
        def from_config(cls, config):
            made.append(config)
            return cls()

    module = types.ModuleType("knowledge.store.firestore")
    module.FirestoreStore = FakeFirestoreStore
    monkeypatch.setitem(sys.modules, "knowledge.store.firestore", module)
    config = StoreConfig.from_env({"SKINCARE_STORE": "firestore"})
    store = await open_store(config)
    assert isinstance(store, FakeFirestoreStore) and made == [config]


async def test_the_file_is_created_readable_by_its_owner_only(tmp_path):
    import os
    import stat

    old = os.umask(0o022)  # the common default, under which sqlite3 alone makes it 0644
    try:
        path = tmp_path / "knowledge.sqlite3"
        store = SqliteStore(path)
        await store.save_user(UserState(user_key="u"))
        for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if name.exists():
                assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
        await store.close()
    finally:
        os.umask(old)


async def test_ping_notices_a_deleted_or_replaced_file(tmp_path):
    path = tmp_path / "knowledge.sqlite3"
    store = SqliteStore(path)
    await store.connect()
    await store.ping()
    path.unlink()  # the open connection still answers from the deleted inode
    with pytest.raises(StoreError, match="is gone"):
        await store.ping()
    other = SqliteStore(path)
    await other.connect()  # a new, empty file at the same path
    with pytest.raises(StoreError, match="replaced"):
        await store.ping()
    await other.ping()
    await store.close()
    await other.close()
