"""A citizen's contact channel: email addresses and Indonesian mobile numbers, normalised.

Phone numbers are stored in E.164 (ITU-T E.164) with Indonesia's country code +62, whatever way the
citizen typed them (0812..., 62812..., +62 812-...).
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"^[^@\s]{1,64}@(?=.{4,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
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
    if not _EMAIL.match(value):
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
