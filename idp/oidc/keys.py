"""Signing keys: stored in the database, private parts encrypted, rotated next → current → retired.

A new key is published in the JWKS as ``next`` before it signs anything, so relying parties that cache
the JWKS already know it when it becomes ``current``; a retired key stays published until every token
it signed has expired (the longest token lifetime), then leaves the JWKS (OIDC Core §10.1.1).
The private JWK is encrypted with Fernet (AES-128-CBC + HMAC-SHA256) under a key derived by HKDF from
``IDP_KEY_ENCRYPTION_KEY``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from joserfc.jwk import ECKey, KeySet, RSAKey
from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from idp.cache import Cache
from idp.config import Settings
from idp.db import get_engine, serialize
from idp.models import SigningKey
from idp.models.base import utcnow

ALGORITHMS = ("RS256", "ES256")


def _fernet(secret: str) -> Fernet:
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
               info=b"satuid signing keys").derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(raw))


def _generate(alg: str) -> RSAKey | ECKey:
    if alg == "RS256":
        return RSAKey.generate_key(2048, private=True, auto_kid=False)
    return ECKey.generate_key("P-256", private=True, auto_kid=False)


def new_key(session: Session, alg: str, state: str) -> SigningKey:
    key = _generate(alg)
    kid = f"{alg.lower()}-{utcnow():%Y%m%d}-{secrets.token_hex(4)}"
    public = {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
    private = {**key.as_dict(private=True), "kid": kid, "alg": alg}
    secret = current_app.config["IDP"].key_encryption_key
    row = SigningKey(kid=kid, alg=alg, state=state, public_jwk=public,
                     private_encrypted=_fernet(secret).encrypt(json.dumps(private).encode()).decode(),
                     activated_at=utcnow() if state == "current" else None)
    session.add(row)
    return row


_KEYS_LOCK = 0x5A7D_0CE7  # PostgreSQL advisory lock id for creating the first keys


def _live(session: Session) -> set[tuple[str, str]]:
    return {(k.alg, k.state) for k in session.scalars(
        select(SigningKey).where(SigningKey.state.in_(("current", "next"))))}


def ensure_keys(session: Session) -> None:
    """Create a current and a next key per algorithm when missing (a fresh install), in the unit of
    work. Workers starting together on an empty database queue on a lock and the later ones find
    the keys made (PostgreSQL: an advisory lock; SQLite: the write lock, taken by a no-op write)."""
    if len(_live(session)) == 2 * len(ALGORITHMS):
        return
    serialize(session, _KEYS_LOCK, "oidc_signing_key")
    have = _live(session)
    for alg in ALGORITHMS:
        for state in ("current", "next"):
            if (alg, state) not in have:
                new_key(session, alg, state)
    session.flush()


def _longest_lifetime() -> int:
    s: Settings = current_app.config["IDP"]
    return max(s.access_token_lifetime, s.id_token_lifetime)


def rotate(session: Session) -> list[tuple[str, str, str]]:
    """Retire each current key, promote the next one, publish a new next. Returns (alg, old, new)."""
    ensure_keys(session)
    now = utcnow()
    changes = []
    for alg in ALGORITHMS:
        current = session.scalar(select(SigningKey).where(SigningKey.alg == alg,
                                                          SigningKey.state == "current"))
        nxt = session.scalar(select(SigningKey).where(SigningKey.alg == alg, SigningKey.state == "next"))
        assert current is not None and nxt is not None
        # Flushed one step at a time: at no point two current (or next) keys of one algorithm.
        current.state, current.retired_at = "retired", now
        session.flush()
        nxt.state, nxt.activated_at = "current", now
        session.flush()
        new_key(session, alg, "next")
        session.flush()
        changes.append((alg, current.kid, nxt.kid))
    # Retired keys whose tokens have all expired leave the JWKS for good.
    cutoff = now - dt.timedelta(seconds=_longest_lifetime())
    session.execute(update(SigningKey).where(SigningKey.state == "retired",
                                             SigningKey.retired_at < cutoff)
                    .values(state="removed"))
    return changes


def _decrypt(row: SigningKey) -> dict[str, Any]:
    secret = current_app.config["IDP"].key_encryption_key
    private: dict[str, Any] = json.loads(_fernet(secret).decrypt(row.private_encrypted.encode()))
    return private


_private_cache: dict[str, RSAKey | ECKey] = {}  # kid -> key; a kid's key material never changes


@dataclass(frozen=True)
class _Published:
    """What a worker keeps of a key row between rotations (never the private part)."""

    kid: str
    alg: str
    state: str
    retired_at: dt.datetime | None
    public_jwk: dict[str, Any]


#: The states in which a key is published (a retired one until its tokens have expired).
PUBLISHED = ("next", "current", "retired")

# Every published key row, the one thing a worker caches of keys: the current kid of each algorithm
# and the row of any kid a token names are read from it (a made-up kid costs no query).
_set: Cache[str, list[_Published]] = Cache()


def _published_query() -> Select[SigningKey]:
    return select(SigningKey).where(SigningKey.state.in_(PUBLISHED)).order_by(SigningKey.created_at)


def _published_rows(_key: str) -> list[_Published]:
    with Session(get_engine()) as own:
        return [_snapshot(r) for r in own.scalars(_published_query())]


def _cached_rows() -> list[_Published]:
    return _set.get("all", _published_rows) or []


def signing_key(session: Session, alg: str = "RS256") -> RSAKey | ECKey:
    """The current private key for ``alg`` (its JWK carries ``kid``)."""
    kid = next((r.kid for r in _cached_rows() if r.alg == alg and r.state == "current"), None)
    if kid is None:
        ensure_keys(session)
        kid = session.scalar(select(SigningKey.kid).where(SigningKey.alg == alg,
                                                          SigningKey.state == "current"))
    assert kid is not None
    key = _private_cache.get(kid)
    if key is None:
        row = session.get(SigningKey, kid)
        assert row is not None
        data = _decrypt(row)
        key = RSAKey.import_key(data) if alg == "RS256" else ECKey.import_key(data)
        _private_cache[kid] = key
    return key


def _snapshot(row: SigningKey) -> _Published:
    return _Published(row.kid, row.alg, row.state, row.retired_at, dict(row.public_jwk))


def _still_published(row: _Published) -> bool:
    """Next and current keys are; a retired one until every token it signed has expired."""
    if row.state not in PUBLISHED:
        return False
    cutoff = utcnow() - dt.timedelta(seconds=_longest_lifetime())
    return row.state != "retired" or (row.retired_at is not None and row.retired_at >= cutoff)


def published(session: Session) -> list[dict[str, Any]]:
    """Public JWKs of every key a relying party may meet: next, current and recently retired."""
    rows = _cached_rows()
    if len({(r.alg, r.state) for r in rows if r.state != "retired"}) < 2 * len(ALGORITHMS):
        ensure_keys(session)  # a fresh install: made in this unit of work, cached after it commits
        rows = [_snapshot(r) for r in session.scalars(_published_query())]
    return [r.public_jwk for r in rows if _still_published(r)]


def public_key_set(session: Session) -> KeySet:
    return KeySet.import_key_set({"keys": published(session)})


_public_cache: dict[str, RSAKey | ECKey] = {}


def verification_key(session: Session, kid: str) -> RSAKey | ECKey | None:
    """The published public key with this ``kid`` (from this worker's cache of key rows)."""
    row = next((r for r in _cached_rows() if r.kid == kid), None) if kid else None
    if row is None or not _still_published(row):
        return None
    key = _public_cache.get(kid)
    if key is None:
        key = (RSAKey if row.alg == "RS256" else ECKey).import_key(row.public_jwk)
        _public_cache[kid] = key
    return key
