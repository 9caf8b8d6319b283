"""`python -m bot` as `make run` starts it: a real process, a real HTTP port."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from bot.app import build_assistant
from bot.settings import Settings
from bot.web.app import build_web_app
from diagnosis import ServingConfig
from knowledge.config import StoreConfig

from helpers import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(port: int, process: subprocess.Popen, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the assistant exited: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
                return json.loads(reply.read())
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise AssertionError("no health answer in time")


@pytest.fixture
def start_bot(tmp_path):
    processes = []

    def start(**env):
        port = free_port()
        full_env = {
            **os.environ,
            "SKINCARE_WEB_PORT": str(port),
            "SKINCARE_DB": str(tmp_path / "store.sqlite3"),
            **env,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "bot"],
            cwd=REPO_ROOT,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        return port, process

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=20)


def test_starts_and_serves_health_and_photos(start_bot, tiny_bundle, real_photo_paths):
    port, process = start_bot(SKINCARE_MODEL=str(tiny_bundle))
    health = wait_for_health(port, process)
    assert health == {
        "status": "ok",
        "model_installed": True,
        "model": "test-0",
        "store": "sqlite",
    }

    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/analyse",
        data=real_photo_paths[0].read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        answer = json.loads(reply.read())
    assert "quality" in answer

    bad = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/analyse",
        data=b"not an image",
        method="POST",
        headers={"Content-Type": "application/octet-stream"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(bad, timeout=30)
    assert caught.value.code == 422
    assert json.loads(caught.value.read())["error"] == "not_an_image"

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/?lang=ko", timeout=10) as reply:
        assert "진단이 아닙니다" in reply.read().decode()


def test_misconfiguration_stops_start_up_naming_the_setting(start_bot):
    _, process = start_bot(SKINCARE_WEB_PORT="not-a-port")
    assert process.wait(timeout=60) == 2
    assert "SKINCARE_WEB_PORT" in process.stderr.read()


def test_unusable_database_path_stops_start_up(start_bot, tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    _, process = start_bot(SKINCARE_DB=str(tmp_path / "a-file" / "store.sqlite3"))
    assert process.wait(timeout=90) == 2
    assert "SKINCARE_DB" in process.stderr.read()


def test_broken_bundle_stops_start_up(start_bot, tmp_path):
    (tmp_path / "model_card.json").write_text("{}")
    _, process = start_bot(SKINCARE_MODEL=str(tmp_path))
    assert process.wait(timeout=60) == 2
    error = process.stderr.read()
    assert "SKINCARE_MODEL" in error and "model_card.json" in error


async def test_without_a_model_the_page_says_so(aiohttp_client_factory, tmp_path):
    settings = Settings(
        serving=ServingConfig(model_path=tmp_path / "not-installed"),
        store=StoreConfig(sqlite_path=tmp_path / "db.sqlite3"),
    )
    client = await aiohttp_client_factory(build_web_app(build_assistant(settings)))
    health = await (await client.get("/healthz")).json()
    assert health["model_installed"] is False and health["model"] is None
    page = await (await client.get("/", headers={"Accept-Language": "en-US"})).text()
    assert "No trained model is installed" in page
    reply = await client.post("/api/analyse", data=b"\xff\xd8")
    assert reply.status == 503


def closed_by_server(sock: socket.socket, wait_s: float) -> bytes | None:
    """What the server sent before closing the connection; None if it was still open after
    `wait_s` (generous: this checks that it is closed at all, not how fast)."""
    sock.settimeout(wait_s)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


def test_idle_and_stalled_connections_are_closed(start_bot, tiny_bundle):
    port, process = start_bot(
        SKINCARE_MODEL=str(tiny_bundle),
        SKINCARE_WEB_IDLE_TIMEOUT_S="1",
        SKINCARE_WEB_BODY_TIMEOUT_S="1",
    )
    wait_for_health(port, process)
    # A client that connects and says nothing, one that stops half-way through its headers, and
    # one that stops half-way through its body: none may hold its connection for ever.
    silent = socket.create_connection(("127.0.0.1", port))
    half_headers = socket.create_connection(("127.0.0.1", port))
    half_headers.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    half_body = socket.create_connection(("127.0.0.1", port))
    half_body.sendall(
        b"POST /api/chat HTTP/1.1\r\nHost: x\r\nCookie: skincare_session=" + b"a" * 32 + b"\r\n"
        b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"kind": '
    )
    with silent, half_headers, half_body:
        assert closed_by_server(silent, 30) == b""
        assert closed_by_server(half_headers, 30) == b""
        answer = closed_by_server(half_body, 30)
        assert answer is not None and answer.startswith(b"HTTP/1.1 408 ")
        assert b"did not arrive within 1 s" in answer
    # The server itself is fine.
    assert wait_for_health(port, process)["status"] == "ok"
