"""The admin panel over HTTP: sign-in, route-by-route refusal, CSRF, validation, preview,
versioning, rollback, the concurrent-edit refusal, FAQ/clinic CRUD and CSV import, on both stores.
The conversation core is asked afterwards to show that a saved change is used at once."""

from __future__ import annotations

import re
import uuid

import pytest
from aiohttp import FormData

from bot.app import build_assistant
from bot.conversation import Chatter
from bot.settings import Settings
from bot.web.admin.app import require_admin
from bot.web.admin.auth import hash_password, verify_password
from bot.web.app import build_web_app
from bot.web.keys import ASSISTANT
from knowledge.config import StoreConfig
from knowledge.content import CLINICS_CSV

PASSWORD = "correct horse battery staple"
PASSWORD_HASH = hash_password(PASSWORD)


@pytest.fixture(params=["sqlite", "firestore"])
async def admin_client(request, aiohttp_client_factory, tmp_path, monkeypatch):
    store = StoreConfig(sqlite_path=tmp_path / "db.sqlite3")
    if request.param == "firestore":
        monkeypatch.setenv(
            "FIRESTORE_EMULATOR_HOST", request.getfixturevalue("firestore_emulator_host")
        )
        store = StoreConfig(kind="firestore", firestore_project=f"admin-{uuid.uuid4().hex[:12]}")
    settings = Settings(store=store, admin_password_hash=PASSWORD_HASH)
    app = build_web_app(build_assistant(settings))
    client = await aiohttp_client_factory(app)
    client.assistant = app[ASSISTANT]
    return client


async def sign_in(client, name="Dr. Kim", password=PASSWORD) -> str:
    """Signs in; returns the CSRF token of the first admin page."""
    page = await (await client.get("/admin/login")).text()
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    response = await client.post(
        "/admin/login", data={"token": token, "name": name, "password": password}
    )
    assert response.status == 200, await response.text()
    return csrf_of(await response.text())


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


async def condition_form(client, label: str) -> dict[str, str]:
    """The edit form's current field values, as a browser would submit them."""
    page = await (await client.get(f"/admin/conditions/{label}")).text()
    fields: dict[str, str] = {}
    for name, value in re.findall(
        r'<input type="(?:hidden|text)"[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page
    ):
        fields[name] = _unescape(value)
    for name, value in re.findall(
        r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', page, re.S
    ):
        fields[name] = _unescape(value)
    fields["triage"] = re.search(r'<option value="([^"]+)" selected', page).group(1)
    return fields


def _unescape(text: str) -> str:
    import html

    return html.unescape(text)


def test_password_hashes_verify_only_the_right_password():
    stored = hash_password(PASSWORD)
    assert verify_password(PASSWORD, stored)
    assert not verify_password("wrong", stored)
    assert stored != hash_password(PASSWORD)  # salted


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/admin"),
        ("GET", "/admin/conditions"),
        ("GET", "/admin/conditions/acne"),
        ("POST", "/admin/conditions/acne"),
        ("GET", "/admin/history/condition/acne"),
        ("POST", "/admin/history/condition/acne/rollback"),
        ("GET", "/admin/faq"),
        ("GET", "/admin/faq/new"),
        ("POST", "/admin/faq/new"),
        ("GET", "/admin/faq/acne-contagious"),
        ("POST", "/admin/faq/acne-contagious"),
        ("POST", "/admin/faq/acne-contagious/delete"),
        ("GET", "/admin/checklist"),
        ("POST", "/admin/checklist/size"),
        ("GET", "/admin/clinics"),
        ("GET", "/admin/clinics/new"),
        ("POST", "/admin/clinics/new"),
        ("GET", "/admin/clinics/import"),
        ("POST", "/admin/clinics/import"),
        ("GET", "/admin/clinics/seoul-gangnam-01"),
        ("POST", "/admin/clinics/seoul-gangnam-01"),
        ("POST", "/admin/clinics/seoul-gangnam-01/delete"),
        ("POST", "/admin/logout"),
    ],
)
async def test_every_admin_route_refuses_without_a_session(
    aiohttp_client_factory, tmp_path, method, path
):
    settings = Settings(
        store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3"), admin_password_hash=PASSWORD_HASH
    )
    client = await aiohttp_client_factory(build_web_app(build_assistant(settings)))
    response = await client.request(method, path, allow_redirects=False, data={"csrf": "x"})
    if method == "GET":
        assert response.status == 303 and response.headers["Location"].startswith("/admin/login")
    else:
        assert response.status == 403
    # A forged cookie is no session either.
    client.session.cookie_jar.update_cookies({"skincare_admin": "eyJuIjoiZXZlIn0.forged"})
    response = await client.request(method, path, allow_redirects=False, data={"csrf": "x"})
    assert response.status in (303, 403)


async def test_the_admin_middleware_guards_only_the_admin_sub_app(aiohttp_client_factory, tmp_path):
    settings = Settings(
        store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3"), admin_password_hash=PASSWORD_HASH
    )
    app = build_web_app(build_assistant(settings))
    assert require_admin not in app.middlewares  # the sub-app's own, not the root app's
    client = await aiohttp_client_factory(app)
    # A bogus admin cookie and no CSRF token: the chat, its API and /healthz do not care.
    client.session.cookie_jar.update_cookies({"skincare_admin": "eyJuIjoiZXZlIn0.forged"})
    page = await client.get("/?lang=en", allow_redirects=False)
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    response = await client.post(
        "/api/chat", json={"lang": "en", "kind": "command", "name": "help"}
    )
    assert response.status == 200 and (await response.json())["replies"]
    assert (await client.get("/healthz")).status == 200
    # Only the mount point is the admin's: a path that merely starts with "/admin" is not.
    assert (await client.get("/administrator", allow_redirects=False)).status == 404
    # ...while the admin routes still are guarded.
    response = await client.get("/admin/faq", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"].startswith("/admin/login")


async def test_admin_home_leads_to_the_conditions(admin_client):
    await sign_in(admin_client)
    response = await admin_client.get("/admin", allow_redirects=False)
    assert response.status == 303 and response.headers["Location"] == "/admin/conditions"


async def test_closed_without_a_password_hash(aiohttp_client_factory, tmp_path):
    client = await aiohttp_client_factory(
        build_web_app(
            build_assistant(Settings(store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3")))
        )
    )
    response = await client.get("/admin/login")
    assert response.status == 404 and "SKINCARE_ADMIN_PASSWORD_HASH" in await response.text()


async def test_sign_in_rejects_wrong_passwords_and_rate_limits(admin_client):
    page = await (await admin_client.get("/admin/login")).text()
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    for _ in range(3):  # the free failures of one (address, name): test_admin_sessions.py
        response = await admin_client.post(
            "/admin/login", data={"token": token, "name": "eve", "password": "guess"}
        )
        assert response.status == 401
    response = await admin_client.post(
        "/admin/login", data={"token": token, "name": "eve", "password": PASSWORD}
    )
    assert response.status == 429  # even the right password waits now
    # Without the double-submitted token the form is refused outright.
    response = await admin_client.post("/admin/login", data={"name": "x", "password": PASSWORD})
    assert response.status == 403


async def test_session_cookie_is_httponly_and_strict(admin_client):
    page = await (await admin_client.get("/admin/login")).text()
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    response = await admin_client.post(
        "/admin/login",
        data={"token": token, "name": "Dr. Kim", "password": PASSWORD},
        allow_redirects=False,
    )
    assert response.status == 303
    cookie = response.cookies["skincare_admin"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict"


async def test_post_without_csrf_is_refused_and_changes_nothing(admin_client):
    await sign_in(admin_client)
    form = await condition_form(admin_client, "acne")
    form["summary_en"] = "Changed without a CSRF token."
    form["action"] = "save"
    form.pop("csrf")
    before = await admin_client.assistant.store.get_condition("acne")
    response = await admin_client.post("/admin/conditions/acne", data=form)
    assert response.status == 403
    stored = await admin_client.assistant.store.get_condition("acne")
    assert stored == before


async def test_edit_preview_save_and_the_bot_uses_it_at_once(admin_client):
    await sign_in(admin_client)
    form = await condition_form(admin_client, "acne")
    seeded = int(form["expected_version"])
    new_step = "새 관리 단계: 하루 두 번 순한 세안제로 씻으세요 (관리자 수정)."
    steps = form["care_steps_ko"].splitlines()
    form["care_steps_ko"] = "\n".join([new_step, *steps[1:]])  # same count as in English

    form["action"] = "preview"
    preview = await admin_client.post("/admin/conditions/acne", data=form)
    text = await preview.text()
    assert preview.status == 200 and 'data-preview="result-ko"' in text and new_step in text
    # Every referral tier is previewed too: the edited self-care stays beside "can't be ruled
    # out", and is withheld when a cancer is likely.
    possible = text.split('data-preview="result-possible-ko"')[1].split("</div>")[0]
    likely = text.split('data-preview="result-likely-ko"')[1].split("</div>")[0]
    assert "피부암일 가능성을 배제할 수 없어요" in possible and "흑색종 6%" in possible
    assert new_step in possible and new_step not in likely and "2주 이내" in likely
    assert (await admin_client.assistant.store.get_condition("acne")).version == seeded  # unsaved

    form["action"] = "save"
    saved = await admin_client.post("/admin/conditions/acne", data=form)
    assert saved.status == 200 and f"Saved as version {seeded + 1}" in await saved.text()
    stored = await admin_client.assistant.store.get_condition("acne")
    assert stored.care_steps["ko"][0] == new_step and stored.updated_by == "admin:Dr. Kim"

    # The very next acne answer in the conversation shows it (no restart).
    conversation = admin_client.assistant.conversation
    chatter = Chatter("web-admin-check", "ko")
    state = await admin_client.assistant.store.get_user(chatter.key)
    assert state is None
    replies = await conversation.command(chatter, "start")
    assert replies
    condition = await admin_client.assistant.knowledge.condition("acne")
    assert condition.care_steps["ko"][0] == new_step


async def test_validation_refuses_missing_korean_and_bad_sources(admin_client):
    await sign_in(admin_client)
    form = await condition_form(admin_client, "eczema")
    seeded = int(form["expected_version"])
    form["names_ko"] = ""
    form["sources"] = "no url here"
    form["action"] = "save"
    response = await admin_client.post("/admin/conditions/eczema", data=form)
    text = await response.text()
    assert response.status == 422 and "Not saved" in text and "sources line 1" in text
    assert "names" in text
    assert (await admin_client.assistant.store.get_condition("eczema")).version == seeded


async def test_a_save_whose_replies_telegram_would_refuse_is_refused(admin_client):
    await sign_in(admin_client)
    form = await condition_form(admin_client, "acne")
    seeded = int(form["expected_version"])
    # A link longer than a whole message: no cut can keep the <a href> tag intact.
    form["sources"] += "\nA very long link | https://example.org/" + "x" * 5000
    form["action"] = "save"
    response = await admin_client.post("/admin/conditions/acne", data=form)
    text = await response.text()
    assert response.status == 422 and "Not saved" in text and "cannot split" in text
    assert (await admin_client.assistant.store.get_condition("acne")).version == seeded


async def test_urgent_conditions_cannot_get_self_care_steps(admin_client):
    await sign_in(admin_client)
    form = await condition_form(admin_client, "melanoma")
    form["care_steps_en"] = "Put a cream on it."
    form["action"] = "save"
    response = await admin_client.post("/admin/conditions/melanoma", data=form)
    assert response.status == 422 and "urgent condition" in await response.text()


async def test_second_concurrent_save_is_refused_with_who_changed_it(admin_client):
    await sign_in(admin_client, name="Dr. Kim")
    first = await condition_form(admin_client, "psoriasis_lichen_planus")
    seeded = int(first["expected_version"])
    second = dict(first)
    first["summary_en"] = "Kim's summary."
    first["action"] = "save"
    assert (
        await admin_client.post("/admin/conditions/psoriasis_lichen_planus", data=first)
    ).status == 200

    second["summary_en"] = "Lee's summary."
    second["action"] = "save"
    response = await admin_client.post("/admin/conditions/psoriasis_lichen_planus", data=second)
    text = await response.text()
    assert response.status == 409
    assert "Changed by admin:Dr. Kim meanwhile" in text
    assert "Kim&#39;s summary." in text and "Lee&#39;s summary." in text  # both, to merge
    stored = await admin_client.assistant.store.get_condition("psoriasis_lichen_planus")
    assert stored.summary["en"] == "Kim's summary." and stored.version == seeded + 1

    # The refusal page carries Kim's version: saving from it again is a deliberate overwrite.
    second["expected_version"] = re.search(r'name="expected_version" value="(\d+)"', text).group(1)
    assert second["expected_version"] == str(seeded + 1)
    assert (
        await admin_client.post("/admin/conditions/psoriasis_lichen_planus", data=second)
    ).status == 200


async def test_history_and_rollback(admin_client):
    csrf = await sign_in(admin_client)
    form = await condition_form(admin_client, "fungal_infection")
    seeded = int(form["expected_version"])
    original = form["summary_en"]
    form["summary_en"] = "A wrong summary, saved by mistake."
    form["action"] = "save"
    await admin_client.post("/admin/conditions/fungal_infection", data=form)

    page = await (await admin_client.get("/admin/history/condition/fungal_infection")).text()
    assert "A wrong summary" in page and "summary.en" in page and "admin:Dr. Kim" in page
    response = await admin_client.post(
        "/admin/history/condition/fungal_infection/rollback",
        data={"csrf": csrf, "to_version": seeded, "expected_version": seeded + 1},
    )
    assert f"Rolled back to version {seeded}" in await response.text()
    stored = await admin_client.assistant.store.get_condition("fungal_infection")
    assert stored.summary["en"] == original and stored.version == seeded + 2

    # A rollback from a stale page is refused, not applied.
    response = await admin_client.post(
        "/admin/history/condition/fungal_infection/rollback",
        data={"csrf": csrf, "to_version": seeded + 1, "expected_version": seeded + 1},
    )
    assert "Not rolled back" in await response.text()
    version = (await admin_client.assistant.store.get_condition("fungal_infection")).version
    assert version == seeded + 2


async def test_faq_create_search_edit_delete(admin_client):
    csrf = await sign_in(admin_client)
    data = {
        "csrf": csrf,
        "expected_version": "0",
        "id": "acne-pillowcase",
        "label": "acne",
        "topic": "washing",
        "questions_en": "Should I change my pillowcase?\nhow often to wash pillowcases",
        "questions_ko": "베갯잇 자주 바꿔야 하나요?\n베개 커버 얼마나 자주 빨아요?",
        "answer_en": "Changing pillowcases (cotton or silk) every few days is sensible hygiene.",
        "answer_ko": "베갯잇은 며칠마다 갈아 주는 것이 좋아요.",
    }
    response = await admin_client.post("/admin/faq/new", data=data)
    assert response.status == 200 and "Saved as version 1" in await response.text()
    again = await admin_client.post("/admin/faq/new", data=data)
    assert again.status == 409 and "already exists" in await again.text()

    listing = await (await admin_client.get("/admin/faq?q=silk")).text()
    assert "acne-pillowcase" in listing and "acne-contagious" not in listing

    bad = dict(data, questions_ko="only one")
    response = await admin_client.post(
        "/admin/faq/acne-pillowcase", data=dict(bad, expected_version="1")
    )
    assert response.status == 422 and "phrasing" in await response.text()

    response = await admin_client.post(
        "/admin/faq/acne-pillowcase/delete",
        data={"csrf": csrf, "expected_version": "1"},
        allow_redirects=False,
    )
    assert response.status == 303
    assert all(e.id != "acne-pillowcase" for e in await admin_client.assistant.store.list_faq())


async def test_faq_preview_and_refusal_of_an_answer_telegram_would_refuse(admin_client):
    csrf = await sign_in(admin_client)
    data = {
        "csrf": csrf,
        "expected_version": "0",
        "id": "acne-towels",
        "label": "acne",
        "topic": "washing",
        "questions_en": "Should I share towels?\nis sharing a towel bad for acne",
        "questions_ko": "수건 같이 써도 되나요?\n수건 공유하면 여드름에 안 좋아요?",
        "answer_en": "Use your own towel & wash it often: <b> is shown as typed.",
        "answer_ko": "수건은 따로 쓰고 자주 빨아 주세요.",
        "action": "preview",
    }
    preview = await admin_client.post("/admin/faq/new", data=data)
    text = await preview.text()
    assert preview.status == 200 and "Saved as" not in text
    english = text.split('data-preview="answer-en"')[1].split("</div>")[0]
    # The reply as the bot sends it: the condition's name, the answer escaped for Telegram.
    assert "<b>Acne</b>" in english and "&amp; wash it often: &lt;b&gt; is shown" in english
    assert "수건은 따로 쓰고" in text.split('data-preview="answer-ko"')[1]
    assert all(e.id != "acne-towels" for e in await admin_client.assistant.store.list_faq())

    # One message per answer: longer than Telegram takes is refused, in the preview and the save.
    too_long = dict(data, answer_ko="수건 " * 2100)
    for action in ("preview", "save"):
        response = await admin_client.post("/admin/faq/new", data=dict(too_long, action=action))
        text = await response.text()
        assert response.status == 422 and "Not saved" in text
        assert "the ko answer:" in text and "over the limit of 4096" in text
    assert all(e.id != "acne-towels" for e in await admin_client.assistant.store.list_faq())

    saved = await admin_client.post("/admin/faq/new", data=dict(data, action="save"))
    assert saved.status == 200 and "Saved as version 1" in await saved.text()


async def test_clinic_edit_and_csv_import_dry_run(admin_client):
    csrf = await sign_in(admin_client)
    [clinic] = [c for c in await admin_client.assistant.store.list_clinics()][:1]
    page = await (await admin_client.get(f"/admin/clinics/{clinic.id}")).text()
    fields = dict(re.findall(r'<input type="text" id="[^"]+" name="([^"]+)" value="([^"]*)"', page))
    fields = {k: _unescape(v) for k, v in fields.items()}
    fields.update(csrf=csrf, expected_version=str(clinic.version), phone="not a phone")
    response = await admin_client.post(f"/admin/clinics/{clinic.id}", data=fields)
    assert response.status == 422 and "bad phone" in await response.text()
    fields["phone"] = "02-555-0199"
    response = await admin_client.post(f"/admin/clinics/{clinic.id}", data=fields)
    assert response.status == 200
    assert (await admin_client.assistant.store.get_clinic(clinic.id)).phone == "02-555-0199"

    # CSV import: the shipped file is a dry run of "1 update" (the phone just changed back).
    csv_text = CLINICS_CSV.read_text(encoding="utf-8")
    form = FormData()
    form.add_field("csrf", csrf)
    form.add_field("file", csv_text.encode(), filename="clinics.csv", content_type="text/csv")
    response = await admin_client.post("/admin/clinics/import", data=form)
    text = await response.text()
    assert "Dry run" in text and "1 to update" in text and f"update: {clinic.id}" in text
    assert (await admin_client.assistant.store.get_clinic(clinic.id)).phone == "02-555-0199"
    response = await admin_client.post(
        "/admin/clinics/import", data={"csrf": csrf, "confirm": "yes", "csv_text": csv_text}
    )
    assert "1 updated" in await response.text()
    assert (await admin_client.assistant.store.get_clinic(clinic.id)).phone == clinic.phone

    broken = csv_text.replace("02-555-0101", "phone?")
    response = await admin_client.post(
        "/admin/clinics/import", data={"csrf": csrf, "csv_text": broken}
    )
    assert response.status == 422 and "bad phone" in await response.text()


async def test_checklist_wording_edited_in_both_languages_and_used_by_the_bot(admin_client):
    csrf = await sign_in(admin_client)
    page = await (await admin_client.get("/admin/checklist")).text()
    assert "Has it changed in size" in page and "크기가 변했나요" in page
    assert "NICE NG12" in page and "seven_point" in page  # the rules are shown, not editable
    edit = {
        "csrf": csrf,
        "expected_version": "1",
        "text_en": "Bigger lately?",
        "text_ko": "최근 커졌나요?",
    }
    response = await admin_client.post("/admin/checklist/size", data=edit)
    assert response.status == 200 and "Saved question size" in await response.text()
    questions = await admin_client.assistant.knowledge.questions()
    assert questions["size"] == {"en": "Bigger lately?", "ko": "최근 커졌나요?"}
    # The same form again (version 1) is stale: refused, naming who changed it.
    stale = await admin_client.post("/admin/checklist/size", data={**edit, "text_en": "Grown?"})
    assert stale.status == 409 and "Dr. Kim" in await stale.text()
    # Korean is required; unknown questions do not exist.
    missing = await admin_client.post(
        "/admin/checklist/size", data={**edit, "expected_version": "2", "text_ko": " "}
    )
    assert missing.status == 422 and "no ko wording" in await missing.text()
    unknown = await admin_client.post("/admin/checklist/nope", data=edit)
    assert unknown.status == 404
    [size] = [q for q in await admin_client.assistant.store.list_questions() if q.id == "size"]
    assert (size.version, size.text["en"]) == (2, "Bigger lately?")
    # The shipped wording back, by a rollback to version 1 from the question's history.
    history = await (await admin_client.get("/admin/history/question/size")).text()
    assert "Bigger lately?" in history
    await admin_client.post(
        "/admin/history/question/size/rollback",
        data={"csrf": csrf, "to_version": "1", "expected_version": "2"},
    )
    questions = await admin_client.assistant.knowledge.questions()
    assert questions["size"]["en"].startswith("Has it changed in size")
