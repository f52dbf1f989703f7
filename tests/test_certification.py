"""The OpenID Foundation's Basic OP certification plan (``oidcc-basic-certification-test-plan``),
module by module, written from the modules' published descriptions. Each test is named for its
module; the client authenticates by HTTP Basic unless the module says otherwise, and every ID token
is verified against the published keys as the suite does."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import Factory
from tests.oidc_rp import Portal, pkce_pair, query, register_portal

ISSUER = "http://127.0.0.1:5000"
SCOPES = ["openid", "profile", "email", "phone", "address", "offline_access"]


@pytest.fixture
def rp(app: Flask, client: FlaskClient) -> Portal:
    info = register_portal(app, client_id="cert-client", scopes=SCOPES)
    return Portal(client, info["client_id"], info["secret"], info["redirect_uri"])


@pytest.fixture
def citizen(factory: Factory) -> Any:
    return factory.citizen(phone="+6281234567890", phone_verified=True)


def id_token_claims(client: FlaskClient, token: str, audience: str = "cert-client") -> dict[str, Any]:
    """Verify as the suite does: signature by ``kid`` from the JWKS, ``iss``, ``aud``, ``exp``, ``iat``."""
    keys = KeySet.import_key_set(client.get("/jwks").get_json())
    decoded = jwt.decode(token, keys)
    assert decoded.header["kid"] and decoded.header["alg"] == "RS256"
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": ISSUER},
                          aud={"essential": True, "value": audience}, exp={"essential": True},
                          iat={"essential": True}, sub={"essential": True}).validate(decoded.claims)
    return dict(decoded.claims)


def code_flow(rp: Portal, citizen: Any, scope: str = "openid", **extra: str) -> dict[str, Any]:
    result = rp.sign_in(citizen.nik, citizen.password, scope=scope, **extra)
    assert "code" in result, result
    assert result["iss"] == ISSUER and result.get("state") == rp.last.get("state")
    response = rp.token(result["code"])
    assert response.status_code == 200, response.get_json()
    return dict(response.get_json())


def userinfo(client: FlaskClient, access_token: str) -> dict[str, Any]:
    response = client.get("/userinfo", headers={"Authorization": f"Bearer {access_token}"})
    assert response.status_code == 200
    return dict(response.get_json())


def test_oidcc_server(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    tokens = code_flow(rp, citizen)
    claims = id_token_claims(client, tokens["id_token"])
    assert claims["nonce"] == rp.last["nonce"] and tokens["token_type"] == "Bearer"


def test_oidcc_server_client_secret_post(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    result = rp.sign_in(citizen.nik, citizen.password, scope="openid")
    response = client.post("/token", data={
        "grant_type": "authorization_code", "code": result["code"], "redirect_uri": rp.redirect_uri,
        "code_verifier": rp.last["verifier"], "client_id": rp.client_id, "client_secret": rp.secret})
    assert response.status_code == 200
    id_token_claims(client, response.get_json()["id_token"])


def test_oidcc_response_type_missing(rp: Portal, client: FlaskClient) -> None:
    url = rp.authorize_url(response_type=None)
    response = client.get(url)
    # An error to the redirect_uri, or the error page: never a code.
    if response.status_code == 302:
        assert query(response.headers["Location"])["error"] in ("invalid_request",
                                                                  "unsupported_response_type")
    else:
        assert response.status_code == 400


@pytest.mark.parametrize("how", ["get", "post-header", "post-body"])
def test_oidcc_userinfo(rp: Portal, citizen: Any, client: FlaskClient, how: str) -> None:
    tokens = code_flow(rp, citizen, scope="openid email")
    sub = id_token_claims(client, tokens["id_token"])["sub"]
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    if how == "get":
        response = client.get("/userinfo", headers=bearer)
    elif how == "post-header":
        response = client.post("/userinfo", headers=bearer)
    else:
        response = client.post("/userinfo", data={"access_token": tokens["access_token"]})
    assert response.status_code == 200 and response.get_json()["sub"] == sub


def test_oidcc_ensure_request_without_nonce_succeeds_for_code_flow(rp: Portal, citizen: Any,
                                                                   client: FlaskClient) -> None:
    tokens = code_flow(rp, citizen, nonce=None)
    assert "nonce" not in id_token_claims(client, tokens["id_token"])


@pytest.mark.parametrize(("scope", "claims"), [
    ("openid profile", {"name", "birthdate", "gender", "locale"}),
    ("openid email", {"email", "email_verified"}),
    ("openid address", {"address"}),
    ("openid phone", {"phone_number", "phone_number_verified"}),
    ("openid profile email address phone", {"name", "email", "address", "phone_number"}),
])
def test_oidcc_scope(rp: Portal, citizen: Any, client: FlaskClient, scope: str,
                     claims: set[str]) -> None:
    info = userinfo(client, code_flow(rp, citizen, scope=scope)["access_token"])
    assert claims <= set(info)


def test_oidcc_ensure_other_scope_order_succeeds(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    tokens = code_flow(rp, citizen, scope="email openid")
    assert "email" in userinfo(client, tokens["access_token"])


@pytest.mark.parametrize("display", ["page", "popup"])
def test_oidcc_display(rp: Portal, citizen: Any, display: str) -> None:
    code_flow(rp, citizen, display=display)


def test_oidcc_prompt_login(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    first = id_token_claims(client, code_flow(rp, citizen)["id_token"])
    time.sleep(1.1)
    response = client.get(rp.authorize_url("openid", prompt="login"))
    assert "/login?" in response.headers["Location"]  # asked to log in again
    result = query(rp.follow(response, citizen.nik, citizen.password))
    second = id_token_claims(client, rp.token(result["code"]).get_json()["id_token"])
    assert second["auth_time"] > first["auth_time"]


def test_oidcc_prompt_none_not_logged_in(rp: Portal, client: FlaskClient) -> None:
    response = client.get(rp.authorize_url("openid", prompt="none"))
    sent = query(response.headers["Location"])
    assert sent["error"] == "login_required" and sent["state"] == rp.last["state"]


def test_oidcc_prompt_none_logged_in(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    first = id_token_claims(client, code_flow(rp, citizen)["id_token"])
    result = query(client.get(rp.authorize_url("openid", prompt="none")).headers["Location"])
    second = id_token_claims(client, rp.token(result["code"]).get_json()["id_token"])
    assert second["sub"] == first["sub"] and second["auth_time"] == first["auth_time"]


def test_oidcc_max_age_1(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    code_flow(rp, citizen)
    time.sleep(1.1)
    response = client.get(rp.authorize_url("openid", max_age="1"))
    assert "/login?" in response.headers["Location"]
    result = query(rp.follow(response, citizen.nik, citizen.password))
    claims = id_token_claims(client, rp.token(result["code"]).get_json()["id_token"])
    assert time.time() - claims["auth_time"] < 5


def test_oidcc_max_age_10000(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    first = id_token_claims(client, code_flow(rp, citizen)["id_token"])
    result = query(client.get(rp.authorize_url("openid", max_age="10000")).headers["Location"])
    claims = id_token_claims(client, rp.token(result["code"]).get_json()["id_token"])
    assert claims["auth_time"] == first["auth_time"]  # no new login


def test_oidcc_ensure_request_with_unknown_parameter_succeeds(rp: Portal, citizen: Any) -> None:
    code_flow(rp, citizen, extra_unknown_parameter="whatever")


def test_oidcc_id_token_hint(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    tokens = code_flow(rp, citizen)
    first = id_token_claims(client, tokens["id_token"])
    response = client.get(rp.authorize_url("openid", prompt="none", id_token_hint=tokens["id_token"]))
    result = query(response.headers["Location"])
    assert id_token_claims(client, rp.token(result["code"]).get_json()["id_token"])["sub"] == first["sub"]


def test_oidcc_login_hint(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    response = client.get(rp.authorize_url("openid", login_hint=citizen.nik))
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert f'value="{citizen.nik}"' in page  # the NIK is filled in
    code_flow(rp, citizen, login_hint=citizen.nik)


def test_oidcc_ui_locales(rp: Portal, client: FlaskClient) -> None:
    response = client.get(rp.authorize_url("openid", ui_locales="en-US id"))
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert '<html lang="en">' in page


def test_oidcc_claims_locales(rp: Portal, citizen: Any) -> None:
    code_flow(rp, citizen, claims_locales="id en")


def test_oidcc_ensure_request_with_acr_values_succeeds(rp: Portal, citizen: Any,
                                                       client: FlaskClient) -> None:
    tokens = code_flow(rp, citizen, acr_values="urn:satuid:loa:1 urn:satuid:loa:2")
    assert id_token_claims(client, tokens["id_token"])["acr"] == "urn:satuid:loa:1"


def test_oidcc_codereuse(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    result = rp.sign_in(citizen.nik, citizen.password, scope="openid")
    first = rp.token(result["code"]).get_json()
    again = rp.token(result["code"])
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert info.status_code == 401  # what the reused code issued is revoked


def test_oidcc_codereuse_30seconds(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    result = rp.sign_in(citizen.nik, citizen.password, scope="openid")
    first = rp.token(result["code"]).get_json()
    time.sleep(30)
    again = rp.token(result["code"])
    assert again.status_code == 400 and again.get_json()["error"] == "invalid_grant"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert info.status_code == 401


def test_oidcc_ensure_registered_redirect_uri(rp: Portal, client: FlaskClient) -> None:
    response = client.get(rp.authorize_url("openid", redirect_uri="https://evil.example.id/cb"))
    assert response.status_code == 400 and "Location" not in response.headers  # the error page


def test_oidcc_ensure_redirect_uri_in_authorization_request(rp: Portal, client: FlaskClient) -> None:
    response = client.get(rp.authorize_url("openid", redirect_uri=None))
    assert response.status_code == 400 and "Location" not in response.headers


def test_oidcc_ensure_post_request_succeeds(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    verifier, challenge = pkce_pair()
    form = {"response_type": "code", "client_id": rp.client_id, "redirect_uri": rp.redirect_uri,
            "scope": "openid", "state": "posted", "nonce": "n", "code_challenge": challenge,
            "code_challenge_method": "S256"}
    location = rp.follow(client.post("/authorize", data=form), citizen.nik, citizen.password)
    result = query(location)
    assert result["state"] == "posted"
    assert rp.token(result["code"], verifier=verifier).status_code == 200


@pytest.mark.filterwarnings("ignore:JWS algorithm \"none\" is deprecated")  # made on purpose
def test_oidcc_unsigned_request_object_supported_correctly_or_rejected_as_unsupported(
        rp: Portal, client: FlaskClient) -> None:
    body = {"client_id": rp.client_id, "response_type": "code", "redirect_uri": rp.redirect_uri,
            "scope": "openid", "state": "s"}
    unsigned = jwt.encode({"alg": "none"}, body, None, algorithms=["none"])
    response = client.get("/authorize?" + urlencode({**body, "request": unsigned}))
    assert query(response.headers["Location"])["error"] == "request_not_supported"


def test_oidcc_request_uri_unsigned_supported_correctly_or_rejected_as_unsupported(
        rp: Portal, client: FlaskClient) -> None:
    response = client.get("/authorize?" + urlencode({
        "client_id": rp.client_id, "response_type": "code", "redirect_uri": rp.redirect_uri,
        "scope": "openid", "state": "s", "request_uri": "https://cert.example.id/request.jwt"}))
    assert query(response.headers["Location"])["error"] == "request_uri_not_supported"


def test_oidcc_claims_essential(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    claims = json.dumps({"userinfo": {"name": {"essential": True}}})
    tokens = code_flow(rp, citizen, scope="openid profile", claims=claims)
    assert userinfo(client, tokens["access_token"])["name"] == citizen.full_name


def test_oidcc_refresh_token(rp: Portal, citizen: Any, client: FlaskClient) -> None:
    tokens = code_flow(rp, citizen, scope="openid offline_access")
    refreshed = rp.refresh(tokens["refresh_token"])
    assert refreshed.status_code == 200
    body = refreshed.get_json()
    assert body["refresh_token"] != tokens["refresh_token"]
    assert userinfo(client, body["access_token"])["sub"] == id_token_claims(
        client, tokens["id_token"])["sub"]


def test_oidcc_ensure_request_with_valid_pkce_succeeds(rp: Portal, citizen: Any) -> None:
    result = rp.sign_in(citizen.nik, citizen.password, scope="openid")
    wrong = rp.token(result["code"], verifier="x" * 43)
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "invalid_grant"
    result = rp.sign_in(citizen.nik, citizen.password, scope="openid")
    assert rp.token(result["code"]).status_code == 200


def test_oidcc_discovery_endpoint_verification(client: FlaskClient) -> None:
    metadata = client.get("/.well-known/openid-configuration").get_json()
    for member in ("issuer", "authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                   "jwks_uri", "response_types_supported", "subject_types_supported",
                   "id_token_signing_alg_values_supported", "scopes_supported",
                   "claims_supported", "token_endpoint_auth_methods_supported"):
        assert metadata[member], member
    assert metadata["issuer"] == ISSUER and "openid" in metadata["scopes_supported"]
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
