"""A store outage mid-conversation: content comes from memory, clinic search says it is down."""

from __future__ import annotations

import pytest

from knowledge.config import StoreConfig
from knowledge.resilient import ClinicSearchUnavailable, ResilientKnowledge
from knowledge.store.firestore import FirestoreStore
from knowledge.store.sqlite import SqliteStore

from firestore_support import running_emulator
from knowledge_samples import make_clinic, make_condition, make_faq


async def fill(store) -> None:
    await store.save_condition(make_condition("acne"), 0, "editor")
    await store.save_condition(make_condition("eczema"), 0, "editor")
    await store.save_faq(make_faq("acne-contagious"), 0, "editor")
    await store.save_faq(make_faq("general-privacy", label=None, topic="privacy"), 0, "editor")
    await store.save_clinic(make_clinic("seoul-jung", 37.564, 126.981), 0, "editor")


async def check_outage_behaviour(knowledge: ResilientKnowledge, cut) -> None:
    await knowledge.warm()
    assert knowledge.healthy
    assert [c.id for c, _ in await knowledge.nearest_clinics(37.56, 126.98)] == ["seoul-jung"]
    acne = await knowledge.condition("acne")
    faq = await knowledge.faq("acne")
    everything = await knowledge.faq()
    assert {entry.id for entry in everything} == {"acne-contagious", "general-privacy"}

    await cut()

    # Content: the last good copy, for what was read and for what was only warmed.
    assert await knowledge.condition("acne") == acne
    assert (await knowledge.condition("eczema")).label == "eczema"
    assert await knowledge.faq("acne") == faq
    assert await knowledge.faq() == everything
    assert await knowledge.condition("psoriasis_lichen_planus") is None
    assert not knowledge.healthy
    # Clinics: no stale answer, a clear "unavailable".
    with pytest.raises(ClinicSearchUnavailable):
        await knowledge.nearest_clinics(37.56, 126.98)


async def test_firestore_stopped_mid_conversation(monkeypatch):
    with running_emulator() as emulator:
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", emulator.host)
        config = StoreConfig(
            kind="firestore", firestore_project="resilient", firestore_timeout_s=1.5
        )
        store = FirestoreStore.from_config(config)
        try:
            await fill(store)

            async def stop_emulator():
                emulator.stop()

            await check_outage_behaviour(ResilientKnowledge(store), stop_emulator)
        finally:
            await store.close()


async def test_sqlite_store_gone(tmp_path):
    store = SqliteStore(tmp_path / "k.sqlite3")
    await fill(store)

    # A closed store refuses every call with StoreError, like an unreachable server.
    await check_outage_behaviour(ResilientKnowledge(store), store.close)


async def test_recovers_when_the_store_comes_back(tmp_path):
    store = SqliteStore(tmp_path / "k.sqlite3")
    await fill(store)
    knowledge = ResilientKnowledge(store)
    await knowledge.warm()
    original = store.get_condition

    async def failing(label):
        from knowledge.store import StoreError

        raise StoreError("down")

    store.get_condition = failing
    await knowledge.condition("acne")
    assert not knowledge.healthy
    store.get_condition = original
    assert (await knowledge.condition("acne")).label == "acne"
    assert knowledge.healthy
    await store.close()


async def test_content_is_reused_briefly_and_forgotten_after_a_local_edit(tmp_path):
    """Another replica's edit shows within `fresh_s`; this process's own at once."""
    store = SqliteStore(tmp_path / "k.sqlite3")
    await fill(store)
    knowledge = ResilientKnowledge(store, fresh_s=60)
    first = await knowledge.faq()
    acne = await knowledge.condition("acne")
    await store.save_faq(make_faq("acne-diet"), 0, "other-replica")
    edited = make_condition("acne")
    edited.summary = {"en": "Edited elsewhere.", "ko": "다른 곳에서 고침."}
    await store.save_condition(edited, acne.version, "other-replica")
    assert {entry.id for entry in await knowledge.faq()} == {entry.id for entry in first}
    assert (await knowledge.condition("acne")).summary == acne.summary
    knowledge.forget()
    assert "acne-diet" in {entry.id for entry in await knowledge.faq()}
    assert (await knowledge.condition("acne")).summary["en"] == "Edited elsewhere."

    always_fresh = ResilientKnowledge(store, fresh_s=0)
    await always_fresh.faq()
    await store.save_faq(make_faq("acne-sun"), 0, "other-replica")
    assert "acne-sun" in {entry.id for entry in await always_fresh.faq()}
    await store.close()
