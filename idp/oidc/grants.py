"""The authorization code grant, PKCE, refresh tokens and the ID token, as Authlib subclasses.

Codes live in the short-lived store and are taken once (RFC 6749 §4.1.2: single use, 60 s here).
The code's grant id is recorded when the code is issued, so a code presented when it is no longer
there, even a replay racing the first redemption, revokes what it issued.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import OpenIDCode
from authlib.oidc.core.grants.util import create_half_hash
from flask import current_app
from joserfc import jwt
from sqlalchemy import bindparam, insert, select

from idp import audit, revocation, state
from idp.auth import loa
from idp.consent import records as consents
from idp.db import get_session
from idp.models import Citizen, Client, Grant
from idp.models.base import secret_digest, utcnow
from idp.oidc import claims as claimsmod
from idp.oidc import keys, tokens
from idp.oidc.clients import AUTH_METHODS
from idp.oidc.pairwise import pairwise_subject, portal_sid
from idp.state import CodeGrant, IssuedCode


@dataclass(frozen=True)
class Authentication:
    """What ``/authorize`` judged of the citizen's authentication, handed to the code it issues."""

    sid: str
    auth_time: int
    acr: int          # the level this portal gets (only its accepted factors count)
    amr: list[str]


class S256CodeChallenge(CodeChallenge):
    """PKCE (RFC 7636) with S256 only, required from every client (RFC 9700 §2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with method S256.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("Only code_challenge_method=S256 is supported.")
        super().validate_code_challenge(grant, redirect_uri)

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        if not grant.request.form.get("code_verifier"):
            raise InvalidRequestError("Missing 'code_verifier'")
        super().validate_code_verifier(grant, result)

    def get_authorization_code_challenge(self, authorization_code: AuthorizationCode) -> str:
        return str(authorization_code["code_challenge"])

    def get_authorization_code_challenge_method(self, authorization_code: AuthorizationCode) -> str:
        return str(authorization_code["code_challenge_method"])


class AuthorizationCode(dict[str, Any]):
    """A code's data as Authlib reads it: the request it answers and the authentication behind it."""

    def get_redirect_uri(self) -> str:
        return str(self["redirect_uri"])

    def get_scope(self) -> str:
        return str(self["scope"])

    def get_nonce(self) -> str | None:
        return self.get("nonce")

    def get_auth_time(self) -> int:
        return int(self["auth_time"])

    def get_acr(self) -> str:
        return loa.acr_value(int(self["acr"]))

    def get_amr(self) -> list[str]:
        return list(self["amr"])


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)

    def save_authorization_code(self, code: str, request: Any) -> None:
        """Create the grant and keep the code's data in the store for 60 s (take-once)."""
        authn: Authentication = request.authentication
        client: Client = request.client
        grant_id = uuid.uuid4()
        # A Core insert on the unit of work's connection: the row is not read back in this request.
        get_session().connection().execute(insert(Grant), {
            "id": grant_id, "client_id": client.client_id, "citizen_id": request.user.id,
            "sid": authn.sid, "created_at": utcnow()})
        data = request.payload.data
        issued = IssuedCode(
            grant_id=str(grant_id), client_id=client.client_id, citizen_id=str(request.user.id),
            redirect_uri=data.get("redirect_uri"), scope=request.scope, nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            auth_time=authn.auth_time, acr=authn.acr, amr=list(authn.amr), sid=authn.sid,
            claims_request=claimsmod.parse_claims_request(data.get("claims")),
        )
        digest = secret_digest(code)
        state.code_grants.put(CodeGrant(grant_id=issued.grant_id, client_id=client.client_id), digest)
        state.codes.put(issued, digest)

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        if not code or len(code) > 256:
            return None
        digest = secret_digest(code)
        owner = state.code_grants.get(digest)
        if owner is not None and owner.client_id != client.client_id:
            # Another client's code (leaked): refused, and neither spent nor revoked, so a leak
            # cannot be used to burn the owner's code or revoke its grant.
            audit.append("code_wrong_client", client_id=client.client_id, grant_id=owner.grant_id)
            return None
        if owner is not None:
            # Read the database before spending the code: a connection that died (a restart)
            # fails the request here, and the portal's retry still finds its code.
            self._loaded = _grant_and_citizen(uuid.UUID(owner.grant_id))
        issued = state.codes.take(digest)
        if issued is None:
            if owner is not None:
                # RFC 6749 §4.1.2 / RFC 9700 §4.5: a code used twice revokes what it issued.
                revocation.revoke_grant(owner.grant_id, "code_replay")
                audit.append("code_replayed", client_id=client.client_id, grant_id=owner.grant_id)
            return None
        if issued.client_id != client.client_id:  # a code issued before its owner was recorded
            audit.append("code_wrong_client", client_id=client.client_id, grant_id=issued.grant_id)
            return None
        # A code issued just before this release may carry an email code as a factor.
        issued.amr, issued.acr = loa.without_email_code(issued.amr, issued.acr)
        return AuthorizationCode(dataclasses.asdict(issued))

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        """Nothing to do: the store's take-once already removed it."""

    def authenticate_user(self, authorization_code: AuthorizationCode) -> Citizen | None:
        grant_id = uuid.UUID(authorization_code["grant_id"])
        loaded = getattr(self, "_loaded", None)
        if loaded is None or loaded[0].id != grant_id:
            loaded = _grant_and_citizen(grant_id)
        if loaded is None:
            return None
        grant, citizen = loaded
        if grant.revoked_at is not None or str(citizen.id) != authorization_code["citizen_id"]:
            return None
        return citizen


_GRANT_AND_CITIZEN = (select(Grant, Citizen).join(Citizen, Citizen.id == Grant.citizen_id)
                      .where(Grant.id == bindparam("grant_id")))  # built once


def _grant_and_citizen(grant_id: uuid.UUID) -> tuple[Grant, Citizen] | None:
    """A grant and its citizen, in one statement."""
    row = get_session().execute(_GRANT_AND_CITIZEN, {"grant_id": grant_id}).first()
    return (row[0], row[1]) if row is not None else None


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh tokens rotate on every use; a rotated one presented again revokes the grant
    (RFC 9700 §4.14.2) — unless it comes within a few seconds of its rotation
    (``IDP_REFRESH_REUSE_GRACE_SECONDS``, as Okta's grace period and Auth0's reuse interval): a
    portal that timed out and retried, or sent two refreshes at once, gets tokens instead of losing
    the citizen's grant. Outside the window reuse still revokes the whole family."""

    TOKEN_ENDPOINT_AUTH_METHODS = list(AUTH_METHODS)
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> tokens.IssuedToken | None:
        token = tokens.find_refresh_token(refresh_token)
        client = self.request.client
        if token is None or not token.check_client(client):
            return None
        row = token.row
        if row.refresh_used_at is not None:
            if not tokens.retry_allowed(row):
                self._reused(row)
                return None
            token.retrying = True
        if token.is_revoked(ignore_rotation=True) or token.is_expired():
            return None
        return token

    def authenticate_user(self, refresh_token: tokens.IssuedToken) -> Citizen | None:
        """Claim the refresh token only now, after the request (scope included) was validated:
        a request refused for a bad scope leaves the token usable."""
        row = refresh_token.row
        if not refresh_token.retrying and not tokens.claim_refresh(row):
            get_session().refresh(row)
            if row.refresh_used_at is None:
                # Revoked, not used, while the claim waited: a concurrent use of a sibling (or a
                # revocation of the grant) won. Not a reuse, so the winner's chain lives on.
                raise InvalidGrantError("The refresh token is not valid.")
            if not tokens.retry_allowed(row):
                self._reused(row)  # a use long ago, a second retry, or the chain moved on
                raise InvalidGrantError("The refresh token is not valid.")
            refresh_token.retrying = True
            audit.append("refresh_token_retry", citizen_id=row.citizen_id, client_id=row.client_id,
                         grant_id=str(row.grant_id))
        citizen = refresh_token.get_user()
        if citizen is None:
            raise InvalidGrantError("The refresh token is not valid.")
        return citizen

    def issue_token(self, user: Citizen, refresh_token: tokens.IssuedToken) -> dict[str, Any]:
        token: dict[str, Any] = super().issue_token(user, refresh_token)
        kept = self.request.client.get_allowed_scope(refresh_token.get_scope())
        if "refresh_token" not in token and "offline_access" in kept.split():
            # Narrowed without offline_access: the rotated refresh token keeps the original scope
            # (RFC 6749 §6), so the portal does not lose offline access by asking for less once.
            # A portal no longer registered for offline_access gets no new refresh token.
            token["refresh_token"] = secrets.token_urlsafe(32)
        return token

    @staticmethod
    def _reused(row: Any) -> None:
        revocation.revoke_grant(row.grant_id, "refresh_token_reuse")
        audit.append("refresh_token_reuse", citizen_id=row.citizen_id, client_id=row.client_id,
                     grant_id=str(row.grant_id))

    def revoke_old_credential(self, refresh_token: tokens.IssuedToken) -> None:
        """Already marked used when it was claimed."""


class IdToken(OpenIDCode):
    """The ID token (OIDC Core §2, §3.1.3.6) with pairwise ``sub``, ``sid`` and ``at_hash``.

    The prompt parameter is handled by ``/authorize`` itself (login, step-up and consent are
    interactions), so Authlib's prompt hook is not registered.
    """

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_create_token_response", self.process_token)

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        return False

    def encode_id_token(self, token: dict[str, Any], request: Any) -> str:
        client: Client = request.client
        code: AuthorizationCode = request.authorization_code
        citizen: Citizen = request.user
        alg = client.id_token_signed_response_alg or "RS256"
        key = keys.signing_key(get_session(), alg)
        now = int(time.time())
        scopes = token["scope"].split()
        names = claimsmod.released_claims(scopes, code.get("claims_request") or {}, "id_token")
        claims: dict[str, Any] = {
            "iss": current_app.config["IDP"].issuer,
            "sub": pairwise_subject(client, str(citizen.id)),
            "aud": client.client_id, "iat": now,
            "exp": now + current_app.config["IDP"].id_token_lifetime,
            "auth_time": code.get_auth_time(), "acr": code.get_acr(), "amr": code.get_amr(),
            "sid": portal_sid(client, code["sid"]),
        }
        if code.get_nonce():
            claims["nonce"] = code.get_nonce()
        at_hash = create_half_hash(token["access_token"], alg)
        if at_hash is not None:
            claims["at_hash"] = at_hash.decode()
        claims.update(claimsmod.response_claims(get_session(), citizen, scopes,
                                                code.get("claims_request") or {}, "id_token"))
        consents.record_release(citizen.id, client, "id_token", ["sub", *names])
        return jwt.encode({"alg": alg, "kid": key.kid, "typ": "JWT"}, claims, key)
