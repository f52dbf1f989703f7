"""Cross-origin access for single-page apps (Fetch standard, CORS) on the endpoints such an app calls
from JavaScript: discovery, JWKS, token, userinfo and revocation — and nowhere else.

An origin is allowed when it is the origin of a redirect URI that an active portal registered: the
same origins the authorization endpoint already sends codes to. No credentials (cookies) are allowed
across origins; these endpoints authenticate with tokens and client credentials.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import request
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp.db import get_session
from idp.errors import UNAVAILABLE
from idp.models import Client

#: The endpoints (``blueprint.view``) a browser app calls directly.
ENDPOINTS = {"oidc.discovery", "oidc.jwks", "oidc.token", "oidc.userinfo", "oidc.revoke"}
MAX_AGE = "600"


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(uri: str) -> str:
    """A URI's origin as a browser serialises it (RFC 6454 §6.2): scheme, host, and the port only
    when it is not the scheme's default; no user information. Empty when it has none."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return ""
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        return ""
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    shown = f":{port}" if port is not None and port != _DEFAULT_PORTS[parts.scheme] else ""
    return f"{parts.scheme}://{host}{shown}".lower()


def registered_origin(origin: str) -> bool:
    """Whether an active portal registered a redirect URI on ``origin``."""
    if not origin or len(origin) > 300 or origin_of(origin) != origin.lower():
        return False
    rows = get_session().scalars(select(Client.redirect_uris).where(Client.active.is_(True)))
    return any(origin_of(uri) == origin.lower() for uris in rows for uri in uris)


def allow(response: Response) -> Response:
    """``after_request`` of the protocol endpoints: the CORS headers for an allowed origin."""
    if request.endpoint not in ENDPOINTS:
        return response
    response.headers.add("Vary", "Origin")  # cached answers differ by origin, with or without one
    origin = request.headers.get("Origin", "")
    try:
        allowed = bool(origin) and registered_origin(origin)
    except UNAVAILABLE:
        allowed = False  # the answer is a 503 anyway; it needs no cross-origin reading
    if not allowed:
        return response
    response.headers["Access-Control-Allow-Origin"] = origin
    if request.method == "OPTIONS":  # the preflight (Fetch §4.8)
        response.headers["Access-Control-Allow-Methods"] = "GET, POST"
        response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response.headers["Access-Control-Max-Age"] = MAX_AGE
    return response
