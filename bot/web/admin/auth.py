"""Admin sign-in: password hashes, signed cookies, CSRF tokens, the failed sign-in back-off.

Only the stdlib: scrypt for the password (its hash is a setting, SKINCARE_ADMIN_PASSWORD_HASH,
printed by `python -m bot hash-password`), HMAC-SHA256 for cookies and CSRF tokens, keyed with
SKINCARE_ADMIN_SESSION_SECRET (on a loopback-only server it may be left unset; then the key
comes from the password hash). A session cookie carries only a random session id: what the
session is (who, until when) is the store's record of it (`sessions.py`), which sign-out
deletes, on every replica at once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
DEVICE_DAYS = 30  # how long a browser that signed in once keeps its own sign-in allowance


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash`: what SKINCARE_ADMIN_PASSWORD_HASH holds."""
    if not password:
        raise ValueError("the password is empty")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def is_password_hash(text: str) -> bool:
    parts = text.split("$")
    return (
        len(parts) == 6
        and parts[0] == "scrypt"
        and all(part.isdigit() for part in parts[1:4])
        and all(parts[4:])
    )


def verify_password(password: str, stored_hash: str) -> bool:
    if not is_password_hash(stored_hash):
        return False
    _, n, r, p, salt, expected = stored_hash.split("$")
    digest = hashlib.scrypt(
        password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=32
    )
    return hmac.compare_digest(digest, _unb64(expected))


@dataclass(frozen=True)
class AdminSession:
    name: str  # who signed in: recorded as the author of every change
    session_id: str  # the random id in the cookie (the store keeps only its hash)
    expires: float


class SessionSigner:
    """HMACs under one key, each value signed for one purpose ("session", "device", "csrf"),
    so that a value signed for one can never pass as another."""

    def __init__(self, secret: str, clock=time.time):
        self.key = hashlib.sha256(f"skincare-admin:{secret}".encode()).digest()
        self.clock = clock

    def _mac(self, purpose: str, value: str) -> str:
        return _b64(hmac.new(self.key, f"{purpose}:{value}".encode(), hashlib.sha256).digest())

    def sign(self, purpose: str, value: str) -> str:
        return f"{value}.{self._mac(purpose, value)}"

    def unsign(self, purpose: str, signed: str | None) -> str | None:
        """The value of a signed text, or None when it is missing or forged."""
        if not signed or "." not in signed:
            return None
        value, mac = signed.rsplit(".", 1)
        return value if hmac.compare_digest(mac, self._mac(purpose, value)) else None

    def device_cookie(self, name: str) -> str:
        """Marks a browser the admin `name` signed in from (see `LoginThrottle`)."""
        payload = [secrets.token_urlsafe(16), name, self.clock() + DEVICE_DAYS * 86400]
        return self.sign("device", _b64(json.dumps(payload).encode()))

    def device_of(self, cookie: str | None, name: str) -> str | None:
        """The device id in a valid, unexpired device cookie issued for `name`, else None."""
        value = self.unsign("device", cookie)
        if value is None:
            return None
        try:
            device, owner, expires = json.loads(_unb64(value))
            expires = float(expires)
        except (ValueError, TypeError):
            return None
        # Bounded when checked: never later than a freshly issued cookie would expire.
        if not self.clock() < expires <= self.clock() + DEVICE_DAYS * 86400:
            return None
        return str(device) if str(owner).casefold() == name.casefold() else None

    def csrf_token(self, session: AdminSession) -> str:
        return self._mac("csrf", session.session_id)

    def check_csrf(self, session: AdminSession, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf_token(session))


def throttle_keys(address: str, name: str, device: str | None) -> list[tuple[str, ...]]:
    """Whose failed sign-ins an attempt is judged by (and counted against).

    A browser the admin signed in from before (its device cookie) is judged by its own record
    only: however many guesses others make, from whatever address and under whatever name,
    its owner can still sign in. Any other attempt is judged by its (address, name) pair, and
    by its address alone with a larger allowance, since a guesser can change the name at will.
    """
    if device is not None:
        return [("device", device)]
    return [("pair", address, name.casefold()), ("address", address)]


@dataclass
class _Failures:
    count: int
    last: float  # when the last one was


class LoginThrottle:
    """Exponential back-off on failed sign-ins, instead of a lock-out or a CAPTCHA.

    Each key (see `throttle_keys`) has a few free failures; after those each failure makes the
    key wait twice as long as the one before (5 s, 10 s, 20 s ... at most `max_delay_s`) before
    its next attempt is even checked; a key quiet for `forget_after_s` starts afresh. The counts
    live in this process: N replicas allow N times the attempts, still exponentially fewer.
    """

    FREE = {"pair": 3, "address": 20, "device": 5}

    def __init__(
        self,
        first_delay_s: float = 5.0,
        max_delay_s: float = 900.0,
        forget_after_s: float = 86_400.0,
        max_keys: int = 100_000,
        clock=time.monotonic,
    ):
        self.first_delay_s, self.max_delay_s = first_delay_s, max_delay_s
        self.forget_after_s = forget_after_s
        self.max_keys, self.clock = max_keys, clock
        # Least recently failed first, so that the memory a flood of made-up names takes is
        # bounded by forgetting the keys that have been quiet the longest.
        self._failures: OrderedDict[tuple[str, ...], _Failures] = OrderedDict()

    def _delay_s(self, key: tuple[str, ...], count: int) -> float:
        over = count - self.FREE[key[0]]
        if over < 0:
            return 0.0
        return min(self.max_delay_s, self.first_delay_s * 2.0 ** min(over, 40))

    def _recent(self, key: tuple[str, ...], now: float) -> _Failures | None:
        failures = self._failures.get(key)
        if failures is not None and now - failures.last > self.forget_after_s:
            del self._failures[key]
            return None
        return failures

    def wait_s(self, keys: list[tuple[str, ...]]) -> float:
        """Seconds until an attempt judged by `keys` may be checked (0: now)."""
        now, wait = self.clock(), 0.0
        for key in keys:
            failures = self._recent(key, now)
            if failures is not None:
                ready_at = failures.last + self._delay_s(key, failures.count)
                wait = max(wait, ready_at - now)
        return wait

    def failed(self, keys: list[tuple[str, ...]]) -> None:
        now = self.clock()
        for key in keys:
            failures = self._recent(key, now) or _Failures(0, now)
            self._failures.pop(key, None)
            failures.count, failures.last = failures.count + 1, now
            self._failures[key] = failures  # to the end: the most recent
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, keys: list[tuple[str, ...]]) -> None:
        for key in keys:
            # An address's count stays: someone else's success there must not give a guesser
            # sharing that address (an office, a proxy) a fresh allowance.
            if key[0] != "address":
                self._failures.pop(key, None)
