"""Which second factors a citizen can use, strongest first, and what each one proves.

Levels (``idp.auth.loa``) say how the citizen authenticated and nothing else (NIST SP 800-63B
§4): every factor below adds ``mfa`` to the RFC 8176 ``amr`` (§2) and brings the session to level 2,
a passkey with user verification to level 3.

==========  =====================  =====  ========================================================
factor      amr                    level  why
==========  =====================  =====  ========================================================
passkey     ``hwk`` or ``swk``,    3      proof of possession of a key, phishing-resistant;
            ``user``                      ``hwk`` when bound to one authenticator, ``swk`` when
                                          synced (WebAuthn backup state). User verification is
                                          required; which gesture (PIN, fingerprint) is not
                                          knowable: ``user``.
totp        ``otp``                2      a one-time password from an authenticator app.
sms         ``sms``                2      a code by SMS to the verified number: a "restricted"
                                          authenticator (SP 800-63B §5.1.3.3), so a portal may
                                          refuse it (``accepted_factors`` without ``sms``).
recovery    ``kba``                2      a pre-registered secret the citizen keeps on paper;
                                          distinct from ``otp`` so a portal that accepts only an
                                          authenticator can tell.
==========  =====================  =====  ========================================================

A code sent by email is not a second factor: whoever knows the password may well read the mailbox
it resets. Email codes verify addresses and reset passwords, nothing else. Sessions of the previous
release that counted one (``mca``) lose it when read (``without_email_code``).

A factor added with no usable second factor proved behind it waits (``idp.auth.mfa.waiting``)
before it counts; until then it is not usable here. Whether the identity was once checked in
person is a fact about the identity, released as ``verified_claims``
(``idp.identity.verification``); no authenticator inherits a level from it.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from idp.auth.loa import FACTOR_AMR, factor_of_amr, level_for
from idp.auth.mfa import waiting
from idp.models import Citizen
from idp.models.mfa import Passkey, RecoveryCode, TotpAuthenticator

#: Strongest first (the order the step-up page offers them in).
FACTORS = ("passkey", "totp", "sms", "recovery")
#: A second factor proved this recently counts as fresh for changing factors (removal, new factor).
FRESH_SECONDS = 10 * 60


@dataclass(frozen=True)
class Enrolment:
    """What a citizen has set up, and which of it is still in its waiting period."""

    totp: bool
    passkeys: int
    recovery_codes_left: int
    email: bool
    phone: bool
    #: "totp", "sms" or "passkey:<id>" -> when it becomes usable (``idp.auth.mfa.waiting``)
    waiting: dict[str, dt.datetime] = field(default_factory=dict)

    @property
    def totp_usable(self) -> bool:
        return self.totp and "totp" not in self.waiting

    @property
    def passkeys_usable(self) -> int:
        return self.passkeys - sum(1 for key in self.waiting if key.startswith("passkey:"))

    @property
    def phone_usable(self) -> bool:
        return self.phone and "sms" not in self.waiting

    @property
    def has_authenticator(self) -> bool:
        """A usable factor the citizen added on purpose (recovery codes do not count)."""
        return self.totp_usable or self.passkeys_usable > 0

    def usable(self) -> dict[str, bool]:
        """Each factor: can it be used now? Recovery codes back up another factor and count only
        while one is usable, so codes made when an email code sufficed never stand alone."""
        backed = self.has_authenticator or self.phone_usable
        return {"passkey": self.passkeys_usable > 0, "totp": self.totp_usable,
                "sms": self.phone_usable, "recovery": backed and self.recovery_codes_left > 0}


def enrolment(session: Session, citizen: Citizen) -> Enrolment:
    totp = session.scalar(select(TotpAuthenticator.confirmed_at).where(
        TotpAuthenticator.citizen_id == citizen.id)) is not None
    passkey_ids = {str(pid) for pid in session.scalars(select(Passkey.id).where(
        Passkey.citizen_id == citizen.id))}
    codes = session.scalar(select(func.count()).select_from(RecoveryCode).where(
        RecoveryCode.citizen_id == citizen.id, RecoveryCode.used_at.is_(None))) or 0
    waits = {}
    for row in waiting.active(session, citizen.id):
        key = f"passkey:{row.factor_ref}" if row.factor == "passkey" else row.factor
        if row.factor != "passkey" or row.factor_ref in passkey_ids:
            waits[key] = row.usable_from
    return Enrolment(totp=totp, passkeys=len(passkey_ids), recovery_codes_left=codes,
                     email=bool(citizen.email and citizen.email_verified),
                     phone=bool(citizen.phone and citizen.phone_verified), waiting=waits)


def usable_passkeys(session: Session, citizen: Citizen) -> list[Passkey]:
    """The citizen's passkeys that are past their waiting period (or never had one)."""
    waits = {row.factor_ref for row in waiting.active(session, citizen.id) if row.factor == "passkey"}
    return [p for p in session.scalars(select(Passkey).where(Passkey.citizen_id == citizen.id)
                                       .order_by(Passkey.created_at)) if str(p.id) not in waits]


def amr_for(factor: str, device_type: str = "single_device") -> list[str]:
    if factor == "passkey":
        return ["hwk" if device_type == "single_device" else "swk", "user", "mfa"]
    return [FACTOR_AMR[factor], "mfa"]


def usable(session: Session, citizen: Citizen, required_level: int = 2,
           allowed: list[str] | None = None) -> list[str]:
    """The factors that can bring this citizen to ``required_level``, strongest first.

    ``allowed`` is the portal's restriction (empty or None: any factor).
    """
    have = enrolment(session, citizen).usable()
    return [f for f in FACTORS
            if have[f] and (not allowed or f in allowed)
            and level_for(f, user_verified=True) >= required_level]


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
