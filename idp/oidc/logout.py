"""Logout: RP-initiated (OIDC RP-Initiated Logout 1.0) and back-channel (OIDC Back-Channel Logout 1.0).

Whenever an SSO session ends (``session_ended``), a logout token is queued, in the unit of work that
ended it, for every portal the session signed in to that registered a ``backchannel_logout_uri``.
Delivery starts once that work commits, in a short background thread; ``flask logout deliver``
retries what failed, with exponential backoff. Rows are claimed with a conditional UPDATE (status and
lease), so any number of workers can deliver side by side without sending a token twice at the same time.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from typing import Any

import requests
from authlib.oauth2.rfc6749.errors import InvalidRequestError
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask, current_app, has_request_context
from joserfc import jws, jwt
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp import audit, metrics
from idp.auth import session as sso
from idp.db import get_session, rowcount
from idp.models import Client, LogoutDelivery
from idp.models.base import utcnow
from idp.oidc import keys
from idp.oidc.pairwise import pairwise_subject, portal_sid

log = logging.getLogger(__name__)

BACKCHANNEL_EVENT = "http://schemas.openid.net/event/backchannel-logout"
DELIVERY_TIMEOUT = 2.0
MAX_ATTEMPTS = 8
LEASE_SECONDS = 30
LOGOUT_TOKEN_LIFETIME = 120
_QUEUED = "backchannel_logout_queued"  # Session.info: deliveries to start once the work commits


class EndSession(EndSessionEndpoint):
    """RP-Initiated Logout §2–§3 on Authlib's endpoint; the session ends through ``sso.end``.

    Without a valid ``id_token_hint`` the citizen is asked first (§6); ``ConfirmedEndSession``
    finishes such a request once they said yes.
    """

    confirmed = False

    def get_server_jwks(self) -> Any:
        return keys.public_key_set(get_session())

    def _validate_id_token_hint(self, id_token_hint: str) -> dict[str, Any]:
        """Accept only one of our ID tokens as a hint (§2), not any JWT we signed.

        Access tokens (``typ: at+jwt``) and logout tokens carry the same signature; taken as a
        hint they would let a script holding one log the citizen out without asking.
        """
        claims: dict[str, Any] = super()._validate_id_token_hint(id_token_hint)
        header = jws.extract_compact(id_token_hint.encode()).headers()  # verified by the parent
        if header.get("typ", "JWT") != "JWT" or claims.get("iss") != current_app.config["IDP"].issuer \
                or not claims.get("sid") or not claims.get("aud"):
            raise InvalidRequestError("id_token_hint is not an ID token issued by this provider")
        return claims

    def is_post_logout_redirect_uri_legitimate(self, request: Any, post_logout_redirect_uri: str,
                                               client: Any, logout_hint: str | None) -> bool:
        # Without a valid id_token_hint only the citizen's confirmation makes it legitimate; the URI
        # is still checked by exact match against the portal's registration.
        return self.confirmed

    def end_session(self, end_session_request: Any) -> None:
        current = sso.current()
        if current is None:
            return
        if not self.confirmed and not hint_names_session(end_session_request, current.sid):
            return  # a hint for another session: this browser's session stays
        citizen_id = current.citizen_id
        sso.end(current, reason="rp_logout")
        client = end_session_request.client
        audit.append("logout", actor=f"citizen:{citizen_id}", citizen_id=citizen_id,
                     client_id=client.client_id if client else None, kind="rp_initiated")


class ConfirmedEndSession(EndSession):
    """The same request after the citizen confirmed the logout on SatuID's page."""

    ENDPOINT_NAME = "end_session_confirmed"
    confirmed = True


# ---- back-channel logout -------------------------------------------------------------------------

def hint_names_session(validated: Any, sid: str) -> bool:
    """Whether a validated end-session request's ID token names the SSO session ``sid`` (the ID token
    carries the portal's own ``sid`` for it)."""
    claims = validated.id_token_claims
    client = validated.client
    return bool(claims is not None and client is not None
                and claims.get("sid") == portal_sid(client, sid))


def logout_token(session: Session, client: Client, citizen_id: str, sid: str) -> str:
    """A logout token (Back-Channel Logout §2.4): no nonce, ``typ: logout+jwt``; signed when it is
    sent, so a portal that was down for a while still gets a token within its lifetime (§2.6)."""
    alg = client.id_token_signed_response_alg or "RS256"
    key = keys.signing_key(session, alg)
    now = int(time.time())
    claims = {
        "iss": current_app.config["IDP"].issuer, "aud": client.client_id, "iat": now,
        "exp": now + LOGOUT_TOKEN_LIFETIME, "jti": secrets.token_urlsafe(16),
        "sub": pairwise_subject(client, citizen_id), "sid": portal_sid(client, sid),
        "events": {BACKCHANNEL_EVENT: {}},
    }
    return jwt.encode({"alg": alg, "kid": key.kid, "typ": "logout+jwt"}, claims, key)


def queue_logout(session: Session, sid: str, citizen_id: str, client_ids: list[str]) -> list[int]:
    """Queue a logout token per portal with a back-channel URI, in ``session``'s unit of work."""
    ids = []
    for client_id in client_ids:
        client = session.get(Client, client_id)
        if client is None or not client.backchannel_logout_uri:
            continue
        row = LogoutDelivery(client_id=client_id, citizen_id=citizen_id, sid=sid,
                             uri=client.backchannel_logout_uri, logout_token="",
                             next_attempt_at=utcnow())
        session.add(row)
        session.flush()
        ids.append(row.id)
    return ids


def _claim(session: Session, delivery_id: int) -> bool:
    """Take a due row for this worker; False when another worker holds it or it is done."""
    now = utcnow()
    stmt = (update(LogoutDelivery)
            .where(LogoutDelivery.id == delivery_id,
                   LogoutDelivery.status.in_(("pending", "retry")),
                   LogoutDelivery.next_attempt_at <= now,
                   or_(LogoutDelivery.lease_until.is_(None), LogoutDelivery.lease_until < now))
            .values(lease_until=now + dt.timedelta(seconds=LEASE_SECONDS),
                    attempts=LogoutDelivery.attempts + 1))
    claimed = rowcount(session.execute(stmt)) == 1
    session.commit()
    return claimed


def deliver_one(app: Flask, delivery_id: int) -> str | None:
    """POST one logout token (§2.5); record the outcome. Returns the new status, or None if skipped."""
    maker = _sessions(app)
    with maker() as session:
        if not _claim(session, delivery_id):
            return None
        row = session.get(LogoutDelivery, delivery_id)
        assert row is not None
        error = None
        client = session.get(Client, row.client_id)
        token = logout_token(session, client, row.citizen_id, row.sid) if client is not None else ""
        try:
            response = requests.post(row.uri, data={"logout_token": token},
                                     timeout=DELIVERY_TIMEOUT, allow_redirects=False)
            if response.status_code not in (200, 204):
                error = f"HTTP {response.status_code}"
        except requests.RequestException as e:
            error = type(e).__name__
        now = utcnow()
        if error is None:
            row.status, row.delivered_at, row.last_error = "delivered", now, None
        elif row.attempts >= MAX_ATTEMPTS:
            row.status, row.last_error = "failed", error
        else:
            row.status, row.last_error = "retry", error
            row.next_attempt_at = now + dt.timedelta(seconds=5 * 2 ** (row.attempts - 1))
        row.lease_until = None
        metrics.backchannel_logout(row.status)
        audit.append("backchannel_logout", session=session, citizen_id=row.citizen_id,
                     client_id=row.client_id, status=row.status, attempts=row.attempts, error=error)
        session.commit()
        return row.status


def deliver_due(app: Flask, limit: int = 100) -> dict[str, int]:
    """Deliver every due row (the retry command and tests)."""
    maker = _sessions(app)
    with maker() as session:
        due = session.scalars(select(LogoutDelivery.id).where(
            LogoutDelivery.status.in_(("pending", "retry")),
            LogoutDelivery.next_attempt_at <= utcnow()).order_by(LogoutDelivery.id).limit(limit)).all()
    counts: dict[str, int] = {}
    for delivery_id in due:
        status = deliver_one(app, delivery_id)
        if status:
            counts[status] = counts.get(status, 0) + 1
    return counts


def _deliver_in_background(app: Flask, ids: list[int]) -> None:
    def run() -> None:
        with app.app_context():
            for delivery_id in ids:
                try:
                    deliver_one(app, delivery_id)
                except Exception:  # the retry command picks it up again
                    log.exception("back-channel logout delivery %s failed", delivery_id)

    threading.Thread(target=run, name="backchannel-logout", daemon=True).start()


def _sessions(app: Flask) -> sessionmaker[Session]:
    maker: sessionmaker[Session] = app.extensions["idp.sessionmaker"]
    return maker


def on_session_ended(app: Flask, *, sid: str, citizen_id: str, client_ids: list[str],
                     reason: str, **_: Any) -> None:
    """``session_ended``: queue the portals' logout tokens in the work that ended the session."""
    if not client_ids:
        return
    session = get_session()
    session.info.setdefault(_QUEUED, []).extend(queue_logout(session, sid, citizen_id, client_ids))


def deliver_queued(session: Session) -> None:
    """``after_commit``: deliver what the committed work queued, in the background during a request
    (the citizen does not wait for portals) and at once elsewhere (commands, tests)."""
    ids: list[int] = session.info.pop(_QUEUED, [])
    if not ids:
        return
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]  # Werkzeug's proxy
    if has_request_context() and not app.config.get("OIDC_SYNC_LOGOUT_DELIVERY"):
        _deliver_in_background(app, ids)
    else:
        for delivery_id in ids:
            deliver_one(app, delivery_id)
