"""Levels of assurance end to end through the OpenID Connect endpoints: a portal asking for level 2
receives an ID token with acr 2 and amr ``pwd`` + ``otp`` only after a valid TOTP code, and gets
``unmet_authentication_requirements`` when the citizen cannot or will not step up."""

from __future__ import annotations

import base64
import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions, Factory, csrf_token
from tests.oidc_rp import Portal, query, register_portal
from tests.test_mfa_support import code_at, enrol_totp, sso_of, submit_code

LEVEL2 = "urn:satuid:loa:2"


def _portal(app: Flask, client: FlaskClient, **fields: Any) -> Portal:
    info = register_portal(app, "pajak", **fields)
    return Portal(browser=client, client_id=info["client_id"], secret=info["secret"],
                  redirect_uri=info["redirect_uri"])


def _to_step_up(portal: Portal, citizen: Any, **extra: str) -> str:
    """Start an authorization and log in with the password; return the step-up page's path."""
    r = portal.browser.get(portal.authorize_url("openid", **extra))
    for _ in range(6):
        location = r.headers["Location"].replace("http://localhost", "")
        if location.startswith("/login/step-up"):
            return location
        if location.startswith("/login"):
            page = portal.browser.get(location)
            r = portal.browser.post("/login", data={
                "csrf_token": csrf_token(page.get_data(as_text=True)), "nik": citizen.nik,
                "password": citizen.password, "interaction": query(location)["interaction"],
                "next": ""})
        else:
            r = portal.browser.get(location)
    raise AssertionError("never reached the step-up page")


def _claims(id_token: str) -> dict[str, Any]:
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_portal_asking_for_level_two_gets_acr_2_and_otp_only_after_a_valid_totp(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen)
    auth.logout()
    portal = _portal(app, client)

    step_up = _to_step_up(portal, citizen, acr_values=LEVEL2)
    uid = query(step_up)["interaction"]
    wrong = submit_code(client, f"interaction={uid}", "totp", "000000")
    assert wrong.status_code == 401  # no redirect to the portal, so no code for it

    done = submit_code(client, f"interaction={uid}", "totp", code_at(secret))
    assert done.status_code == 302
    callback = portal.follow(done, citizen.nik, citizen.password)
    params = query(callback)
    assert "code" in params, params
    tokens = portal.token(params["code"]).get_json()
    claims = _claims(tokens["id_token"])
    assert claims["acr"] == LEVEL2
    assert {"pwd", "otp"} <= set(claims["amr"])


def test_cancelled_step_up_reaches_the_portal_as_unmet_authentication_requirements(
        app: Flask, client: FlaskClient, factory: Factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client, minimum_loa=2, accepted_factors=["totp", "passkey"])
    step_up = _to_step_up(portal, citizen)
    page = client.get(step_up + "&lang=en").get_data(as_text=True)
    assert "Add a way to confirm it is you" in page  # only an email, which is no second factor
    r = client.post(f"/login/step-up/cancel?interaction={query(step_up)['interaction']}",
                    data={"csrf_token": csrf_token(page)})
    callback = portal.follow(r)
    assert query(callback)["error"] == "unmet_authentication_requirements"


def test_a_portal_refusing_sms_is_not_satisfied_by_an_earlier_sms_code(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    """Level 2 reached with an SMS code (for another portal, or to add an authenticator) does not
    count for a portal that registered that it accepts only TOTP or passkeys."""
    citizen = factory.citizen(phone="+6281234567811", phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen)  # proves the phone first: the session is at level 2
    assert sso_of(app, client).acr == 2
    strict = _portal(app, client, minimum_loa=2, accepted_factors=["totp", "passkey"])
    response = client.get(strict.authorize_url("openid", prompt="none"))
    assert query(response.headers["Location"])["error"] == "interaction_required"
    step_up = _to_step_up(strict, citizen)
    uid = query(step_up)["interaction"]
    done = submit_code(client, f"interaction={uid}", "totp", code_at(secret))
    params = query(strict.follow(done))
    claims = _claims(strict.token(params["code"]).get_json()["id_token"])
    assert claims["acr"] == LEVEL2 and {"otp", "sms"} <= set(claims["amr"])
