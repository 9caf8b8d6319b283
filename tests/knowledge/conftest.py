"""Fixtures for the knowledge tests: one `store` per adapter, and small sample documents.

`STORE_FACTORIES` is the registry the shared contract suite runs over: name -> a factory that
takes the pytest `request` and is an async context manager yielding a fresh, empty store (and
cleaning it up afterwards). An adapter joins the suite with one line here.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest

from knowledge.config import StoreConfig
from knowledge.models import Clinic, Condition, FaqEntry, Triage
from knowledge.store import KnowledgeStore
from knowledge.store.sqlite import SqliteStore

from knowledge_samples import make_clinic, make_condition, make_faq


@asynccontextmanager
async def make_sqlite_store(request: pytest.FixtureRequest) -> AsyncIterator[KnowledgeStore]:
    store = SqliteStore(request.getfixturevalue("tmp_path") / "store" / "knowledge.sqlite3")
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def make_firestore_store(request: pytest.FixtureRequest) -> AsyncIterator[KnowledgeStore]:
    from knowledge.store.firestore import FirestoreStore

    host = request.getfixturevalue("firestore_emulator_host")
    request.getfixturevalue("monkeypatch").setenv("FIRESTORE_EMULATOR_HOST", host)
    project = f"test-{uuid.uuid4().hex[:16]}"  # a fresh, empty database per test
    store = FirestoreStore.from_config(StoreConfig(kind="firestore", firestore_project=project))
    try:
        yield store
    finally:
        await store.close()


StoreFactory = Callable[[pytest.FixtureRequest], AbstractAsyncContextManager[KnowledgeStore]]
STORE_FACTORIES: dict[str, StoreFactory] = {
    "sqlite": make_sqlite_store,
    "firestore": make_firestore_store,
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest) -> AsyncIterator[KnowledgeStore]:
    async with STORE_FACTORIES[request.param](request) as fresh:
        yield fresh


# ---- sample documents ---------------------------------------------------------------------


@pytest.fixture
def sample_conditions() -> list[Condition]:
    return [
        make_condition("acne"),
        make_condition("eczema", contagious={"en": "No.", "ko": "아니요."}),
        make_condition("melanoma", Triage.URGENT, care_steps={}, ingredients=[]),
    ]


@pytest.fixture
def sample_faq() -> list[FaqEntry]:
    return [
        make_faq("acne-contagious", "acne", "contagious"),
        make_faq("acne-steroid-cream", "acne", "steroid"),
        make_faq("eczema-duration", "eczema", "duration"),
        make_faq("privacy-photos", None, "privacy"),
    ]


@pytest.fixture
def sample_clinics() -> list[Clinic]:
    """Six clinics: four in Seoul (a few km apart), two in Busan (about 325 km away)."""
    return [
        make_clinic("seoul-jung", 37.5640, 126.9810, ("acne", "eczema")),
        make_clinic("seoul-jongno", 37.5720, 126.9920, ("melanoma", "skin_cancer_surgery")),
        make_clinic("seoul-mapo", 37.5560, 126.9230, ("acne",)),
        make_clinic(
            "seoul-gangnam", 37.4980, 127.0280, ("acne", "melanoma"), district="Gangnam-gu"
        ),
        make_clinic("busan-jung", 35.1030, 129.0320, ("acne",), city="Busan"),
        make_clinic("busan-haeundae", 35.1630, 129.1630, ("eczema",), city="Busan"),
    ]
