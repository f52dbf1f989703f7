"""The current password, asked again before a change that would let someone keep the account
(password, email, phone) or take its data (download, closing)."""

from __future__ import annotations

from flask_babel import gettext as _

from idp import audit
from idp.auth import devices, lockout
from idp.identity import passwords
from idp.models import Citizen


def check_password(citizen: Citizen, typed: str) -> str | None:
    """The current password, counted like a login attempt (the same lockout): None when right,
    else the message to show."""
    with passwords.slot_held():  # busy: a 503 before the attempt is counted
        attempt = lockout.begin(citizen.nik, devices.known_device(citizen.nik))
        if attempt.blocked:
            return str(_("Too many wrong passwords. Please wait %(seconds)d seconds.",
                         seconds=max(attempt.throttle.wait_for, attempt.throttle.locked_for)))
        right = passwords.verify_password(citizen.password_hash, typed)
    if not right:
        attempt.failed()
        audit.append("password_check_failed", actor=f"citizen:{citizen.id}", citizen_id=citizen.id)
        return str(_("This is not your current password."))
    attempt.succeeded()
    return None
