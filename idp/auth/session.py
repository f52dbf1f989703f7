"""Server-side SSO sessions, referenced by an HttpOnly cookie.

The cookie holds a random secret; the store keys the session by its SHA-256, so a leak of the store
does not hand out live cookies. Each session also has a public ``sid`` (OIDC Front/Back-Channel
Logout) that is safe to put in ID tokens. Sessions have an idle and an absolute lifetime.

The session of the current request is this module's own request-scoped state: ``current()`` reads it,
``start`` and ``end`` change it, and the cookie is written after the request.
"""

from __future__ import annotations

import secrets
import time
import uuid

from blinker import Namespace
from flask import Flask, Response, current_app, g, request

from idp import db, revocation, state
from idp.auth.loa import EMAIL_CODE_AMR, without_email_code
from idp.config import Settings
from idp.models.base import secret_digest
from idp.state import SessionRef, SsoSession

__all__ = ["SsoSession", "add_client", "add_factor", "by_sid", "clients_of", "current", "end",
           "end_all", "load", "reauthenticated", "revoke_all_access", "sessions_of", "start"]

signals = Namespace()
#: Sent by the app with ``sid``, ``citizen_id``, ``client_ids`` and ``reason`` whenever an SSO session
#: ends, so back-channel logout reaches every portal the session signed in to (connected in
#: ``create_app``).
session_ended = signals.signal("session-ended")

_CURRENT = "sso"          # g: the request's session, loaded on first use
_COOKIE = "sso_cookie"    # g: None leaves the cookie alone, "" clears it, else the secret to set


def _settings() -> Settings:
    settings: Settings = current_app.config["IDP"]
    return settings


def current() -> SsoSession | None:
    """The SSO session of this request (None when the citizen is not logged in), read from the
    store on first use: requests that never ask (health, keys, the token endpoint) never touch it."""
    if _CURRENT not in g:
        setattr(g, _CURRENT, load(request.cookies.get(cookie_name())))
    sso: SsoSession | None = g.get(_CURRENT)
    return sso


def revoke_all_access(citizen_id: str, reason: str) -> int:
    """End every session and revoke every portal grant of a citizen. Returns the sessions ended."""
    ended = end_all(citizen_id, reason)
    revocation.revoke_grants(uuid.UUID(citizen_id), None, reason)
    return ended


def cookie_name() -> str:
    # The __Host- prefix pins the cookie to this host and path over https (RFC 6265bis §4.1.3.2).
    return "__Host-satuid_sso" if _settings().secure_cookies else "satuid_sso"


def _key(secret: str) -> str:
    return secret_digest(secret)


def _ttl(sso: SsoSession) -> int:
    s = _settings()
    now = int(time.time())
    return max(1, min(s.session_idle_seconds, sso.created_at + s.session_absolute_seconds - now))


def _save(sso: SsoSession) -> None:
    state.sessions.put(sso, sso.key, ttl=_ttl(sso))
    state.session_refs.put(SessionRef(key=sso.key), sso.sid)
    state.sessions_of_citizen.add(sso.sid, sso.citizen_id)


def start(citizen_id: str, amr: list[str], acr: int) -> SsoSession:
    """Begin a session after a login and set its cookie.

    Every login gets a new cookie secret (against session fixation). The same citizen logging in
    again keeps the session's public ``sid``: portals already signed in hold ID tokens with that
    ``sid``, and a later back-channel logout must name the session they know.
    """
    old = current()
    if old is not None and old.citizen_id != str(citizen_id):
        end(old, reason="replaced")
        old = None
    now = int(time.time())
    secret = secrets.token_urlsafe(32)
    sso = SsoSession(
        sid=old.sid if old is not None else secrets.token_urlsafe(16), citizen_id=str(citizen_id),
        auth_time=now, amr=list(amr), acr=acr, created_at=now, last_seen=now,
        factor_times={m: now for m in amr},
        user_agent=request.headers.get("User-Agent", "")[:200], ip=request.remote_addr or "",
        key=_key(secret), auth_event=secrets.token_urlsafe(8),
    )
    if old is not None:
        state.sessions.delete(old.key)  # the old cookie stops working; the sid and its portals stay
    _save(sso)
    setattr(g, _CURRENT, sso)
    setattr(g, _COOKIE, secret)
    return sso


def add_factor(sso: SsoSession, method: str, acr: int) -> None:
    """Record a further factor (step-up): the session keeps its id and gains assurance."""
    now = int(time.time())
    if method not in sso.amr:
        sso.amr.append(method)
    sso.factor_times[method] = now
    sso.acr = max(sso.acr, acr)
    sso.auth_time = now
    sso.auth_event = secrets.token_urlsafe(8)
    _save(sso)


def reauthenticated(sso: SsoSession, method: str) -> None:
    """The citizen proved a factor again in an existing session (prompt=login, max_age)."""
    now = int(time.time())
    sso.factor_times[method] = now
    sso.auth_time = now
    sso.auth_event = secrets.token_urlsafe(8)
    _save(sso)


def load(secret: str | None) -> SsoSession | None:
    if not secret or len(secret) > 128:
        return None
    key = _key(secret)
    sso = state.sessions.get(key)
    if sso is None:
        return None
    sso.key = key
    if EMAIL_CODE_AMR in sso.amr:
        _without_email_code(sso)
        _save(sso)
    s = _settings()
    now = int(time.time())
    if now - sso.last_seen > s.session_idle_seconds or now - sso.created_at > s.session_absolute_seconds:
        end(sso, reason="expired")
        return None
    if now - sso.last_seen > 30:  # refresh the idle timer at most twice a minute
        ref = state.session_refs.get(sso.sid)
        if ref is None or ref.key != key:
            # A login renewed the secret while this request still held the old one: the old
            # cookie is over, and saving it would bring it back.
            state.sessions.delete(key)
            return None
        sso.last_seen = now
        _save(sso)
    return sso


def _without_email_code(sso: SsoSession) -> None:
    """A session from the release that counted an email code as a second factor keeps only what
    still counts, at the level that reaches (``loa.without_email_code``)."""
    sso.amr, sso.acr = without_email_code(sso.amr, sso.acr)
    sso.factor_times.pop(EMAIL_CODE_AMR, None)


def add_client(sso: SsoSession, client_id: str) -> None:
    """Remember that this session signed in to a portal, for back-channel logout."""
    state.portals_of_session.add(client_id, sso.sid)


def clients_of(sso: SsoSession) -> set[str]:
    return state.portals_of_session.members(sso.sid)


def _forget(sso: SsoSession) -> None:
    state.sessions.delete(sso.key)
    state.session_refs.delete(sso.sid)
    state.portals_of_session.delete(sso.sid)
    state.sessions_of_citizen.discard(sso.sid, sso.citizen_id)


def end(sso: SsoSession, reason: str) -> None:
    """End one session and tell every portal it signed in to. The session leaves the store when the
    work that ended it commits, together with the portals' back-channel logouts it queued: a
    failure in between leaves both, never a session gone with its portals never told."""
    client_ids = clients_of(sso)
    db.after_commit(lambda: _forget(sso))
    mine: SsoSession | None = g.get(_CURRENT)  # not current(): ending may happen while loading
    if mine is not None and mine.sid == sso.sid:
        setattr(g, _CURRENT, None)
        setattr(g, _COOKIE, "")
    session_ended.send(current_app._get_current_object(),  # type: ignore[attr-defined]  # Werkzeug's proxy
                       sid=sso.sid, citizen_id=sso.citizen_id, client_ids=sorted(client_ids),
                       reason=reason)


def by_sid(sid: str) -> SsoSession | None:
    ref = state.session_refs.get(sid)
    if ref is None:
        return None
    sso = state.sessions.get(ref.key)
    if sso is not None:
        sso.key = ref.key
        _without_email_code(sso)
    return sso


def end_all(citizen_id: str, reason: str) -> int:
    """End every session of a citizen (password reset, helpdesk, operator). Returns how many."""
    count = 0
    for sid in state.sessions_of_citizen.members(citizen_id):
        sso = by_sid(sid)
        if sso is not None:
            end(sso, reason)
            count += 1
        else:
            state.sessions_of_citizen.discard(sid, citizen_id)
    return count


def sessions_of(citizen_id: str) -> list[SsoSession]:
    return [s for sid in state.sessions_of_citizen.members(citizen_id) if (s := by_sid(sid))]


def init_app(app: Flask) -> None:
    """Forget any session a previous request left in ``g`` and write the cookie after a request."""

    @app.before_request
    def _reset() -> None:
        setattr(g, _COOKIE, None)
        g.pop(_CURRENT, None)

    @app.after_request
    def _write_cookie(response: Response) -> Response:
        secret = g.get(_COOKIE)
        if secret is None:
            return response
        s = _settings()
        if secret == "":
            response.delete_cookie(cookie_name(), path="/", secure=s.secure_cookies,
                                   httponly=True, samesite="Lax")
        else:
            response.set_cookie(cookie_name(), secret, max_age=s.session_absolute_seconds,
                                path="/", secure=s.secure_cookies, httponly=True, samesite="Lax")
        return response
