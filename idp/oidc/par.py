"""Pushed Authorization Requests (RFC 9126).

The client authenticates and pushes its authorization parameters; they are validated exactly as at
``/authorize`` and kept in the store under a one-time ``request_uri`` for 90 s (§2.2). ``/authorize``
then takes them (single use, §4) and ignores any other parameter but ``client_id`` (§4).
"""

from __future__ import annotations

import secrets
from typing import Any

from authlib.oauth2.rfc6749 import InvalidRequestError, OAuth2Error

from idp import state
from idp.oidc import params as request_params
from idp.oidc.clients import AUTH_METHODS
from idp.oidc.server import SatuIDServer
from idp.state import PushedRequest

REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"
LIFETIME = 90  # must agree with state.pushed_requests


def push(server: SatuIDServer, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Authenticate the client, validate the request, store it. Raises OAuth2Error."""
    request = server.create_oauth2_request(None)
    client = server.authenticate_client(request, list(AUTH_METHODS), endpoint="par")
    if "request_uri" in form:
        raise InvalidRequestError("request_uri is not allowed in a pushed request (RFC 9126, section 2.1).")
    if form.get("client_id", client.client_id) != client.client_id:
        raise InvalidRequestError("client_id does not match the authenticated client.")
    params = {k: v for k, v in form.items()
              if k not in ("client_secret", "client_assertion", "client_assertion_type")}
    params["client_id"] = client.client_id
    try:
        server.get_consent_grant(request=params, end_user=None)
    except OAuth2Error as error:
        error.redirect_uri = None  # answered here as JSON, never by redirect (§2.3)
        raise
    try:
        request_params.check(params)
    except request_params.AuthorizationFailure as failure:
        refused = InvalidRequestError(failure.description or failure.error)
        refused.error = failure.error
        raise refused from failure
    handle = secrets.token_urlsafe(32)
    state.pushed_requests.put(PushedRequest(client_id=client.client_id, params=params), handle,
                              ttl=LIFETIME)
    return 201, {"request_uri": REQUEST_URI_PREFIX + handle, "expires_in": LIFETIME}


def take(request_uri: str, client_id: str) -> dict[str, str] | None:
    """The pushed parameters for a request_uri, once; None when unknown, expired or another client's."""
    if not request_uri.startswith(REQUEST_URI_PREFIX) or len(request_uri) > 200:
        return None
    entry = state.pushed_requests.take(request_uri[len(REQUEST_URI_PREFIX):])
    if entry is None or entry.client_id != client_id:
        return None
    return entry.params
