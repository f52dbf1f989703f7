"""End to end: a real gunicorn server, real HTTP, and Authlib's own OAuth 2.0 client as the portal.

Every ID token is validated as a relying party would: signature from the published JWKS, ``iss``,
``aud``, ``exp``, ``nonce`` and ``at_hash``. Runs on the embedded default and on PostgreSQL + Redis.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.core.grants.util import create_half_hash
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.servers import IdpServer, LogoutReceiver

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def idp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    if request.param == "postgres":
        from tests.conftest import services_available

        if not services_available():
            pytest.skip("PostgreSQL/Redis not reachable here (CI sets IDP_TEST_REQUIRE_SERVICES=1)")
    server = IdpServer(tmp_path_factory.mktemp(f"idp-{request.param}"), backend=request.param,
                       name="oidc_e2e")
    with server:
        yield server


@pytest.fixture(scope="module")
def receiver() -> Iterator[LogoutReceiver]:
    with LogoutReceiver() as r:
        yield r


@pytest.fixture(scope="module")
def citizens(idp: IdpServer) -> list[dict[str, Any]]:
    return [line for line in map(json.loads, idp.seed_output.splitlines()) if "password" in line]


@pytest.fixture(scope="module")
def metadata(idp: IdpServer) -> dict[str, Any]:
    return requests.get(idp.url + "/.well-known/openid-configuration", timeout=5).json()


@pytest.fixture(scope="module")
def portal(idp: IdpServer, receiver: LogoutReceiver) -> dict[str, Any]:
    """A portal registered with the operator command, with a back-channel logout URI."""
    out = idp.flask("clients", "create", "--name", "Portal Uji", "--client-id", "portal-uji",
                    "--redirect-uri", "https://uji.example.id/cb", "--post-logout-uri",
                    "https://uji.example.id/", "--scope", "openid profile email offline_access",
                    "--backchannel-logout-uri", receiver.url, "--sector", "uji.example.id")
    return json.loads(out)


class Browser:
    """A citizen's browser: follows SatuID's pages, stops at the portal's redirect_uri."""

    def __init__(self, idp: IdpServer) -> None:
        self.idp = idp
        self.http = requests.Session()

    def go(self, url: str, redirect_prefix: str, citizen: dict[str, Any] | None = None,
           consent: bool = True) -> str:
        response = self.http.get(url, allow_redirects=False, timeout=10)
        for _ in range(12):
            assert response.status_code in (302, 303), (response.status_code, response.text[:300])
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(redirect_prefix):
                return location
            if urlsplit(location).path == "/login" and "interaction=" in location:
                assert citizen is not None, "login asked for"
                page = self.http.get(location, timeout=10)
                response = self.http.post(self.idp.url + "/login", allow_redirects=False, timeout=10, data={
                    "csrf_token": _csrf(page.text), "nik": citizen["nik"], "password": citizen["password"],
                    "interaction": parse_qs(urlsplit(location).query)["interaction"][0], "next": ""})
            elif urlsplit(location).path == "/consent":
                assert consent, "consent asked for"
                page = self.http.get(location, timeout=10)
                response = self.http.post(self.idp.url + "/consent", allow_redirects=False, timeout=10, data={
                    "csrf_token": _csrf(page.text), "decision": "approve",
                    "interaction": parse_qs(urlsplit(location).query)["interaction"][0]})
            else:
                response = self.http.get(location, allow_redirects=False, timeout=10)
        raise AssertionError("too many redirects")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


class RelyingParty:
    """A portal built on Authlib's OAuth2Session, discovery and JWKS; validates every ID token."""

    def __init__(self, metadata: dict[str, Any], client_id: str, secret: Any, redirect_uri: str,
                 scope: str, auth_method: Any = "client_secret_basic") -> None:
        self.metadata = metadata
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.session = OAuth2Session(client_id, secret, scope=scope, redirect_uri=redirect_uri,
                                     code_challenge_method="S256", token_endpoint_auth_method=auth_method)
        if not isinstance(auth_method, str):
            self.session.register_client_auth_method(auth_method)
        self.jwks = self._fetch_jwks()

    def _fetch_jwks(self) -> KeySet:
        return KeySet.import_key_set(requests.get(self.metadata["jwks_uri"], timeout=5).json())

    def start(self, **params: Any) -> tuple[str, dict[str, str]]:
        from authlib.common.security import generate_token

        verifier, nonce = generate_token(48), generate_token(16)
        url, state = self.session.create_authorization_url(
            self.metadata["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **params)
        return url, {"verifier": verifier, "nonce": nonce, "state": state}

    def finish(self, callback: str, flow: dict[str, str]) -> dict[str, Any]:
        query = parse_qs(urlsplit(callback).query)
        assert query["iss"] == [self.metadata["issuer"]]  # RFC 9207 mix-up defence
        token = self.session.fetch_token(self.metadata["token_endpoint"], authorization_response=callback,
                                         code_verifier=flow["verifier"], state=flow["state"])
        self.validate_id_token(token["id_token"], flow["nonce"], token["access_token"])
        return dict(token)

    def validate_id_token(self, id_token: str, nonce: str, access_token: str) -> dict[str, Any]:
        header = jwt.decode(id_token, self.jwks).header if self._knows(id_token) else None
        if header is None:  # unknown kid: refresh the JWKS once, as RPs do
            self.jwks = self._fetch_jwks()
        decoded = jwt.decode(id_token, self.jwks)
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": self.metadata["issuer"]},
                              aud={"essential": True, "value": self.client_id}, exp={"essential": True},
                              iat={"essential": True}, sub={"essential": True},
                              nonce={"essential": True, "value": nonce}).validate(decoded.claims)
        expected = create_half_hash(access_token, decoded.header["alg"]).decode()
        assert decoded.claims["at_hash"] == expected
        return dict(decoded.claims)

    def _knows(self, token: str) -> bool:
        from joserfc import jws

        kid = jws.extract_compact(token.encode()).headers().get("kid")
        return any(k.kid == kid for k in self.jwks.keys)

    def claims(self, id_token: str) -> dict[str, Any]:
        return dict(jwt.decode(id_token, self.jwks).claims)


def _sign_in(rp: RelyingParty, browser: Browser, citizen: dict[str, Any] | None,
             **params: Any) -> dict[str, Any]:
    url, flow = rp.start(**params)
    callback = browser.go(url, rp.redirect_uri, citizen)
    token = rp.finish(callback, flow)
    token["_claims"] = rp.claims(token["id_token"])
    return token


def test_full_flow_with_refresh_rotation_revocation_and_introspection(idp, metadata, portal,
                                                                    citizens) -> None:
    rp = RelyingParty(metadata, portal["client_id"], portal["client_secret"], "https://uji.example.id/cb",
                      "openid profile email offline_access")
    browser = Browser(idp)
    token = _sign_in(rp, browser, citizens[0])
    info = rp.session.get(metadata["userinfo_endpoint"], timeout=5)
    assert info.status_code == 200 and info.headers["Cache-Control"] == "no-store"
    assert info.json()["sub"] == token["_claims"]["sub"] and info.json()["email"] == citizens[0]["email"]
    assert citizens[0]["nik"] not in info.text
    # Refresh rotates; the old refresh token presented again kills the family.
    old_refresh = token["refresh_token"]
    new = rp.session.refresh_token(metadata["token_endpoint"], refresh_token=old_refresh)
    assert new["refresh_token"] != old_refresh
    with pytest.raises(OAuthError) as reuse:
        rp.session.refresh_token(metadata["token_endpoint"], refresh_token=old_refresh)
    assert reuse.value.error == "invalid_grant"
    auth = (portal["client_id"], portal["client_secret"])
    gone = requests.post(metadata["introspection_endpoint"], data={"token": new["access_token"]}, auth=auth,
                         timeout=5).json()
    assert gone == {"active": False}
    # A fresh grant: introspect, then revoke.
    token = _sign_in(rp, browser, None)
    active = requests.post(metadata["introspection_endpoint"], data={"token": token["access_token"]},
                           auth=auth, timeout=5).json()
    assert active["active"] and active["sub"] == token["_claims"]["sub"]
    assert requests.post(metadata["revocation_endpoint"], data={"token": token["refresh_token"],
                                                                "token_type_hint": "refresh_token"},
                         auth=auth, timeout=5).status_code == 200
    assert requests.post(metadata["introspection_endpoint"], data={"token": token["access_token"]},
                         auth=auth, timeout=5).json() == {"active": False}


def test_prompt_none_and_max_age(idp, metadata, portal, citizens) -> None:
    rp = RelyingParty(metadata, portal["client_id"], portal["client_secret"], "https://uji.example.id/cb",
                      "openid profile")
    browser = Browser(idp)
    url, flow = rp.start(prompt="none")
    callback = browser.go(url, rp.redirect_uri)
    assert parse_qs(urlsplit(callback).query)["error"] == ["login_required"]
    first = _sign_in(rp, browser, citizens[1])
    url, flow = rp.start(prompt="none")
    silent = rp.finish(browser.go(url, rp.redirect_uri), flow)
    assert rp.claims(silent["id_token"])["sub"] == first["_claims"]["sub"]
    time.sleep(1.1)
    url, flow = rp.start(max_age="0")
    response = browser.http.get(url, allow_redirects=False, timeout=5)
    assert "/login?interaction=" in response.headers["Location"]
    again = rp.finish(browser.go(url, rp.redirect_uri, citizens[1]), flow)
    assert rp.claims(again["id_token"])["auth_time"] > first["_claims"]["auth_time"]


def test_rp_initiated_and_backchannel_logout(idp, metadata, portal, citizens, receiver) -> None:
    rp = RelyingParty(metadata, portal["client_id"], portal["client_secret"], "https://uji.example.id/cb",
                      "openid profile")
    browser = Browser(idp)
    token = _sign_in(rp, browser, citizens[2])
    already = len(receiver.tokens)
    response = browser.http.get(metadata["end_session_endpoint"], allow_redirects=False, timeout=5, params={
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://uji.example.id/",
        "state": "bye"})
    assert response.headers["Location"] == "https://uji.example.id/?state=bye"
    logout_token = receiver.wait_for(already + 1)[already]
    decoded = jwt.decode(logout_token, rp._fetch_jwks())
    assert decoded.header["typ"] == "logout+jwt"
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": metadata["issuer"]},
                          aud={"essential": True, "value": rp.client_id}, iat={"essential": True},
                          jti={"essential": True}).validate(decoded.claims)
    assert decoded.claims["sid"] == token["_claims"]["sid"] and "nonce" not in decoded.claims
    assert decoded.claims["events"] == {"http://schemas.openid.net/event/backchannel-logout": {}}
    url, _flow = rp.start(prompt="none")
    assert "login_required" in browser.go(url, rp.redirect_uri)


def test_key_rotation_never_fails_a_validation(idp, metadata, portal, citizens) -> None:
    rp = RelyingParty(metadata, portal["client_id"], portal["client_secret"], "https://uji.example.id/cb",
                      "openid profile")
    cached = rp.jwks
    browser = Browser(idp)
    before = _sign_in(rp, browser, citizens[-1])
    idp.flask("keys", "rotate")
    url, flow = rp.start()
    callback = browser.go(url, rp.redirect_uri)
    after = rp.session.fetch_token(metadata["token_endpoint"], authorization_response=callback,
                                   code_verifier=flow["verifier"], state=flow["state"])
    # The portal's cached JWKS, fetched before the rotation, already validates the new token.
    jwt.decode(after["id_token"], cached)
    new_kid = jwt.decode(after["id_token"], cached).header["kid"]
    assert new_kid != jwt.decode(before["id_token"], cached).header["kid"]
    rp.validate_id_token(after["id_token"], flow["nonce"], after["access_token"])
    fresh = KeySet.import_key_set(requests.get(metadata["jwks_uri"], timeout=5).json())
    jwt.decode(before["id_token"], fresh)  # tokens signed before the rotation still validate


def test_private_key_jwt_client(idp, metadata, citizens, tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048, private=True)
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [key.as_dict(private=False)]}))
    client_id = f"portal-pkjwt-{int(time.time() * 1000)}"
    idp.flask("clients", "create", "--name", "Portal Kunci", "--client-id", client_id,
              "--redirect-uri", "https://kunci.example.id/cb", "--scope", "openid profile",
              "--auth-method", "private_key_jwt", "--jwks", str(jwks_file))
    rp = RelyingParty(metadata, client_id, key, "https://kunci.example.id/cb", "openid profile",
                      auth_method=PrivateKeyJWT(metadata["token_endpoint"]))
    _sign_in(rp, Browser(idp), citizens[0])
    wrong = RelyingParty(metadata, client_id, RSAKey.generate_key(2048, private=True),
                         "https://kunci.example.id/cb", "openid profile",
                         auth_method=PrivateKeyJWT(metadata["token_endpoint"]))
    url, flow = wrong.start()
    callback = Browser(idp).go(url, wrong.redirect_uri, citizens[0])
    with pytest.raises(OAuthError) as refused:
        wrong.session.fetch_token(metadata["token_endpoint"], authorization_response=callback,
                                  code_verifier=flow["verifier"], state=flow["state"])
    assert refused.value.error == "invalid_client"


def test_demo_portals_get_different_subjects_and_only_health_sees_the_nik(idp, metadata, citizens) -> None:
    lines = map(json.loads, idp.seed_output.splitlines())
    seeded = {line["client"]: line for line in lines if "client" in line}
    browser = Browser(idp)
    health = RelyingParty(metadata, "portal-kesehatan", seeded["portal-kesehatan"]["client_secret"],
                          seeded["portal-kesehatan"]["redirect_uri"], "openid profile nik")
    social = RelyingParty(metadata, "portal-bansos", seeded["portal-bansos"]["client_secret"],
                          seeded["portal-bansos"]["redirect_uri"], "openid profile nik")
    h = _sign_in(health, browser, citizens[0])
    s = _sign_in(social, browser, None)
    assert h["_claims"]["sub"] != s["_claims"]["sub"]
    nik = citizens[0]["nik"]
    assert health.session.get(metadata["userinfo_endpoint"], timeout=5).json()["nik"] == nik
    social_info = social.session.get(metadata["userinfo_endpoint"], timeout=5).text
    assert nik not in social_info and nik not in json.dumps(s["_claims"]) and "nik" not in s["scope"]


def test_every_worker_sees_an_operators_change_at_once(idp, citizens) -> None:
    """Workers cache portals and signing keys; a change made by an operator command (another
    process) reaches every worker on its next request, not after some expiry."""
    json.loads(idp.flask("clients", "create", "--name", "Portal Cache", "--client-id", "portal-cache",
                         "--redirect-uri", "https://cache.example.id/cb", "--scope", "openid"))
    url = (idp.url + "/authorize?response_type=code&client_id=portal-cache&scope=openid"
           "&redirect_uri=https://cache.example.id/cb&code_challenge_method=S256"
           "&code_challenge=" + "a" * 43 + "&state=s")

    def statuses() -> set[int]:  # a new connection each time: spread over both workers' threads
        return {requests.get(url, allow_redirects=False, timeout=10).status_code for _ in range(24)}

    def published() -> list[set[str]]:
        return [{k["kid"] for k in requests.get(idp.url + "/jwks", timeout=10).json()["keys"]}
                for _ in range(24)]

    assert statuses() == {302}  # known and cached by every worker that served it
    before = published()
    idp.flask("clients", "disable", "portal-cache")
    assert statuses() == {400}
    idp.flask("keys", "rotate")
    after = published()
    assert all(kids == after[0] for kids in after) and after[0] != before[0]
