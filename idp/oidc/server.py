"""SatuID's authorization server: Authlib's Flask server with our grants, endpoints and hooks.

What Authlib does (parameter validation, client authentication, PKCE, error responses) is not
written again here; this module only registers the pieces and adapts storage.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Error, OAuth2Request
from authlib.oauth2.rfc6749.requests import BasicOAuth2Payload
from authlib.oauth2.rfc9207 import IssuerParameter
from flask import Flask, current_app
from flask import request as flask_request

from idp import metrics
from idp.auth import loa
from idp.models import Client
from idp.oidc import clients, grants, logout, tokens
from idp.oidc.claims import SUPPORTED_SCOPES


class StoredRequest(OAuth2Request):
    """An authorization request rebuilt from parameters kept server-side (an interaction or PAR).

    ``/authorize`` sets ``authentication`` before it asks for a code: what the code will say about
    how the citizen authenticated (``save_authorization_code`` reads it).
    """

    def __init__(self, params: dict[str, str]) -> None:
        super().__init__("GET", current_app.config["IDP"].issuer + "/authorize", headers={})
        self.payload = BasicOAuth2Payload(dict(params))
        self._params = params
        self.authentication: grants.Authentication | None = None

    @property
    def args(self) -> dict[str, str]:
        return self._params

    @property
    def form(self) -> dict[str, str]:
        return {}


class Issuer(IssuerParameter):
    """RFC 9207: ``iss`` in every authorization response, errors included."""

    def get_issuer(self) -> str:
        issuer: str = current_app.config["IDP"].issuer
        return issuer


#: Authlib's descriptions of these errors repeat the value the client sent; ours never do.
_FIXED_DESCRIPTIONS = {
    "unsupported_grant_type": "The grant_type is not supported.",
    "unsupported_response_type": "The response_type is not supported.",
}


def error_description(error: OAuth2Error) -> str | None:
    """The description to send for ``error``: never an echo of the request's values."""
    fixed = _FIXED_DESCRIPTIONS.get(error.error)
    return fixed if fixed is not None else error.get_error_description()


class SatuIDServer(AuthorizationServer):
    def query_client(self, client_id: str) -> Client | None:
        return clients.find(client_id)

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        if request.authorization_code is not None:
            metrics.token_issued("authorization_code")
            context = dict(request.authorization_code)
        else:
            metrics.token_issued("refresh_token")
            row = request.refresh_token.row
            # A grant from when an email code counted as a second factor keeps only what counts.
            amr, acr = loa.without_email_code(list(row.amr), row.acr)
            context = {"grant_id": row.grant_id, "claims_request": row.claims_request,
                       "auth_time": row.auth_time, "acr": acr, "amr": amr, "sid": row.sid,
                       # Never wider than what the portal is still registered for.
                       "refresh_scope": request.client.get_allowed_scope(
                           request.refresh_token.get_scope()),
                       # A retry's answer revoked its successors itself (``retry_allowed``).
                       "rotated_token_id": None if request.refresh_token.retrying else row.id}
        tokens.save(token, context, request.client, request.user)

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        if isinstance(request, dict):
            return StoredRequest(request)
        return super().create_oauth2_request(flask_request)

    def handle_error_response(self, request: Any, error: OAuth2Error) -> Any:
        if error.error in _FIXED_DESCRIPTIONS:
            clean = OAuth2Error(description=error_description(error), status_code=error.status_code)
            clean.error = error.error
            error = clean
        return super().handle_error_response(request, error)

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> Any:
        response = super().handle_response(status_code, payload, headers)
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def init_app(app: Flask) -> SatuIDServer:
    """The authorization server with SatuID's grants, endpoints and client authentication."""
    server = SatuIDServer()
    server.init_app(app)
    server.scopes_supported = list(SUPPORTED_SCOPES)
    server.register_token_generator("default", tokens.AccessTokenGenerator())
    server.register_grant(grants.AuthorizationCodeGrant,
                          [grants.S256CodeChallenge(required=True), grants.IdToken()])
    server.register_grant(grants.RefreshTokenGrant)
    server.register_endpoint(tokens.TokenRevocation)
    server.register_endpoint(tokens.TokenIntrospection)
    server.register_endpoint(logout.EndSession)
    server.register_endpoint(logout.ConfirmedEndSession)
    server.register_extension(Issuer())
    server.register_client_auth_method("private_key_jwt", clients.PrivateKeyJWT())
    app.extensions["idp.oidc"] = server
    return server


def get_server() -> SatuIDServer:
    server: SatuIDServer = current_app.extensions["idp.oidc"]
    return server
