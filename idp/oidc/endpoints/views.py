"""The OpenID Connect endpoints other than ``/authorize``: token, revocation, introspection, PAR,
userinfo, discovery, JWKS and RP-initiated logout."""

from __future__ import annotations

import secrets
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from idp import state
from idp.auth import session as sso_sessions
from idp.consent import records as consents
from idp.db import get_session
from idp.errors import page
from idp.oidc import claims as claimsmod
from idp.oidc import cors, keys, par, syntax, tokens
from idp.oidc.discovery import provider_metadata
from idp.oidc.logout import hint_names_session
from idp.oidc.pairwise import pairwise_subject
from idp.oidc.server import get_server
from idp.state import LogoutRequest

bp = Blueprint("oidc", __name__)
bp.after_request(cors.allow)


def _invalid_parameter() -> Response | None:
    """RFC 6749 §5.2 ``invalid_request`` for a parameter that breaks its grammar (``syntax``) or is
    sent twice (§3.2: parameters MUST NOT be included more than once)."""
    repeated = next((k for k in request.form if len(request.form.getlist(k)) > 1), None)
    bad = syntax.first_invalid(request.form.to_dict())
    if repeated is None and bad is None:
        return None
    text = (syntax.description(bad) if bad is not None
            else "A parameter was sent more than once.")
    response = jsonify(error="invalid_request", error_description=text)
    response.status_code = 400
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- token, revocation, introspection, PAR -------------------------------------------------------

@bp.post("/token")
def token() -> Any:
    return _invalid_parameter() or get_server().create_token_response()


@bp.post("/revoke")
def revoke() -> Any:
    return _invalid_parameter() or get_server().create_endpoint_response("revocation")


@bp.post("/introspect")
def introspect() -> Any:
    return _invalid_parameter() or get_server().create_endpoint_response("introspection")


@bp.post("/par")
def pushed_authorization_request() -> Any:
    if (refused := _invalid_parameter()) is not None:
        return refused
    server = get_server()
    try:
        status, body = par.push(server, request.form.to_dict())
    except OAuth2Error as error:
        return server.handle_error_response(None, error)
    return server.handle_response(status, body, [("Content-Type", "application/json")])


# ---- userinfo ------------------------------------------------------------------------------------

def _bearer_error(status: int, error: str, description: str) -> Response:
    response = jsonify(error=error, error_description=description)
    response.status_code = status
    # RFC 6750 §3: the challenge names the error.
    response.headers["WWW-Authenticate"] = (f'Bearer realm="SatuID", error="{error}", '
                                            f'error_description="{description}"')
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/userinfo", methods=["GET", "POST"])
def userinfo() -> Response:
    """OIDC Core §5.3: the claims of the token's scopes (narrowed by ``claims.userinfo``)."""
    header = request.headers.get("Authorization", "")
    value = header[7:].strip() if header[:7].lower() == "bearer " else request.form.get("access_token")
    if not value:
        return _bearer_error(401, "invalid_token", "An access token is required.")
    issued = tokens.find_access_token(value, resident=True)
    if issued is None or issued.is_expired() or issued.is_revoked():
        return _bearer_error(401, "invalid_token", "The access token is not valid.")
    client, citizen = issued.get_client(), issued.get_user()
    if client is None or not client.active or citizen is None:
        return _bearer_error(401, "invalid_token", "The access token is not valid.")
    scopes = issued.row.scope.split()
    if "openid" not in scopes:
        return _bearer_error(403, "insufficient_scope", "The token lacks the openid scope.")
    names = claimsmod.released_claims(scopes, issued.row.claims_request or {}, "userinfo")
    body = {"sub": pairwise_subject(client, str(citizen.id)),
            **claimsmod.response_claims(get_session(), citizen, scopes,
                                        issued.row.claims_request or {}, "userinfo")}
    consents.record_release(citizen.id, client, "userinfo", ["sub", *names])
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- discovery and keys --------------------------------------------------------------------------

_metadata: dict[str, str] = {}  # issuer -> the document: it depends on the settings alone


@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    issuer = current_app.config["IDP"].issuer
    if issuer not in _metadata:
        _metadata[issuer] = current_app.json.dumps(provider_metadata())
    return Response(_metadata[issuer], mimetype="application/json",
                    headers={"Cache-Control": "public, max-age=3600"})


@bp.get("/jwks")
def jwks() -> Response:
    response = jsonify(keys=keys.published(get_session()))
    # Short enough that a "next" key is seen well before it signs (rotation publishes it first).
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


# ---- RP-initiated logout -------------------------------------------------------------------------

@bp.route("/end-session", methods=["GET", "POST"])
def end_session() -> Any:
    """RP-Initiated Logout 1.0 §2: with a valid id_token_hint for this session, log out at once;
    otherwise ask the citizen first (§6)."""
    server = get_server()
    params = request.values.to_dict()
    if syntax.first_invalid(params) is not None:
        return page(400, _("This logout request is not valid"),
                    _("Go back to the service and try again."))
    try:
        validated = server.validate_endpoint_request("end_session")
    except OAuth2Error:
        validated = None
        params.pop("id_token_hint", None)
    current = sso_sessions.current()
    if validated is not None and not validated.needs_confirmation and (
            current is None or hint_names_session(validated, current.sid)):
        response = server.create_endpoint_response("end_session", validated)
        return response or render_template("oidc/logged_out.html")
    handle = secrets.token_urlsafe(24)
    state.logout_requests.put(LogoutRequest(params=params), handle)
    client = validated.client if validated is not None else None
    return render_template("oidc/logout_confirm.html", form=FlaskForm(), handle=handle, client=client)


@bp.post("/end-session/confirm")
def end_session_confirm() -> Any:
    form = FlaskForm()
    if not form.validate_on_submit():
        return page(400, _("This form has expired"), _("Go back and try again."))
    kept = state.logout_requests.take(request.form.get("handle", "")[:64])
    if kept is None:
        return page(400, _("This logout request has expired"), _("Go back and try again."))
    if request.form.get("decision") != "logout":
        return redirect(url_for("account.home"))
    server = get_server()
    params = kept.params
    try:
        validated = server.validate_endpoint_request("end_session_confirmed", params)
    except OAuth2Error:
        params.pop("id_token_hint", None)
        validated = server.validate_endpoint_request("end_session_confirmed", params)
    response = server.create_endpoint_response("end_session_confirmed", validated)
    return response or render_template("oidc/logged_out.html")
