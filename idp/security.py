"""CSRF protection for every form, and the security headers on every response."""

from __future__ import annotations

import re

from flask import Flask, Response, abort, request
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()

# No 'unsafe-inline': pages need no script except the WebAuthn helper served from /static.
# form-action is left out on purpose: browsers apply it to the redirect after a consent POST, which
# goes to the portal's registered redirect_uri.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


# C0 controls other than tab, line feed and carriage return, and DEL: no form or parameter needs
# them, and PostgreSQL refuses NUL in text.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def refuse_control_characters() -> None:
    """Answer 400 to a request whose query or form holds a control character, before any view."""
    for values in (request.args, request.form):
        for key, value in values.items(multi=True):
            if _CONTROL.search(key) or _CONTROL.search(value):
                abort(400)
    if _CONTROL.search(request.path):
        abort(400)


def init_app(app: Flask) -> None:
    app.before_request(refuse_control_characters)
    csrf.init_app(app)
    secure = app.config["IDP"].secure_cookies

    @app.after_request
    def _headers(response: Response) -> Response:
        h = response.headers
        h.setdefault("Content-Security-Policy", CSP)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if secure:
            h.setdefault("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
        if response.mimetype == "text/html":
            # Pages carry CSRF tokens and personal data: never cache them.
            h.setdefault("Cache-Control", "no-store")
        if request.path.startswith("/static/"):
            h["Cache-Control"] = "public, max-age=3600"
        return response
