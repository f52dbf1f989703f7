"""The OpenID Connect parameters of an authorization request that Authlib leaves to us.

Checked in one place for ``/authorize`` and ``/par``, so a pushed request is refused at the push
(RFC 9126 §2.3) for the same reasons a front-channel one would be refused at ``/authorize``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from idp.oidc import claims as claimsmod

PROMPTS = {"none", "login", "consent", "select_account"}
MAX_AGE_DIGITS = 10  # about 300 years of seconds; anything longer is not a duration


class AuthorizationFailure(Exception):
    """An error to send back to the portal's (already validated) redirect_uri."""

    def __init__(self, error: str, description: str | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.description = description


@dataclass
class RequestOptions:
    prompts: set[str] = field(default_factory=set)
    max_age: int | None = None
    claims: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def wanted_sub(self) -> str | None:
        """A ``sub`` asked for by value (OIDC Core §5.5.1): only that citizen may be answered."""
        value = self.claims.get("id_token", {}).get("sub", {}).get("value")
        return value if isinstance(value, str) else None


def check(params: dict[str, str]) -> RequestOptions:
    """Validate ``request``, ``response_mode``, ``prompt``, ``max_age`` and ``claims``."""
    if "request" in params:
        raise AuthorizationFailure("request_not_supported")
    mode = params.get("response_mode")
    if mode is not None and mode != "query":
        raise AuthorizationFailure("invalid_request", "Only response_mode=query is supported.")
    prompts = set(params.get("prompt", "").split())
    if not prompts <= PROMPTS or ("none" in prompts and len(prompts) > 1):
        raise AuthorizationFailure("invalid_request", "Invalid 'prompt' parameter.")
    raw_max_age = params.get("max_age")
    max_age = None
    if raw_max_age is not None:
        # isascii: str.isdigit accepts superscripts and other digits int() cannot read.
        if not (raw_max_age.isascii() and raw_max_age.isdigit()) or len(raw_max_age) > MAX_AGE_DIGITS:
            raise AuthorizationFailure("invalid_request", "Invalid 'max_age' parameter.")
        max_age = int(raw_max_age)
    try:
        claims_request = claimsmod.parse_claims_request(params.get("claims"))
    except claimsmod.InvalidClaimsRequest as e:
        raise AuthorizationFailure("invalid_request", str(e)) from e
    return RequestOptions(prompts=prompts, max_age=max_age, claims=claims_request)
