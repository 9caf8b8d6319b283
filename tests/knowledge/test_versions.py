"""History, diffs and rollback (knowledge/versions.py), on every store adapter."""

from __future__ import annotations

import dataclasses

import pytest

from knowledge.models import to_dict
from knowledge.store import StaleWriteError
from knowledge.store.rules import content_of
from knowledge.versions import FieldChange, diff, history, rollback, version_of

from knowledge_samples import make_clinic, make_condition, make_faq

# ---- diff (no store) ------------------------------------------------------------------------


def test_diff_names_nested_fields_and_skips_managed_ones():
    before = to_dict(make_condition("acne", version=1, updated_by="alice"))
    changed = make_condition(
        "acne",
        summary={"en": "New.", "ko": "acne에 대하여."},
        care_steps={
            "en": ["Wash gently twice a day."],
            "ko": ["하루 두 번 부드럽게 씻으세요.", "보습제", "자외선 차단제"],
        },
        version=2,
        updated_by="bob",
        updated_at="2025-03-01T00:00:00+00:00",
    )
    after = to_dict(changed)
    after["ingredients"][0]["name"]["en"] = "BPO"
    changes = diff(before, after)
    assert changes == [
        FieldChange("care_steps.ko[1]", None, "보습제"),
        FieldChange("care_steps.ko[2]", None, "자외선 차단제"),
        FieldChange("ingredients[0].name.en", "benzoyl peroxide", "BPO"),
        FieldChange("summary.en", "About acne.", "New."),
    ]
    assert diff(before, before) == []


def test_diff_of_a_create_and_a_delete_lists_every_field():
    faq = to_dict(make_faq("general", label=None, version=1))
    created = diff(None, faq)
    paths = [change.path for change in created]
    assert paths == ["answer.en", "answer.ko", "id", "questions.en[0]", "questions.ko[0]", "topic"]
    assert "label" not in paths, "None and absent are the same: no change"
    assert all(change.before is None for change in created)
    deleted = diff(faq, None)
    assert [change.path for change in deleted] == paths
    assert all(change.after is None for change in deleted)


def test_diff_of_a_changed_type_and_removed_items():
    assert diff({"a": [1, 2, 3], "b": "x"}, {"a": [1], "b": {"en": "x"}}) == [
        FieldChange("a[1]", 2, None),
        FieldChange("a[2]", 3, None),
        FieldChange("b", "x", {"en": "x"}),
    ]


# ---- history and rollback, on each store --------------------------------------------------


async def test_history_newest_first_with_readable_diffs(store):
    v1 = await store.save_condition(make_condition("acne"), 0, "alice")
    v2 = await store.save_condition(
        dataclasses.replace(v1, summary={"en": "Changed.", "ko": "바뀜."}), 1, "bob"
    )
    await store.save_condition(
        dataclasses.replace(v2, improvement_time={"en": "12 weeks", "ko": "12주"}), 2, "carol"
    )
    entries = await history(store, "condition", "acne")
    assert [(e.version, e.actor, e.action) for e in entries] == [
        (3, "carol", "update"),
        (2, "bob", "update"),
        (1, "alice", "create"),
    ]
    assert [c.path for c in diff(entries[0].before, entries[0].after)] == [
        "improvement_time.en",
        "improvement_time.ko",
    ]
    assert diff(entries[1].before, entries[1].after) == [
        FieldChange("summary.en", "About acne.", "Changed."),
        FieldChange("summary.ko", "acne에 대하여.", "바뀜."),
    ]
    assert await history(store, "condition", "eczema") == []
    with pytest.raises(ValueError):
        await history(store, "users", "acne")


async def test_rollback_restores_content_as_a_new_version(store):
    v1 = await store.save_condition(make_condition("acne"), 0, "alice")
    v2 = await store.save_condition(
        dataclasses.replace(v1, summary={"en": "Wrong.", "ko": "틀림."}), 1, "bob"
    )
    await store.save_condition(dataclasses.replace(v2, care_steps={}), 2, "bob")

    restored = await rollback(store, "condition", "acne", 1, 3, "carol")
    assert (restored.version, restored.updated_by) == (4, "carol")
    assert content_of(restored) == content_of(v1)
    assert await store.get_condition("acne") == restored
    newest = (await history(store, "condition", "acne"))[0]
    assert (newest.version, newest.action, newest.actor) == (4, "rollback", "carol")
    assert {c.path for c in diff(newest.before, newest.after)} >= {"summary.en", "care_steps.en[0]"}
    assert (await version_of(store, "condition", "acne", 4)).after == to_dict(restored)

    with pytest.raises(LookupError):
        await rollback(store, "condition", "acne", 9, 4, "carol")


async def test_a_stale_rollback_is_refused_and_names_who_changed_it(store):
    v1 = await store.save_faq(make_faq("acne-contagious"), 0, "alice")
    await store.save_faq(dataclasses.replace(v1, topic="other"), 1, "bob")
    # Dave looked at version 2 and decided to roll back; Erin saved version 3 meanwhile.
    await store.save_faq(
        dataclasses.replace(await _faq(store, "acne-contagious"), topic="third"), 2, "erin"
    )
    with pytest.raises(StaleWriteError) as refused:
        await rollback(store, "faq", "acne-contagious", 1, 2, "dave")
    assert (refused.value.expected, refused.value.actual, refused.value.changed_by) == (
        2,
        3,
        "erin",
    )
    assert "erin" in str(refused.value)
    assert (await _faq(store, "acne-contagious")).topic == "third"
    assert len(await history(store, "faq", "acne-contagious")) == 3


async def test_restore_a_deleted_faq_entry(store):
    v1 = await store.save_faq(make_faq("acne-steroid-cream", topic="steroid"), 0, "alice")
    await store.delete_faq("acne-steroid-cream", 1, "bob")
    with pytest.raises(ValueError, match="deletion"):
        await rollback(store, "faq", "acne-steroid-cream", 2, 0, "carol")
    with pytest.raises(StaleWriteError):  # a version it never had
        await rollback(store, "faq", "acne-steroid-cream", 1, 1, "carol")

    restored = await rollback(store, "faq", "acne-steroid-cream", 1, 0, "carol")
    # Created again, so it starts again at version 1, as any create after a delete does.
    assert restored.version == 1 and content_of(restored) == content_of(v1)
    assert [e.id for e in await store.list_faq("acne")] == ["acne-steroid-cream"]
    entries = await history(store, "faq", "acne-steroid-cream")
    assert [(e.version, e.action, e.actor) for e in entries] == [
        (1, "rollback", "carol"),
        (2, "delete", "bob"),
        (1, "create", "alice"),
    ]
    # Version 1 now names two entries: the newest is meant, unless an entry id says otherwise.
    assert (await version_of(store, "faq", "acne-steroid-cream", 1)).id == entries[0].id
    original = await version_of(store, "faq", "acne-steroid-cream", 1, entry_id=entries[2].id)
    assert original.actor == "alice"
    edited = await store.save_faq(dataclasses.replace(restored, topic="changed"), 1, "dave")
    again = await rollback(
        store, "faq", "acne-steroid-cream", 1, edited.version, "erin", entry_id=entries[2].id
    )
    assert again.version == 3 and again.topic == "steroid"


async def test_restore_a_deleted_clinic_finds_it_nearby_again(store):
    v1 = await store.save_clinic(make_clinic("seoul-jung", 37.564, 126.981), 0, "alice")
    v2 = await store.save_clinic(dataclasses.replace(v1, phone="02-111-1111"), 1, "bob")
    await store.delete_clinic("seoul-jung", 2, "bob")
    assert await store.nearest_clinics(37.564, 126.981, max_km=1) == []

    # The history page shows the deletion as version 3: expecting it means "still deleted".
    restored = await rollback(store, "clinic", "seoul-jung", 2, 3, "carol")
    assert restored.version == 1 and restored.phone == "02-111-1111"
    with pytest.raises(StaleWriteError) as refused:  # a second admin, from the same page
        await rollback(store, "clinic", "seoul-jung", 1, 3, "dave")
    assert (refused.value.actual, refused.value.changed_by) == (1, "carol")
    assert content_of(restored) == content_of(v2) and restored.geohash == v2.geohash
    assert [c.id for c, _ in await store.nearest_clinics(37.564, 126.981, max_km=1)] == [
        "seoul-jung"
    ]


async def _faq(store, entry_id: str):
    return next(entry for entry in await store.list_faq() if entry.id == entry_id)
