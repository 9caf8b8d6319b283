"""AiohttpRequest, the bot's HTTP client for the Bot API, against a real local HTTP server.

The end-to-end tests run every bot method through it; these pin down what they cannot easily
show: the exact bodies sent, and how failures reach python-telegram-bot.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputFile
from telegram.error import NetworkError, TimedOut
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from bot.telegram_http import AiohttpRequest


def request_data(**values) -> RequestData:
    return RequestData([RequestParameter.from_input(name, value) for name, value in values.items()])


@pytest.fixture
async def server(aiohttp_client_factory):
    received: list[dict] = []

    async def record(request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            body = {"json": await request.json()}
        else:
            form = await request.post()
            body = {
                "form": {
                    name: (value.file.read(), value.filename, value.content_type)
                    if hasattr(value, "file")
                    else value
                    for name, value in form.items()
                }
            }
        received.append({"method": request.method, **body})
        return web.json_response({"ok": True, "result": True})

    async def proxy_page(request: web.Request) -> web.Response:
        # What a misbehaving proxy in front of the Bot API may answer: HTML, status 200 or 502.
        status = int(request.query.get("status", "200"))
        return web.Response(status=status, text="<html>upstream hiccup</html>")

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"ok": True, "result": True})

    app = web.Application()
    app.router.add_post("/bot/sendMessage", record)
    app.router.add_post("/bot/sendPhoto", record)
    app.router.add_post("/bot/slow", slow)
    app.router.add_post("/bot/proxyPage", proxy_page)
    client = await aiohttp_client_factory(app)
    return str(client.make_url("/bot")), received


async def test_text_goes_as_json_with_its_values_intact(server):
    base, received = server
    request = AiohttpRequest()
    await request.initialize()
    try:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("치료 팁", callback_data="care:1")]])
        status, payload = await request.do_request(
            f"{base}/sendMessage",
            "POST",
            request_data(chat_id=42, text="스테로이드 연고 & <b>acne</b>", reply_markup=keyboard),
        )
    finally:
        await request.shutdown()
    assert status == 200 and json.loads(payload) == {"ok": True, "result": True}
    sent = received[0]["json"]
    assert sent["chat_id"] == 42 and sent["text"] == "스테로이드 연고 & <b>acne</b>"
    assert sent["reply_markup"]["inline_keyboard"][0][0] == {
        "text": "치료 팁",
        "callback_data": "care:1",
    }


async def test_files_go_as_multipart_with_the_other_fields(server):
    base, received = server
    request = AiohttpRequest()
    await request.initialize()
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    try:
        status, _ = await request.do_request(
            f"{base}/sendPhoto",
            "POST",
            request_data(
                chat_id=7, caption="Grad-CAM", photo=InputFile(png, filename="heatmap.png")
            ),
        )
    finally:
        await request.shutdown()
    assert status == 200
    form = received[0]["form"]
    assert form["chat_id"] == "7" and form["caption"] == "Grad-CAM"
    content, filename, content_type = next(v for v in form.values() if isinstance(v, tuple))
    assert content == png and filename == "heatmap.png" and content_type == "image/png"


async def test_a_slow_answer_is_timed_out_and_a_closed_port_is_a_network_error(server):
    base, _ = server
    request = AiohttpRequest(read_timeout=0.3)
    await request.initialize()
    try:
        with pytest.raises(TimedOut):
            await request.do_request(f"{base}/slow", "POST", request_data(chat_id=1))
        with pytest.raises(NetworkError):
            await request.do_request("http://127.0.0.1:9/bot/getMe", "POST")
    finally:
        await request.shutdown()


async def test_an_answer_that_is_not_json_is_a_network_error_so_it_is_retried(server, caplog):
    base, _ = server
    request = AiohttpRequest()
    await request.initialize()
    try:
        for status in (200, 502):
            with pytest.raises(NetworkError, match="Invalid server response|Bad Gateway"):
                await request.post(f"{base}/proxyPage?status={status}", request_data(chat_id=1))
        # A JSON answer that is not an object is no Bot API answer either.
        with pytest.raises(NetworkError, match="not an object"):
            request.parse_json_payload(b"[1, 2]")
        assert request.parse_json_payload(b'{"ok": true, "result": 1}') == {"ok": True, "result": 1}
    finally:
        await request.shutdown()
    assert "upstream hiccup" not in caplog.text  # the body is not logged


async def test_must_be_initialized():
    with pytest.raises(RuntimeError, match="not initialized"):
        await AiohttpRequest().do_request("http://127.0.0.1:9/bot/getMe", "POST")
