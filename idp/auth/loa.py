"""Levels of assurance (``acr``) and authentication methods (``amr``, RFC 8176).

Level 1: password. Level 2: password and a second factor (TOTP, a code to the verified phone or
email, a recovery code). Level 3: a phishing-resistant passkey with user verification. How well the
identity itself was checked is not a level: it is released as ``verified_claims``.
"""

from __future__ import annotations

ACR_PREFIX = "urn:satuid:loa:"
ACR_VALUES = {1: "urn:satuid:loa:1", 2: "urn:satuid:loa:2", 3: "urn:satuid:loa:3"}


def acr_value(level: int) -> str:
    return ACR_VALUES[level]


def level_of(acr: str) -> int | None:
    """The level an ``acr`` value names, or None for a value SatuID does not know."""
    for level, value in ACR_VALUES.items():
        if acr == value:
            return level
    return None


def required_level(acr_values: str | None, essential: list[str] | None = None,
                   minimum: int = 1) -> int | None:
    """The lowest level satisfying the request, or None when no requested value is known.

    ``acr_values`` is space-separated in order of preference (OIDC Core §3.1.2.1); any listed level
    satisfies the portal, so the weakest known one is what we must reach. A client's registered
    minimum always applies.
    """
    requested = (essential or []) + (acr_values or "").split()
    if not requested:
        return minimum
    levels = [lvl for value in requested if (lvl := level_of(value)) is not None]
    if not levels:
        return None
    return max(min(levels), minimum)
