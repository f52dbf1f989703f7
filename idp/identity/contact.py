"""A citizen's contact channel: email addresses and Indonesian mobile numbers, normalised.

Phone numbers are stored in E.164 (ITU-T E.164) with Indonesia's country code +62, whatever way the
citizen typed them (0812..., 62812..., +62 812-...).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

from flask import current_app, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy.orm import Session

from idp import codes, outbox
from idp.models import Citizen

# The local part is a dot-atom of RFC 5322's atext (no quoted strings, comments, commas or encoded
# words): an address that mail software could read as two, or as an "=?utf-8?q?...?=" word that
# decodes into another address, never becomes a verified contact.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/^_`{|}~-]"
_EMAIL = re.compile(rf"^(?=.{{1,64}}@){_ATEXT}+(?:\.{_ATEXT}+)*@(?=.{{4,253}}$)"
                    r"([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_PHONE_NOISE = re.compile(r"[\s().\-\u00a0]")


class InvalidContact(ValueError):
    """Not a usable email address or mobile number; ``reason`` is ``email`` or ``phone``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def normalise_email(raw: str) -> str:
    """Trim and lower-case the domain (RFC 5321 §2.4: only the local part may be case-sensitive)."""
    value = raw.strip()
    local, _, domain = value.rpartition("@")
    value = f"{local}@{domain.lower()}"
    if not _EMAIL.match(value) or "=?" in value:
        raise InvalidContact("email")
    return value


def normalise_phone(raw: str) -> str:
    """An Indonesian mobile number as +628...: 9 to 12 digits after the country code."""
    digits = _PHONE_NOISE.sub("", raw.strip())
    for prefix in ("+62", "0062", "62", "0"):
        if digits.startswith(prefix):
            digits = digits[len(prefix):]
            break
    if not digits.isascii() or not digits.isdigit() or not digits.startswith("8") \
            or not 9 <= len(digits) <= 12:
        raise InvalidContact("phone")
    return "+62" + digits



def mask(address: str | None) -> str:
    """Enough of an address for its owner to recognise it, and not for anyone else to use it."""
    if not address:
        return ""
    if "@" in address:
        name, domain = address.split("@", 1)
        return name[:2] + "***@" + domain
    return "*" * max(0, len(address) - 3) + address[-3:]


@dataclass(frozen=True)
class Replaced:
    """What the "not me" link sent to a replaced contact stands for."""

    citizen_id: str
    channel: str   # "email" or "sms"
    previous: str
    new: str

    def dump(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def load(cls, raw: str) -> Replaced | None:
        try:
            return cls(**json.loads(raw))
        except (ValueError, TypeError):
            return None


def tell_previous(session: Session, citizen: Citizen, channel: str, previous: str | None,
                  new: str) -> None:
    """Tell the address or number being replaced, with a link that reports "not me": whoever
    replaced it may have taken the account, and the old contact is the owner's way back."""
    if not previous or previous == new:
        return
    token = codes.issue_link(codes.CONTACT_NOT_ME, Replaced(str(citizen.id), channel, previous, new).dump())
    link = current_app.config["IDP"].issuer + url_for("cases.contact_not_me", token=token)
    with force_locale(citizen.locale):
        what = _("email address") if channel == "email" else _("phone number")
        outbox.send(session, channel=channel, recipient=previous, citizen_id=citizen.id,
                    subject=_("SatuID: your %(what)s was changed", what=what),
                    body=_("The %(what)s of your SatuID account was changed from this one to "
                           "%(new)s. If this was not you, report it with this link, and we will log "
                           "out every device and the helpdesk will contact you here: %(link)s",
                           what=what, new=mask(new), link=link))
