"""CSRF protection for every form, and the security headers on every response."""

from __future__ import annotations

from flask import Flask, Response, request
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()

# No 'unsafe-inline': pages need no script except the WebAuthn helper served from /static.
# form-action is left out on purpose: browsers apply it to the redirect after a consent POST, which
# goes to the portal's registered redirect_uri.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def init_app(app: Flask) -> None:
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
