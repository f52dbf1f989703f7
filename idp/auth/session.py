"""Server-side SSO sessions, referenced by an HttpOnly cookie.

The cookie holds a random secret; the store keys the session by its SHA-256, so a leak of the store
does not hand out live cookies. Each session also has a public ``sid`` (OIDC Front/Back-Channel
Logout) that is safe to put in ID tokens. Sessions have an idle and an absolute lifetime.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from blinker import Namespace
from flask import Flask, Response, current_app, g, request

from idp.store import get_store

signals = Namespace()
#: Sent with ``sid``, ``citizen_id``, ``client_ids`` and ``reason`` whenever an SSO session ends,
#: so back-channel logout reaches every portal the session signed in to.
session_ended = signals.signal("session-ended")
#: Sent with ``citizen_id`` and ``reason`` when a citizen's credentials were reset or an operator
#: cut off their access: every grant a portal holds (refresh tokens included) is revoked.
access_revoked = signals.signal("access-revoked")


def revoke_all_access(citizen_id: str, reason: str) -> int:
    """End every session and revoke every portal grant of a citizen. Returns the sessions ended."""
    ended = end_all(citizen_id, reason)
    access_revoked.send(current_app._get_current_object(),  # type: ignore[attr-defined]
                        citizen_id=citizen_id, reason=reason)
    return ended


@dataclass
class SsoSession:
    sid: str
    citizen_id: str
    auth_time: int                    # when the citizen last proved who they are (OIDC auth_time)
    amr: list[str]                    # RFC 8176 methods used, e.g. ["pwd", "otp"]
    acr: int                          # level of assurance reached: 1, 2 or 3
    created_at: int
    last_seen: int
    factor_times: dict[str, int] = field(default_factory=dict)  # amr value -> when it was used
    user_agent: str = ""              # shown to the citizen on their sessions page
    ip: str = ""
    key: str = ""                     # store key (hash of the cookie secret); not persisted twice
    # Changes with every login, re-authentication and step-up: a request can tell the citizen
    # proved something after it arrived even within the same second of auth_time.
    auth_event: str = ""

    @property
    def age(self) -> int:
        return int(time.time()) - self.auth_time


def cookie_name() -> str:
    # The __Host- prefix pins the cookie to this host and path over https (RFC 6265bis §4.1.3.2).
    return "__Host-satuid_sso" if current_app.config["IDP"].secure_cookies else "satuid_sso"


def _key(secret: str) -> str:
    return "sso:" + hashlib.sha256(secret.encode()).hexdigest()


def _ttl(sso: SsoSession) -> int:
    s = current_app.config["IDP"]
    now = int(time.time())
    return max(1, min(s.session_idle_seconds, sso.created_at + s.session_absolute_seconds - now))


def _save(sso: SsoSession) -> None:
    data = asdict(sso)
    data.pop("key")
    store = get_store()
    ttl = _ttl(sso)
    store.put(sso.key, data, ttl)
    s = current_app.config["IDP"]
    store.put(f"sso-sid:{sso.sid}", {"key": sso.key}, s.session_absolute_seconds)
    store.add_member(f"sso-of:{sso.citizen_id}", sso.sid, s.session_absolute_seconds)


def start(citizen_id: str, amr: list[str], acr: int) -> SsoSession:
    """Begin a session after a login and set its cookie.

    Every login gets a new cookie secret (against session fixation). The same citizen logging in
    again keeps the session's public ``sid``: portals already signed in hold ID tokens with that
    ``sid``, and a later back-channel logout must name the session they know.
    """
    old = g.get("sso")
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
        get_store().delete(old.key)  # the old cookie stops working; the sid and its portals stay
    _save(sso)
    g.sso = sso
    g.sso_cookie = secret
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
    data = get_store().get(key)
    if data is None:
        return None
    sso = _from_stored(data, key)
    s = current_app.config["IDP"]
    now = int(time.time())
    if now - sso.last_seen > s.session_idle_seconds or now - sso.created_at > s.session_absolute_seconds:
        end(sso, reason="expired")
        return None
    if now - sso.last_seen > 30:  # refresh the idle timer at most twice a minute
        store = get_store()
        ref = store.get(f"sso-sid:{sso.sid}")
        if ref is None or ref["key"] != key:
            # A login renewed the secret while this request still held the old one: the old
            # cookie is over, and saving it would bring it back.
            store.delete(key)
            return None
        sso.last_seen = now
        _save(sso)
    return sso


_FIELDS = set(SsoSession.__dataclass_fields__) - {"key"}


def _from_stored(data: dict[str, Any], key: str) -> SsoSession:
    # Fields a newer release added are ignored, so workers of two releases can share the store.
    return SsoSession(**{k: v for k, v in data.items() if k in _FIELDS}, key=key)


def add_client(sso: SsoSession, client_id: str) -> None:
    """Remember that this session signed in to a portal, for back-channel logout."""
    get_store().add_member(f"sso-rps:{sso.sid}", client_id,
                           current_app.config["IDP"].session_absolute_seconds)


def clients_of(sso: SsoSession) -> set[str]:
    return get_store().members(f"sso-rps:{sso.sid}")


def _forget(sso: SsoSession) -> None:
    store = get_store()
    store.delete(sso.key)
    store.delete(f"sso-sid:{sso.sid}")
    store.delete(f"sso-rps:{sso.sid}")
    store.remove_member(f"sso-of:{sso.citizen_id}", sso.sid)


def end(sso: SsoSession, reason: str) -> None:
    """End one session and tell every portal it signed in to."""
    client_ids = clients_of(sso)
    _forget(sso)
    if g.get("sso") is not None and g.sso.sid == sso.sid:
        g.sso = None
        g.sso_cookie = ""
    session_ended.send(current_app._get_current_object(), sid=sso.sid,  # type: ignore[attr-defined]
                       citizen_id=sso.citizen_id, client_ids=sorted(client_ids), reason=reason)


def by_sid(sid: str) -> SsoSession | None:
    store = get_store()
    ref = store.get(f"sso-sid:{sid}")
    if ref is None:
        return None
    data = store.get(ref["key"])
    return _from_stored(data, ref["key"]) if data else None


def end_all(citizen_id: str, reason: str) -> int:
    """End every session of a citizen (password reset, helpdesk, operator). Returns how many."""
    count = 0
    for sid in get_store().members(f"sso-of:{citizen_id}"):
        sso = by_sid(sid)
        if sso is not None:
            end(sso, reason)
            count += 1
        else:
            get_store().remove_member(f"sso-of:{citizen_id}", sid)
    return count


def sessions_of(citizen_id: str) -> list[SsoSession]:
    return [s for sid in get_store().members(f"sso-of:{citizen_id}") if (s := by_sid(sid))]


def init_app(app: Flask) -> None:
    @app.before_request
    def _load_session() -> None:
        g.sso_cookie = None  # None: leave the cookie alone; "": clear it; else: set it
        g.sso = load(request.cookies.get(cookie_name()))

    @app.after_request
    def _write_cookie(response: Response) -> Response:
        secret = g.get("sso_cookie")
        if secret is None:
            return response
        s = current_app.config["IDP"]
        if secret == "":
            response.delete_cookie(cookie_name(), path="/", secure=s.secure_cookies,
                                   httponly=True, samesite="Lax")
        else:
            response.set_cookie(cookie_name(), secret, max_age=s.session_absolute_seconds,
                                path="/", secure=s.secure_cookies, httponly=True, samesite="Lax")
        return response
