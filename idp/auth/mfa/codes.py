"""Six-digit codes sent to the citizen's verified phone or email: the fallback second factor.

A code lives five minutes, is accepted once (``store.take``), and only its HMAC is stored. Sending
is rate-limited per citizen and per network address, since every message costs money and can be
used to pester a citizen. Wrong codes count toward the account lockout (the caller records them).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import current_app, request
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from idp import outbox
from idp.models import Citizen
from idp.store import get_store

TTL = 5 * 60
SENDS_PER_HOUR = 5
SENDS_PER_IP_PER_HOUR = 20
CHANNELS = {"sms": "sms", "email": "email"}  # factor name -> outbox channel


class SendRefused(Exception):
    """The code was not sent (too many requests, or no verified address on that channel)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _mac(citizen: Citizen, channel: str, code: str) -> str:
    key = current_app.config["IDP"].secret_key.encode()
    return hmac.new(key, f"mfa-code:{citizen.id}:{channel}:{code}".encode(), hashlib.sha256).hexdigest()


def _key(citizen: Citizen, channel: str) -> str:
    return f"mfa-code:{citizen.id}:{channel}"


def recipient(citizen: Citizen, channel: str) -> str | None:
    if channel == "sms" and citizen.phone and citizen.phone_verified:
        return citizen.phone
    if channel == "email" and citizen.email and citizen.email_verified:
        return citizen.email
    return None


def send(session: Session, citizen: Citizen, channel: str) -> None:
    """Queue a fresh code (replacing any earlier one) in the caller's transaction."""
    to = recipient(citizen, channel)
    if channel not in CHANNELS or to is None:
        raise SendRefused("no_channel")
    store = get_store()
    if store.incr(f"mfa-code-sent:{citizen.id}", 3600) > SENDS_PER_HOUR:
        raise SendRefused("rate_limited")
    if store.incr(f"mfa-code-ip:{request.remote_addr}", 3600) > SENDS_PER_IP_PER_HOUR:
        raise SendRefused("rate_limited")
    code = f"{secrets.randbelow(10**6):06d}"
    store.put(_key(citizen, channel), {"mac": _mac(citizen, channel, code)}, TTL)
    with force_locale(citizen.locale):
        outbox.send(
            session, channel=CHANNELS[channel], recipient=to, citizen_id=citizen.id,
            subject=_("SatuID: your login code"),
            body=_("Your SatuID login code is %(code)s. It is valid for 5 minutes. Never share it: "
                   "SatuID staff will never ask for it.", code=code),
        )


def verify(citizen: Citizen, channel: str, code: str) -> bool:
    """Accept the code once; a wrong code leaves the stored one in place for a retyped attempt."""
    code = "".join(ch for ch in code if ch.isdigit())
    store = get_store()
    pending = store.get(_key(citizen, channel))
    if pending is None or len(code) != 6:
        return False
    if not hmac.compare_digest(pending["mac"], _mac(citizen, channel, code)):
        return False
    # Take it atomically: of two simultaneous submissions only one gets the code.
    return store.take(_key(citizen, channel)) == pending
