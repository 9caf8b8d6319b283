"""Firestore going away: every call of the store gives a StoreError within its deadline.

The bot answers from its fallbacks when the store fails; a store that hangs instead would hang
the chat. Each test runs its own emulator (not the session's) and kills it part-way.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable

import pytest

from knowledge.config import StoreConfig
from knowledge.models import Feedback, UserState
from knowledge.store import StoreError
from knowledge.store.firestore import FirestoreStore

from firestore_support import free_port, running_emulator
from knowledge_samples import make_clinic, make_condition, make_faq

DEADLINE_S = 1.5
# Far above the deadline: this catches a hang, it does not measure speed.
HANG_S = 15.0


def open_store(monkeypatch: pytest.MonkeyPatch, host: str, project: str) -> FirestoreStore:
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
    config = StoreConfig(
        kind="firestore", firestore_project=project, firestore_timeout_s=DEADLINE_S
    )
    return FirestoreStore.from_config(config)


async def fails_with_store_error(call: Awaitable) -> StoreError:
    async with asyncio.timeout(HANG_S):
        with pytest.raises(StoreError) as failure:
            await call
    return failure.value


async def test_every_call_fails_fast_once_the_emulator_is_gone(monkeypatch):
    with running_emulator() as emulator:
        store = open_store(monkeypatch, emulator.host, "outage")
        try:
            condition = await store.save_condition(make_condition("acne"), 0, "editor")
            faq = await store.save_faq(make_faq("acne-contagious"), 0, "editor")
            clinic = await store.save_clinic(make_clinic("seoul-jung", 37.564, 126.981), 0, "x")
            assert await store.get_condition("acne") == condition

            emulator.stop()
            assert not emulator.running

            # All at once, as a bot serving many chats would call it.
            calls = {
                "get_condition": store.get_condition("acne"),
                "list_conditions": store.list_conditions(),
                "save_condition": store.save_condition(
                    dataclasses.replace(condition, summary={"en": "New."}), 1, "editor"
                ),
                "list_faq": store.list_faq("acne"),
                "save_faq": store.save_faq(faq, 1, "editor"),
                "delete_faq": store.delete_faq(faq.id, 1, "editor"),
                "get_clinic": store.get_clinic(clinic.id),
                "list_clinics": store.list_clinics(),
                "save_clinic": store.save_clinic(clinic, 1, "editor"),
                "delete_clinic": store.delete_clinic(clinic.id, 1, "editor"),
                "nearest_clinics": store.nearest_clinics(37.5663, 126.9779),
                "import_clinics": store.import_clinics([clinic], "importer"),
                "add_feedback": store.add_feedback(
                    Feedback("fb-1", "user-a", "acne", True, "test-0", "2025-03-01T10:00:00Z")
                ),
                "list_feedback": store.list_feedback(),
                "get_user": store.get_user("user-a"),
                "save_user": store.save_user(UserState(user_key="user-a")),
                "delete_user": store.delete_user("user-a"),
                "audit_log": store.audit_log("condition", "acne"),
            }
            errors = await asyncio.gather(*map(fails_with_store_error, calls.values()))
            for name, error in zip(calls, errors, strict=True):
                assert "Firestore" in str(error), name
        finally:
            async with asyncio.timeout(HANG_S):
                await store.close()


async def test_a_store_whose_server_never_answers_fails_fast(monkeypatch):
    store = open_store(monkeypatch, f"127.0.0.1:{free_port()}", "nobody-home")
    try:
        await fails_with_store_error(store.get_condition("acne"))
        await fails_with_store_error(store.save_condition(make_condition("acne"), 0, "editor"))
    finally:
        async with asyncio.timeout(HANG_S):
            await store.close()


async def test_a_closed_store_refuses_calls(monkeypatch):
    with running_emulator() as emulator:
        store = open_store(monkeypatch, emulator.host, "closed")
        await store.list_conditions()
        await store.close()
        await fails_with_store_error(store.list_conditions())
