"""Request objects (JAR, RFC 9101; OIDC Core §6.1): authorization parameters in a JWT the portal signed.

A request object signed with a key the portal registered (its JWKS or ``jwks_uri``) is verified and
its parameters win over those sent beside it (RFC 9101 §5: only the object's are authoritative; the
outer ``client_id`` must match). An unsigned object (``alg: none``), or one from a portal that
registered no keys, is refused with ``request_not_supported`` before anything else is looked at.
Objects by reference (``request_uri`` other than PAR's) are not fetched: ``request_uri_not_supported``.

``/authorize`` resolves the object into plain parameters before Authlib runs, because SatuID keeps
the parameters of a pending authorization server-side while the citizen is at a page.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import current_app
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from idp.models import Client
from idp.oidc.clients import ASSERTION_ALGORITHMS, PrivateKeyJWT

ALGORITHMS = ASSERTION_ALGORITHMS
MAX_LENGTH = 16_384


class Refused(Exception):
    """The request object cannot be used; ``error`` is the OAuth error code to answer with."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


def _client_keys(client: Client) -> KeySet | None:
    if not client.jwks and not client.jwks_uri:
        return None
    try:
        keys: KeySet = PrivateKeyJWT().resolve_client_public_key(client)
    except Exception as e:  # unreachable or malformed jwks_uri: Authlib raises InvalidClientError
        raise Refused("invalid_request_object", "The client's keys could not be read.") from e
    return keys


def _as_parameter(value: Any) -> str:
    """A claim of the object as the string an authorization parameter would be (OIDC Core §6.1:
    ``claims`` is a JSON object, ``max_age`` a number)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def resolve(params: dict[str, str], client: Client | None) -> dict[str, str]:
    """The authorization parameters a ``request`` object carries, merged over the outer ones."""
    raw = params["request"]
    if client is None:
        raise Refused("invalid_request", "The client is not registered.")
    try:
        header = jws.extract_compact(raw.encode()).headers() if len(raw) <= MAX_LENGTH else None
    except (JoseError, ValueError):
        header = None
    keys = _client_keys(client)
    if header is None or keys is None or header.get("alg") not in ALGORITHMS:
        raise Refused("request_not_supported",
                      "Only request objects signed with the client's registered keys are supported.")
    try:
        claims = jwt.decode(raw, keys, algorithms=list(ALGORITHMS)).claims
    except (JoseError, ValueError) as e:
        raise Refused("invalid_request_object", "The request object's signature is not valid.") from e
    issuer = current_app.config["IDP"].issuer
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("client_id") != client.client_id or claims.get("iss", client.client_id) != \
            client.client_id:
        raise Refused("invalid_request_object", "The request object names another client.")
    if "aud" in claims and issuer not in audiences:
        raise Refused("invalid_request_object", "The request object is meant for another server.")
    exp = claims.get("exp")
    if exp is not None and (not isinstance(exp, int | float) or exp < time.time()):
        raise Refused("invalid_request_object", "The request object has expired.")
    if "request" in claims or "request_uri" in claims:
        raise Refused("invalid_request_object", "A request object may not hold another one.")
    registered = {"iss", "aud", "exp", "iat", "nbf", "jti"}
    inner = {name: _as_parameter(value) for name, value in claims.items() if name not in registered}
    outer = {name: value for name, value in params.items() if name != "request"}
    return {**outer, **inner}
