"""The authorization code flow through the real pages (Flask test client), on both backends."""

from __future__ import annotations

import json
import time

from joserfc import jwt
from joserfc.jwk import KeySet

from tests.oidc_rp import Portal, query, register_portal


def _portal(app, client, **fields) -> Portal:
    info = register_portal(app, **fields)
    return Portal(client, info["client_id"], info["secret"], info["redirect_uri"])


def _verify(client, token: str, audience: str) -> dict:
    keys = KeySet.import_key_set(client.get("/jwks").get_json())
    decoded = jwt.decode(token, keys)
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": "http://127.0.0.1:5000"},
                          aud={"essential": True, "value": audience},
                          exp={"essential": True}).validate(decoded.claims)
    return {**decoded.claims, "_header": decoded.header}


def test_code_flow_with_login_and_consent_issues_verified_tokens(app, client, factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    result = portal.sign_in(citizen.nik, citizen.password, scope="openid profile email")
    assert result["state"] == portal.last["state"]
    assert result["iss"] == "http://127.0.0.1:5000"
    response = portal.token(result["code"])
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert "refresh_token" not in body  # no offline_access asked
    claims = _verify(client, body["id_token"], portal.client_id)
    assert claims["nonce"] == portal.last["nonce"]
    assert claims["acr"] == "urn:satuid:loa:1" and claims["amr"] == ["pwd"]
    assert claims["sid"] and claims["auth_time"] and claims["at_hash"]
    assert citizen.nik not in json.dumps(claims)
    access = _verify(client, body["access_token"], portal.client_id)
    assert access["_header"]["typ"] == "at+jwt" and access["sub"] == claims["sub"]
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200 and info.headers["Cache-Control"] == "no-store"
    data = info.get_json()
    assert data["sub"] == claims["sub"] and data["name"] == "Siti Rahayu"
    assert data["email"] == citizen.email and data["birthdate"] == "1990-08-17"
    assert "nik" not in data and "address" not in data


def test_consent_is_asked_once_then_again_only_for_new_scopes(app, client, factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    portal.sign_in(citizen.nik, citizen.password, scope="openid profile")
    # Same scopes: straight back to the portal, no consent page.
    response = client.get(portal.authorize_url("openid profile"))
    assert response.headers["Location"].startswith(portal.redirect_uri)
    # A new scope asks again.
    response = client.get(portal.authorize_url("openid profile email"))
    assert "/consent?" in response.headers["Location"]
    # prompt=consent always asks.
    portal.sign_in(scope="openid profile email")
    response = client.get(portal.authorize_url("openid profile", prompt="consent"))
    assert "/consent?" in response.headers["Location"]
    from sqlalchemy import select

    from idp.db import get_session
    from idp.models import ConsentRecord

    with app.app_context():
        actions = list(get_session().scalars(select(ConsentRecord.action).order_by(ConsentRecord.id)))
    assert actions == ["granted", "extended"]


def test_denied_consent_returns_access_denied(app, client, factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    result = portal.sign_in(citizen.nik, citizen.password, consent="deny")
    assert result["error"] == "access_denied" and result["iss"] and result["state"] == portal.last["state"]


def test_prompt_none_without_session_and_without_consent(app, client, factory, auth) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    result = query(client.get(portal.authorize_url(prompt="none")).headers["Location"])
    assert result["error"] == "login_required" and result["state"] == portal.last["state"]
    auth.login(citizen.nik, citizen.password)
    result = query(client.get(portal.authorize_url(prompt="none")).headers["Location"])
    assert result["error"] == "consent_required"
    portal.sign_in()
    result = query(client.get(portal.authorize_url(prompt="none")).headers["Location"])
    assert "code" in result and result["iss"] == "http://127.0.0.1:5000"


def test_max_age_and_prompt_login_force_a_new_login(app, client, factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    portal.sign_in(citizen.nik, citizen.password)
    time.sleep(1.1)
    response = client.get(portal.authorize_url(max_age="0"))
    assert "/login?" in response.headers["Location"]
    result = query(portal.follow(response, citizen.nik, citizen.password))
    body = portal.token(result["code"]).get_json()
    claims = _verify(client, body["id_token"], portal.client_id)
    assert time.time() - claims["auth_time"] < 3
    response = client.get(portal.authorize_url(prompt="login"))
    assert "/login?" in response.headers["Location"]


def test_acr_above_the_session_level_steps_up_with_a_second_factor(app, client, factory) -> None:
    import re

    from tests.conftest import csrf_token, outbox_messages

    citizen = factory.citizen(phone="+6281234567821", phone_verified=True)
    portal = _portal(app, client)
    portal.sign_in(citizen.nik, citizen.password)
    result = query(client.get(portal.authorize_url(prompt="none", acr_values="urn:satuid:loa:2"))
                   .headers["Location"])
    assert result["error"] == "interaction_required"
    location = client.get(portal.authorize_url(acr_values="urn:satuid:loa:2")).headers["Location"]
    assert location.startswith("/login/step-up?interaction=")
    uid = query(location)["interaction"]
    page = client.get(location).get_data(as_text=True)
    client.post("/login/step-up/send", data={"csrf_token": csrf_token(page), "interaction": uid,
                                             "factor": "sms"})
    code = re.search(r"\b(\d{6})\b", outbox_messages(app, citizen.phone)[0]).group(1)
    response = client.post("/login/step-up", data={"csrf_token": csrf_token(page), "interaction": uid,
                                                   "factor": "sms", "code": code})
    result = query(portal.follow(response))
    body = portal.token(result["code"]).get_json()
    claims = _verify(client, body["id_token"], portal.client_id)
    assert claims["acr"] == "urn:satuid:loa:2" and {"sms", "mfa"} <= set(claims["amr"])


def test_step_up_aborted_returns_unmet_authentication_requirements(app, client, factory) -> None:
    from tests.conftest import csrf_token

    citizen = factory.citizen()
    portal = _portal(app, client, minimum_loa=3)
    response = client.get(portal.authorize_url())
    response = client.post("/login", data={
        "csrf_token": csrf_token(client.get(response.headers["Location"]).get_data(True)),
        "nik": citizen.nik, "password": citizen.password,
        "interaction": query(response.headers["Location"])["interaction"], "next": ""})
    location = client.get(response.headers["Location"]).headers["Location"]
    assert location.startswith("/login/step-up?interaction=")
    page = client.get(location).get_data(as_text=True)
    response = client.post("/login/step-up/cancel", data={"csrf_token": csrf_token(page),
                                                          "interaction": query(location)["interaction"]})
    result = query(portal.follow(response))
    assert result["error"] == "unmet_authentication_requirements" and result["iss"]


def test_pairwise_subjects_differ_between_sectors_and_nik_needs_its_scope(app, client, factory) -> None:
    citizen = factory.citizen()
    health = _portal(app, client, client_id="health", sector_identifier="kesehatan.example.id",
                     scopes=["openid", "profile", "nik"])
    social = _portal(app, client, client_id="social", sector_identifier="bansos.example.id")
    first = health.sign_in(citizen.nik, citizen.password, scope="openid profile nik")
    health_tokens = health.token(first["code"]).get_json()
    second = social.sign_in(scope="openid profile nik")  # nik is not allowed to this portal
    social_tokens = social.token(second["code"]).get_json()
    assert "nik" not in social_tokens["scope"].split()
    h = _verify(client, health_tokens["id_token"], "health")
    s = _verify(client, social_tokens["id_token"], "social")
    assert h["sub"] != s["sub"]
    h_info = client.get("/userinfo", headers={"Authorization": f"Bearer {health_tokens['access_token']}"})
    s_info = client.get("/userinfo", headers={"Authorization": f"Bearer {social_tokens['access_token']}"})
    assert h_info.get_json()["nik"] == citizen.nik
    assert citizen.nik not in s_info.get_data(as_text=True)
    assert citizen.nik not in json.dumps(jwt.decode(social_tokens["access_token"],
                                                    KeySet.import_key_set(client.get("/jwks").get_json()))
                                         .claims)


def test_claims_parameter_puts_requested_claims_in_the_id_token(app, client, factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    claims_param = json.dumps({"id_token": {"email": {"essential": True}}, "userinfo": {"name": None}})
    result = portal.sign_in(citizen.nik, citizen.password, scope="openid profile email",
                            claims=claims_param)
    body = portal.token(result["code"]).get_json()
    claims = _verify(client, body["id_token"], portal.client_id)
    assert claims["email"] == citizen.email and "name" not in claims
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"}).get_json()
    assert set(info) == {"sub", "name"}


def test_releases_are_recorded_and_shown_on_the_activity_page(app, client, factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    result = portal.sign_in(citizen.nik, citizen.password, scope="openid email")
    body = portal.token(result["code"]).get_json()
    client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    page = client.get("/account/activity?lang=en").get_data(as_text=True)
    assert "Portal portal-test" in page and "Your email address" in page
    from sqlalchemy import select

    from idp.db import get_session
    from idp.models import ClaimRelease

    with app.app_context():
        channels = [r.channel for r in get_session().scalars(select(ClaimRelease).order_by(ClaimRelease.id))]
    assert channels == ["id_token", "userinfo"]


def test_discovery_advertises_every_endpoint_and_jwks_is_cacheable(client) -> None:
    from authlib.oidc.discovery import OpenIDProviderMetadata

    response = client.get("/.well-known/openid-configuration")
    metadata = OpenIDProviderMetadata(response.get_json())
    metadata.validate()
    for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri",
                 "revocation_endpoint", "introspection_endpoint",
                 "pushed_authorization_request_endpoint", "end_session_endpoint"):
        path = metadata[name].replace("http://127.0.0.1:5000", "")
        assert client.open(path, method="OPTIONS").status_code != 404, name
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    jwks = client.get("/jwks")
    assert "max-age" in jwks.headers["Cache-Control"]
    assert {k["alg"] for k in jwks.get_json()["keys"]} == {"RS256", "ES256"}
    assert all("d" not in k for k in jwks.get_json()["keys"])


def test_es256_client_gets_es256_id_tokens(app, client, factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client, id_token_signed_response_alg="ES256")
    result = portal.sign_in(citizen.nik, citizen.password)
    body = portal.token(result["code"]).get_json()
    assert _verify(client, body["id_token"], portal.client_id)["_header"]["alg"] == "ES256"


def test_pushed_authorization_request_is_used_once(app, client, factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    portal.authorize_url("openid profile")
    params = {k: v for k, v in portal.last.items() if k != "verifier"}
    pushed = portal.post("/par", params)
    assert pushed.status_code == 201, pushed.get_json()
    request_uri = pushed.get_json()["request_uri"]
    response = client.get(f"/authorize?client_id={portal.client_id}&request_uri={request_uri}")
    result = query(portal.follow(response, citizen.nik, citizen.password))
    assert portal.token(result["code"]).status_code == 200
    again = client.get(f"/authorize?client_id={portal.client_id}&request_uri={request_uri}")
    assert again.status_code == 400
    bad = portal.post("/par", {**params, "code_challenge_method": "plain"})
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_request"


def test_authorize_accepts_a_form_post_and_ui_locales_choose_the_language(app, client, factory) -> None:
    portal = _portal(app, client)
    portal.authorize_url("openid profile", ui_locales="en", login_hint="3174045708900001")
    params = {k: v for k, v in portal.last.items() if k != "verifier"}
    response = client.post("/authorize", data=params)  # no CSRF token: RPs post here
    assert response.status_code == 302 and "/login?interaction=" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "Log in to SatuID" in page and "Portal portal-test" in page


MALFORMED = [
    ({"max_age": "\u00b2"}, "invalid_request"),          # a digit to str.isdigit, not to int()
    ({"max_age": "9" * 40}, "invalid_request"),
    ({"prompt": "none login"}, "invalid_request"),
    ({"response_mode": "fragment"}, "invalid_request"),
    ({"response_mode": "form_post"}, "invalid_request"),
    ({"claims": json.dumps({"id_token": {"acr": {"essential": True, "values": "urn:x"}}})},
     "invalid_request"),
    ({"claims": json.dumps({"id_token": {"email": {"essential": "yes"}}})}, "invalid_request"),
    ({"claims": "[" * 5000 + "]" * 5000}, "invalid_request"),      # over the size limit
    ({"claims": '{"id_token":' * 3000 + "{}" + "}" * 3000}, "invalid_request"),
    # Under the size limit, deep enough to exhaust the JSON parser's recursion...
    ({"claims": '{"id_token":{"email":{"x":' + "[" * 1500 + "]" * 1500 + "}}}"}, "invalid_request"),
    # ...or merely deeper than any claims request needs.
    ({"claims": '{"id_token":{"email":{"x":[[[[1]]]]}}}'}, "invalid_request"),
    ({"claims": '{"id_token":{"email":{"value":1e400}}}'}, "invalid_request"),   # infinity
    ({"claims": '{"id_token":{"email":{"value":NaN}}}'}, "invalid_request"),
    ({"request": "eyJhbGciOiJub25lIn0.e30."}, "request_not_supported"),
]


def test_malformed_parameters_are_returned_as_errors_not_500s(app, client, factory, auth) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    auth.login(citizen.nik, citizen.password)
    for extra, error in MALFORMED:
        response = client.get(portal.authorize_url(**extra))
        assert response.status_code == 302, extra
        result = query(response.headers["Location"])
        assert result["error"] == error and result["state"] == portal.last["state"], extra
        # The same request pushed is refused at the push, as JSON (RFC 9126 §2.3).
        params = {k: v for k, v in portal.last.items() if k != "verifier"}
        pushed = portal.post("/par", params)
        assert pushed.status_code == 400 and pushed.get_json()["error"] == error, extra


def test_request_uri_needs_the_client_id_it_was_pushed_by(app, client, factory) -> None:
    portal = _portal(app, client)
    portal.authorize_url("openid profile")
    params = {k: v for k, v in portal.last.items() if k != "verifier"}
    request_uri = portal.post("/par", params).get_json()["request_uri"]
    assert client.get(f"/authorize?request_uri={request_uri}").status_code == 400
    other = _portal(app, client, client_id="another-portal")
    assert client.get(f"/authorize?client_id={other.client_id}&request_uri={request_uri}"
                      ).status_code == 400


def test_a_sub_asked_for_by_value_answers_only_for_that_citizen(app, client, factory, auth) -> None:
    """OIDC Core §5.5.1: never an ID token for another citizen than the requested sub."""
    siti, budi = factory.citizen(), factory.citizen()
    portal = _portal(app, client)
    first = portal.sign_in(siti.nik, siti.password)
    siti_sub = _verify(client, portal.token(first["code"]).get_json()["id_token"],
                       portal.client_id)["sub"]
    wanted = json.dumps({"id_token": {"sub": {"value": siti_sub}}})
    # Siti's own session: answered silently.
    assert "code" in query(client.get(portal.authorize_url(prompt="none", claims=wanted))
                           .headers["Location"])
    # Budi at the same browser: prompt=none fails; otherwise the login page is shown, and if
    # Budi logs in again the portal still gets no code for him.
    auth.logout()
    auth.login(budi.nik, budi.password)
    none = query(client.get(portal.authorize_url(prompt="none", claims=wanted)).headers["Location"])
    assert none["error"] == "login_required"
    response = client.get(portal.authorize_url(claims=wanted))
    assert "/login?" in response.headers["Location"]
    result = query(portal.follow(response, budi.nik, budi.password))
    assert result["error"] == "login_required" and "code" not in result


def test_a_client_with_a_secret_may_send_it_in_the_body_or_by_basic(app, client, factory) -> None:
    """openid-client and mozilla-django-oidc post the secret by default, Authlib uses Basic: a
    portal registered either way is accepted either way (as Keycloak and node-oidc-provider do)."""
    citizen = factory.citizen()
    portal = _portal(app, client, token_endpoint_auth_method="client_secret_basic")
    result = portal.sign_in(citizen.nik, citizen.password, scope="openid offline_access")
    body = {"grant_type": "authorization_code", "code": result["code"],
            "redirect_uri": portal.redirect_uri, "code_verifier": portal.last["verifier"],
            "client_id": portal.client_id, "client_secret": portal.secret}
    response = client.post("/token", data=body)  # client_secret_post, not what it registered
    assert response.status_code == 200, response.get_json()
    refresh = response.get_json()["refresh_token"]
    wrong = client.post("/token", data={"grant_type": "refresh_token", "refresh_token": refresh,
                                        "client_id": portal.client_id, "client_secret": "not-it"})
    assert wrong.status_code == 401 and wrong.get_json()["error"] == "invalid_client"
    assert portal.refresh(refresh).status_code == 200  # and Basic still works


def test_public_and_key_clients_authenticate_only_their_own_way(app, client) -> None:
    """A public client cannot start sending a secret, nor a private_key_jwt client a secret."""
    from idp.db import get_session
    from idp.models import Client

    register_portal(app, client_id="portal-publik", token_endpoint_auth_method="none")
    with app.app_context():
        public = get_session().get(Client, "portal-publik")
        assert public is not None
        assert public.check_endpoint_auth_method("none", "token")
        assert not public.check_endpoint_auth_method("client_secret_post", "token")
        assert not public.check_endpoint_auth_method("client_secret_basic", "token")
