"""The example portals on their own, against a stand-in OpenID Provider served over HTTP.

The portals are clients: their tests may stand in for the provider (discovery, JWKS, token, userinfo)
with a tiny server signing with a test key. What is tested is the portal's side of the protocol:
PKCE/state/nonce on the way out, ID token and acr checks on the way back, step-up, RP-initiated
logout, and the back-channel logout receiver (OIDC Back-Channel Logout 1.0 §2.6, §2.8).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask, jsonify, request
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

import clients.health
import clients.social

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"


class StandInProvider:
    """Discovery, JWKS, token and userinfo endpoints of a minimal OP, on a real local port."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        self.published = [self.key]
        self.codes: dict[str, dict[str, Any]] = {}
        self.jwks_fetches = 0
        app = Flask("stand-in-op")
        app.add_url_rule("/.well-known/openid-configuration", view_func=self.discovery)
        app.add_url_rule("/jwks", view_func=self.jwks)
        app.add_url_rule("/token", view_func=self.token, methods=["POST"])
        app.add_url_rule("/userinfo", view_func=self.userinfo)
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def discovery(self) -> Any:
        return jsonify(
            issuer=self.issuer, authorization_endpoint=f"{self.issuer}/authorize",
            token_endpoint=f"{self.issuer}/token", userinfo_endpoint=f"{self.issuer}/userinfo",
            jwks_uri=f"{self.issuer}/jwks", end_session_endpoint=f"{self.issuer}/logout",
            id_token_signing_alg_values_supported=["RS256"], response_types_supported=["code"],
            subject_types_supported=["pairwise"], code_challenge_methods_supported=["S256"],
        )

    def jwks(self) -> Any:
        self.jwks_fetches += 1
        return jsonify(KeySet(self.published).as_dict(private=False))

    def sign(self, claims: dict[str, Any], key: RSAKey | None = None, typ: str = "JWT") -> str:
        key = key or self.key
        return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": typ}, claims, key)

    def issue_code(self, authorize_url: str, **claims: Any) -> tuple[str, str]:
        """What the OP does at /authorize: remember the request, return (code, state)."""
        q = {k: v[0] for k, v in parse_qs(urlsplit(authorize_url).query).items()}
        code = uuid.uuid4().hex
        self.codes[code] = {"request": q, "claims": claims}
        return code, q["state"]

    def token(self) -> Any:
        grant = self.codes.pop(request.form["code"])
        q = grant["request"]
        verifier = request.form["code_verifier"]
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        assert challenge.decode() == q["code_challenge"], "PKCE verifier does not match"
        assert request.authorization is not None and request.authorization.type == "basic"
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": q["client_id"], "iat": now, "exp": now + 300,
                  "nonce": q["nonce"], "sub": "pairwise-sub-1", "sid": "sid-1",
                  "acr": "urn:satuid:loa:1", "amr": ["pwd"], **grant["claims"]}
        return jsonify(access_token="at-" + claims["sub"], token_type="Bearer", expires_in=300,
                       id_token=self.sign(claims))

    def userinfo(self) -> Any:
        sub = request.headers["Authorization"].removeprefix("Bearer at-")
        return jsonify(sub=sub, name="Siti Rahayu", birthdate="1990-08-17")

    def logout_token(self, *, key: RSAKey | None = None, typ: str = "logout+jwt", **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": "portal-kesehatan", "iat": now, "exp": now + 120,
            "jti": uuid.uuid4().hex, "sub": "pairwise-sub-1", "sid": "sid-1",
            "events": {LOGOUT_EVENT: {}},
        }
        claims.update(overrides)
        return self.sign({k: v for k, v in claims.items() if v is not None}, key, typ)

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture(scope="module")
def op() -> Iterator[StandInProvider]:
    provider = StandInProvider()
    yield provider
    provider.close()


def portal_app(module: Any, op: StandInProvider, tmp_path: Path) -> Flask:
    config = replace(module.CONFIG, issuer=op.issuer, base_url="http://portal.test",
                     session_db=str(tmp_path / f"{module.CONFIG.name}.sqlite"), secret_key="test")
    app = module.create_app(config)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def health(op: StandInProvider, tmp_path: Path) -> Flask:
    return portal_app(clients.health, op, tmp_path)


def sign_in(client: FlaskClient, op: StandInProvider, next_path: str = "/", **claims: Any) -> Any:
    """The browser's round trip: portal → (stand-in) authorization → portal callback."""
    start = client.get(f"/login?next={next_path}")
    assert start.status_code == 302
    code, state = op.issue_code(start.headers["Location"], **claims)
    return client.get(f"/auth/callback?code={code}&state={state}&iss={op.issuer}")


def backchannel(client: FlaskClient, token: str) -> Any:
    return client.post("/auth/backchannel-logout", data={"logout_token": token})


# ---- signing in ---------------------------------------------------------------------------------

def test_login_request_uses_pkce_s256_state_nonce_and_the_registered_redirect_uri(
        health: Flask, op: StandInProvider) -> None:
    response = health.test_client().get("/login")
    url = urlsplit(response.headers["Location"])
    q = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{op.issuer}/authorize"
    assert q["response_type"] == ["code"] and q["client_id"] == ["portal-kesehatan"]
    assert q["redirect_uri"] == ["http://portal.test/auth/callback"]
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
    assert q["state"][0] and q["nonce"][0]
    assert q["scope"] == ["openid profile nik"]
    assert "acr_values" not in q


def test_third_party_initiated_login_from_the_trusted_issuer_starts_a_normal_request(
        health: Flask, op: StandInProvider) -> None:
    """OIDC Core §4: SatuID's services home sends the browser to initiate_login_uri with iss; the
    portal starts its own request (state, nonce, PKCE) and keeps target_link_uri within itself."""
    client = health.test_client()
    response = client.get("/auth/initiate", query_string={
        "iss": op.issuer, "target_link_uri": "http://portal.test/sensitive"})
    url = urlsplit(response.headers["Location"])
    q = parse_qs(url.query)
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{op.issuer}/authorize"
    assert q["state"][0] and q["nonce"][0] and q["code_challenge_method"] == ["S256"]
    with client.session_transaction() as session:
        assert session["next"] == "/sensitive"
    for target in ("https://evil.example/x", "http://portal.test/\t/evil.example",
                   "http://portal.test/\\evil.example", "http://portal.test//evil.example"):
        client.get("/auth/initiate", query_string={"iss": op.issuer, "target_link_uri": target})
        with client.session_transaction() as session:
            assert session["next"] == "/", target


def test_third_party_initiated_login_from_another_issuer_is_refused(health: Flask) -> None:
    for iss in ("https://other-idp.example", "", "http://127.0.0.1:1"):
        response = health.test_client().get("/auth/initiate", query_string={"iss": iss})
        assert response.status_code == 400 and "Location" not in response.headers


def test_callback_signs_in_and_shows_name_and_received_claims(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    response = sign_in(client, op)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert "Selamat datang, Siti Rahayu" in page
    assert 'data-claim="sid">sid-1<' in page and 'data-claim="birthdate">1990-08-17<' in page


def test_callback_with_a_forged_state_signs_nobody_in(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    start = client.get("/login")
    code, _ = op.issue_code(start.headers["Location"])
    response = client.get(f"/auth/callback?code={code}&state=forged")
    assert response.status_code == 400
    assert "Selamat datang" not in client.get("/").get_data(as_text=True)


def test_provider_error_is_shown_not_crashed(health: Flask) -> None:
    client = health.test_client()
    client.get("/login")
    response = client.get("/auth/callback?error=access_denied&state=x")
    assert response.status_code == 400
    assert "Masuk dibatalkan" in response.get_data(as_text=True)


def test_session_id_changes_at_sign_in(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    client.get("/login")
    before = client.get_cookie("portal_health")
    assert before is not None
    sign_in(client, op)
    after = client.get_cookie("portal_health")
    assert after is not None and after.value != before.value


def test_each_portal_has_its_own_session_cookie(op: StandInProvider, tmp_path: Path) -> None:
    names = set()
    for module in (clients.health, clients.social):
        client = portal_app(module, op, tmp_path).test_client()
        client.get("/login")
        names |= {c.key for c in client._cookies.values()}
    assert names == {"portal_health", "portal_social"}


def test_next_is_only_a_local_path(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    assert sign_in(client, op, next_path="//evil.example/x").headers["Location"] == "/"


# ---- step-up ------------------------------------------------------------------------------------

def test_sensitive_page_at_loa1_asks_the_provider_for_loa2(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    sign_in(client, op)
    response = client.get("/rekam-medis")
    assert response.status_code == 302
    q = parse_qs(urlsplit(response.headers["Location"]).query)
    assert q["acr_values"] == ["urn:satuid:loa:2"]


def test_step_up_answer_at_loa2_opens_the_sensitive_page(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    sign_in(client, op)
    start = client.get("/rekam-medis")
    code, state = op.issue_code(start.headers["Location"], acr="urn:satuid:loa:2", amr=["pwd", "otp"])
    back = client.get(f"/auth/callback?code={code}&state={state}")
    assert back.headers["Location"] == "/rekam-medis"
    page = client.get("/rekam-medis")
    assert page.status_code == 200 and "urn:satuid:loa:2" in page.get_data(as_text=True)


def test_step_up_answer_still_at_loa1_is_refused(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    sign_in(client, op)
    start = client.get("/rekam-medis")
    code, state = op.issue_code(start.headers["Location"])  # the OP answers with loa:1 again
    response = client.get(f"/auth/callback?code={code}&state={state}")
    assert response.status_code == 403
    assert "Verifikasi belum cukup" in response.get_data(as_text=True)
    assert client.get("/rekam-medis").status_code == 302


def test_social_aid_application_needs_loa2_too(op: StandInProvider, tmp_path: Path) -> None:
    client = portal_app(clients.social, op, tmp_path).test_client()
    sign_in(client, op, acr="urn:satuid:loa:2")
    page = client.get("/pengajuan-bantuan").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    done = client.post("/pengajuan-bantuan", data={"csrf_token": token.group(1), "programme": "pkh"})
    assert re.search(r"BANSOS-[0-9A-F]{8}", done.get_data(as_text=True))


# ---- RP-initiated logout ------------------------------------------------------------------------

def test_logout_ends_the_portal_session_and_goes_to_end_session_with_hint_and_state(
        health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    sign_in(client, op)
    page = client.get("/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    response = client.post("/logout", data={"csrf_token": csrf.group(1)})
    url = urlsplit(response.headers["Location"])
    q = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{op.issuer}/logout"
    assert q["post_logout_redirect_uri"] == "http://portal.test/"
    assert q["client_id"] == "portal-kesehatan" and q["state"]
    assert jwt.decode(q["id_token_hint"], KeySet([op.key])).claims["sub"] == "pairwise-sub-1"
    assert "Belum masuk" in client.get("/").get_data(as_text=True)
    back = client.get(f"/?state={q['state']}")
    assert back.status_code == 200 and "Anda sudah keluar" in back.get_data(as_text=True)
    assert client.get(f"/?state={q['state']}").status_code == 400  # state is single-use


def test_logout_without_csrf_token_is_refused(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    sign_in(client, op)
    assert client.post("/logout").status_code == 400
    assert "Selamat datang" in client.get("/").get_data(as_text=True)


# ---- back-channel logout ------------------------------------------------------------------------

def test_backchannel_logout_ends_the_session_of_that_sid(health: Flask, op: StandInProvider) -> None:
    client, other = health.test_client(), health.test_client()
    sign_in(client, op)
    sign_in(other, op, sid="sid-2")
    response = backchannel(health.test_client(), op.logout_token(sid="sid-1"))
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    assert "Belum masuk" in client.get("/").get_data(as_text=True)
    assert "Selamat datang" in other.get("/").get_data(as_text=True)


def test_backchannel_logout_with_only_sub_ends_every_session_of_that_subject(
        health: Flask, op: StandInProvider) -> None:
    a, b = health.test_client(), health.test_client()
    sign_in(a, op, sid="sid-a")
    sign_in(b, op, sid="sid-b")
    assert backchannel(health.test_client(), op.logout_token(sid=None)).status_code == 200
    assert health.extensions["portal.sessions"].count() == 0


def test_backchannel_logout_for_unknown_sid_is_still_accepted(health: Flask, op: StandInProvider) -> None:
    assert backchannel(health.test_client(), op.logout_token(sid="never-seen")).status_code == 200


def test_replayed_logout_token_is_refused(health: Flask, op: StandInProvider) -> None:
    token = op.logout_token()
    client = health.test_client()
    assert backchannel(client, token).status_code == 200
    second = backchannel(client, token)
    assert second.status_code == 400 and second.get_json()["error"] == "invalid_request"


def test_logout_token_signed_with_a_rotated_in_key_is_accepted_after_refetching_jwks(
        health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    assert backchannel(client, op.logout_token()).status_code == 200  # JWKS fetched and cached
    new_key = RSAKey.generate_key(2048, parameters={"kid": "k2", "use": "sig", "alg": "RS256"})
    op.published = [op.key, new_key]
    fetches = op.jwks_fetches
    try:
        assert backchannel(client, op.logout_token(key=new_key)).status_code == 200
        assert op.jwks_fetches == fetches + 1
    finally:
        op.published = [op.key]


def _none_alg_token(op: StandInProvider) -> str:
    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"iss": op.issuer, "aud": "portal-kesehatan", "iat": now, "exp": now + 60, "jti": "x",
              "sid": "sid-1", "events": {LOGOUT_EVENT: {}}}
    return f"{b64({'alg': 'none'})}.{b64(claims)}."


@pytest.mark.parametrize("make_token, reason", [
    (lambda op: op.logout_token(iss="https://other.example"), "iss"),
    (lambda op: op.logout_token(aud="portal-bansos"), "aud"),
    (lambda op: op.logout_token(iat=None), "iat"),
    (lambda op: op.logout_token(exp=int(time.time()) - 3600), "exp"),
    (lambda op: op.logout_token(jti=None), "jti"),
    (lambda op: op.logout_token(sid=None, sub=None), "sid nor sub"),
    (lambda op: op.logout_token(events=None), "event"),
    (lambda op: op.logout_token(events={"http://example.com/other": {}}), "event"),
    (lambda op: op.logout_token(nonce="n-1"), "nonce"),
    (lambda op: op.logout_token(typ="at+jwt"), "typ"),
    (lambda op: op.logout_token(key=RSAKey.generate_key(2048, parameters={"kid": "k1"})), "signature"),
    (_none_alg_token, "signature"),
    (lambda op: "not-a-jwt", "signature"),
])
def test_invalid_logout_token_is_refused_with_400_and_ends_nothing(
        health: Flask, op: StandInProvider, make_token: Any, reason: str) -> None:
    client = health.test_client()
    sign_in(client, op)
    response = backchannel(health.test_client(), make_token(op))
    assert response.status_code == 400
    body = response.get_json()
    assert body["error"] == "invalid_request" and reason in body["error_description"]
    assert "Selamat datang" in client.get("/").get_data(as_text=True)


def test_missing_logout_token_is_refused(health: Flask) -> None:
    assert health.test_client().post("/auth/backchannel-logout").status_code == 400


# ---- independence from the provider's code ------------------------------------------------------

def test_portals_never_import_the_provider() -> None:
    root = Path(clients.health.__file__).resolve().parent.parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(from|import)\s+idp\b", text, re.M), path


# ---- failures -----------------------------------------------------------------------------------

def test_unreachable_provider_gives_a_readable_502(tmp_path: Path) -> None:
    from tests.servers import free_port

    config = replace(clients.health.CONFIG, issuer=f"http://127.0.0.1:{free_port()}",
                     base_url="http://portal.test", session_db=str(tmp_path / "h.sqlite"))
    response = clients.health.create_app(config).test_client().get("/login")
    assert response.status_code == 502
    assert "SatuID tidak dapat dihubungi" in response.get_data(as_text=True)


def test_id_token_with_a_wrong_nonce_signs_nobody_in(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    response = sign_in(client, op, nonce="not-the-one-we-sent")
    assert response.status_code == 400
    assert "Masuk tidak berhasil" in response.get_data(as_text=True)
    assert "Belum masuk" in client.get("/").get_data(as_text=True)


def test_id_token_for_another_audience_signs_nobody_in(health: Flask, op: StandInProvider) -> None:
    client = health.test_client()
    assert sign_in(client, op, aud="portal-bansos").status_code == 400
    assert "Belum masuk" in client.get("/").get_data(as_text=True)


def test_expired_sessions_are_not_loaded_and_are_cleared_out(tmp_path: Path) -> None:
    from clients.sessions import SessionStore

    store = SessionStore(tmp_path / "s.sqlite")
    old = store.create({"user": {"sid": "s1", "sub": "u1"}}, lifetime=-1)
    assert store.load(old) is None
    store.create({"next": "/"}, lifetime=60)
    assert store.count() == 1
    assert store.end_logins(sid="s1", sub=None) == 0  # the expired row is gone already
