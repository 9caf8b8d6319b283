"""Admin sign-in: password hashes, signed session cookies, CSRF tokens, login rate limits.

Only the stdlib: scrypt for the password (its hash is a setting, SKINCARE_ADMIN_PASSWORD_HASH,
printed by `python -m bot hash-password`), HMAC-SHA256 for cookies and CSRF tokens. Cookies
carry the admin's name and an expiry, signed with a key derived from the password hash (or
SKINCARE_ADMIN_SESSION_SECRET), so every replica accepts them and changing the password signs
everyone out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SESSION_HOURS = 8


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
    session_id: str
    expires: float


class SessionSigner:
    def __init__(self, secret: str, clock=time.time):
        self.key = hashlib.sha256(f"skincare-admin:{secret}".encode()).digest()
        self.clock = clock

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self.key, payload.encode(), hashlib.sha256).digest())

    def issue(self, name: str) -> tuple[str, AdminSession]:
        session = AdminSession(name, secrets.token_urlsafe(16), self.clock() + SESSION_HOURS * 3600)
        payload = _b64(
            json.dumps({"n": name, "s": session.session_id, "e": session.expires}).encode()
        )
        return f"{payload}.{self._sign(payload)}", session

    def read(self, cookie: str | None) -> AdminSession | None:
        """The session in a cookie, or None when it is missing, forged or expired."""
        if not cookie or "." not in cookie:
            return None
        payload, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(_unb64(payload))
            session = AdminSession(str(data["n"]), str(data["s"]), float(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        return session if session.expires > self.clock() else None

    def csrf_token(self, session: AdminSession) -> str:
        return self._sign(f"csrf:{session.session_id}")

    def check_csrf(self, session: AdminSession, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf_token(session))


class LoginLimiter:
    """At most `attempts` failed sign-ins per client address per `window_s` (in this process)."""

    def __init__(self, attempts: int = 5, window_s: float = 600.0, clock=time.monotonic):
        self.attempts, self.window_s, self.clock = attempts, window_s, clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.setdefault(client, deque())
        while failures and self.clock() - failures[0] > self.window_s:
            failures.popleft()
        return failures

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= self.attempts

    def failed(self, client: str) -> None:
        self._recent(client).append(self.clock())

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
