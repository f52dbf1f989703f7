"""Request objects (JAR, RFC 9101): signed with the portal's keys they are used and win over the outer
parameters; unsigned, or from a portal without keys, they are refused with request_not_supported
before anything else (the OpenID Basic OP plan accepts either)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from tests.oidc_rp import Portal, pkce_pair, query, register_portal


def _portal(app, client, key: RSAKey | None = None) -> Portal:
    fields: dict[str, Any] = {}
    if key is not None:
        fields["jwks"] = {"keys": [key.as_dict(private=False)]}
    info = register_portal(app, client_id="portal-jar", **fields)
    return Portal(client, info["client_id"], info["secret"], info["redirect_uri"])


def _object(portal: Portal, key: Any, alg: str = "RS256", **claims: Any) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    body = {"iss": portal.client_id, "aud": "http://127.0.0.1:5000", "client_id": portal.client_id,
            "response_type": "code", "redirect_uri": portal.redirect_uri, "scope": "openid profile",
            "state": "from-object", "nonce": "n-object", "code_challenge": challenge,
            "code_challenge_method": "S256", "exp": int(time.time()) + 300, **claims}
    return jwt.encode({"alg": alg}, body, key, algorithms=[alg]), verifier


def test_a_signed_request_object_is_used_and_its_parameters_win(app, client, factory) -> None:
    key = RSAKey.generate_key(2048, private=True)
    portal = _portal(app, client, key)
    citizen = factory.citizen()
    token, verifier = _object(portal, key, claims={"id_token": {"acr": None}}, max_age=600)
    # The outer parameters say otherwise; the object's state, nonce and PKCE win.
    r = client.get("/authorize", query_string={"client_id": portal.client_id, "request": token,
                                               "response_type": "code", "scope": "openid",
                                               "state": "outer"})
    location = portal.follow(r, citizen.nik, citizen.password)
    result = query(location)
    assert result["state"] == "from-object" and "code" in result
    tokens = portal.token(result["code"], verifier=verifier).get_json()
    assert "id_token" in tokens, tokens


@pytest.mark.filterwarnings("ignore:JWS algorithm \"none\" is deprecated")  # made on purpose
def test_an_unsigned_request_object_is_refused_before_anything_else(app, client) -> None:
    portal = _portal(app, client, RSAKey.generate_key(2048, private=True))
    unsigned, _ = _object(portal, None, alg="none")
    # No PKCE outside: the answer is about the request object, not about PKCE.
    r = client.get("/authorize", query_string={"client_id": portal.client_id, "request": unsigned,
                                               "redirect_uri": portal.redirect_uri,
                                               "response_type": "code", "scope": "openid",
                                               "state": "s"})
    assert r.status_code == 302
    assert query(r.headers["Location"])["error"] == "request_not_supported"


def test_a_request_object_from_a_portal_without_keys_is_not_supported(app, client) -> None:
    portal = _portal(app, client)
    token, _ = _object(portal, RSAKey.generate_key(2048, private=True))
    r = client.get("/authorize", query_string={"client_id": portal.client_id, "request": token,
                                               "redirect_uri": portal.redirect_uri, "state": "s"})
    assert query(r.headers["Location"])["error"] == "request_not_supported"


def test_a_request_object_signed_with_another_key_is_invalid(app, client) -> None:
    portal = _portal(app, client, RSAKey.generate_key(2048, private=True))
    forged, _ = _object(portal, RSAKey.generate_key(2048, private=True))
    r = client.get("/authorize", query_string={"client_id": portal.client_id, "request": forged,
                                               "redirect_uri": portal.redirect_uri, "state": "s"})
    assert query(r.headers["Location"])["error"] == "invalid_request_object"


def test_request_uri_other_than_pushed_is_not_supported(app, client) -> None:
    portal = _portal(app, client)
    r = client.get("/authorize", query_string={
        "client_id": portal.client_id, "request_uri": "https://portal-jar.example.id/request.jwt",
        "redirect_uri": portal.redirect_uri, "response_type": "code", "scope": "openid",
        "state": "s"})
    assert query(r.headers["Location"])["error"] == "request_uri_not_supported"


def test_discovery_says_request_objects_are_supported(client) -> None:
    metadata = client.get("/.well-known/openid-configuration").get_json()
    assert metadata["request_parameter_supported"] is True
    assert set(metadata["request_object_signing_alg_values_supported"]) == {"RS256", "PS256", "ES256"}


@pytest.mark.parametrize("drop", ["aud", "exp", "iss"])
def test_a_request_object_without_aud_exp_or_iss_is_invalid(app, client, drop: str) -> None:
    key = RSAKey.generate_key(2048, private=True)
    portal = _portal(app, client, key)
    _verifier, challenge = pkce_pair()
    body = {"iss": portal.client_id, "aud": "http://127.0.0.1:5000", "client_id": portal.client_id,
            "response_type": "code", "redirect_uri": portal.redirect_uri, "scope": "openid",
            "state": "s", "code_challenge": challenge, "code_challenge_method": "S256",
            "exp": int(time.time()) + 300}
    body.pop(drop)
    token = jwt.encode({"alg": "RS256"}, body, key)
    r = client.get("/authorize", query_string={"client_id": portal.client_id, "request": token,
                                               "redirect_uri": portal.redirect_uri, "state": "s"})
    assert query(r.headers["Location"])["error"] == "invalid_request_object"


def test_a_request_object_is_accepted_once_and_nothing_unsigned_joins_it(app, client, factory) -> None:
    key = RSAKey.generate_key(2048, private=True)
    portal = _portal(app, client, key)
    citizen = factory.citizen()
    token, _verifier = _object(portal, key)
    # An unsigned prompt=none beside the object is not used: the login page is shown.
    first = client.get("/authorize", query_string={"client_id": portal.client_id, "request": token,
                                                   "prompt": "none"})
    assert "/login?" in first.headers["Location"]
    portal.follow(first, citizen.nik, citizen.password)
    again = client.get("/authorize", query_string={"client_id": portal.client_id, "request": token,
                                                   "redirect_uri": portal.redirect_uri})
    assert query(again.headers["Location"])["error"] == "invalid_request_object"
