"""Portal sessions kept on the server, in a small SQLite file.

The browser holds only a random session id. Keeping the data server-side is what lets a back-channel
logout (which arrives from SatuID, not from the browser) end a citizen's session here: every session
row carries the ``sid`` and ``sub`` of the SatuID login it came from (OIDC Back-Channel Logout 1.0 §2.6).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin
from werkzeug.datastructures import CallbackDict

SCHEMA = """
CREATE TABLE IF NOT EXISTS portal_session (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    sid TEXT,
    sub TEXT,
    expires REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_portal_session_sid ON portal_session (sid);
CREATE INDEX IF NOT EXISTS ix_portal_session_sub ON portal_session (sub);
CREATE TABLE IF NOT EXISTS seen_logout_token (
    jti TEXT PRIMARY KEY,
    expires REAL NOT NULL
);
"""


class SessionStore:
    """Session rows by id, findable by the OpenID Provider's ``sid`` and ``sub``."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def load(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT data, expires FROM portal_session WHERE id = ?",
                                   (key,)).fetchone()
        if row is None or row[1] < time.time():
            return None
        return json.loads(row[0])

    def create(self, data: dict[str, Any], lifetime: float) -> str:
        key = secrets.token_urlsafe(32)
        user = data.get("user") or {}
        with self._lock:
            self._db.execute("DELETE FROM portal_session WHERE expires < ?", (time.time(),))
            self._db.execute(
                "INSERT INTO portal_session (id, data, sid, sub, expires) VALUES (?,?,?,?,?)",
                (key, json.dumps(data), user.get("sid"), user.get("sub"), time.time() + lifetime))
        return key

    def update(self, key: str, data: dict[str, Any], lifetime: float) -> bool:
        """Write an existing session; False when it has been ended meanwhile (it stays ended)."""
        user = data.get("user") or {}
        with self._lock:
            cur = self._db.execute(
                "UPDATE portal_session SET data = ?, sid = ?, sub = ?, expires = ? WHERE id = ?",
                (json.dumps(data), user.get("sid"), user.get("sub"), time.time() + lifetime, key))
            return cur.rowcount == 1

    def delete(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM portal_session WHERE id = ?", (key,))

    def end_logins(self, *, sid: str | None, sub: str | None) -> int:
        """End every session of one OP login (``sid``), or of one subject when only ``sub`` is given."""
        with self._lock:
            if sid and sub:
                cur = self._db.execute("DELETE FROM portal_session WHERE sid = ? AND sub = ?", (sid, sub))
            elif sid:
                cur = self._db.execute("DELETE FROM portal_session WHERE sid = ?", (sid,))
            elif sub:
                cur = self._db.execute("DELETE FROM portal_session WHERE sub = ?", (sub,))
            else:
                return 0
            return cur.rowcount

    def first_use_of(self, jti: str, expires: float) -> bool:
        """Record a logout token's ``jti``; False when it was seen before (a replay, §2.6 step 7)."""
        now = time.time()
        with self._lock:
            self._db.execute("DELETE FROM seen_logout_token WHERE expires < ?", (now,))
            cur = self._db.execute("INSERT OR IGNORE INTO seen_logout_token (jti, expires) VALUES (?, ?)",
                                   (jti, max(expires, now + 600)))
            return cur.rowcount == 1

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM portal_session WHERE expires >= ?",
                                        (time.time(),)).fetchone()[0])


class PortalSession(CallbackDict, SessionMixin):  # type: ignore[type-arg]
    """A session dict that knows its id and can be given a fresh one (after sign-in)."""

    def __init__(self, initial: dict[str, Any] | None = None, key: str | None = None) -> None:
        def on_update(_: Any) -> None:
            self.modified = True

        super().__init__(initial or {}, on_update)
        self.key = key
        self.previous_key: str | None = None
        self.modified = False

    def rotate(self) -> None:
        """New id for the same data: a sign-in must not keep an id the browser had before it."""
        self.previous_key = self.key
        self.key = None
        self.modified = True


class ServerSideSessions(SessionInterface):
    """Flask session interface over :class:`SessionStore`; the cookie carries only a random id."""

    def __init__(self, store: SessionStore, lifetime: float = 8 * 3600) -> None:
        self.store = store
        self.lifetime = lifetime

    def open_session(self, app: Flask, request: Request) -> PortalSession:
        key = request.cookies.get(self.get_cookie_name(app))
        if key:
            data = self.store.load(key)
            if data is not None:
                return PortalSession(data, key)
        return PortalSession()

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        assert isinstance(session, PortalSession)
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        if session.previous_key:
            self.store.delete(session.previous_key)
        if not session:
            if session.key:
                self.store.delete(session.key)
                response.delete_cookie(name, domain=domain, path=path)
            return
        if not session.modified and session.key:
            return
        if session.key is None:
            session.key = self.store.create(dict(session), self.lifetime)
        elif not self.store.update(session.key, dict(session), self.lifetime):
            # Ended by a back-channel logout while this request ran: do not bring it back.
            response.delete_cookie(name, domain=domain, path=path)
            return
        response.set_cookie(
            name, session.key, httponly=True, samesite=self.get_cookie_samesite(app),
            secure=self.get_cookie_secure(app), domain=domain, path=path,
        )
        response.vary.add("Cookie")
