"""The web chat's HTTP API, end to end: the real app, the bundled model, a real SQLite store.

Every turn goes through aiohttp's test client exactly as the page's `fetch` sends it (JSON, or
multipart with a `photo`), and the answers are checked against the chat templates' wording.
"""

from __future__ import annotations

import asyncio
import base64
import re
from pathlib import Path

import pytest
from aiohttp import FormData

from bot.app import build_assistant
from bot.settings import Settings
from bot.web.app import build_web_app
from bot.web.bodies import UploadBudget
from bot.web.chat import SESSION_COOKIE
from bot.web.keys import ASSISTANT
from diagnosis.intake import IntakeLimits
from knowledge.config import StoreConfig

# A clear acne photo: any result (confident or not) carries the same buttons and disclaimer.
PHOTO = "acne/dermnet-0121064acd137936.jpg"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GANGNAM = {"lat": 37.4986, "lon": 127.0284}


@pytest.fixture
def photo(dataset_dir: Path) -> bytes:
    return (dataset_dir / PHOTO).read_bytes()


@pytest.fixture
def make_client(aiohttp_client_factory, tmp_path):
    """A client of the real web app that has opened the page (so it holds a session cookie)."""

    async def make(**settings):
        app = build_web_app(
            build_assistant(
                Settings(store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3"), **settings)
            )
        )
        client = await aiohttp_client_factory(app)
        page = await client.get("/?lang=en")
        assert page.status == 200
        return client

    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


async def turn(client, lang: str = "en", **fields) -> list[dict]:
    """One JSON chat turn; the replies."""
    response = await client.post("/api/chat", json={"lang": lang, **fields})
    assert response.status == 200, await response.text()
    return (await response.json())["replies"]


async def upload(client, data: bytes, lang: str = "en", name="photo.jpg", **fields) -> list[dict]:
    """One multipart chat turn with a photo, as the page sends it."""
    form = FormData()
    for key, value in {"kind": "photo", "lang": lang, **fields}.items():
        form.add_field(key, value)
    form.add_field("photo", data, filename=name, content_type="image/jpeg")
    response = await client.post("/api/chat", data=form)
    assert response.status == 200, await response.text()
    return (await response.json())["replies"]


def actions(reply: dict) -> dict[str, str]:
    """The reply's buttons by the kind of their action ("care", "gradcam", ...)."""
    return {b["action"].split(":")[0]: b["action"] for row in reply["buttons"] for b in row}


async def photo_result(client, photo: bytes, lang: str = "en") -> dict:
    replies = await upload(client, photo, lang)
    assert len(replies) == 1
    return replies[0]


# ---- the page and the session ------------------------------------------------------------------


async def test_page_sets_a_session_cookie_and_speaks_both_languages(make_client):
    client = await make_client()
    response = await client.get("/?lang=en")
    cookie = response.cookies[SESSION_COOKIE]
    assert len(cookie.value) >= 16 and cookie["httponly"] and cookie["samesite"] == "Strict"
    english = await response.text()
    assert '<html lang="en">' in english and "<title>Skin-care assistant</title>" in english
    assert 'id="photo-input"' in english and 'id="text-input"' in english

    korean = await (await client.get("/?lang=ko")).text()
    assert '<html lang="ko">' in korean and "<title>피부 관리 도우미</title>" in korean
    assert "보내기" in korean and "질문을 쓰거나 시/구 이름을 입력하세요" in korean
    # Without ?lang, the browser's Accept-Language picks.
    chosen = await (await client.get("/", headers={"Accept-Language": "ko-KR,ko;q=0.9"})).text()
    assert '<html lang="ko">' in chosen


async def test_every_response_carries_the_security_headers(client):
    page = await client.get("/?lang=en")
    policy = page.headers["Content-Security-Policy"]
    # The page's one inline script runs by this response's nonce; nothing else inline does.
    [nonce] = re.findall(r"<script nonce=\"([^\"]+)\">", await page.text())
    assert f"script-src 'nonce-{nonce}'" in policy and "unsafe-inline" not in policy.split(";")[1]
    assert "frame-ancestors 'none'" in policy and "img-src 'self' data: blob:" in policy
    again = await client.get("/?lang=en")
    assert again.headers["Content-Security-Policy"] != policy  # a fresh nonce each time
    for response in (
        page,
        await client.post("/api/chat", json={"kind": "command", "name": "start"}),
        await client.get("/healthz"),
        await client.get("/no-such-page"),  # aiohttp's own 404
        await client.get("/admin/login"),  # the admin sub-app (closed here: its 404)
    ):
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "script-src 'none'" in (await client.get("/healthz")).headers["Content-Security-Policy"]


async def test_healthz_fails_when_the_store_file_is_deleted(make_client, tmp_path):
    client = await make_client()
    health = await client.get("/healthz")
    assert health.status == 200 and (await health.json())["status"] == "ok"
    (tmp_path / "db.sqlite3").unlink()  # the open connection alone would not notice
    health = await client.get("/healthz")
    assert health.status == 503 and (await health.json())["status"] == "store_unreachable"
    assert "db.sqlite3" not in await health.text()  # the path goes to the log, not out


async def test_only_a_session_id_the_server_issued_is_accepted(client):
    issued = client.session.cookie_jar.filter_cookies(client.make_url("/"))[SESSION_COOKIE].value
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", issued)
    for forged in ("a", "x" * 16, "attacker-chosen-session-id-0001", "Z" * 200, "a b;c"):
        client.session.cookie_jar.clear()
        response = await client.post(
            "/api/chat",
            json={"kind": "command", "name": "start"},
            headers={"Cookie": f"{SESSION_COOKIE}={forged}"},
        )
        assert response.status == 400 and (await response.json())["error"] == "no_session"
        fresh = response.cookies[SESSION_COOKIE].value
        assert fresh != forged and re.fullmatch(r"[A-Za-z0-9_-]{32}", fresh)
        # The fresh id it was given works at once.
        response = await client.post("/api/chat", json={"kind": "command", "name": "start"})
        assert response.status == 200
    # The page, too, replaces a forged id instead of adopting it.
    client.session.cookie_jar.clear()
    page = await client.get("/?lang=en", headers={"Cookie": f"{SESSION_COOKIE}={'x' * 16}"})
    assert page.cookies[SESSION_COOKIE].value != "x" * 16


async def test_a_chat_turn_without_a_session_cookie_is_refused(client):
    client.session.cookie_jar.clear()
    response = await client.post("/api/chat", json={"kind": "command", "name": "start"})
    assert response.status == 400
    assert (await response.json()) == {"error": "no_session"}


async def test_bad_requests_are_refused(client):
    response = await client.post("/api/chat", json={"kind": "dance"})
    assert response.status == 400 and (await response.json())["error"] == "unknown_kind"
    response = await client.post("/api/chat", json={"kind": "location", "lat": "north"})
    assert response.status == 400 and (await response.json())["error"] == "bad_location"


# ---- commands -------------------------------------------------------------------------------


async def test_start_welcomes_in_both_languages(client):
    [english] = await turn(client, kind="command", name="start")
    assert "Hello! I am a skin-care assistant." in english["text"]
    assert "This is not a diagnosis" in english["text"]
    assert "No trained model is installed" not in english["text"]  # the bundled model is
    [korean] = await turn(client, "ko", kind="command", name="/start")
    assert "안녕하세요! 피부 관리 도우미입니다." in korean["text"]
    assert "이 결과는 진단이 아닙니다" in korean["text"]


async def test_an_unknown_command_says_what_works(client):
    [reply] = await turn(client, kind="command", name="/dance")
    assert "I don't know the command /dance" in reply["text"] and "/help" in reply["text"]
    [reply] = await turn(client, "ko", kind="command", name="/춤")
    assert "/춤 는 모르는 명령어예요" in reply["text"]
    # What the user typed comes back escaped: the page renders replies as HTML.
    [reply] = await turn(client, kind="command", name="/<img/src=x/onerror=alert(1)>")
    assert "<img" not in reply["text"] and "&lt;img" in reply["text"]


# ---- a photo and its buttons --------------------------------------------------------------------


async def test_a_photo_gets_a_result_with_buttons_and_care(client, photo):
    result = await photo_result(client, photo)
    assert "This is not a diagnosis" in result["text"]
    assert re.search(r"\d+%", result["text"])  # the ranked conditions with percentages
    buttons = actions(result)
    assert {"gradcam", "care", "clinic", "feedback"} <= set(buttons)
    labels = {b["text"] for row in result["buttons"] for b in row}
    assert {"Where did it look?", "Care tips", "Find a clinic"} <= labels
    result_id = buttons["care"].split(":")[1]
    assert buttons["gradcam"] == f"gradcam:{result_id}"

    # Long care texts come in several parts (Telegram's message limit); the buttons-free
    # text opens with the condition's name (bold) and ends with the disclaimer.
    care = "\n".join(
        part["text"] for part in await turn(client, kind="button", action=buttons["care"])
    )
    assert care.startswith("<b>") and care.endswith("diagnose it.</i>")
    assert "older answer" not in care
    assert "care tips" in care or "doctor" in care or "dermatologist" in care

    [thanks] = await turn(client, kind="button", action=f"feedback:yes:{result_id}")
    assert "Thank you! Your feedback helps improve the assistant." in thanks["text"]


async def test_a_korean_photo_result(client, photo):
    result = await photo_result(client, photo, "ko")
    assert "이 결과는 진단이 아닙니다" in result["text"]
    labels = {b["text"] for row in result["buttons"] for b in row}
    assert {"어디를 보고 판단했나요?", "관리 방법", "병원 찾기"} <= labels


async def test_the_heatmap_button_with_the_photo_returns_a_png(client, photo):
    result = await photo_result(client, photo)
    gradcam = actions(result)["gradcam"]
    replies = await upload(client, photo, kind="button", action=gradcam)
    assert len(replies) == 1
    heatmap = replies[0]
    assert "Where the model looked for <b>" in heatmap["text"]
    prefix = "data:image/png;base64,"
    assert heatmap["photo"].startswith(prefix)
    png = base64.b64decode(heatmap["photo"][len(prefix) :], validate=True)
    assert png.startswith(PNG_SIGNATURE) and len(png) > 1000

    # Without the photo (the server keeps none) the button says so instead.
    [unavailable] = await turn(client, kind="button", action=gradcam)
    assert "I don't keep photos" in unavailable["text"] and "photo" not in unavailable


async def test_follow_up_questions_are_answered_in_their_own_language(client, photo):
    await photo_result(client, photo)
    [english] = await turn(client, kind="text", text="is it contagious?")
    assert "General information, not a diagnosis." in english["text"]
    assert "contagious" in english["text"].lower() or "spread" in english["text"].lower()

    # Asked in Korean on an English page: answered in Korean.
    [korean] = await turn(client, "en", kind="text", text="전염되나요?")
    assert "일반적인 정보이며 진단이 아닙니다." in korean["text"]
    assert len(re.findall(r"[\uac00-\ud7a3]", korean["text"])) > 40
    assert "옮" in korean["text"] or "전염" in korean["text"]


# ---- clinics -------------------------------------------------------------------------------------


async def test_clinic_button_then_a_location_lists_clinics(client, photo):
    result = await photo_result(client, photo)
    [ask] = await turn(client, kind="button", action=actions(result)["clinic"])
    assert ask["ask_location"] is True
    assert ask["location_button"] == "📍 Send my location"
    assert "To find dermatology clinics near you" in ask["text"]

    replies = await turn(client, kind="location", **GANGNAM)
    listing, *venues = replies
    assert "Dermatology clinics near you" in listing["text"]
    assert "Sample Clear Skin Dermatology" in listing["text"]  # 0 km from that point
    assert "Call before you go" in listing["text"] and listing["ask_location"] is False
    assert 1 <= len(venues) <= 3
    first = venues[0]["venue"]
    assert first["title"] == "Sample Clear Skin Dermatology"
    assert first["map_url"].startswith("https://map.kakao.com/")
    assert abs(first["lat"] - GANGNAM["lat"]) < 0.01 and abs(first["lon"] - GANGNAM["lon"]) < 0.01


async def test_a_typed_district_after_asking_lists_clinics_there(client):
    [ask] = await turn(client, "ko", kind="command", name="/clinics")
    assert ask["ask_location"] is True and "가까운 피부과를 찾으려면" in ask["text"]
    listing, *venues = await turn(client, "ko", kind="text", text="강남구")
    assert "강남구 근처 피부과" in listing["text"]
    assert listing["close_keyboard"] is True  # the page hides its location button again
    assert "샘플 맑은피부과의원" in listing["text"] and "방문 전에 전화로" in listing["text"]
    assert venues and "강남구" in venues[0]["venue"]["address"]


# ---- refusals ------------------------------------------------------------------------------------


async def test_a_file_that_is_not_an_image_is_refused_clearly(client):
    [reply] = await upload(client, b"%PDF-1.7 not a photo at all", name="report.pdf")
    assert "That file is not an image." in reply["text"] and not reply["buttons"]
    [reply] = await upload(client, b"plain text", "ko", name="notes.txt")
    assert "이 파일은 이미지가 아니에요." in reply["text"]


async def test_an_over_size_upload_is_refused(make_client, photo):
    limit = 2**20
    client = await make_client(intake=IntakeLimits(max_bytes=limit))
    big = photo + b"\0" * (limit + 1 - len(photo))  # a real JPEG, padded just past the limit
    [reply] = await upload(client, big)
    assert "This file is too large (over 1 MB)" in reply["text"]
    # A photo under the limit still works on the same server.
    result = await photo_result(client, photo)
    assert "This is not a diagnosis" in result["text"]


# ---- forgetting --------------------------------------------------------------------------------


async def test_after_forget_the_old_buttons_are_stale(client, photo):
    result = await photo_result(client, photo)
    [forgotten] = await turn(client, kind="command", name="/forget")
    assert "I deleted everything I kept about you" in forgotten["text"]
    [stale] = await turn(client, kind="button", action=actions(result)["care"])
    assert "That button belongs to an older answer." in stale["text"]
    [stale] = await turn(client, "ko", kind="button", action=actions(result)["clinic"])
    assert "이전 답변의 버튼이에요." in stale["text"]


async def test_two_simultaneous_feedback_presses_count_once(client, photo):
    """A double click sends both presses before either is answered: both turns load the state
    before either saves it, so "already given" cannot be what stops the second."""
    result = await photo_result(client, photo)
    action = actions(result)["feedback"]
    presses = [
        client.post("/api/chat", json={"lang": "en", "kind": "button", "action": action})
        for _ in range(2)
    ]
    responses = await asyncio.gather(*presses)
    assert [response.status for response in responses] == [200, 200]
    store = client.server.app[ASSISTANT].store
    assert len(await store.list_feedback()) == 1
    [again] = await turn(client, kind="button", action=action)
    assert "already" in again["text"]
    assert len(await store.list_feedback()) == 1


async def test_a_multipart_body_of_many_small_fields_is_refused_past_the_body_limit(make_client):
    """Every field is under the per-field limit; together they pass the whole body's."""
    client = await make_client(intake=IntakeLimits(max_bytes=64 * 1024))
    form = FormData(default_to_multipart=True)
    for number in range(40):
        form.add_field(f"field{number}", "x" * 60_000)
    response = await client.post("/api/chat", data=form)
    assert response.status == 413
    assert "The request body is over the limit of 1,114,112 bytes." in await response.text()
    # One field larger than any turn needs is refused on its own.
    huge = FormData(default_to_multipart=True)
    huge.add_field("text", "x" * 100_000)
    response = await client.post("/api/chat", data=huge)
    assert response.status == 413 and "The form field 'text' is over" in await response.text()
    # So is a JSON turn past a few KB; a normal one still passes.
    response = await client.post("/api/chat", json={"kind": "text", "text": "x" * 100_000})
    assert response.status == 413 and "A JSON body is over" in await response.text()
    await turn(client, kind="command", name="start")


async def test_analyse_counts_the_parts_it_skips_against_the_body_limit(make_client):
    client = await make_client(intake=IntakeLimits(max_bytes=64 * 1024))
    form = FormData(default_to_multipart=True)
    for number in range(40):
        form.add_field(f"field{number}", "x" * 60_000)
    response = await client.post("/api/analyse", data=form)
    assert response.status == 413 and "The request body is over" in await response.text()


async def test_the_upload_budget_lets_bodies_in_only_while_there_is_room():
    budget = UploadBudget(total_bytes=100)
    held, most = 0, 0

    async def upload(size: int) -> None:
        nonlocal held, most
        async with budget.held(size):
            held += min(size, 100)
            most = max(most, held)
            await asyncio.sleep(0.01)
            held -= min(size, 100)

    # Three of 40 fit two at a time; one over the whole budget goes alone, then the rest.
    await asyncio.gather(upload(40), upload(40), upload(40), upload(500), upload(10))
    assert most <= 100 and budget.used == 0


async def test_photos_pass_the_upload_budget_one_at_a_time(make_client, photo):
    """A budget smaller than any photo: each upload waits for the one before, none is lost."""
    client = await make_client(upload_budget_bytes=1)
    results = await asyncio.gather(*(photo_result(client, photo) for _ in range(3)))
    assert all("This is not a diagnosis" in result["text"] for result in results)
