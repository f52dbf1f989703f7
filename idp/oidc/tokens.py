"""Access tokens (RFC 9068 JWTs), refresh tokens (opaque, hashed), revocation and introspection.

Every token row carries its grant id, so ``idp.revocation`` can revoke a whole family at once.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import time
import uuid
from typing import Any, cast

from authlib.oauth2.rfc6749 import TokenMixin
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from flask import current_app
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import bindparam, insert, select, update

from idp import audit, revocation, state
from idp.config import Settings
from idp.db import get_session, rowcount
from idp.models import Citizen, Client, Grant, Resident, Token
from idp.models.base import secret_digest, utcnow
from idp.oidc import clients, keys
from idp.oidc.clients import AUTH_METHODS
from idp.oidc.pairwise import pairwise_subject
from idp.state import Stamp


def _settings() -> Settings:
    settings: Settings = current_app.config["IDP"]
    return settings


class AccessTokenGenerator(JWTBearerTokenGenerator):
    """RFC 9068 access tokens signed with the current RS256 key; a refresh token only with
    ``offline_access`` (OIDC Core §11)."""

    def __init__(self) -> None:
        super().__init__(issuer="", alg="RS256")

    def generate(self, grant_type: str, client: Client, user: Citizen | None = None,
                 scope: str | None = None, expires_in: int | None = None,
                 include_refresh_token: bool = True) -> dict[str, Any]:
        scope = self.get_allowed_scope(client, scope)
        lifetime = expires_in or _settings().access_token_lifetime
        now = int(time.time())
        assert user is not None  # the code flow always has a citizen
        claims = {
            "iss": _settings().issuer, "sub": pairwise_subject(client, str(user.id)),
            "aud": client.client_id, "client_id": client.client_id, "iat": now, "exp": now + lifetime,
            "jti": secrets.token_urlsafe(16), "scope": scope,
        }
        key = keys.signing_key(get_session(), "RS256")
        header = {"alg": "RS256", "typ": "at+jwt", "kid": key.kid}  # RFC 9068 §2.1
        token: dict[str, Any] = {
            "token_type": "Bearer", "access_token": jwt.encode(header, claims, key),
            "expires_in": lifetime, "scope": scope,
        }
        if include_refresh_token and "offline_access" in scope.split():
            token["refresh_token"] = secrets.token_urlsafe(32)
        return token


def _unverified_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def save(token: dict[str, Any], context: dict[str, Any], client: Client, citizen: Citizen) -> None:
    """Persist an issued token pair; ``context`` holds the grant id and the authentication facts.

    A Core insert on the unit of work's connection, not an ORM object: nothing in the request reads
    the row back, and the unit-of-work flush was a large share of the token endpoint's CPU."""
    claims = _unverified_claims(token["access_token"])
    now = utcnow()
    values: dict[str, Any] = {
        "grant_id": uuid.UUID(str(context["grant_id"])), "client_id": client.client_id,
        "citizen_id": citizen.id, "jti": claims["jti"], "scope": token["scope"],
        "claims_request": context.get("claims_request") or {}, "auth_time": int(context["auth_time"]),
        "acr": int(context["acr"]), "amr": list(context["amr"]), "sid": context.get("sid"),
        "issued_at": now, "access_expires_at": now + dt.timedelta(seconds=int(token["expires_in"])),
        "refresh_hash": None, "refresh_scope": None, "refresh_expires_at": None,
    }
    if token.get("refresh_token"):
        refresh_scope = context.get("refresh_scope")
        values.update(
            refresh_hash=secret_digest(token["refresh_token"]),
            refresh_scope=refresh_scope if refresh_scope not in (None, token["scope"]) else None,
            refresh_expires_at=now + dt.timedelta(seconds=_settings().refresh_token_lifetime))
    conn = get_session().connection()
    rotated = context.get("rotated_token_id")
    if rotated is None:
        conn.execute(insert(Token), values)
        return
    # One live refresh token per grant: a sibling a retry left behind dies with this rotation,
    # in a statement that starts after the claim's wait on the row's lock (see ``claim_refresh``).
    siblings = {"of_grant": values["grant_id"], "token_id": rotated, "now": now}
    if conn.dialect.name == "postgresql":
        new = {f"new_{c}": values[c] for c in _NEW_TOKEN_COLUMNS}
        conn.execute(_ROTATE_POSTGRESQL, {**new, **siblings})
    else:
        conn.execute(_REVOKE_SIBLINGS, siblings)
        conn.execute(insert(Token), values)


# The statements of the token endpoint and userinfo, built once: building an expression and its
# cache key on every request was a measurable share of a refresh grant's CPU.
_CLAIM = (update(Token).where(Token.id == bindparam("token_id"), Token.refresh_used_at.is_(None),
                              Token.refresh_revoked_at.is_(None))
          .values(refresh_used_at=bindparam("now")))
_REVOKE_SIBLINGS = (update(Token).where(
    Token.grant_id == bindparam("of_grant"), Token.id != bindparam("token_id"),
    Token.refresh_hash.is_not(None), Token.refresh_used_at.is_(None),
    Token.refresh_revoked_at.is_(None)).values(refresh_revoked_at=bindparam("now")))
# A rotation's new token and the revocation of its siblings in one round trip. The new row's
# parameters are named apart from the columns: an UPDATE compiled with parameters named like its
# columns would set them all on every sibling.
_NEW_TOKEN_COLUMNS = ("grant_id", "client_id", "citizen_id", "jti", "scope", "claims_request",
                      "auth_time", "acr", "amr", "sid", "issued_at", "access_expires_at",
                      "refresh_hash", "refresh_scope", "refresh_expires_at")
_ROTATE_POSTGRESQL = (
    insert(Token).values({c: bindparam(f"new_{c}", type_=Token.__table__.c[c].type)
                          for c in _NEW_TOKEN_COLUMNS})
    .add_cte(_REVOKE_SIBLINGS.returning(Token.id).cte("revoked_siblings")))


def claim_refresh(row: Token) -> bool:
    """Mark a refresh token used, atomically: of two concurrent uses one wins, the other is a reuse.
    A token revoked while its claim waited on the row's lock (a sibling's use revoked it) is not
    claimed either; the caller tells the two apart by ``refresh_used_at``.

    The rotation's siblings are revoked later, by the statement that saves the new token (``save``
    with ``rotated_token_id``): a statement of its own after this one, so it takes a fresh
    snapshot and also revokes a token that a concurrent use of a sibling committed while this
    claim waited on the row's lock (CTEs of the claim's own statement would share a snapshot taken
    before that wait, and leave two live chains). Two live siblings used at the same moment each
    hold their own row and wait on the other's: PostgreSQL ends one use as a deadlock, which the
    portal gets as ``temporarily_unavailable``, and its retry finds itself revoked (not reused).
    Two live siblings only exist after a retry raced a use, so this stays rare."""
    result = get_session().connection().execute(_CLAIM, {"token_id": row.id, "now": utcnow()})
    return rowcount(result) == 1


def retry_allowed(row: Token) -> bool:
    """Whether a rotated refresh token presented again is a retry to answer, not a reuse.

    Only within the grace window after its rotation, only once, and only while the refresh token
    that rotation issued is still unused: the retry then replaces that answer (its refresh token is
    revoked), so a stolen token used inside the window never starts a second chain beside the
    portal's.
    """
    used = row.refresh_used_at
    grace = _settings().refresh_reuse_grace_seconds
    if used is None or grace <= 0 or (utcnow() - used).total_seconds() > grace:
        return False
    session = get_session()
    successors = list(session.scalars(select(Token).where(
        Token.grant_id == row.grant_id, Token.id > row.id, Token.refresh_hash.is_not(None))))
    if any(s.refresh_used_at is not None for s in successors):
        return False  # the chain moved on: this is a reuse
    if not state.refresh_retries.put_if_absent(Stamp(at=int(time.time())), str(row.id),
                                               ttl=grace + 1):
        return False  # a second retry
    now = utcnow()
    for successor in successors:
        successor.refresh_revoked_at = now
    return True


class IssuedToken(TokenMixin):
    """A token row seen as one kind of token (access or refresh), for Authlib's endpoints."""

    def __init__(self, row: Token, kind: str, grant: Grant, citizen: Citizen,
                 resident: Resident | None = None) -> None:
        self.row = row
        self.kind = kind
        self.grant = grant
        self.citizen = citizen
        # Held so that the claims' ``session.get(Resident, nik)`` finds it in the session's
        # identity map, which keeps only weak references.
        self.resident = resident
        self.retrying = False  # a rotated refresh token answered once more (``retry_allowed``)

    @property
    def scope(self) -> str:
        return self.get_scope()

    def check_client(self, client: Client) -> bool:
        return self.row.client_id == client.client_id

    def get_scope(self) -> str:
        if self.kind == "refresh_token":
            return self.row.refresh_scope or self.row.scope
        return self.row.scope

    def _expires_at(self) -> dt.datetime:
        if self.kind == "refresh_token":
            assert self.row.refresh_expires_at is not None
            return self.row.refresh_expires_at
        return self.row.access_expires_at

    def get_expires_in(self) -> int:
        return max(0, int((self._expires_at() - utcnow()).total_seconds()))

    def is_expired(self) -> bool:
        return self._expires_at() <= utcnow()

    def is_revoked(self, ignore_rotation: bool = False) -> bool:
        """Revoked, or (a refresh token) already rotated unless ``ignore_rotation``."""
        if self.kind == "refresh_token":
            rotated = self.row.refresh_used_at is not None and not ignore_rotation
            own = self.row.refresh_revoked_at is not None or rotated
        else:
            own = self.row.access_revoked_at is not None
        if own:
            return True
        # A token saved just after its grant was revoked (a race with revoke_grant) is dead too.
        return self.grant.revoked_at is not None

    def get_user(self) -> Citizen | None:
        return self.citizen

    def get_client(self) -> Client | None:
        """The portal, if still active (from the worker's cache of clients)."""
        return clients.find(self.row.client_id)


_WITH_GRANT = (select(Token, Grant, Citizen).join(Grant, Grant.id == Token.grant_id)
               .join(Citizen, Citizen.id == Token.citizen_id))
_BY_JTI = _WITH_GRANT.where(Token.jti == bindparam("value"))
_BY_JTI_WITH_RESIDENT = (_BY_JTI.add_columns(Resident)
                         .outerjoin(Resident, Resident.nik == Citizen.nik))
_BY_REFRESH_HASH = _WITH_GRANT.where(Token.refresh_hash == bindparam("value"))


def _load_token(query: Any, value: str, kind: str) -> IssuedToken | None:
    """A token row with its grant and citizen (and, from ``_BY_JTI_WITH_RESIDENT``, the citizen's
    registry row) in one statement, for the checks that follow (``is_revoked``, ``get_user``, the
    claims) instead of a statement each. A token whose grant or citizen is gone is not found."""
    row = get_session().execute(query, {"value": value}).first()
    if row is None:
        return None
    resident = cast(Resident | None, row[3]) if len(row) > 3 else None
    return IssuedToken(row[0], kind, row[1], row[2], resident)


def find_access_token(value: str, resident: bool = False) -> IssuedToken | None:
    """Verify an access token (signature, typ, iss, exp) and return its row, or None; with
    ``resident``, the citizen's registry row is loaded with it (for the claims of userinfo)."""
    if value.count(".") != 2 or len(value) > 4096:
        return None
    try:
        from joserfc import jws

        kid = jws.extract_compact(value.encode()).headers().get("kid")
        key = keys.verification_key(get_session(), str(kid or ""))
        if key is None:
            return None
        decoded = jwt.decode(value, key, algorithms=["RS256"])
        if decoded.header.get("typ") != "at+jwt":
            return None
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": _settings().issuer},
                              exp={"essential": True}, jti={"essential": True}).validate(decoded.claims)
    except (JoseError, ValueError):
        return None
    return _load_token(_BY_JTI_WITH_RESIDENT if resident else _BY_JTI, str(decoded.claims["jti"]),
                       "access_token")


def find_refresh_token(value: str) -> IssuedToken | None:
    if len(value) > 512:
        return None
    return _load_token(_BY_REFRESH_HASH, secret_digest(value), "refresh_token")


def find_token(value: str, hint: str | None) -> IssuedToken | None:
    if hint == "refresh_token":
        return find_refresh_token(value) or find_access_token(value)
    return find_access_token(value) or find_refresh_token(value)


class TokenRevocation(RevocationEndpoint):
    """RFC 7009. Revoking a refresh token revokes its grant (§2.1: SHOULD also revoke access tokens)."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return find_token(token_string, token_type_hint)

    def revoke_token(self, token: IssuedToken, request: Any) -> None:
        if token.kind == "refresh_token":
            revocation.revoke_grant(token.row.grant_id, "revoked_by_client")
            return
        get_session().execute(update(Token).where(Token.id == token.row.id)
                              .values(access_revoked_at=utcnow()))
        audit.append("token_revoked", citizen_id=token.row.citizen_id, client_id=token.row.client_id,
                     kind="access")


class TokenIntrospection(IntrospectionEndpoint):
    """RFC 7662: a client authenticates and sees only its own tokens (others are ``active: false``)."""

    CLIENT_AUTH_METHODS = list(AUTH_METHODS)

    def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
        return find_token(token_string, token_type_hint)

    def check_permission(self, token: IssuedToken, client: Client, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: IssuedToken) -> dict[str, Any]:
        client = token.get_client()
        if client is None:  # the portal was disabled since: its tokens are dead
            return {"active": False}
        row = token.row
        return {
            "active": True, "client_id": row.client_id, "token_type": token.kind,
            "scope": token.get_scope(),
            "sub": pairwise_subject(client, str(row.citizen_id)), "aud": row.client_id,
            "iss": _settings().issuer, "iat": int(row.issued_at.timestamp()),
            "exp": int(token._expires_at().timestamp()),
            **({"jti": row.jti} if token.kind == "access_token" else {}),
        }
