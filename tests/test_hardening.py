"""The inputs an outside test found to give 500s, each answered with a 4xx now, and codes typed in
other scripts' digits accepted."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from tests.conftest import AuthActions, Factory, csrf_token
from tests.oidc_rp import query, register_portal
from tests.test_mfa_support import (
    away_from_step_edge,
    code_at,
    past_the_wait,
    relogin,
    sso_of,
    submit_code,
)

ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.fixture
def portal(app: Flask) -> dict[str, Any]:
    return register_portal(app, client_id="portal-keras")


def test_non_ascii_response_type_is_an_error_to_the_portal_not_a_500(client: FlaskClient,
                                                                    portal: dict[str, Any]) -> None:
    r = client.get("/authorize", query_string={
        "response_type": "😀", "client_id": portal["client_id"], "redirect_uri": portal["redirect_uri"],
        "scope": "openid", "state": "s"})
    assert r.status_code == 302
    sent = query(r.headers["Location"])
    assert sent["error"] == "invalid_request" and sent["state"] == "s"
    assert "😀" not in r.headers["Location"]


@pytest.mark.parametrize("path", [
    "/authorize?response_type=code&client_id=portal-keras&redirect_uri=%00&scope=openid",
    "/authorize?response_type=code&client_id=%00&redirect_uri=https://x.example/cb",
    "/end-session?client_id=%00",
    "/end-session?id_token_hint=%22%5C%C3%A9",
])
def test_nul_and_unprintable_values_get_a_readable_400_page(client: FlaskClient, portal: dict[str, Any],
                                                           path: str) -> None:
    r = client.get(path)
    assert r.status_code == 400 and r.mimetype == "text/html"


@pytest.mark.parametrize("endpoint", ["/token", "/par", "/introspect", "/revoke"])
@pytest.mark.parametrize("value", ["\x00", "é\"\\", "😀", "a" * 3000])
def test_protocol_endpoints_answer_hostile_values_with_an_oauth_error(
        client: FlaskClient, portal: dict[str, Any], endpoint: str, value: str) -> None:
    data = {"grant_type": value, "token": value, "token_type_hint": value, "code": value,
            "response_type": value, "client_id": portal["client_id"], "client_secret": portal["secret"]}
    r = client.post(endpoint, data=data)
    assert 400 <= r.status_code < 500
    body = r.get_json()
    assert body["error"] in ("invalid_request", "unsupported_grant_type", "invalid_client",
                             "unsupported_response_type", "unsupported_token_type")
    assert value not in body.get("error_description", "")


def test_a_parameter_sent_twice_at_the_token_endpoint_is_refused(client: FlaskClient,
                                                                portal: dict[str, Any]) -> None:
    r = client.post("/token", data=MultiDict([("grant_type", "refresh_token"),
                                              ("grant_type", "password"),
                                              ("client_id", portal["client_id"])]))
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_request"


def test_totp_typed_in_arabic_indic_digits_is_accepted_at_step_up_and_enrolment(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    away_from_step_edge()
    html = client.get("/account/security/totp").get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', html)
    assert secret, "the enrolment page shows the secret"
    seed = secret.group(1).replace(" ", "")
    r = client.post("/account/security/totp", data={
        "csrf_token": csrf_token(html), "code": code_at(seed, -1).translate(ARABIC_INDIC)})
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    past_the_wait(app, citizen.id)
    relogin(auth, citizen)
    r = submit_code(client, "next=/account", "totp", code_at(seed).translate(ARABIC_INDIC))
    assert r.status_code == 302
    assert sso_of(app, client).acr == 2
