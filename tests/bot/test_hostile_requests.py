"""Hostile and malformed HTTP requests against the real app: each gets a 4xx (or a plain answer),
never a 500. A deterministic table of bodies and content types (hypothesis is not installed),
sent through aiohttp's test client to the real server, the same way a browser or a bot would.
"""

from __future__ import annotations

import re

import pytest

from bot.app import build_assistant
from bot.settings import Settings
from bot.web.admin.auth import hash_password
from bot.web.app import build_web_app
from knowledge.config import StoreConfig
from knowledge.content import CLINICS_CSV

PASSWORD = "correct horse battery staple"

# Bodies a client can send; every one goes to every route with every content type below.
BODIES: list[bytes] = [
    b"",
    b"[]",
    b"null",
    b'"a string"',
    b"42",
    b'{"foo": 1}',
    b'{"kind": "location", "lat": NaN, "lon": 127.0}',
    b'{"kind": "location", "lat": Infinity, "lon": -Infinity}',
    b'{"kind": "location", "lat": 1e999, "lon": 127.0}',
    b'{"kind": "location", "lat": 91, "lon": 181}',
    b'{"kind": "location", "lat": "nan", "lon": "inf"}',
    b'{"kind": "location", "lat": [1], "lon": {}}',
    b'{"kind": "text", "text": null}',
    b'{"kind": "button", "action": ["x"]}',
    b'{"kind": "command", "name": {"a": 1}}',
    b'{"kind": "photo"}',
    b'{"lang": ["ko"], "kind": "command", "name": "start"}',
    b"\xff\xfe\x00garbage",
    b'--x\r\nContent-Disposition: form-data; name="kind"\r\n\r\ntext\r\n--x--\r\n',
    b"--zzz\r\nno headers at all",
    b"{" * 5000,
]
CONTENT_TYPES = [
    None,
    "application/json",
    "text/plain",
    "multipart/form-data",  # no boundary
    "multipart/form-data; boundary=wrong",
    "multipart/form-data; boundary=x",
    "multipart/mixed; boundary=",
    "application/x-www-form-urlencoded",
    "application/json; charset=klingon",
]


@pytest.fixture
async def client(aiohttp_client_factory, tmp_path):
    settings = Settings(
        store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3"),
        admin_password_hash=hash_password(PASSWORD),
    )
    client = await aiohttp_client_factory(build_web_app(build_assistant(settings)))
    assert (await client.get("/?lang=en")).status == 200  # holds a session cookie now
    return client


async def sign_in(client) -> str:
    page = await (await client.get("/admin/login")).text()
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    response = await client.post(
        "/admin/login", data={"token": token, "name": "Dr. Kim", "password": PASSWORD}
    )
    return re.search(r'name="csrf" value="([^"]+)"', await response.text()).group(1)


async def test_no_malformed_body_gets_a_500(client):
    await sign_in(client)
    failures = []
    for path in ("/api/chat", "/api/analyse", "/admin/clinics/import", "/admin/login"):
        for content_type in CONTENT_TYPES:
            headers = {"Content-Type": content_type} if content_type else {}
            for body in BODIES:
                response = await client.post(path, data=body, headers=headers)
                await response.read()
                if response.status >= 500:
                    failures.append((path, content_type, body[:60], response.status))
    assert not failures, f"{len(failures)} requests answered 5xx, e.g. {failures[:8]}"


@pytest.mark.parametrize(
    "lat, lon",
    [
        ("NaN", "127.0"),
        ("Infinity", "127.0"),
        ("37.5", "-Infinity"),
        ("1e999", "127.0"),
        ("91", "127.0"),
        ("37.5", "180.5"),
        ("-90.01", "0"),
    ],
)
async def test_a_location_that_is_not_on_earth_is_a_400(client, lat, lon):
    body = f'{{"kind": "location", "lat": {lat}, "lon": {lon}}}'
    response = await client.post(
        "/api/chat", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == "bad_location"
    for quoted in (f'"{lat}"', f'"{lon}"'):  # the same as strings
        as_text = body.replace(lat, quoted, 1) if quoted == f'"{lat}"' else body
        response = await client.post(
            "/api/chat", data=as_text, headers={"Content-Type": "application/json"}
        )
        assert response.status == 400


async def test_multipart_without_or_with_a_wrong_boundary_is_a_400(client):
    form = b'--real\r\nContent-Disposition: form-data; name="kind"\r\n\r\ntext\r\n--real--\r\n'
    for content_type in ("multipart/form-data", "multipart/form-data; boundary=other"):
        for path in ("/api/chat", "/api/analyse"):
            response = await client.post(path, data=form, headers={"Content-Type": content_type})
            assert 400 <= response.status < 500, (path, content_type, response.status)


async def test_a_huge_csv_field_is_refused_with_a_reason(client):
    csrf = await sign_in(client)
    header, first, *_ = CLINICS_CSV.read_text(encoding="utf-8").splitlines()
    huge = first.replace(",", ',"' + "x" * (5 << 20) + '",', 1)
    response = await client.post(
        "/admin/clinics/import", data={"csrf": csrf, "csv_text": f"{header}\n{huge}\n"}
    )
    text = await response.text()
    assert response.status == 422, text[:300]
    assert "field" in text and "too large" in text


async def test_webhook_bodies_that_are_json_but_not_an_update_are_a_400(tmp_path):
    import aiohttp

    from telegram_server import FakeTelegram
    from telegram_support import free_port, running_bot

    port = free_port()
    url = f"http://127.0.0.1:{port}/telegram"
    async with FakeTelegram() as tg:
        async with running_bot(tg, tmp_path / "db.sqlite3", port=port, webhook_url=url) as bot:
            headers = {"X-Telegram-Bot-Api-Secret-Token": bot.settings.webhook_secret}
            async with aiohttp.ClientSession() as session:
                for body in (
                    b"[]",
                    b'{"foo": 1}',
                    b'"a string"',
                    b"null",
                    b'{"update_id": "1"}',
                    b'{"update_id": 1, "message": "hello"}',
                    b'{"update_id": 1, "message": {"chat": 5}}',
                    b"\xff\xfe",
                ):
                    async with session.post(url, data=body, headers=headers) as response:
                        assert response.status == 400, (body, response.status)
                # A forged location off the Earth: an answer, not a crash in the handler.
                user = tg.user(language_code="en")
                mark = tg.mark()
                update = {
                    "update_id": 77,
                    "message": {
                        "message_id": 9,
                        "date": 0,
                        "chat": {"id": user.id, "type": "private"},
                        "from": user.to_dict(),
                        "location": {"latitude": 91.5, "longitude": 500},
                    },
                }
                async with session.post(url, json=update, headers=headers) as response:
                    assert response.status == 200
            # (The fake refuses it: this user never wrote first. What was sent is what counts.)
            call = await tg.wait_for(lambda c: c.method == "sendMessage", since=mark, timeout=15)
            assert "I can't use" in call.params["text"]


async def test_an_uploaded_csv_that_is_not_utf8_is_refused_not_garbled(client):
    from aiohttp import FormData

    csrf = await sign_in(client)
    text = CLINICS_CSV.read_text(encoding="utf-8")
    form = FormData()
    form.add_field("csrf", csrf)
    data = text.encode("cp949", "replace")  # Excel's "CSV" on a Korean Windows
    form.add_field("file", data, filename="clinics.csv", content_type="text/csv")
    response = await client.post("/admin/clinics/import", data=form)
    page = await response.text()
    assert response.status == 422 and "not UTF-8" in page and "CP949" in page
    assert "\ufffd" not in page  # no replacement characters shown as if they were the data
