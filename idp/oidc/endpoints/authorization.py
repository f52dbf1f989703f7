"""The authorization endpoint (OIDC Core §3.1.2).

``/authorize`` checks a request in order and hands off to a page for whatever is missing:

1. Authlib validates client, redirect_uri (exact), response_type, scope, PKCE (S256), nonce.
2. ``prompt``, ``max_age``, ``claims`` and ``acr_values`` are read (OIDC Core §3.1.2.1, §5.5).
3. Login: no SSO session, ``prompt=login`` or ``max_age`` exceeded → the login page. A portal
   registered to require an identity verified in person refuses a citizen without one: a page
   explains the counter, and its button returns ``access_denied`` to the portal.
4. Level of assurance below what the portal needs → the step-up page.
5. Consent missing for the scopes and claims, or ``prompt=consent`` → the consent page.
6. Otherwise a code is issued (with ``iss``, RFC 9207) and the session learns the portal (logout).

The request is kept server-side under its own id while the citizen is on a page. Every page finishes
the same way (``interaction.finish``): it writes its outcome into the interaction record and sends the
browser to ``/authorize/resume/<id>``, which reads the outcome and runs the same steps again.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import OAuth2Error
from flask import Blueprint, current_app, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp import audit, errors, metrics, state
from idp import interaction as interactions
from idp.auth import loa
from idp.auth import session as sso_sessions
from idp.auth.current import current_citizen
from idp.consent import records as consents
from idp.db import get_session
from idp.errors import page
from idp.models import Client, IdentityVerification
from idp.oidc import claims as claimsmod
from idp.oidc import clients, par, request_object, syntax
from idp.oidc import params as request_params
from idp.oidc.grants import Authentication
from idp.oidc.pairwise import pairwise_subject
from idp.oidc.params import AuthorizationFailure
from idp.oidc.server import error_description, get_server
from idp.state import PendingAuthorization

bp = Blueprint("authorization", __name__)

#: The page for each prompt; each finishes through ``interaction.finish``.
PROMPT_PAGES = {"login": "auth.login", "mfa": "mfa.step_up", "consent": "consent.consent"}


def _issuer() -> str:
    issuer: str = current_app.config["IDP"].issuer
    return issuer


def _error_page(error: OAuth2Error | None = None) -> tuple[str, int]:
    """No trustworthy redirect_uri: a readable page, never a redirect (RFC 6749 §4.1.2.1)."""
    metrics.authorization("error")
    if error is not None and error.error == "invalid_client":
        message = _("The service that sent you here is not registered with SatuID, or it has been "
                    "disabled. Go back to the service and contact its helpdesk.")
    else:
        message = _("The service that sent you here made a request SatuID cannot accept, so you "
                    "have not been sent back to it. Go back to the service and try again.")
    return page(400, _("This login request is not valid"), message)


def _redirect_error(redirect_uri: str, state_value: str | None, error: str,
                    description: str | None = None,
                    outcome: metrics.AuthorizationOutcome = "error") -> Response:
    metrics.authorization(outcome)
    params = [("error", error)]
    if description:
        params.append(("error_description", description))
    if state_value:
        params.append(("state", state_value))
    params.append(("iss", _issuer()))  # RFC 9207 §2: also in error responses
    return redirect(add_params_to_uri(redirect_uri, params))


@bp.route("/authorize", methods=["GET", "POST"])
def authorize() -> Any:
    values = request.values
    if any(len(values.getlist(k)) > 1 for k in values):
        return _error_page()  # RFC 6749 §3.1: parameters MUST NOT repeat; nothing is trustworthy
    params = values.to_dict()
    if (bad := syntax.first_invalid(params)) is not None:
        if bad in ("client_id", "redirect_uri"):
            return _error_page()
        return _refuse(params, "invalid_request", syntax.description(bad))
    if "request" in params:
        try:
            params = request_object.resolve(params, clients.find(params.get("client_id")))
        except request_object.Refused as refused:
            return _refuse(params, refused.error, refused.description)
        if (bad := syntax.first_invalid(params)) is not None:  # the object's own values
            return _refuse(params, "invalid_request_object", syntax.description(bad))
    if "request_uri" in params:
        if not params.get("client_id"):
            return _error_page()  # RFC 9126 §4: client_id comes with request_uri
        if not params["request_uri"].startswith(par.REQUEST_URI_PREFIX):
            return _refuse(params, "request_uri_not_supported",
                           "Only request_uri values from the pushed authorization endpoint are used.")
        pushed = par.take(params["request_uri"], params["client_id"])
        if pushed is None:
            return _error_page()
        params = pushed
    current = sso_sessions.current()
    # What the session looked like when the request arrived: a login during this request shows as
    # a new session or a new authentication event (prompt=login and max_age are then satisfied).
    before = {"sid": current.sid, "auth_event": current.auth_event} if current else None
    return _process(secrets.token_urlsafe(24), PendingAuthorization(params=params, before=before),
                    kept=False)


def _refuse(params: dict[str, str], error: str, description: str) -> Any:
    """Refuse before Authlib runs: tell the portal when its redirect_uri can be trusted (RFC 6749
    §4.1.2.1), otherwise show the page; never echo a value."""
    client = clients.find(params.get("client_id"))
    redirect_uri = params.get("redirect_uri", "")
    if client is not None and client.check_redirect_uri(redirect_uri):
        state_value = params.get("state") if syntax.first_invalid(
            {"state": params.get("state", "")}) is None else None
        return _redirect_error(redirect_uri, state_value, error, description)
    return _error_page()


def _unavailable(e: Exception) -> Any:
    """RFC 6749 §4.1.2.1 ``temporarily_unavailable`` to the portal when its client and redirect_uri
    can still be checked (PostgreSQL up, Redis down); the 503 page otherwise."""
    response = errors.outage(e)
    params = request.values.to_dict()
    try:
        client = clients.find(params.get("client_id"))
        redirect_uri = params.get("redirect_uri", "")
        if client is None or not client.check_redirect_uri(redirect_uri) \
                or syntax.first_invalid(params) is not None:
            metrics.authorization("unavailable")
            return response
    except errors.UNAVAILABLE:  # PostgreSQL is down too: the page
        errors.discard_quietly()
        metrics.authorization("unavailable")
        return response
    return _redirect_error(redirect_uri, params.get("state"), "temporarily_unavailable",
                           "The service is temporarily unavailable; retry later.",
                           outcome="unavailable")


for _kind in errors.UNAVAILABLE:
    bp.register_error_handler(_kind, _unavailable)


@bp.get("/authorize/resume/<rid>")
def resume(rid: str) -> Any:
    pending = state.pending_authorizations.get(rid) if len(rid) <= 64 else None
    if pending is None:
        metrics.authorization("error")
        return page(400, _("This login request has expired"),
                    _("Go back to the service and start again."))
    return _process(rid, pending, kept=True)


def _process(rid: str, pending: PendingAuthorization, kept: bool) -> Any:
    """Run the steps; ``kept`` when the request came back from a page, so the store holds it under
    ``rid`` until it ends (a request that needed no page was never stored)."""
    params = pending.params
    try:
        grant = get_server().get_consent_grant(request=params, end_user=None)
    except OAuth2Error as error:
        if error.redirect_uri:
            return _redirect_error(error.redirect_uri, params.get("state"), error.error,
                                   error_description(error))
        return _error_page(error)
    try:
        return _decide(rid, pending, grant, kept)
    except AuthorizationFailure as failure:
        if kept:
            state.pending_authorizations.delete(rid)
        return _redirect_error(grant.redirect_uri, params.get("state"), failure.error,
                               failure.description)


def _finished(rid: str, prompt: str) -> dict[str, Any]:
    """The outcome the page for ``prompt`` wrote, when this request's interaction came back."""
    interaction = interactions.load(request.args.get("interaction"))
    if interaction is None or interaction.details.get("rid") != rid or interaction.prompt != prompt:
        return {}
    return interaction.result


def _decide(rid: str, pending: PendingAuthorization, grant: Any, kept: bool) -> Any:
    params = pending.params
    client: Client = grant.request.client
    options = request_params.check(params)
    prompts, max_age, claims_request = options.prompts, options.max_age, options.claims
    essential = claimsmod.essential_acr(claims_request)
    level = loa.required_level(params.get("acr_values"), essential, client.minimum_loa)
    if level is None:
        if essential:
            raise AuthorizationFailure("unmet_authentication_requirements",
                                       "None of the requested acr values is supported.")
        level = client.minimum_loa

    # 3. login
    sso = sso_sessions.current()
    citizen = current_citizen()
    before = pending.before
    fresh = sso is not None and (before is None or sso.sid != before["sid"]
                                 or sso.auth_event != before.get("auth_event", ""))
    needs_login = sso is None or citizen is None
    if sso is not None and not needs_login and not fresh:
        # auth_time has whole seconds: an age equal to max_age may be up to a second more (§3.1.2.1).
        needs_login = "login" in prompts or (max_age is not None and sso.age >= max_age)
    wanted_sub = options.wanted_sub
    if sso is not None and not needs_login and wanted_sub is not None \
            and pairwise_subject(client, sso.citizen_id) != wanted_sub:
        # OIDC Core §5.5.1: never answer for another citizen than the sub asked for.
        if fresh:
            raise AuthorizationFailure("login_required",
                                       "The citizen who logged in is not the one requested.")
        needs_login = True
    if sso is None or citizen is None or needs_login:
        if "none" in prompts:
            raise AuthorizationFailure("login_required")
        return _interact(rid, pending, client, "login", params, level)

    if client.requires_in_person and not _verified_in_person(citizen.id):
        if "none" in prompts or request.args.get("back") == "1":
            raise AuthorizationFailure("access_denied", IN_PERSON_REFUSED)
        state.pending_authorizations.put(pending, rid)
        metrics.authorization("interaction")  # the counter's page; its button resumes the request
        audit.append("in_person_required", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                     client_id=client.client_id)
        return render_template("oidc/in_person_required.html", client=client,
                               back=url_for("authorization.resume", rid=rid, back="1")), 403

    # 4. level of assurance (step-up)
    if _finished(rid, "mfa").get("error") == "unmet_authentication_requirements":
        raise AuthorizationFailure("unmet_authentication_requirements")
    reached = sso.acr
    if client.accepted_factors:
        reached = min(sso.acr, loa.level_reached(sso.amr, list(client.accepted_factors)))
    if reached < level:
        if "none" in prompts:
            raise AuthorizationFailure("interaction_required")
        return _interact(rid, pending, client, "mfa", params, level,
                         allowed_factors=list(client.accepted_factors))

    # 5. consent
    scopes = grant.request.scope.split()
    wanted = claimsmod.requested_claims(scopes, claims_request)
    outcome = _finished(rid, "consent")
    decision = outcome.get("consent") if outcome.get("citizen_id") == str(citizen.id) else None
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
    grant.request.authentication = Authentication(sid=sso.sid, auth_time=sso.auth_time, acr=reached,
                                                  amr=list(sso.amr))
    response = get_server().create_authorization_response(request=grant.request, grant_user=citizen,
                                                          grant=grant)
    sso_sessions.add_client(sso, client.client_id)
    if kept:
        state.pending_authorizations.delete(rid)
    metrics.authorization("code")
    audit.append("authorization_code_issued", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 client_id=client.client_id, scopes=scopes, acr=sso.acr)
    return response


IN_PERSON_REFUSED = ("This service requires an identity verified in person at a SatuID counter, "
                     "and the citizen's identity has not been.")


def _verified_in_person(citizen_id: Any) -> bool:
    """Whether a counter ever checked this citizen's identity in person (a fact of the identity,
    recorded by the helpdesk; never inherited from an authenticator)."""
    return get_session().scalar(select(IdentityVerification.id).where(
        IdentityVerification.citizen_id == citizen_id,
        IdentityVerification.method == "in_person").limit(1)) is not None


def _interact(rid: str, pending: PendingAuthorization, client: Client, prompt: str,
              params: dict[str, str], level: int, allowed_factors: list[str] | None = None,
              details: dict[str, Any] | None = None) -> Response:
    """Keep the request server-side and send the browser to the page for ``prompt``."""
    state.pending_authorizations.put(pending, rid)
    interaction = interactions.create(
        resume="", client_id=client.client_id, client_name=client.name, prompt=prompt,
        login_hint=params.get("login_hint", ""), ui_locales=params.get("ui_locales", ""),
        required_acr=level, allowed_factors=allowed_factors or [],
        details={"rid": rid, **(details or {})},
    )
    interaction.resume = (url_for("authorization.resume", rid=rid) + "?"
                          + urlencode({"interaction": interaction.uid}))
    interactions.save(interaction)
    metrics.authorization("interaction")  # once the store kept it: an outage counts as unavailable
    return redirect(url_for(PROMPT_PAGES[prompt], interaction=interaction.uid))
