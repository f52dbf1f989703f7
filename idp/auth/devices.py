"""Device cookies (OWASP, "Slow down online guessing attacks with device cookies").

A browser where a citizen logged in successfully keeps a cookie bound to that NIK: a random id and an
HMAC over it and the NIK's digest. Login attempts that present it are throttled on their own counter
(per NIK and device), so a stranger who knows a NIK and locks it with wrong passwords locks out only
browsers the owner never used, not the owner's own phone or laptop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import current_app, request
from werkzeug.wrappers import Response

from idp import state

LIFETIME = 180 * 24 * 3600  # a browser stays known for half a year after its last login


def cookie_name() -> str:
    return "__Host-satuid_device" if current_app.config["IDP"].secure_cookies else "satuid_device"


def _mac(device: str, nik: str) -> str:
    key = current_app.config["IDP"].secret_key.encode()
    return hmac.new(key, f"device:{device}:{state.digest(nik)}".encode(), hashlib.sha256).hexdigest()


def known_device(nik: str) -> str | None:
    """The id of this browser when it carries a valid device cookie for ``nik``; else None."""
    raw = request.cookies.get(cookie_name(), "")
    device, _, mac = raw.partition(".")
    if not device or len(raw) > 200 or not raw.isascii() \
            or not hmac.compare_digest(mac.encode(), _mac(device, nik).encode()):
        return None
    return device


def remember(response: Response, nik: str) -> None:
    """After a successful login: this browser is now known for this NIK."""
    device = known_device(nik) or secrets.token_urlsafe(16)
    secure = current_app.config["IDP"].secure_cookies
    response.set_cookie(cookie_name(), f"{device}.{_mac(device, nik)}", max_age=LIFETIME, path="/",
                        secure=secure, httponly=True, samesite="Lax")
