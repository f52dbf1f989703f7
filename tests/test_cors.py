"""CORS only for the origins of registered redirect URIs, and only on the endpoints a single-page
app calls: discovery, JWKS, token, userinfo, revocation."""

from __future__ import annotations

import pytest

from tests.oidc_rp import register_portal

SPA = "http://127.0.0.1:8123"


@pytest.fixture
def spa(app) -> None:
    register_portal(app, client_id="portal-spa", redirect_uris=[f"{SPA}/callback.html"],
                    token_endpoint_auth_method="none")


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/jwks"])
def test_a_registered_origin_may_read_discovery_and_keys(client, spa, path: str) -> None:
    r = client.get(path, headers={"Origin": SPA})
    assert r.headers["Access-Control-Allow-Origin"] == SPA and "Origin" in r.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in r.headers


@pytest.mark.parametrize("path", ["/token", "/userinfo", "/revoke"])
def test_the_preflight_of_token_userinfo_and_revocation_is_answered(client, spa, path: str) -> None:
    r = client.options(path, headers={"Origin": SPA, "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "authorization,content-type"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == SPA
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]


def test_an_unregistered_origin_gets_no_cors_headers(client, spa) -> None:
    r = client.get("/jwks", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers


@pytest.mark.parametrize("path", ["/authorize", "/login", "/introspect", "/par", "/account"])
def test_nothing_else_is_open_across_origins(client, spa, path: str) -> None:
    r = client.get(path, headers={"Origin": SPA})
    assert "Access-Control-Allow-Origin" not in r.headers


def test_origins_compare_as_browsers_send_them(app) -> None:
    from idp.oidc.cors import origin_of

    assert origin_of("https://Portal.Example.id:443/cb") == "https://portal.example.id"
    assert origin_of("http://127.0.0.1:8123/callback.html") == "http://127.0.0.1:8123"
    assert origin_of("https://user:pw@portal.example.id/cb") == "https://portal.example.id"
    assert origin_of("null") == "" and origin_of("https://x:99999/") == ""


def test_cached_discovery_varies_by_origin_even_without_one(client, spa) -> None:
    assert "Origin" in client.get("/jwks").headers["Vary"]
