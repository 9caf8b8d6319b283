"""Admin sessions that end, and a sign-in back-off nobody else can lock the admin out with, over
HTTP against real servers: two replicas on one store (SQLite file or the Firestore emulator), a
sign-out on one ends the session on the other; records are aged in the store itself.
The start-up refusal without a session secret runs `python -m bot` as a process."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import uuid
from ipaddress import ip_network

import pytest

from bot.app import build_assistant
from bot.settings import Settings, SettingsError
from bot.web.admin.auth import LoginThrottle, hash_password, throttle_keys
from bot.web.admin.sessions import IDLE_S, SESSION_S, TOUCH_EVERY_S, id_hash
from bot.web.app import build_web_app
from bot.web.clients import forwarded_from
from bot.web.keys import ASSISTANT
from knowledge.config import StoreConfig

from helpers import REPO_ROOT

PASSWORD = "correct horse battery staple"
PASSWORD_HASH = hash_password(PASSWORD)
SECRET = "s" * 32
LOOPBACK_PROXY = (ip_network("127.0.0.1/32"),)  # the test client is "the load balancer"


@pytest.fixture(params=["sqlite", "firestore"])
def store_config(request, tmp_path, monkeypatch) -> StoreConfig:
    if request.param == "firestore":
        host = request.getfixturevalue("firestore_emulator_host")
        monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", host)
        return StoreConfig(kind="firestore", firestore_project=f"sess-{uuid.uuid4().hex[:12]}")
    return StoreConfig(sqlite_path=tmp_path / "db.sqlite3")


@pytest.fixture
def replica(aiohttp_client_factory, store_config):
    """replica(**settings): one more server on the same store; its client has its own cookies."""

    async def start(**changes):
        values = {"admin_password_hash": PASSWORD_HASH, "admin_session_secret": SECRET}
        settings = Settings(store=store_config, **{**values, **changes})
        client = await aiohttp_client_factory(build_web_app(build_assistant(settings)))
        client.store = client.app[ASSISTANT].store
        return client

    return start


async def sign_in(client, name="Dr. Kim", password=PASSWORD, forwarded_for=None):
    page = await (await client.get("/admin/login")).text()
    token = re.search(r'name="token" value="([^"]+)"', page).group(1)
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return await client.post(
        "/admin/login",
        data={"token": token, "name": name, "password": password},
        headers=headers,
        allow_redirects=False,
    )


def cookie_of(client, name="skincare_admin") -> str:
    return next(c.value for c in client.session.cookie_jar if c.key == name)


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


async def status_with(client, cookie: str, method="GET", path="/admin/faq", **kwargs) -> int:
    """Status of a request that carries `cookie` as its only cookie (a copied cookie)."""
    client.session.cookie_jar.clear()
    response = await client.request(
        method,
        path,
        headers={"Cookie": f"skincare_admin={cookie}"},
        allow_redirects=False,
        **kwargs,
    )
    return response.status


async def record_of(client, cookie: str):
    return await client.store.get_admin_session(id_hash(cookie.rsplit(".", 1)[0]))


# ---- sessions that end --------------------------------------------------------------------


async def test_sign_out_ends_the_session_on_every_replica(replica):
    first, second = await replica(), await replica()
    assert (await sign_in(first)).status == 303
    cookie = cookie_of(first)
    # The store, not the cookie, is the session: the other replica knows it.
    assert await status_with(second, cookie) == 200
    assert (await record_of(second, cookie)).name == "Dr. Kim"
    csrf = csrf_of(await (await first.get("/admin/faq")).text())
    # An empty FAQ form: refused as incomplete, but by the page, not for want of a session.
    write = {"method": "POST", "path": "/admin/faq/new", "data": {"csrf": csrf}}
    assert await status_with(second, cookie, **write) != 403

    response = await first.post("/admin/logout", data={"csrf": csrf}, allow_redirects=False)
    assert response.status == 303
    assert await record_of(first, cookie) is None
    # A copy of the old cookie neither reads nor writes, on either replica.
    for client in (first, second):
        assert await status_with(client, cookie) == 303
        assert await status_with(client, cookie, **write) == 403


async def test_the_store_holds_only_a_hash_of_the_session_id(replica):
    client = await replica()
    await sign_in(client)
    cookie = cookie_of(client)
    session_id = cookie.rsplit(".", 1)[0]
    record = await record_of(client, cookie)
    assert record.id_hash != session_id and session_id not in str(record)
    # A forged signature on a real id opens nothing.
    assert await status_with(client, f"{session_id}.forged") == 303


async def test_an_expiry_past_the_bound_is_refused_when_checked(replica):
    client = await replica()
    await sign_in(client)
    cookie = cookie_of(client)
    record = await record_of(client, cookie)
    # A record that claims a far expiry but began more than SESSION_S ago is over.
    aged = dataclasses.replace(
        record,
        created_ts=record.created_ts - SESSION_S - 1,
        expires_ts=record.created_ts + 365 * 86400,
    )
    await client.store.delete_admin_session(record.id_hash)
    await client.store.create_admin_session(aged)
    assert await status_with(client, cookie) == 303
    assert await record_of(client, cookie) is None  # and it is gone


async def test_an_idle_session_ends(replica):
    client = await replica()
    await sign_in(client)
    cookie = cookie_of(client)
    record = await record_of(client, cookie)
    # A request a while after the last one moves last-seen on (at most once a minute).
    earlier = dataclasses.replace(record, last_seen_ts=record.last_seen_ts - TOUCH_EVERY_S - 1)
    await client.store.delete_admin_session(record.id_hash)
    await client.store.create_admin_session(earlier)
    assert await status_with(client, cookie) == 200
    assert (await record_of(client, cookie)).last_seen_ts >= record.last_seen_ts

    idle = dataclasses.replace(record, last_seen_ts=record.last_seen_ts - IDLE_S - 1)
    await client.store.delete_admin_session(record.id_hash)
    await client.store.create_admin_session(idle)
    assert await status_with(client, cookie) == 303


async def test_a_new_password_hash_ends_every_session(replica):
    old = await replica()
    await sign_in(old)
    cookie = cookie_of(old)
    # The operator sets a new hash; the replica restarts with it (same session secret).
    new_password = "a brand new passphrase"
    new = await replica(admin_password_hash=hash_password(new_password))
    assert await status_with(new, cookie) == 303
    assert (await sign_in(new, password=PASSWORD)).status == 401
    assert (await sign_in(new, password=new_password)).status == 303
    assert await record_of(new, cookie) is None  # the sign-in pruned the old hash's records
    assert await status_with(new, cookie_of(new)) == 200


async def test_without_the_store_no_session_is_accepted(replica):
    client = await replica()
    await sign_in(client)
    cookie = cookie_of(client)
    await client.store.close()  # as good as a store outage
    response = await client.get("/admin/faq", allow_redirects=False)
    assert response.status == 503 and "try again" in await response.text()
    assert await status_with(client, cookie) == 503
    # Signing in writes a session record: without the store it is the same clear 503, not a 500.
    response = await sign_in(client)
    assert response.status == 503 and "try again" in await response.text()


# ---- the sign-in back-off -----------------------------------------------------------------


async def test_guesses_back_off_per_address_and_name(replica):
    client = await replica(trusted_proxies=LOOPBACK_PROXY)
    attacker = "203.0.113.66"
    for _ in range(3):
        response = await sign_in(client, password="guess", forwarded_for=attacker)
        assert response.status == 401
    response = await sign_in(client, password=PASSWORD, forwarded_for=attacker)
    assert response.status == 429  # not even checked while waiting
    assert int(response.headers["Retry-After"]) >= 1
    assert "wait" in await response.text()
    # The real admin, elsewhere, under the same name, is not kept waiting.
    response = await sign_in(client, forwarded_for="198.51.100.7")
    assert response.status == 303


async def test_changing_the_name_does_not_escape_the_address_back_off(replica):
    client = await replica(trusted_proxies=LOOPBACK_PROXY)
    attacker = "203.0.113.66"
    for number in range(20):
        response = await sign_in(client, f"name {number}", "guess", forwarded_for=attacker)
        assert response.status == 401
    response = await sign_in(client, "yet another", PASSWORD, forwarded_for=attacker)
    assert response.status == 429
    assert (await sign_in(client, forwarded_for="198.51.100.7")).status == 303


async def test_a_browser_that_signed_in_before_is_never_locked_out_by_others(replica):
    """Behind one shared address (no trusted proxy: everyone is the load balancer), a guesser
    exhausts the address and the admin's name; the admin's browser still signs in."""
    client = await replica()
    assert (await sign_in(client)).status == 303
    device = cookie_of(client, "skincare_admin_device")
    client.session.cookie_jar.clear()  # now the guesser's browser, from the same address
    # Dr. Kim's three free failures, then the rest of the address's twenty.
    for name in ["Dr. Kim"] * 3 + [f"guess {number}" for number in range(17)]:
        assert (await sign_in(client, name, "guess")).status == 401
    assert (await sign_in(client, "Dr. Kim", PASSWORD)).status == 429
    assert (await sign_in(client, "someone new", PASSWORD)).status == 429

    client.session.cookie_jar.clear()  # the admin's browser again
    client.session.cookie_jar.update_cookies({"skincare_admin_device": device})
    assert (await sign_in(client, "Dr. Kim", PASSWORD)).status == 303
    # A device cookie is the admin's name's only: under another name it is no pass.
    client.session.cookie_jar.update_cookies({"skincare_admin_device": device})
    assert (await sign_in(client, "Mallory", PASSWORD)).status == 429


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(replica):
    client = await replica()  # no SKINCARE_TRUSTED_PROXIES
    for number in range(3):
        forged = f"192.0.2.{number}"  # a new "address" each time: must not help
        assert (await sign_in(client, password="guess", forwarded_for=forged)).status == 401
    response = await sign_in(client, password=PASSWORD, forwarded_for="192.0.2.200")
    assert response.status == 429


class Clock:
    def __init__(self):
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_the_wait_doubles_with_each_failure_up_to_a_cap_and_is_forgotten():
    clock = Clock()
    throttle = LoginThrottle(first_delay_s=5, max_delay_s=60, forget_after_s=3600, clock=clock)
    keys = throttle_keys("203.0.113.66", "Dr. Kim", None)
    waits = []
    for _ in range(8):
        throttle.failed(keys)
        waits.append(throttle.wait_s(keys))
        clock.now += waits[-1]  # the guesser waits exactly as long as told
    assert waits == [0, 0, 5, 10, 20, 40, 60, 60]  # three free, then doubling, capped
    throttle.succeeded(keys)  # clears the pair; the address keeps its count
    assert throttle.wait_s(keys[:1]) == 0
    clock.now += 3601
    assert throttle.wait_s(keys) == 0  # quiet for long enough: a fresh start
    throttle.failed(keys)
    assert throttle.wait_s(keys) == 0


def test_made_up_names_cannot_grow_memory_without_bound():
    throttle = LoginThrottle(max_keys=50, clock=Clock())
    for number in range(1_000):
        throttle.failed(throttle_keys("203.0.113.66", f"name {number}", None))
    assert len(throttle._failures) == 50
    # The address, failing all along, is the most recent key: never the one dropped.
    assert throttle.wait_s([("address", "203.0.113.66")]) > 0


def test_the_client_is_the_right_most_address_no_trusted_proxy_added():
    proxies = (ip_network("10.0.0.0/8"), ip_network("127.0.0.1/32"))
    # The client wrote "1.2.3.4" itself; the balancer (10.0.0.5) appended what it saw.
    assert forwarded_from("127.0.0.1", ["1.2.3.4, 203.0.113.9", "10.0.0.5"], proxies) == (
        "203.0.113.9"
    )
    assert forwarded_from("198.51.100.1", ["1.2.3.4"], proxies) == "198.51.100.1"
    assert forwarded_from("127.0.0.1", [], proxies) == "127.0.0.1"
    assert forwarded_from("127.0.0.1", ["10.0.0.7"], proxies) == "10.0.0.7"
    assert forwarded_from("127.0.0.1", ["not-an-ip"], ()) == "127.0.0.1"


# ---- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env",
    [
        {"SKINCARE_WEB_HOST": "0.0.0.0"},
        {"SKINCARE_WEB_HOST": "skin.example.org"},
        {
            "SKINCARE_WEBHOOK_URL": "https://skin.example.org/telegram",
            "TELEGRAM_BOT_TOKEN": "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        },
    ],
)
def test_a_public_admin_panel_needs_a_session_secret(env):
    env = {**env, "SKINCARE_ADMIN_PASSWORD_HASH": PASSWORD_HASH}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith("SKINCARE_ADMIN_SESSION_SECRET")
    settings = Settings.from_env({**env, "SKINCARE_ADMIN_SESSION_SECRET": SECRET})
    assert settings.is_public and settings.admin_session_secret == SECRET


def test_on_loopback_no_settings_are_needed():
    for host in ("127.0.0.1", "localhost", "::1"):
        env = {"SKINCARE_WEB_HOST": host, "SKINCARE_ADMIN_PASSWORD_HASH": PASSWORD_HASH}
        settings = Settings.from_env(env)
        assert not settings.is_public and settings.admin_session_secret
    assert Settings.from_env({}).trusted_proxies == ()


@pytest.mark.parametrize(
    "env",
    [
        {"SKINCARE_ADMIN_SESSION_SECRET": "short"},
        {"SKINCARE_TRUSTED_PROXIES": "10.0.0.0/8, the balancer"},
    ],
)
def test_bad_session_and_proxy_settings_name_the_setting(env):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert str(caught.value).startswith(next(iter(env)))


def test_trusted_proxies_are_read():
    settings = Settings.from_env({"SKINCARE_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,::1"})
    assert settings.trusted_proxies == (
        ip_network("10.0.0.0/8"),
        ip_network("192.0.2.7/32"),
        ip_network("::1/128"),
    )


def test_start_up_stops_naming_the_missing_secret(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "SKINCARE_WEB_HOST": "0.0.0.0",
        "SKINCARE_ADMIN_PASSWORD_HASH": PASSWORD_HASH,
        "SKINCARE_DB": str(tmp_path / "db.sqlite3"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "SKINCARE_ADMIN_SESSION_SECRET" in done.stderr
