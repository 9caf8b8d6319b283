"""Opening the store a `StoreConfig` names."""

from __future__ import annotations

from knowledge.config import StoreConfig
from knowledge.store.protocol import KnowledgeStore
from knowledge.store.sqlite import SqliteStore


async def open_store(config: StoreConfig) -> KnowledgeStore:
    """The store `config.kind` names, opened now so a bad path or project fails at start-up."""
    if config.kind == "sqlite":
        store = SqliteStore(config.sqlite_path)
        await store.connect()
        return store
    if config.kind == "firestore":
        # Imported only here: firebase-admin and gRPC take ~0.3 s to import (4x the rest of
        # knowledge.store), and the embedded default and the command line on SQLite never use them.
        from knowledge.store.firestore import FirestoreStore

        return FirestoreStore.from_config(config)
    raise ValueError(f"unknown store {config.kind!r}")
