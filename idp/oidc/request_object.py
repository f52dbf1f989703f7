"""Request objects (JAR, RFC 9101; OIDC Core §6.1): authorization parameters in a JWT the portal signed.

A request object signed with a key the portal registered (its JWKS or ``jwks_uri``) is verified, and
only its parameters are used (RFC 9101 §5), so nothing unsigned can be slipped in beside it; the
outer ``client_id`` must match. It must name this issuer as ``aud`` and the portal as ``iss``, expire
within the hour (``exp``), not be early (``nbf``), and is accepted once (by ``jti`` when it has one,
else by its whole value). An unsigned object (``alg: none``), or one from a portal that
registered no keys, is refused with ``request_not_supported`` before anything else is looked at.
Objects by reference (``request_uri`` other than PAR's) are not fetched: ``request_uri_not_supported``.

``/authorize`` resolves the object into plain parameters before Authlib runs, because SatuID keeps
the parameters of a pending authorization server-side while the citizen is at a page.
"""

from __future__ import annotations

import json
import time
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from flask import current_app
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from idp import state
from idp.models import Client
from idp.models.base import secret_digest
from idp.oidc.clients import ASSERTION_ALGORITHMS, client_keys
from idp.state import Stamp

ALGORITHMS = ASSERTION_ALGORITHMS
MAX_LENGTH = 16_384
MAX_LIFETIME = 3600  # seconds an object may still have to live; also how long its jti is kept
LEEWAY = 60


class Refused(Exception):
    """The request object cannot be used; ``error`` is the OAuth error code to answer with."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


def _client_keys(client: Client) -> KeySet | None:
    try:
        return client_keys(client)
    except InvalidClientError as e:  # an unreachable or malformed jwks_uri
        raise Refused("invalid_request_object", "The client's keys could not be read.") from e


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
    # The header first: an unsigned or unparsable object never makes SatuID fetch a jwks_uri.
    if header is None or header.get("alg") not in ALGORITHMS:
        raise Refused("request_not_supported",
                      "Only request objects signed with the client's registered keys are supported.")
    keys = _client_keys(client)
    if keys is None:
        raise Refused("request_not_supported",
                      "Only request objects signed with the client's registered keys are supported.")
    try:
        claims = jwt.decode(raw, keys, algorithms=list(ALGORITHMS)).claims
    except (JoseError, ValueError) as e:
        raise Refused("invalid_request_object", "The request object's signature is not valid.") from e
    _check_claims(claims, client)
    used = claims.get("jti") if isinstance(claims.get("jti"), str) else secret_digest(raw)
    if not state.request_objects.put_if_absent(
            Stamp(at=int(time.time())), secret_digest(f"{client.client_id}\x00{used}"),
            ttl=MAX_LIFETIME + LEEWAY):
        raise Refused("invalid_request_object", "The request object was used before.")
    registered = {"iss", "aud", "exp", "iat", "nbf", "jti"}
    return {name: _as_parameter(value) for name, value in claims.items() if name not in registered}


def _check_claims(claims: dict[str, Any], client: Client) -> None:
    issuer = current_app.config["IDP"].issuer
    now = time.time()
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("client_id") != client.client_id or claims.get("iss") != client.client_id:
        raise Refused("invalid_request_object", "The request object must name this client as "
                                                "client_id and iss.")
    if issuer not in audiences:
        raise Refused("invalid_request_object", "The request object must name this issuer as aud.")
    exp, nbf = claims.get("exp"), claims.get("nbf", 0)
    if not isinstance(exp, int | float) or not now - LEEWAY <= exp <= now + MAX_LIFETIME + LEEWAY:
        raise Refused("invalid_request_object", "The request object must expire within the hour.")
    if not isinstance(nbf, int | float) or nbf > now + LEEWAY:
        raise Refused("invalid_request_object", "The request object is not valid yet.")
    if "request" in claims or "request_uri" in claims:
        raise Refused("invalid_request_object", "A request object may not hold another one.")
