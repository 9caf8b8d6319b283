"""Admin sessions that can end: a record in the store per signed-in admin, checked on every
admin request, so that signing out (or a new password hash) ends a session on every replica.

The cookie holds a random session id, signed; the store keeps only the id's hash, so someone
who can read the store (a backup, a console) still cannot use a session. A session ends at the
first of: sign-out, `SESSION_S` after it began (however active), `IDLE_S` without a request,
or a change of SKINCARE_ADMIN_PASSWORD_HASH (the record carries a fingerprint of the hash it
was opened under).
"""

from __future__ import annotations

import hashlib
import secrets
import time

from bot.web.admin.auth import AdminSession, SessionSigner
from knowledge.models import AdminSessionRecord
from knowledge.store import KnowledgeStore

SESSION_S = 8 * 3600
IDLE_S = 3600
# last_seen is written at most this often: one store write per admin per minute, not per click.
TOUCH_EVERY_S = 60


def id_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def password_fingerprint(password_hash: str) -> str:
    return hashlib.sha256(f"skincare-admin-password:{password_hash}".encode()).hexdigest()[:32]


class AdminSessions:
    def __init__(self, signer: SessionSigner, password_hash: str, clock=time.time):
        self.signer = signer
        self.fingerprint = password_fingerprint(password_hash)
        self.clock = clock

    async def open(self, store: KnowledgeStore, name: str) -> tuple[str, AdminSession]:
        """A new session for `name`: its cookie value and the session."""
        now = self.clock()
        # Sign-ins are rare: a good moment to drop records that can no longer be used.
        await store.prune_admin_sessions(now, self.fingerprint)
        session_id = secrets.token_urlsafe(32)
        record = AdminSessionRecord(
            id_hash=id_hash(session_id),
            name=name,
            created_ts=now,
            expires_ts=now + SESSION_S,
            last_seen_ts=now,
            password_fingerprint=self.fingerprint,
        )
        await store.create_admin_session(record)
        session = AdminSession(name, session_id, record.expires_ts)
        return self.signer.sign("session", session_id), session

    async def read(self, store: KnowledgeStore, cookie: str | None) -> AdminSession | None:
        """The live session a cookie names, or None (an ended session's record is deleted)."""
        session_id = self.signer.unsign("session", cookie)
        if session_id is None:
            return None
        record = await store.get_admin_session(id_hash(session_id))
        if record is None:
            return None
        now = self.clock()
        # Bounded when checked: a record never lives longer than SESSION_S from its start,
        # whatever expiry it says.
        expires = min(record.expires_ts, record.created_ts + SESSION_S)
        if (
            now >= expires
            or now - record.last_seen_ts >= IDLE_S
            # Opened under another password hash. (During a rolling deploy that changes the
            # hash, a replica still on the old one ends the new sessions it sees, too: the
            # admin signs in again once the deploy is through.)
            or record.password_fingerprint != self.fingerprint
        ):
            await store.delete_admin_session(record.id_hash)
            return None
        if now - record.last_seen_ts >= TOUCH_EVERY_S:
            if not await store.touch_admin_session(record.id_hash, now):
                return None  # signed out meanwhile
        return AdminSession(record.name, session_id, expires)

    async def close(self, store: KnowledgeStore, cookie: str | None) -> None:
        """Sign-out: the session ends here and on every other replica."""
        session_id = self.signer.unsign("session", cookie)
        if session_id is not None:
            await store.delete_admin_session(id_hash(session_id))
