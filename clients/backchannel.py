"""Receiving SatuID's back-channel logout token (OpenID Connect Back-Channel Logout 1.0).

The token is checked with joserfc, the JOSE library Authlib's client uses for ID tokens, against the
provider's published keys (from discovery); nothing here is specific to SatuID.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
LEEWAY = 120  # seconds of clock skew tolerated on iat/exp


class InvalidLogoutToken(ValueError):
    """The logout token must be refused with 400 (§2.8); the message is the error_description."""


def verify_logout_token(
    token: str,
    *,
    issuer: str,
    client_id: str,
    jwks: Callable[[bool], dict[str, Any]],
    algorithms: list[str] | None,
) -> dict[str, Any]:
    """Validate a logout token as §2.6 says and return its claims.

    ``jwks(force)`` returns the provider's JWK set; it is fetched again once when the token is signed
    with a key id we do not know yet (the provider has rotated its keys).
    """
    # §2.6 step 3 and OIDC Core §3.1.3.7: the alg must be one the provider signs ID tokens with; never none.
    registry = JWSRegistry(algorithms=[a for a in (algorithms or ["RS256"]) if a != "none"],
                           strict_check_header=False)
    try:
        try:
            decoded = jwt.decode(token, KeySet.import_key_set(jwks(False)), registry=registry)
        except InvalidKeyIdError:
            decoded = jwt.decode(token, KeySet.import_key_set(jwks(True)), registry=registry)
    except (JoseError, ValueError) as e:
        raise InvalidLogoutToken(f"logout token signature or format not valid ({e})") from e

    typ = decoded.header.get("typ")
    if typ is not None and typ.lower() not in ("logout+jwt", "application/logout+jwt", "jwt"):
        raise InvalidLogoutToken("logout token has an unexpected typ")  # §2.4: explicit typing

    claims = decoded.claims
    checks = jwt.JWTClaimsRegistry(
        leeway=LEEWAY,
        iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": client_id},
        iat={"essential": True},
        exp={"essential": True},
        jti={"essential": True},
    )
    try:
        checks.validate(claims)
    except JoseError as e:
        raise InvalidLogoutToken(f"logout token claims not valid ({e})") from e

    if not (isinstance(claims.get("sid"), str) or isinstance(claims.get("sub"), str)):
        raise InvalidLogoutToken("logout token names neither sid nor sub")  # §2.6 step 4
    events = claims.get("events")
    if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
        raise InvalidLogoutToken("logout token lacks the back-channel logout event")  # §2.6 step 5
    if "nonce" in claims:
        raise InvalidLogoutToken("logout token must not contain a nonce")  # §2.6 step 6
    return claims
