"""The OpenID Connect endpoints.

``/authorize`` checks a request in order and hands off to a page for whatever is missing:

1. Authlib validates client, redirect_uri (exact), response_type, scope, PKCE (S256), nonce.
2. ``prompt``, ``max_age``, ``claims`` and ``acr_values`` are read (OIDC Core §3.1.2.1, §5.5).
3. Login: no SSO session, ``prompt=login`` or ``max_age`` exceeded → the login page.
4. Level of assurance below what the portal needs → the step-up page (``mfa.step_up``).
5. Consent missing for the scopes and claims, or ``prompt=consent`` → the consent page.
6. Otherwise a code is issued (with ``iss``, RFC 9207) and the session learns the portal (logout).

The request is kept server-side under its own id while the citizen is on a page; the page finishes by
redirecting to ``/authorize/resume/<id>``, which runs the same steps again with the stored request.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Blueprint, Flask, current_app, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from idp import audit
from idp import interaction as interactions
from idp.auth import loa
from idp.auth import session as sso_sessions
from idp.auth.views import current_citizen
from idp.consent import records as consents
from idp.db import get_session
from idp.errors import page
from idp.oidc import claims as claimsmod
from idp.oidc import keys, logout, par, tokens
from idp.oidc import params as request_params
from idp.oidc.discovery import provider_metadata
from idp.oidc.pairwise import pairwise_subject
from idp.oidc.params import AuthorizationFailure
from idp.oidc.server import create_server, get_server
from idp.store import get_store

bp = Blueprint("oidc", __name__)

def init_app(app: Flask) -> None:
    create_server(app)
    logout.init_app(app)
    from idp.identity.cli import SEEDERS
    from idp.oidc.cli import seed_demo_clients

    if seed_demo_clients not in SEEDERS:
        SEEDERS.append(seed_demo_clients)
    from idp.security import csrf

    for view in (authorize, token, revoke, introspect, pushed_authorization_request, userinfo,
                 end_session):
        csrf.exempt(view)


# ---- authorization endpoint ----------------------------------------------------------------------

def _issuer() -> str:
    return current_app.config["IDP"].issuer


def _error_page(error: OAuth2Error | None = None) -> tuple[str, int]:
    """No trustworthy redirect_uri: a readable page, never a redirect (RFC 6749 §4.1.2.1)."""
    if error is not None and error.error == "invalid_client":
        message = _("The service that sent you here is not registered with SatuID, or it has been "
                    "disabled. Go back to the service and contact its helpdesk.")
    else:
        message = _("The service that sent you here made a request SatuID cannot accept, so you "
                    "have not been sent back to it. Go back to the service and try again.")
    return page(400, _("This login request is not valid"), message)


def _redirect_error(redirect_uri: str, state: str | None, error: str,
                    description: str | None = None) -> Response:
    params = [("error", error)]
    if description:
        params.append(("error_description", description))
    if state:
        params.append(("state", state))
    params.append(("iss", _issuer()))  # RFC 9207 §2: also in error responses
    return redirect(add_params_to_uri(redirect_uri, params))


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    values = request.values
    if any(len(values.getlist(k)) > 1 for k in values):
        return _error_page()  # RFC 6749 §3.1: parameters MUST NOT repeat; nothing is trustworthy
    params = values.to_dict()
    if "request_uri" in params:
        if not params.get("client_id"):
            return _error_page()  # RFC 9126 §4: client_id comes with request_uri
        pushed = par.take(params["request_uri"], params["client_id"])
        if pushed is None:
            return _error_page()
        params = pushed
    current = g.get("sso")
    # What the session looked like when the request arrived: a login during this request shows as
    # a new session or a new authentication event (prompt=login and max_age are then satisfied).
    before = {"sid": current.sid, "auth_event": current.auth_event} if current else None
    return _process(secrets.token_urlsafe(24), {"params": params, "before": before})


@bp.get("/authorize/resume/<rid>")
def resume(rid: str) -> Any:
    pending = get_store().get(f"authz:{rid}") if len(rid) <= 64 else None
    if pending is None:
        return page(400, _("This login request has expired"),
                    _("Go back to the service and start again."))
    return _process(rid, pending)


def _process(rid: str, pending: dict[str, Any]) -> Any:
    server = get_server()
    params = pending["params"]
    try:
        grant = server.get_consent_grant(request=params, end_user=None)
    except OAuth2Error as error:
        if error.redirect_uri:
            return _redirect_error(error.redirect_uri, params.get("state"), error.error,
                                   error.get_error_description())
        return _error_page(error)
    try:
        return _decide(rid, pending, grant)
    except AuthorizationFailure as failure:
        get_store().delete(f"authz:{rid}")
        return _redirect_error(grant.redirect_uri, params.get("state"), failure.error,
                               failure.description)


def _decide(rid: str, pending: dict[str, Any], grant: Any) -> Any:
    params = pending["params"]
    client = grant.request.client
    options = request_params.check(params)
    prompts, max_age, claims_request = options.prompts, options.max_age, options.claims
    essential = claimsmod.essential_acr(claims_request)
    level = loa.required_level(params.get("acr_values"), essential, client.minimum_loa)
    if level is None:
        if essential:
            raise AuthorizationFailure("unmet_authentication_requirements",
                                       "None of the requested acr values is supported.")
        level = client.minimum_loa
    interaction = interactions.load(request.args.get("interaction"))
    if interaction is not None and interaction.details.get("rid") != rid:
        interaction = None

    # 3. login
    sso = g.get("sso")
    before = pending["before"]
    fresh = sso is not None and (before is None or sso.sid != before["sid"]
                                 or sso.auth_event != before.get("auth_event", ""))
    needs_login = sso is None or current_citizen() is None
    if not needs_login and not fresh:
        needs_login = "login" in prompts or (max_age is not None and sso.age > max_age)
    wanted_sub = options.wanted_sub
    if not needs_login and wanted_sub is not None \
            and pairwise_subject(client, sso.citizen_id) != wanted_sub:
        # OIDC Core §5.5.1: never answer for another citizen than the sub asked for.
        if fresh:
            raise AuthorizationFailure("login_required",
                                       "The citizen who logged in is not the one requested.")
        needs_login = True
    if needs_login:
        if "none" in prompts:
            raise AuthorizationFailure("login_required")
        return _interact(rid, pending, client, "login", params, level)

    # 4. level of assurance (step-up)
    if interaction is not None and interaction.prompt == "mfa" \
            and request.args.get("abort") == "unmet_authentication_requirements":
        raise AuthorizationFailure("unmet_authentication_requirements")
    citizen = current_citizen()
    assert citizen is not None
    reached = sso.acr
    if client.accepted_factors:
        from idp.auth.mfa.factors import level_reached

        reached = min(sso.acr, level_reached(citizen, sso.amr, list(client.accepted_factors)))
    if reached < level:
        if "none" in prompts:
            raise AuthorizationFailure("interaction_required")
        if "mfa.step_up" not in current_app.view_functions:
            raise AuthorizationFailure("unmet_authentication_requirements",
                                       "Second factors are not available on this server.")
        return _interact(rid, pending, client, "mfa", params, level,
                         allowed_factors=list(client.accepted_factors))

    # 5. consent
    scopes = grant.request.scope.split()
    wanted = claimsmod.requested_claims(scopes, claims_request)
    decision = None
    if interaction is not None and interaction.prompt == "consent" \
            and interaction.details.get("citizen_id") == str(citizen.id):
        decision = interaction.details.get("decision")
    if decision == "denied":
        audit.append("consent_denied", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                     client_id=client.client_id)
        raise AuthorizationFailure("access_denied", "The citizen did not allow the request.")
    consent = consents.active(get_session(), citizen.id, client.client_id)
    covered = consent is not None and consent.covers(scopes, wanted)
    if not covered or ("consent" in prompts and decision != "approved"):
        if "none" in prompts:
            raise AuthorizationFailure("consent_required")
        return _interact(rid, pending, client, "consent", params, level,
                         details={"citizen_id": str(citizen.id), "scopes": scopes, "claims": wanted})

    # 6. issue the code
    g.oidc_pending = {"acr_reached": reached}
    response = get_server().create_authorization_response(request=grant.request, grant_user=citizen,
                                                           grant=grant)
    sso_sessions.add_client(sso, client.client_id)
    get_store().delete(f"authz:{rid}")
    audit.append("authorization_code_issued", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 client_id=client.client_id, scopes=scopes, acr=sso.acr)
    return response


def _interact(rid: str, pending: dict[str, Any], client: Any, prompt: str, params: dict[str, str],
              level: int, allowed_factors: list[str] | None = None,
              details: dict[str, Any] | None = None) -> Response:
    """Keep the request server-side and send the browser to the page for ``prompt``."""
    get_store().put(f"authz:{rid}", pending, interactions.TTL)
    interaction = interactions.create(
        resume="", client_id=client.client_id, client_name=client.name, prompt=prompt,
        login_hint=params.get("login_hint", ""), ui_locales=params.get("ui_locales", ""),
        required_acr=level, allowed_factors=allowed_factors or [],
        details={"rid": rid, **(details or {})},
    )
    interaction.resume = url_for("oidc.resume", rid=rid) + "?" + urlencode({"interaction": interaction.uid})
    interactions.save(interaction)
    targets = {"login": "auth.login", "mfa": "mfa.step_up", "consent": "consent.consent"}
    return redirect(url_for(targets[prompt], interaction=interaction.uid))


# ---- token, revocation, introspection, PAR -------------------------------------------------------

@bp.post("/token")
def token() -> Any:
    return get_server().create_token_response()


@bp.post("/revoke")
def revoke() -> Any:
    return get_server().create_endpoint_response("revocation")


@bp.post("/introspect")
def introspect() -> Any:
    return get_server().create_endpoint_response("introspection")


@bp.post("/par")
def pushed_authorization_request() -> Any:
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
    issued = tokens.find_access_token(value)
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
            **claimsmod.claim_values(get_session(), citizen, names)}
    consents.record_release(citizen.id, client, "userinfo", ["sub", *names])
    response = jsonify(body)
    response.headers["Cache-Control"] = "no-store"
    return response


# ---- discovery and keys --------------------------------------------------------------------------

@bp.get("/.well-known/openid-configuration")
def discovery() -> Response:
    response = jsonify(provider_metadata())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


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
    try:
        validated = server.validate_endpoint_request("end_session")
    except OAuth2Error:
        validated = None
        params.pop("id_token_hint", None)
    current = g.get("sso")
    if validated is not None and not validated.needs_confirmation and (
            current is None or validated.id_token_claims.get("sid") == current.sid):
        response = server.create_endpoint_response("end_session", validated)
        return response or render_template("oidc/logged_out.html")
    handle = secrets.token_urlsafe(24)
    get_store().put(f"end-session:{handle}", params, 600)
    client = validated.client if validated is not None else None
    return render_template("oidc/logout_confirm.html", form=FlaskForm(), handle=handle, client=client)


@bp.post("/end-session/confirm")
def end_session_confirm() -> Any:
    form = FlaskForm()
    if not form.validate_on_submit():
        return page(400, _("This form has expired"), _("Go back and try again."))
    params = get_store().take(f"end-session:{request.form.get('handle', '')[:64]}")
    if params is None:
        return page(400, _("This logout request has expired"), _("Go back and try again."))
    if request.form.get("decision") != "logout":
        return redirect(url_for("account.home"))
    g.logout_confirmed = True
    server = get_server()
    try:
        validated = server.validate_endpoint_request("end_session", params)
    except OAuth2Error:
        params.pop("id_token_hint", None)
        validated = server.validate_endpoint_request("end_session", params)
    response = server.create_endpoint_response("end_session", validated)
    return response or render_template("oidc/logged_out.html")
