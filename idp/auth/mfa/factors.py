"""Which second factors a citizen can use, strongest first, and what each one proves.

Mapping to RFC 8176 ``amr`` values (§2), every second factor also adds ``mfa``:

==========  =====================  ==============================================================
factor      amr                    why
==========  =====================  ==============================================================
passkey     ``hwk`` or ``swk``,    proof of possession of a key; ``hwk`` when the credential is
            ``user``               bound to one authenticator, ``swk`` when it is synced between
                                   devices (WebAuthn backup state). User verification is required,
                                   and which gesture (PIN, fingerprint) is not knowable: ``user``.
totp        ``otp``                a one-time password from an authenticator app.
sms         ``sms``                a code sent by SMS to the registered, verified number.
email       ``mca``                a code over a second channel (email) besides the browser.
recovery    ``kba``                a pre-registered secret the citizen keeps on paper; distinct from
                                   ``otp`` so a portal that accepts only an authenticator can tell.
==========  =====================  ==============================================================

Levels (``idp.auth.loa``) say how the citizen authenticated and nothing else (NIST SP 800-63B): a
passkey with user verification, phishing-resistant, is level 3; every other second factor is level
2. Whether the identity was once checked in person is a fact about the identity, released as
``verified_claims`` (``idp.identity.verification``); no authenticator inherits a level from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from idp.models import Citizen
from idp.models.mfa import Passkey, RecoveryCode, TotpAuthenticator

#: Strongest first (the order the step-up page offers them in).
FACTORS = ("passkey", "totp", "sms", "email", "recovery")
FACTOR_AMR = {"totp": "otp", "sms": "sms", "email": "mca", "recovery": "kba"}
PASSKEY_AMR = ("hwk", "swk")
#: A second factor proved this recently counts as fresh for changing factors (removal, new factor).
FRESH_SECONDS = 10 * 60


@dataclass(frozen=True)
class Enrolment:
    """What a citizen has set up."""

    totp: bool
    passkeys: int
    recovery_codes_left: int
    email: bool
    phone: bool

    @property
    def has_authenticator(self) -> bool:
        """A factor the citizen added on purpose (recovery codes and contact channels do not count)."""
        return self.totp or self.passkeys > 0


def enrolment(session: Session, citizen: Citizen) -> Enrolment:
    totp = session.scalar(select(TotpAuthenticator.confirmed_at).where(
        TotpAuthenticator.citizen_id == citizen.id)) is not None
    passkeys = session.scalar(select(func.count()).select_from(Passkey).where(
        Passkey.citizen_id == citizen.id)) or 0
    codes = session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.citizen_id == citizen.id, RecoveryCode.used_at.is_(None))) or 0
    return Enrolment(totp=totp, passkeys=passkeys, recovery_codes_left=codes,
                     email=bool(citizen.email and citizen.email_verified),
                     phone=bool(citizen.phone and citizen.phone_verified))


def level_for(citizen: Citizen, factor: str, user_verified: bool = False) -> int:
    """The level of assurance a session reaches with password plus this factor."""
    if factor == "passkey" and user_verified:
        return 3
    return 2


def amr_for(factor: str, device_type: str = "single_device") -> list[str]:
    if factor == "passkey":
        return ["hwk" if device_type == "single_device" else "swk", "user", "mfa"]
    return [FACTOR_AMR[factor], "mfa"]


def usable(session: Session, citizen: Citizen, required_level: int = 2,
           allowed: list[str] | None = None) -> list[str]:
    """The factors that can bring this citizen to ``required_level``, strongest first.

    ``allowed`` is the portal's restriction (empty or None: any factor).
    """
    e = enrolment(session, citizen)
    # A code to the verified phone or email is the fallback for citizens without an authenticator.
    have = {"passkey": e.passkeys > 0, "totp": e.totp, "sms": e.phone, "email": e.email,
            "recovery": e.recovery_codes_left > 0}
    return [f for f in FACTORS
            if have[f] and (not allowed or f in allowed)
            and level_for(citizen, f, user_verified=True) >= required_level]


def factor_of_amr(amr: str) -> str | None:
    if amr in PASSKEY_AMR:
        return "passkey"
    return next((f for f, value in FACTOR_AMR.items() if value == amr), None)


def level_reached(citizen: Citizen, amr: list[str], allowed: list[str] | None = None) -> int:
    """The level a session with these ``amr`` values reaches counting only the ``allowed`` factors.

    A portal that accepts only an authenticator for level 2 must not be given level 2 on the
    strength of an email code proved earlier for another portal.
    """
    proved = {f for value in amr if (f := factor_of_amr(value)) is not None}
    levels = [level_for(citizen, f, user_verified="user" in amr)
              for f in proved if not allowed or f in allowed]
    return max([1, *levels])


def last_second_factor(factor_times: dict[str, int], allowed: list[str] | None = None) -> int | None:
    """When the session last proved a second factor (of the allowed kinds), or None."""
    times = [t for amr, t in factor_times.items()
             if (f := factor_of_amr(amr)) is not None and (not allowed or f in allowed)]
    return max(times) if times else None


def second_factor_fresh(factor_times: dict[str, int], max_age: int = FRESH_SECONDS,
                        allowed: list[str] | None = None) -> bool:
    """Whether a second factor was proved within ``max_age`` seconds (e.g. the request's max_age)."""
    last = last_second_factor(factor_times, allowed)
    return last is not None and time.time() - last <= max_age
