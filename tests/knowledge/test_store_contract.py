"""The contract every knowledge store keeps, run against each adapter in STORE_FACTORIES.

An adapter is done when this whole file passes on it. Tests use only the `KnowledgeStore`
protocol (plus `seed`, which is written against it), never an adapter's internals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math

import pytest

from knowledge.checklist import QUESTION_IDS
from knowledge.geo import geohash_encode, haversine_km
from knowledge.models import (
    AdminSessionRecord,
    AlbumPhoto,
    AnalysisRecord,
    ChecklistQuestion,
    Feedback,
    QueuedReply,
    Triage,
    UserState,
    to_dict,
)
from knowledge.seed import seed
from knowledge.store import StaleWriteError, StoreError
from knowledge.store.rules import content_of, timestamp

from knowledge_samples import (
    BUSAN_STATION,
    SEOUL_CITY_HALL,
    make_clinic,
    make_condition,
    make_faq,
)


def same_content(a, b) -> bool:
    return content_of(a) == content_of(b)


# ---- conditions ---------------------------------------------------------------------------


async def test_a_reachable_store_answers_ping(store):
    await store.ping()


async def test_condition_create_get_list_update(store, sample_conditions):
    assert await store.get_condition("acne") is None
    assert await store.list_conditions() == []
    saved = [await store.save_condition(c, 0, "editor") for c in sample_conditions]
    for original, result in zip(sample_conditions, saved, strict=True):
        assert result.version == 1 and result.updated_by == "editor"
        assert timestamp(result.updated_at) > 0
        assert same_content(result, original)
        assert original.version == 0, "the caller's document is not modified"
    assert await store.get_condition("melanoma") == saved[2]
    assert (await store.get_condition("melanoma")).triage is Triage.URGENT
    assert [c.label for c in await store.list_conditions()] == ["acne", "eczema", "melanoma"]

    changed = dataclasses.replace(saved[0], summary={"en": "New.", "ko": "새."})
    updated = await store.save_condition(changed, 1, "reviewer")
    assert (updated.version, updated.updated_by) == (2, "reviewer")
    assert await store.get_condition("acne") == updated
    again = await store.save_condition(updated, 2, "editor")
    assert again.version == 3


async def test_two_editors_second_save_is_refused(store):
    await store.save_condition(make_condition("acne"), 0, "setup")
    first = await store.get_condition("acne")
    second = await store.get_condition("acne")
    assert first.version == second.version == 1

    first_edit = dataclasses.replace(first, summary={"en": "First's.", "ko": "첫째."})
    stored_first = await store.save_condition(first_edit, first.version, "alice")
    second_edit = dataclasses.replace(second, summary={"en": "Second's.", "ko": "둘째."})
    with pytest.raises(StaleWriteError) as refused:
        await store.save_condition(second_edit, second.version, "bob")
    error = refused.value
    assert (error.kind, error.key) == ("condition", "acne")
    assert (error.expected, error.actual, error.changed_by) == (1, 2, "alice")
    assert "alice" in str(error)
    assert await store.get_condition("acne") == stored_first
    assert [entry.actor for entry in await store.audit_log("condition", "acne")] == [
        "setup",
        "alice",
    ]


async def test_create_of_an_existing_document_is_stale(store):
    await store.save_condition(make_condition("acne"), 0, "alice")
    with pytest.raises(StaleWriteError) as refused:
        await store.save_condition(make_condition("acne", summary={"en": "x"}), 0, "bob")
    assert (refused.value.expected, refused.value.actual) == (0, 1)
    assert refused.value.changed_by == "alice"
    assert (await store.get_condition("acne")).summary["en"] == "About acne."


async def test_save_from_a_version_that_never_existed_is_stale(store):
    with pytest.raises(StaleWriteError) as refused:
        await store.save_condition(make_condition("acne"), 3, "bob")
    assert (refused.value.expected, refused.value.actual) == (3, 0)
    assert await store.get_condition("acne") is None
    assert await store.audit_log("condition", "acne") == []


async def test_concurrent_saves_from_one_version_only_one_wins(store):
    await store.save_condition(make_condition("acne"), 0, "setup")
    edits = [
        store.save_condition(make_condition("acne", summary={"en": f"v{i}"}), 1, f"editor{i}")
        for i in range(5)
    ]
    results = await asyncio.gather(*edits, return_exceptions=True)
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, StaleWriteError) for r in results if r not in winners)
    assert await store.get_condition("acne") == winners[0]
    assert len(await store.audit_log("condition", "acne")) == 2


async def test_invalid_keys_and_versions_are_refused(store):
    with pytest.raises(ValueError):
        await store.save_condition(make_condition(""), 0, "editor")
    with pytest.raises(ValueError):
        await store.save_faq(make_faq("a/b"), 0, "editor")
    with pytest.raises(ValueError):
        await store.save_condition(make_condition("acne"), -1, "editor")
    with pytest.raises(ValueError):
        await store.save_clinic(make_clinic("nowhere", 91.0, 0.0), 0, "editor")
    with pytest.raises(ValueError):
        await store.save_clinic(make_clinic("nan", math.nan, 0.0), 0, "editor")
    assert await store.list_conditions() == []
    assert await store.list_clinics() == []


# ---- FAQ ----------------------------------------------------------------------------------


async def test_faq_create_list_update_delete(store, sample_faq):
    for entry in sample_faq:
        await store.save_faq(entry, 0, "editor")
    everything = await store.list_faq()
    assert [e.id for e in everything] == sorted(e.id for e in sample_faq)
    assert [e.id for e in await store.list_faq("acne")] == [
        "acne-contagious",
        "acne-steroid-cream",
    ]
    assert await store.list_faq("melanoma") == []
    general = next(e for e in everything if e.id == "privacy-photos")
    assert general.label is None and general.version == 1

    entry = next(e for e in everything if e.id == "acne-steroid-cream")
    updated = await store.save_faq(
        dataclasses.replace(entry, answer={"en": "No.", "ko": "아니요."}), 1, "reviewer"
    )
    assert updated.version == 2
    await store.delete_faq("acne-steroid-cream", 2, "admin")
    assert [e.id for e in await store.list_faq("acne")] == ["acne-contagious"]


async def test_stale_delete_is_refused_and_deletes_nothing(store):
    await store.save_faq(make_faq("acne-contagious"), 0, "alice")
    loaded = (await store.list_faq("acne"))[0]
    await store.save_faq(dataclasses.replace(loaded, topic="other"), 1, "bob")
    with pytest.raises(StaleWriteError) as refused:
        await store.delete_faq("acne-contagious", 1, "carol")
    assert (refused.value.expected, refused.value.actual, refused.value.changed_by) == (
        1,
        2,
        "bob",
    )
    remaining = await store.list_faq()
    assert [(e.id, e.version, e.topic) for e in remaining] == [("acne-contagious", 2, "other")]


async def test_save_after_someone_deleted_is_stale_and_names_them(store):
    await store.save_faq(make_faq("acne-contagious"), 0, "alice")
    loaded = (await store.list_faq())[0]
    await store.delete_faq("acne-contagious", 1, "bob")
    with pytest.raises(StaleWriteError) as refused:
        await store.save_faq(loaded, 1, "carol")
    assert (refused.value.actual, refused.value.changed_by) == (0, "bob")
    assert await store.list_faq() == []
    with pytest.raises(StaleWriteError):
        await store.delete_faq("acne-contagious", 1, "carol")
    with pytest.raises(LookupError):
        await store.delete_faq("never-existed", 0, "carol")
    recreated = await store.save_faq(make_faq("acne-contagious"), 0, "dave")
    assert recreated.version == 1


# ---- clinics ------------------------------------------------------------------------------


async def test_clinic_create_get_list_delete(store, sample_clinics):
    for clinic in sample_clinics:
        saved = await store.save_clinic(clinic, 0, "editor")
        assert saved.geohash and saved.geohash == geohash_encode(clinic.lat, clinic.lon, 9)
        assert saved.version == 1
    assert await store.get_clinic("nope") is None
    got = await store.get_clinic("seoul-gangnam")
    assert same_content(got, sample_clinics[3]) and got.district == "Gangnam-gu"
    assert [c.id for c in await store.list_clinics()] == sorted(c.id for c in sample_clinics)

    moved = await store.save_clinic(dataclasses.replace(got, lat=37.5, lon=127.03), 1, "editor")
    assert moved.version == 2 and moved.geohash == geohash_encode(37.5, 127.03, 9)
    await store.delete_clinic("seoul-gangnam", 2, "admin")
    assert await store.get_clinic("seoul-gangnam") is None
    near = await store.nearest_clinics(37.5, 127.03, limit=10, max_km=1)
    assert near == [], "a deleted clinic is not found by proximity either"


async def test_audit_log_records_before_and_after(store):
    clinic = make_clinic("seoul-jung", 37.564, 126.981)
    first = await store.save_clinic(clinic, 0, "alice")
    second = await store.save_clinic(dataclasses.replace(first, phone="02-111-1111"), 1, "bob")
    await store.delete_clinic("seoul-jung", 2, "carol")
    log = await store.audit_log("clinic", "seoul-jung")
    assert [(e.action, e.version, e.actor) for e in log] == [
        ("create", 1, "alice"),
        ("update", 2, "bob"),
        ("delete", 3, "carol"),
    ]
    assert all(e.kind == "clinic" and e.key == "seoul-jung" for e in log)
    assert len({e.id for e in log}) == 3
    assert log[0].before is None and log[0].after == to_dict(first)
    assert log[1].before == to_dict(first) and log[1].after == to_dict(second)
    assert log[1].after["phone"] == "02-111-1111"
    assert log[2].before == to_dict(second) and log[2].after is None
    assert all(timestamp(e.at) > 0 for e in log)
    assert await store.audit_log("clinic", "other") == []
    assert await store.audit_log("faq", "seoul-jung") == []

    condition = await store.save_condition(make_condition("melanoma", Triage.URGENT), 0, "x")
    (entry,) = await store.audit_log("condition", "melanoma")
    assert entry.after["triage"] == "urgent" and entry.after == to_dict(condition)


def brute_force(clinics, lat, lon, condition=None, max_km=50.0):
    found = [
        (c.id, haversine_km(lat, lon, c.lat, c.lon))
        for c in clinics
        if condition is None or condition in c.treats
    ]
    return sorted([f for f in found if f[1] <= max_km], key=lambda f: (f[1], f[0]))


async def test_nearest_clinics_order_distance_filters_and_limit(store, sample_clinics):
    for clinic in sample_clinics:
        await store.save_clinic(clinic, 0, "editor")
    lat, lon = SEOUL_CITY_HALL
    for condition, max_km, limit in [
        (None, 50.0, 5),
        (None, 50.0, 2),
        ("melanoma", 50.0, 5),
        ("acne", 3.0, 5),
        (None, 500.0, 10),
        ("eczema", 500.0, 10),
        ("psoriasis", 500.0, 10),
    ]:
        result = await store.nearest_clinics(
            lat, lon, limit=limit, condition=condition, max_km=max_km
        )
        expected = brute_force(sample_clinics, lat, lon, condition, max_km)[:limit]
        assert [c.id for c, _ in result] == [i for i, _ in expected], (condition, max_km, limit)
        for (clinic, distance), (_, exact) in zip(result, expected, strict=True):
            assert distance == pytest.approx(exact, abs=1e-6)
            assert isinstance(clinic.treats, list) and clinic.version == 1

    nearest = await store.nearest_clinics(lat, lon)
    assert [c.id for c, _ in nearest] == [
        "seoul-jung",
        "seoul-jongno",
        "seoul-mapo",
        "seoul-gangnam",
    ]
    assert nearest[0][1] == pytest.approx(0.38, abs=0.05)
    melanoma = await store.nearest_clinics(lat, lon, condition="melanoma")
    assert [c.id for c, _ in melanoma] == ["seoul-jongno", "seoul-gangnam"]
    busan = await store.nearest_clinics(*BUSAN_STATION, max_km=5)
    assert [c.id for c, _ in busan] == ["busan-jung"]
    assert await store.nearest_clinics(lat, lon, limit=0) == []
    assert await store.nearest_clinics(0.0, 0.0) == []


@pytest.mark.parametrize(
    ("query", "clinics"),
    [
        # The prime meridian splits the world at the first character ("gcpv..." | "u10h...").
        ((51.5007, 0.0005), [(51.5007, -0.0008), (51.5007, 0.0011), (51.509, -0.002)]),
        # The equator: "s0..." north, "kp..." south.
        ((0.0004, 20.0), [(-0.0006, 20.0), (0.0015, 20.0003)]),
        # The antimeridian: longitudes +179.99 and -179.99 are 2 km apart.
        ((10.0, 179.995), [(10.0, -179.995), (10.0, 179.99)]),
    ],
)
async def test_clinics_across_geohash_cell_boundaries_are_found(store, query, clinics):
    placed = [make_clinic(f"c{i}", lat, lon) for i, (lat, lon) in enumerate(clinics)]
    for clinic in placed:
        await store.save_clinic(clinic, 0, "editor")
    cells = {geohash_encode(lat, lon, 1) for lat, lon in [query, *clinics]}
    assert len(cells) == 2, "the points lie on both sides of a top-level cell edge"
    result = await store.nearest_clinics(*query, limit=10, max_km=5)
    expected = brute_force(placed, *query, max_km=5)
    assert len(expected) == len(placed)
    assert [c.id for c, _ in result] == [i for i, _ in expected]


async def test_clinics_just_across_a_fine_cell_edge(store):
    """A clinic 30 m away in the neighbouring cell at the precision the query uses."""
    from knowledge.geo import geohash_bounds

    lat, lon = SEOUL_CITY_HALL
    _, _, _, lon_max = geohash_bounds(geohash_encode(lat, lon, 6))
    inside = (lat, lon_max - 0.0001)
    outside = (lat, lon_max + 0.0002)
    assert geohash_encode(*inside, 6) != geohash_encode(*outside, 6)
    await store.save_clinic(make_clinic("east", *outside), 0, "editor")
    await store.save_clinic(make_clinic("here", *inside), 0, "editor")
    result = await store.nearest_clinics(*inside, max_km=0.1)
    assert [c.id for c, _ in result] == ["here", "east"]


async def test_import_clinics_creates_replaces_and_skips_unchanged(store, sample_clinics):
    await store.save_clinic(sample_clinics[0], 0, "editor")
    edited = await store.save_clinic(
        dataclasses.replace(sample_clinics[1], phone="02-999-9999"), 0, "editor"
    )
    edited = await store.save_clinic(dataclasses.replace(edited, phone="02-888-8888"), 1, "editor")
    result = await store.import_clinics(sample_clinics, "importer")
    assert result.created == [c.id for c in sample_clinics[2:]]
    assert result.updated == [sample_clinics[1].id]
    assert result.unchanged == [sample_clinics[0].id]
    stored = {c.id: c for c in await store.list_clinics()}
    assert len(stored) == 6
    assert stored["seoul-jongno"].version == 3 and stored["seoul-jongno"].phone == "02-000-0000"
    assert stored["seoul-jongno"].updated_by == "importer"
    assert stored["seoul-jung"].version == 1 and stored["seoul-jung"].updated_by == "editor"
    assert all(c.geohash for c in stored.values())
    log = await store.audit_log("clinic", "seoul-jongno")
    assert [e.action for e in log] == ["create", "update", "update"]
    assert log[-1].before["phone"] == "02-888-8888" and log[-1].actor == "importer"
    assert len(await store.audit_log("clinic", "seoul-jung")) == 1

    again = await store.import_clinics(sample_clinics, "importer")
    assert again.unchanged == [c.id for c in sample_clinics]
    assert again.created == again.updated == []
    assert len(await store.audit_log("clinic", "seoul-jongno")) == 3
    near = await store.nearest_clinics(*BUSAN_STATION, max_km=20)
    assert {c.id for c, _ in near} == {"busan-jung", "busan-haeundae"}


@pytest.mark.parametrize(
    "bad_last",
    [
        lambda clinics: dataclasses.replace(clinics[0], name={"en": "dup", "ko": "중복"}),
        lambda clinics: make_clinic("far-away", 123.0, 10.0),
        lambda clinics: make_clinic("", 37.5, 127.0),
    ],
    ids=["duplicate-id", "impossible-latitude", "empty-id"],
)
async def test_import_clinics_is_all_or_nothing(store, sample_clinics, bad_last):
    original = await store.save_clinic(sample_clinics[0], 0, "editor")
    batch = [dataclasses.replace(c, phone="010-1234-5678") for c in sample_clinics]
    batch.append(bad_last(batch))
    with pytest.raises(ValueError):
        await store.import_clinics(batch, "importer")
    assert await store.list_clinics() == [original]
    assert len(await store.audit_log("clinic", original.id)) == 1
    assert await store.audit_log("clinic", "busan-jung") == []


# ---- feedback and users -------------------------------------------------------------------


def feedback(number: int, user: str = "user-a", created_at: str | None = None) -> Feedback:
    return Feedback(
        id=f"fb-{number}",
        user_key=user,
        label="acne",
        correct=None if number % 3 == 0 else number % 2 == 0,
        model_version="test-0",
        created_at=created_at or f"2025-03-{number:02d}T10:00:00+00:00",
        comment=f"comment {number}" if number % 2 else "",
    )


async def test_feedback_newest_first_limit_and_since(store):
    entries = [feedback(n, "user-a" if n % 2 else "user-b") for n in (3, 1, 4, 5, 2)]
    for entry in entries:
        await store.add_feedback(entry)
    newest = await store.list_feedback()
    assert [f.id for f in newest] == ["fb-5", "fb-4", "fb-3", "fb-2", "fb-1"]
    assert newest[0] == next(e for e in entries if e.id == "fb-5")
    assert [f.id for f in await store.list_feedback(limit=2)] == ["fb-5", "fb-4"]
    since = await store.list_feedback(since="2025-03-03T10:00:00+00:00")
    assert [f.id for f in since] == ["fb-5", "fb-4", "fb-3"], "since is inclusive"
    # Another spelling of the same instant (another zone) means the same thing.
    assert [f.id for f in await store.list_feedback(since="2025-03-03T19:00:00+09:00")] == [
        "fb-5",
        "fb-4",
        "fb-3",
    ]
    assert await store.list_feedback(since="2030-01-01T00:00:00+00:00") == []
    assert await store.list_feedback(limit=0) == []
    with pytest.raises(ValueError):
        await store.list_feedback(since="last tuesday")


async def test_feedback_compares_times_not_strings(store):
    await store.add_feedback(feedback(1, created_at="2025-03-01T23:00:00-05:00"))  # 04:00Z on 2nd
    await store.add_feedback(feedback(2, created_at="2025-03-02T01:00:00Z"))
    assert [f.id for f in await store.list_feedback()] == ["fb-1", "fb-2"]


async def test_user_state_round_trip(store):
    assert await store.get_user("user-a") is None
    state = UserState(
        user_key="user-a",
        language="ko",
        consent_store_photos=True,
        last_result={
            "top": [{"label": "acne", "prob": 0.8125}, {"label": "eczema", "prob": 0.1}],
            "abstain": False,
            "model": "test-0",
            "nested": {"list": [1, 2.5, None, "문자"]},
        },
        recent_messages=[1700000000.125, 1700000001.5],
        updated_at="2025-03-01T10:00:00+00:00",
    )
    await store.save_user(state)
    assert await store.get_user("user-a") == state
    changed = dataclasses.replace(state, language="en", last_result=None, recent_messages=[])
    await store.save_user(changed)
    assert await store.get_user("user-a") == changed
    await store.save_user(UserState(user_key="user-b"))
    assert await store.get_user("user-b") == UserState(user_key="user-b")


async def test_delete_user_forgets_state_and_feedback(store):
    await store.save_user(UserState(user_key="user-a", language="ko"))
    await store.save_user(UserState(user_key="user-b"))
    for number in range(1, 5):
        await store.add_feedback(feedback(number, "user-a" if number % 2 else "user-b"))
    await store.delete_user("user-a")
    assert await store.get_user("user-a") is None
    assert await store.get_user("user-b") is not None
    assert {f.user_key for f in await store.list_feedback()} == {"user-b"}
    await store.delete_user("nobody")  # forgetting an unknown user is not an error


# ---- albums -------------------------------------------------------------------------------


def album_photo(number: int, at: str, user_key: str = "user-a", album: str = "g1", **changes):
    values = dict(
        id=f"photo-{number}",
        user_key=user_key,
        album=album,
        at=at,
        photo_ref=f"file-{number}",
        probabilities={"acne": 0.75, "eczema": 0.25},
    )
    return AlbumPhoto(**{**values, **changes})


async def test_album_photos_come_back_in_arrival_order_whoever_added_them(store):
    # Added out of order (two replicas), one of them left out for its quality.
    late = album_photo(2, "2025-03-01T10:00:01.500000+00:00")
    early = album_photo(
        1,
        "2025-03-01T10:00:01+00:00",
        probabilities={},
        left_out="quality",
        issues=["blurry", "dark"],
    )
    same_instant = album_photo(3, "2025-03-01T10:00:01.500000+00:00", photo_ref=None)
    for photo in (late, same_instant, early):
        await store.add_album_photo(photo)
    await store.add_album_photo(album_photo(4, "2025-03-01T10:00:01Z", album="g2"))
    await store.add_album_photo(album_photo(5, "2025-03-01T10:00:01Z", user_key="user-b"))
    assert await store.album_photos("user-a", "g1") == [early, late, same_instant]
    assert await store.album_photos("user-a", "nothing") == []


async def test_an_answered_album_is_deleted_and_forget_deletes_every_album(store):
    await store.add_album_photo(album_photo(1, "2025-03-01T10:00:00Z"))
    await store.add_album_photo(album_photo(2, "2025-03-01T10:00:00Z", album="g2"))
    await store.add_album_photo(album_photo(3, "2025-03-01T10:00:00Z", user_key="user-b"))
    await store.delete_album("user-a", "g1")
    assert await store.album_photos("user-a", "g1") == []
    assert [p.id for p in await store.album_photos("user-a", "g2")] == ["photo-2"]
    await store.delete_user("user-a")
    assert await store.album_photos("user-a", "g2") == []
    assert [p.id for p in await store.album_photos("user-b", "g1")] == ["photo-3"]


# ---- analyses -----------------------------------------------------------------------------


def analysis(number: int, at: str | None = None, **changes) -> AnalysisRecord:
    values = dict(
        id=f"an-{number}",
        at=at or f"2025-03-{number:02d}T10:00:00.000000+00:00",
        label="acne" if number % 2 else "melanoma",
        abstain=number % 3 == 0,
        urgent=number % 2 == 0,
        model_version="test-0",
        transport="tg" if number % 2 else "web",
    )
    values.update(changes)
    return AnalysisRecord(**values)


async def test_analyses_oldest_first_since_inclusive(store):
    records = [analysis(n) for n in (3, 1, 4, 5, 2)]
    for record in records:
        await store.record_analysis(record)
    everything = await store.list_analyses("2000-01-01T00:00:00+00:00")
    assert [r.id for r in everything] == ["an-1", "an-2", "an-3", "an-4", "an-5"]
    assert everything[2] == next(r for r in records if r.id == "an-3"), "round trip"
    assert isinstance(everything[0].abstain, bool) and isinstance(everything[0].urgent, bool)
    since = await store.list_analyses("2025-03-03T10:00:00+00:00")
    assert [r.id for r in since] == ["an-3", "an-4", "an-5"], "since is inclusive"
    assert [r.id for r in await store.list_analyses("2025-03-03T19:00:00+09:00")] == [
        "an-3",
        "an-4",
        "an-5",
    ], "another spelling of the same instant"
    assert await store.list_analyses("2030-01-01T00:00:00+00:00") == []
    with pytest.raises(ValueError):
        await store.list_analyses("yesterday")


async def test_analyses_compare_times_not_strings_and_outlive_forget(store):
    await store.record_analysis(analysis(1, at="2025-03-01T23:00:00-05:00"))  # 04:00Z on the 2nd
    await store.record_analysis(analysis(2, at="2025-03-02T01:00:00Z"))
    found = await store.list_analyses("2025-03-02T00:00:00Z")
    assert [r.id for r in found] == ["an-2", "an-1"]
    await store.delete_user("user-a")  # records hold no user key: nothing to forget
    assert len(await store.list_analyses("2025-01-01T00:00:00Z")) == 2
    with pytest.raises(ValueError):
        await store.record_analysis(analysis(3, id=""))


async def test_a_save_can_be_audited_as_a_rollback(store):
    first = await store.save_faq(make_faq("acne-contagious"), 0, "alice")
    await store.save_faq(dataclasses.replace(first, topic="other"), 1, "bob")
    restored = await store.save_faq(first, 2, "carol", action="rollback")
    assert restored.version == 3 and restored.topic == "contagious"
    await store.delete_clinic(
        (await store.save_clinic(make_clinic("c", 37.5, 127.0), 0, "alice")).id, 1, "bob"
    )
    await store.save_clinic(make_clinic("c", 37.5, 127.0), 0, "carol", action="rollback")
    assert [e.action for e in await store.audit_log("faq", "acne-contagious")] == [
        "create",
        "update",
        "rollback",
    ]
    assert [e.action for e in await store.audit_log("clinic", "c")] == [
        "create",
        "delete",
        "rollback",
    ]
    with pytest.raises(ValueError):
        await store.save_condition(make_condition("acne"), 0, "x", action="delete")
    assert await store.get_condition("acne") is None


# ---- seeding ------------------------------------------------------------------------------


async def audit_count(store, conditions, faq, clinics) -> int:
    total = 0
    for kind, keys in (
        ("condition", [c.label for c in conditions]),
        ("faq", [e.id for e in faq]),
        ("clinic", [c.id for c in clinics]),
    ):
        for key in keys:
            total += len(await store.audit_log(kind, key))
    return total


async def test_seed_is_idempotent(store, sample_conditions, sample_faq, sample_clinics):
    content = dict(conditions=sample_conditions, faq=sample_faq, clinics=sample_clinics)
    first = await seed(store, **content)
    assert first.changed
    assert first.created == {
        "condition": ["acne", "eczema", "melanoma"],
        "faq": [e.id for e in sample_faq],
        "clinic": [c.id for c in sample_clinics],
    }
    snapshot = (
        await store.list_conditions(),
        await store.list_faq(),
        await store.list_clinics(),
    )
    audits = await audit_count(store, sample_conditions, sample_faq, sample_clinics)
    assert audits == 3 + 4 + 6

    second = await seed(store, **content)
    assert not second.changed
    assert second.unchanged["clinic"] == [c.id for c in sample_clinics]
    assert snapshot == (
        await store.list_conditions(),
        await store.list_faq(),
        await store.list_clinics(),
    )
    assert await audit_count(store, sample_conditions, sample_faq, sample_clinics) == audits


async def test_seed_updates_older_seeded_content_and_keeps_edits(
    store, sample_conditions, sample_faq, sample_clinics
):
    await seed(store, conditions=sample_conditions, faq=sample_faq, clinics=sample_clinics)
    acne = await store.get_condition("acne")
    await store.save_condition(
        dataclasses.replace(acne, summary={"en": "Admin's.", "ko": "관리자."}), 1, "admin"
    )
    newer = [
        dataclasses.replace(c, improvement_time={"en": "12 weeks", "ko": "12주"})
        for c in sample_conditions
    ]
    newer.append(make_condition("psoriasis"))
    report = await seed(store, conditions=newer, faq=sample_faq, clinics=sample_clinics)
    assert report.created["condition"] == ["psoriasis"]
    assert report.updated["condition"] == ["eczema", "melanoma"]
    assert report.kept["condition"] == ["acne"]
    assert "acne" in report.summary()
    assert (await store.get_condition("acne")).summary["en"] == "Admin's."
    eczema = await store.get_condition("eczema")
    assert eczema.version == 2 and eczema.improvement_time["en"] == "12 weeks"
    assert not (await seed(store, conditions=newer, faq=sample_faq, clinics=sample_clinics)).changed


async def test_seed_from_the_shipped_content_is_idempotent(store):
    try:
        import knowledge.content  # noqa: F401
        import knowledge.faq  # noqa: F401
    except ImportError as missing:
        pytest.skip(f"the content loaders are not written yet ({missing})")
    from knowledge.seed import load_content

    conditions, faq, clinics = load_content()
    first = await seed(store)
    assert first.created["condition"] == [c.label for c in conditions]
    assert len(first.created["faq"]) == len(faq)
    assert len(first.created["clinic"]) == len(clinics)
    audits = await audit_count(store, conditions, faq, clinics)
    second = await seed(store)
    assert not second.changed, second.summary()
    assert await audit_count(store, conditions, faq, clinics) == audits


# ---- admin sessions -----------------------------------------------------------------------


def admin_session(number: int, **changes) -> AdminSessionRecord:
    record = AdminSessionRecord(
        id_hash=f"{number:064x}",
        name=f"admin {number}",
        created_ts=1_000.0,
        expires_ts=2_000.0,
        last_seen_ts=1_000.0,
        password_fingerprint="current",
    )
    return dataclasses.replace(record, **changes)


async def test_admin_session_create_get_touch_delete(store):
    record = admin_session(1)
    assert await store.get_admin_session(record.id_hash) is None
    await store.create_admin_session(record)
    assert await store.get_admin_session(record.id_hash) == record
    assert await store.touch_admin_session(record.id_hash, 1_500.5)
    touched = await store.get_admin_session(record.id_hash)
    assert touched == dataclasses.replace(record, last_seen_ts=1_500.5)

    await store.delete_admin_session(record.id_hash)
    assert await store.get_admin_session(record.id_hash) is None
    # A request that read the session before the sign-out must not bring it back.
    assert not await store.touch_admin_session(record.id_hash, 1_600.0)
    assert await store.get_admin_session(record.id_hash) is None
    await store.delete_admin_session(record.id_hash)  # deleting twice is no error


async def test_admin_session_ids_are_unique(store):
    await store.create_admin_session(admin_session(1))
    with pytest.raises(StoreError):  # a clash would hand one admin another's session
        await store.create_admin_session(admin_session(1, name="someone else"))
    assert (await store.get_admin_session(admin_session(1).id_hash)).name == "admin 1"


async def test_prune_admin_sessions_ends_expired_and_other_password_sessions(store):
    live = admin_session(1, expires_ts=2_000.0)
    expired = admin_session(2, expires_ts=1_500.0)
    ends_now = admin_session(3, expires_ts=1_800.0)
    old_password = admin_session(4, password_fingerprint="previous")
    for record in (live, expired, ends_now, old_password):
        await store.create_admin_session(record)
    assert await store.prune_admin_sessions(1_800.0, "current") == 3
    assert await store.get_admin_session(live.id_hash) == live
    for gone in (expired, ends_now, old_password):
        assert await store.get_admin_session(gone.id_hash) is None
    assert await store.prune_admin_sessions(1_800.0, "current") == 0


# ---- delivery: outbox and updates seen ----------------------------------------------------


def queued(reply_id: str, chat_id: int, seq: float, **fields) -> QueuedReply:
    payload = '{"text": "안녕 <b>hi</b>", "buttons": [[{"text": "A", "action": "care:1"}]]}'
    return QueuedReply(reply_id, chat_id, seq, payload, created=seq, next_attempt=seq + 1, **fields)


async def test_queued_replies_come_back_in_sequence_order(store):
    assert await store.pending_replies() == []
    replies = [queued("r3", 7, 30.0), queued("r1", 7, 10.0), queued("r2", 2**40, 20.0)]
    for reply in replies:
        await store.enqueue_reply(reply)
    pending = await store.pending_replies()
    assert [r.id for r in pending] == ["r1", "r2", "r3"]
    assert pending[1] == replies[2], "every field round-trips (a 41-bit chat id too)"
    assert [r.id for r in await store.pending_replies(limit=2)] == ["r1", "r2"]
    await store.delete_reply("r1")
    await store.delete_reply("r1")  # already gone: nothing to do
    assert [r.id for r in await store.pending_replies()] == ["r2", "r3"]


async def test_a_queued_reply_is_leased_to_one_owner_at_a_time(store):
    await store.enqueue_reply(queued("r1", 7, 10.0))
    mine = await store.claim_reply("r1", "replica-a", now=100.0, lease_until=160.0)
    assert (mine.claimed_by, mine.claimed_until) == ("replica-a", 160.0)
    assert await store.claim_reply("r1", "replica-b", now=120.0, lease_until=180.0) is None
    again = await store.claim_reply("r1", "replica-a", now=120.0, lease_until=180.0)
    assert again.claimed_until == 180.0, "the owner may renew its lease"
    # A replica that died holding the lease: once it runs out, another one takes over.
    taken = await store.claim_reply("r1", "replica-b", now=181.0, lease_until=240.0)
    assert taken.claimed_by == "replica-b"
    assert await store.claim_reply("missing", "replica-a", now=1.0, lease_until=2.0) is None


async def test_concurrent_claims_give_the_lease_to_one(store):
    await store.enqueue_reply(queued("r1", 7, 10.0))
    results = await asyncio.gather(
        *(store.claim_reply("r1", f"replica-{n}", 100.0, 160.0) for n in range(2))
    )
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert (await store.pending_replies())[0].claimed_by == winners[0].claimed_by


async def test_rescheduling_counts_the_attempt_and_releases_the_lease(store):
    await store.enqueue_reply(queued("r1", 7, 10.0))
    await store.claim_reply("r1", "replica-a", now=100.0, lease_until=160.0)
    await store.reschedule_reply("r1", next_attempt=104.0, attempts=1)
    [reply] = await store.pending_replies()
    assert (reply.next_attempt, reply.attempts, reply.claimed_by) == (104.0, 1, "")
    assert await store.claim_reply("r1", "replica-b", now=104.0, lease_until=164.0) is not None
    await store.delete_reply("r1")
    await store.reschedule_reply("r1", next_attempt=200.0, attempts=2)  # gone: stays gone
    assert await store.pending_replies() == []


async def test_an_update_is_recorded_once_until_its_record_expires(store):
    assert await store.record_update("tg:1:100", now=1000.0, expires_at=2000.0) is True
    assert await store.record_update("tg:1:100", now=1500.0, expires_at=2500.0) is False
    assert await store.record_update("tg:1:101", now=1500.0, expires_at=2500.0) is True
    # Expired: a new delivery of that id counts as new again (and is recorded anew).
    assert await store.record_update("tg:1:100", now=2000.0, expires_at=3000.0) is True
    assert await store.record_update("tg:1:100", now=2999.0, expires_at=3999.0) is False


async def test_concurrent_deliveries_of_one_update_are_recorded_once(store):
    results = await asyncio.gather(
        *(store.record_update("tg:1:7", now=10.0, expires_at=20.0) for _ in range(3))
    )
    assert sorted(results) == [False, False, True]


async def test_purging_forgets_expired_updates_only(store):
    await store.record_update("old", now=0.0, expires_at=100.0)
    await store.record_update("new", now=0.0, expires_at=300.0)
    assert await store.purge_updates(now=200.0) == 1
    assert await store.purge_updates(now=200.0) == 0
    assert await store.record_update("new", now=250.0, expires_at=400.0) is False
    assert await store.record_update("old", now=250.0, expires_at=400.0) is True


# ---- checklist questions and their statistics ----------------------------------------------


async def test_question_wording_create_list_update_and_stale(store):
    assert await store.list_questions() == []
    size = ChecklistQuestion(id="size", text={"en": "Grown?", "ko": "커졌나요?"})
    saved = await store.save_question(size, 0, "seed")
    await store.save_question(
        ChecklistQuestion(id="bleeding", text={"en": "B", "ko": "ㅂ"}), 0, "x"
    )
    assert [q.id for q in await store.list_questions()] == ["bleeding", "size"]
    changed = dataclasses.replace(saved, text={"en": "Bigger?", "ko": "커졌어요?"})
    updated = await store.save_question(changed, 1, "alice")
    assert (updated.version, updated.updated_by) == (2, "alice")
    assert (await store.list_questions())[1] == updated
    with pytest.raises(StaleWriteError) as refused:
        await store.save_question(changed, 1, "bob")
    assert (refused.value.kind, refused.value.changed_by) == ("question", "alice")
    assert [e.actor for e in await store.audit_log("question", "size")] == ["seed", "alice"]


async def test_an_analysis_recorded_again_is_replaced_with_its_checklist_rules(store):
    record = AnalysisRecord(
        "a1", "2026-01-02T00:00:00+00:00", "melanocytic_nevus", False, True, "v", "tg"
    )
    await store.record_analysis(record)
    answered = dataclasses.replace(record, checklist_rules=["seven_point", "bleeding"])
    await store.record_analysis(answered)
    assert await store.list_analyses("2026-01-01T00:00:00+00:00") == [answered]


async def test_seed_writes_the_shipped_questions_once(store):
    await seed(store)
    shipped = {q.id for q in await store.list_questions()}
    assert shipped == set(QUESTION_IDS)
    assert not (await seed(store)).changed
