"""Levels of assurance (``acr``) and authentication methods (``amr``, RFC 8176).

``acr`` says how the citizen authenticated, nothing else (NIST SP 800-63B §4):

=====  ===========================================================  ===============================
level  authentication                                               ``amr``
=====  ===========================================================  ===============================
1      password                                                     ``pwd``
2      password and a second factor that is not email: an           ``otp``, ``sms``, ``kba``;
       authenticator app, an SMS code to the verified phone (a      with ``mfa``
       "restricted" authenticator, §5.1.3.3, which a portal may
       refuse), a recovery code, or a passkey
3      password and a phishing-resistant authenticator: a passkey   ``hwk``/``swk``, ``user``,
       with user verification                                       ``mfa``
=====  ===========================================================  ===============================

An email code is never a second factor (``without_email_code`` reads what the previous release
recorded). How well the identity itself was checked is not a level: it is released as
``verified_claims``.
"""

from __future__ import annotations

ACR_PREFIX = "urn:satuid:loa:"
ACR_VALUES = {1: "urn:satuid:loa:1", 2: "urn:satuid:loa:2", 3: "urn:satuid:loa:3"}
FACTOR_AMR = {"totp": "otp", "sms": "sms", "recovery": "kba"}
PASSKEY_AMR = ("hwk", "swk")
#: RFC 8176 "mca": what the previous release recorded for an email code, no longer a factor.
EMAIL_CODE_AMR = "mca"


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


def level_for(factor: str, user_verified: bool = False) -> int:
    """The level of assurance a session reaches with password plus this factor."""
    if factor == "passkey" and user_verified:
        return 3
    return 2


def factor_of_amr(amr: str) -> str | None:
    if amr in PASSKEY_AMR:
        return "passkey"
    return next((f for f, value in FACTOR_AMR.items() if value == amr), None)


def level_reached(amr: list[str], allowed: list[str] | None = None) -> int:
    """The level a session with these ``amr`` values reaches counting only the ``allowed`` factors.

    A portal that refuses SMS codes must not be given level 2 on the strength of an SMS code proved
    earlier for another portal.
    """
    proved = {f for value in amr if (f := factor_of_amr(value)) is not None}
    levels = [level_for(f, user_verified="user" in amr) for f in proved if not allowed or f in allowed]
    return max([1, *levels])


def without_email_code(amr: list[str], acr: int) -> tuple[list[str], int]:
    """``amr`` and level of an authentication recorded when an email code counted as a second
    factor (``mca``): the code is dropped, and the level is what the remaining methods reach."""
    if EMAIL_CODE_AMR not in amr:
        return amr, acr
    kept = [m for m in amr if m != EMAIL_CODE_AMR]
    level = min(acr, level_reached(kept))
    if level < 2:
        kept = [m for m in kept if m != "mfa"]
    return kept, level
