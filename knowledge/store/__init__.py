"""The knowledge store: one protocol (`KnowledgeStore`), two adapters, and `open_store`.

protocol.py  the interface and its errors        sqlite.py     the embedded default
rules.py     what every adapter does alike        firestore.py  production (Cloud Firestore)
factory.py   `open_store(StoreConfig)`
"""

from knowledge.store.factory import open_store
from knowledge.store.protocol import ImportResult, KnowledgeStore, StaleWriteError, StoreError

__all__ = ["ImportResult", "KnowledgeStore", "StaleWriteError", "StoreError", "open_store"]
