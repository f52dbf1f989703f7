"""The relying-party registry: look-up, registration, secrets.

Secrets are stored as ``secret_digest`` (``idp.models.oidc`` says why) and shown once, when created or
rotated. ``AUTH_METHODS`` is the one list of token endpoint authentication methods SatuID supports.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from flask import current_app, request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import state
from idp.auth.mfa.factors import FACTORS
from idp.cache import Cache
from idp.db import get_engine
from idp.models import Client
from idp.models.base import secret_digest
from idp.models.oidc import LIFE_EVENTS, SECRET_METHODS
from idp.oidc.claims import SUPPORTED_SCOPES
from idp.state import ClientKeySet, Stamp

AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
#: What a private_key_jwt assertion may be signed with (advertised in discovery).
ASSERTION_ALGORITHMS = ("RS256", "PS256", "ES256")
# Seconds a private_key_jwt assertion may still have to live: an hour (the default of common client
# libraries, Authlib's among them) and a minute of clock skew. Its jti is remembered that long.
MAX_ASSERTION_LIFETIME = 3660


class ClientError(ValueError):
    """A registration that cannot be accepted (the CLI shows the message)."""


_cached: Cache[str, Client] = Cache()


def find(client_id: str | None) -> Client | None:
    """An active client by id (a disabled one is treated as unknown), from this worker's cache.

    The copy is detached from any unit of work: read it, never change it (operator commands load
    their own with ``session.get``, and their changes reach every worker through ``cache.changed``).
    """
    if not client_id or len(client_id) > 100:
        return None
    client = _cached.get(client_id, _load)
    return client if client is not None and client.active else None


def _load(client_id: str) -> Client | None:
    with Session(get_engine(), expire_on_commit=False) as own:
        return own.get(Client, client_id)


#: Single URIs a portal may register besides its redirect URIs; each is checked as ``_check_uri``.
OPTIONAL_URIS = ("backchannel_logout_uri", "initiate_login_uri", "complaint_uri", "logo_uri")


def _check_uri(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.fragment:
        raise ClientError(f"not an absolute http(s) URI without fragment: {uri}")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ClientError(f"http is only allowed for local development: {uri}")


def register(session: Session, *, name: str, redirect_uris: list[str], client_id: str | None = None,
             secret: str | None = None, **fields: Any) -> tuple[Client, str | None]:
    """Create a client; returns it and its secret in clear (None for public/private_key_jwt)."""
    if not redirect_uris:
        raise ClientError("at least one redirect URI is required")
    for uri in [*redirect_uris, *fields.get("post_logout_redirect_uris", [])]:
        _check_uri(uri)
    for uri_field in OPTIONAL_URIS:
        if fields.get(uri_field):
            _check_uri(fields[uri_field])
    check_life_events(fields.get("life_events", []))
    method = fields.get("token_endpoint_auth_method", "client_secret_basic")
    if method not in AUTH_METHODS:
        raise ClientError(f"unknown auth method {method}")
    if method == "private_key_jwt" and not (fields.get("jwks") or fields.get("jwks_uri")):
        raise ClientError("private_key_jwt needs --jwks or --jwks-uri")
    if fields.get("id_token_signed_response_alg", "RS256") not in ("RS256", "ES256"):
        raise ClientError("ID token algorithm must be RS256 or ES256")
    check_assurance(fields.get("minimum_loa", 1), fields.get("accepted_factors", []))
    scopes = list(dict.fromkeys(["openid", *fields.pop("scopes", ["openid"])]))
    unknown = [s for s in scopes if s not in SUPPORTED_SCOPES]
    if unknown:
        raise ClientError(f"unknown scopes: {' '.join(unknown)}")
    secret = (secret or secrets.token_urlsafe(32)) if method in SECRET_METHODS else None
    client = Client(client_id=client_id or secrets.token_urlsafe(16), name=name,
                    redirect_uris=list(redirect_uris), scopes=scopes,
                    secret_hash=secret_digest(secret) if secret else None, **fields)
    session.add(client)
    return client, secret


def check_life_events(events: list[str]) -> None:
    unknown = [e for e in events if e not in LIFE_EVENTS]
    if unknown:
        raise ClientError(f"unknown life events: {' '.join(unknown)} (known: {' '.join(LIFE_EVENTS)})")


#: What ``update`` may change: how the portal presents itself and where it is reached.
UPDATABLE = ("name", "description", "category", "purpose", "logo_uri", "life_events",
             "initiate_login_uri", "complaint_uri", "redirect_uris", "post_logout_redirect_uris",
             "backchannel_logout_uri")


def update(client: Client, **fields: Any) -> list[str]:
    """Change a portal's registration (fields left out stay); returns the names that changed.
    An empty string clears an optional URI."""
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise ClientError(f"cannot update: {' '.join(sorted(unknown))}")
    if "redirect_uris" in fields and not fields["redirect_uris"]:
        raise ClientError("at least one redirect URI is required")
    for uri in [*fields.get("redirect_uris", []), *fields.get("post_logout_redirect_uris", [])]:
        _check_uri(uri)
    for name in OPTIONAL_URIS:
        if fields.get(name):
            _check_uri(fields[name])
        elif name in fields:
            fields[name] = None
    check_life_events(fields.get("life_events", []))
    changed = []
    for name, value in fields.items():
        if getattr(client, name) != value:
            setattr(client, name, value)
            changed.append(name)
    return changed


def check_assurance(minimum_loa: int, accepted_factors: list[str]) -> None:
    """A portal's authentication requirements must be ones SatuID can meet."""
    if minimum_loa not in (1, 2, 3):
        raise ClientError("minimum level must be 1, 2 or 3")
    unknown = [f for f in accepted_factors if f not in FACTORS]
    if unknown:
        raise ClientError(f"unknown second factors: {' '.join(unknown)}")
    if minimum_loa == 3 and accepted_factors and "passkey" not in accepted_factors:
        raise ClientError("level 3 needs a passkey among the accepted factors")


def set_assurance(client: Client, minimum_loa: int | None = None,
                  accepted_factors: list[str] | None = None,
                  requires_in_person: bool | None = None) -> None:
    """Change what a portal requires of the citizen's authentication and identity."""
    loa = client.minimum_loa if minimum_loa is None else minimum_loa
    factors = list(client.accepted_factors) if accepted_factors is None else accepted_factors
    check_assurance(loa, factors)
    client.minimum_loa, client.accepted_factors = loa, factors
    if requires_in_person is not None:
        client.requires_in_person = requires_in_person


def rotate_secret(client: Client) -> str:
    if client.token_endpoint_auth_method not in SECRET_METHODS:
        raise ClientError("this client does not authenticate with a secret")
    secret = secrets.token_urlsafe(32)
    client.secret_hash = secret_digest(secret)
    return secret


def describe(client: Client) -> dict[str, Any]:
    """The client as JSON for operators (never the secret hash)."""
    return {
        "client_id": client.client_id, "name": client.name, "description": client.description,
        "category": client.category, "purpose": client.purpose, "logo_uri": client.logo_uri,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "sector_identifier": client.sector_identifier, "scopes": client.scopes,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "jwks_uri": client.jwks_uri, "has_jwks": bool(client.jwks),
        "backchannel_logout_uri": client.backchannel_logout_uri,
        "id_token_signed_response_alg": client.id_token_signed_response_alg,
        "minimum_loa": client.minimum_loa, "accepted_factors": client.accepted_factors,
        "requires_in_person": client.requires_in_person, "life_events": client.life_events,
        "initiate_login_uri": client.initiate_login_uri, "complaint_uri": client.complaint_uri,
        "active": client.active,
    }


def all_clients(session: Session) -> list[Client]:
    return list(session.scalars(select(Client).order_by(Client.client_id)))


class PrivateKeyJWT(JWTBearerClientAssertion):
    """``private_key_jwt`` client authentication (RFC 7523 §2.2, OIDC Core §9).

    The audience is one string: the issuer identifier, as the 2025 guidance on audience injection
    asks (OpenID Foundation advisory; draft-ietf-oauth-rfc7523bis), or the token endpoint's or this
    endpoint's URL, which libraries such as Authlib still send by default. An array naming more than
    one audience is refused, so an assertion made for another server cannot name this one too.
    Each ``jti`` is accepted once (kept in the store for the assertion's lifetime plus leeway,
    hashed with the client id).
    """

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def get_audiences(self) -> list[str]:
        issuer: str = current_app.config["IDP"].issuer
        return [issuer, issuer + "/token", issuer + request.path]

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        """RFC 7523 §3 with the algorithms SatuID advertises (joserfc's default leaves out PS256)."""
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGORITHMS))
        except JoseError as e:
            raise InvalidClientError(description="The client assertion could not be verified.") from e
        aud = token.claims.get("aud")
        if not isinstance(aud, str) and not (isinstance(aud, list) and len(aud) == 1):
            raise InvalidClientError(description="The client assertion must name one audience: "
                                                 "the issuer identifier.")
        self.verify_claims(token.claims)
        return token.claims

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        """Accept each assertion once. Its ``jti`` is remembered until the assertion expires, so an
        assertion may not live longer than that memory (RFC 7523 §3: far-future ``exp`` refused)."""
        remaining = int(claims.get("exp", 0)) - int(time.time())
        if remaining > MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description="The client assertion expires too far in the future "
                                                 "(at most one hour).")
        digest = hashlib.sha256(f"{claims['sub']}\x00{jti}".encode()).hexdigest()
        return state.client_assertions.put_if_absent(Stamp(at=int(time.time())), digest,
                                                     ttl=max(remaining, 0) + 60)

    def resolve_client_public_key(self, client: Client) -> KeySet:
        keys = client_keys(client)
        if keys is None:
            raise InvalidClientError(description="The client has no registered keys.")
        return keys


def client_keys(client: Client) -> KeySet | None:
    """A portal's public keys: registered with it, or fetched from its ``jwks_uri`` and kept five
    minutes (``state.client_key_sets``), so that requests naming the portal cannot make SatuID fetch
    its keys again and again. A portal publishes a new key before it signs with it, as SatuID does.

    None when the portal registered no keys; ``InvalidClientError`` when they cannot be fetched."""
    if client.jwks:
        return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]  # checked by joserfc
    if not client.jwks_uri:
        return None
    cached = state.client_key_sets.get(client.client_id)
    try:
        if cached is not None and cached.uri == client.jwks_uri:
            return KeySet.import_key_set({"keys": cached.keys})
        response = requests.get(client.jwks_uri, timeout=3, allow_redirects=False)
        response.raise_for_status()
        document = response.json()
        keys = KeySet.import_key_set(document)
    except (requests.RequestException, JoseError, ValueError, KeyError, TypeError) as exc:
        raise InvalidClientError(
            description="The client's keys could not be fetched from its jwks_uri.") from exc
    state.client_key_sets.put(ClientKeySet(uri=client.jwks_uri, keys=list(document["keys"])),
                              client.client_id)
    return keys
