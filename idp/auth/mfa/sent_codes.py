"""Six-digit codes sent by SMS to the citizen's verified phone: the fallback second factor.

NIST SP 800-63B §5.1.3.3 calls this a "restricted" authenticator (SIM swaps, SS7): it gives level 2,
and a portal may refuse it (``accepted_factors`` without ``sms``). Email is no channel here: a code
to the mailbox that resets the password proves nothing more than the password.

Issuing, hashing, expiry and limits are the one-time code service's (``idp.codes``); this module
knows only where a citizen's codes go and what the message says. Wrong codes also count toward the
account lockout (the step-up page records them).
"""

from __future__ import annotations

from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from idp import codes, outbox
from idp.models import Citizen

#: factor name -> the code purpose, and the outbox channel it is sent on
PURPOSES = {"sms": codes.SECOND_FACTOR_SMS}
CHANNELS = {"sms": "sms"}


class SendRefused(Exception):
    """The code was not sent (too many requests, or no verified address on that channel)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def recipient(citizen: Citizen, channel: str) -> str | None:
    if channel == "sms" and citizen.phone and citizen.phone_verified:
        return citizen.phone
    return None


def send(session: Session, citizen: Citizen, channel: str) -> None:
    """Queue a fresh code (replacing any earlier one) in the caller's unit of work."""
    to = recipient(citizen, channel)
    if channel not in PURPOSES or to is None:
        raise SendRefused("no_channel")
    try:
        code = codes.issue(PURPOSES[channel], str(citizen.id), to)
    except codes.SendRefused as e:
        raise SendRefused(e.reason) from e
    with force_locale(citizen.locale):
        outbox.send(
            session, channel=CHANNELS[channel], recipient=to, citizen_id=citizen.id,
            subject=_("SatuID: your login code"),
            body=_("Your SatuID login code is %(code)s. It is valid for 5 minutes. Never share it: "
                   "SatuID staff will never ask for it.", code=code),
        )


def verify(citizen: Citizen, channel: str, typed: str) -> bool:
    """Accept the code once, and only at the address it was sent to."""
    to = recipient(citizen, channel)
    if channel not in PURPOSES or to is None:
        return False
    return codes.check(PURPOSES[channel], str(citizen.id), typed, recipient=to).accepted
