"""Stock relying-party libraries, in their default configuration, sign a citizen in through SatuID
over real HTTP (gunicorn), each validating the ID token itself: Authlib (``test_oidc_e2e.py``),
openid-client and oauth4webapi from npm (run with Node), and oidc-client-ts as a public client in a
single-page app in headless Chromium (``test_spa_browser.py``). openid-client also asks for levels
of assurance: level 2 with an authenticator app or an SMS code, never an email code; level 3 only
with a passkey (made here by a software authenticator speaking the pages' JSON)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pyotp
import pytest
import requests

from tests.conftest import REQUIRE_SERVICES, services_available
from tests.servers import IdpServer
from tests.test_oidc_e2e import Browser
from tests.webauthn_soft import SoftAuthenticator

pytestmark = pytest.mark.e2e

INTEROP = Path(__file__).resolve().parent / "interop"
WAITING_SECONDS = 20


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    if shutil.which("node") is None or not (INTEROP / "node_modules").is_dir():
        if REQUIRE_SERVICES:
            raise RuntimeError("Node and tests/interop/node_modules are needed (make test installs them)")
        pytest.skip("Node or the npm libraries are not installed here")
    backend = "postgres" if services_available() else "sqlite"
    # A first factor added with the password alone waits seconds here instead of a day.
    with IdpServer(tmp_path_factory.mktemp("interop"), backend=backend, name="interop",
                   extra_env={"IDP_AUTHENTICATOR_WAITING_SECONDS": str(WAITING_SECONDS)}) as server:
        yield server


@pytest.fixture(scope="module")
def citizen(idp: IdpServer) -> dict[str, Any]:
    return next(line for line in map(json.loads, idp.seed_output.splitlines()) if "password" in line)


def register(idp: IdpServer, client_id: str) -> dict[str, Any]:
    """Exactly as an operator would: ``flask clients create`` with its defaults."""
    return json.loads(idp.flask(
        "clients", "create", "--name", f"Portal {client_id}", "--client-id", client_id,
        "--redirect-uri", f"https://{client_id}.example.id/cb",
        "--post-logout-uri", f"https://{client_id}.example.id/",
        "--scope", "openid profile email offline_access", "--sector", f"{client_id}.example.id"))


class NodeRelyingParty:
    """A Node script speaking JSON lines: it says where to send the browser, hears where it came back."""

    def __init__(self, script: str, idp: IdpServer, portal: dict[str, Any], **extra: str) -> None:
        env = {**os.environ, "ISSUER": idp.url, "CLIENT_ID": portal["client_id"],
               "CLIENT_SECRET": portal["client_secret"], "REDIRECT_URI": portal["redirect_uris"][0],
               "POST_LOGOUT_URI": portal["post_logout_redirect_uris"][0], **extra}
        self.process = subprocess.Popen(["node", str(INTEROP / script)], cwd=INTEROP, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)

    def hear(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(self.process.stderr.read() if self.process.stderr else "no output")
        message: dict[str, Any] = json.loads(line)
        assert message["step"] != "error", message
        return message

    def say(self, **values: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(values) + "\n")
        self.process.stdin.flush()

    def close(self) -> None:
        self.process.wait(timeout=30)
        assert self.process.returncode == 0


def sign_in(idp: IdpServer, script: str, client_id: str, citizen: dict[str, Any]) -> tuple[
        dict[str, Any], dict[str, Any], Browser]:
    portal = register(idp, client_id)
    rp = NodeRelyingParty(script, idp, portal)
    browser = Browser(idp)
    try:
        start = rp.hear()
        callback = browser.go(start["url"], portal["redirect_uris"][0], citizen)
        rp.say(callback=callback)
        done = rp.hear()
    finally:
        rp.close()
    return portal, done, browser


def test_openid_client_by_its_defaults_signs_in_refreshes_revokes_and_logs_out(
        idp: IdpServer, citizen: dict[str, Any]) -> None:
    portal, done, browser = sign_in(idp, "openid_client.mjs", "portal-node", citizen)
    assert done["sub"] and done["acr"] == "urn:satuid:loa:1" and done["sid"]
    assert done["userinfo"]["sub"] == done["sub"] and done["userinfo"]["email"] == citizen["email"]
    assert done["refreshed"] and done["revoked"]
    # RP-initiated logout with the library's end-session URL: back to the portal at once.
    response = browser.http.get(done["end_session"], allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert response.headers["Location"] == portal["post_logout_redirect_uris"][0] + "?state=bye"
    silent = browser.http.get(idp.url + "/authorize", allow_redirects=False, timeout=10, params={
        "client_id": portal["client_id"], "redirect_uri": portal["redirect_uris"][0],
        "response_type": "code", "scope": "openid", "prompt": "none", "state": "s",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256"})
    assert parse_qs(urlsplit(silent.headers["Location"]).query)["error"] == ["login_required"]


def test_oauth4webapi_validates_and_refreshes(idp: IdpServer, citizen: dict[str, Any]) -> None:
    _portal, done, _browser = sign_in(idp, "oauth4webapi.mjs", "portal-o4w", citizen)
    assert done["sub"] and done["userinfo"]["sub"] == done["sub"] and done["refreshed"]


def test_discovery_names_what_the_libraries_rely_on(idp: IdpServer) -> None:
    metadata = requests.get(idp.url + "/.well-known/openid-configuration", timeout=5).json()
    assert {"client_secret_basic", "client_secret_post"} <= set(
        metadata["token_endpoint_auth_methods_supported"])
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert metadata["code_challenge_methods_supported"] == ["S256"]


# ---- levels of assurance ---------------------------------------------------------------------------

LEVEL2, LEVEL3 = "urn:satuid:loa:2", "urn:satuid:loa:3"
USED_TOTP_STEPS: set[int] = set()


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert match, html[:300]
    return match.group(1)


def _totp(secret: str) -> str:
    """A code of a step not used yet (the server accepts each step once, and one step of drift)."""
    now = int(time.time() // 30)
    step = next(s for s in (now - 1, now, now + 1) if s not in USED_TOTP_STEPS)
    USED_TOTP_STEPS.add(step)
    return pyotp.TOTP(secret).at(step * 30)


class Citizen:
    """A citizen's browser on SatuID's pages, with what they have at hand for a second factor."""

    def __init__(self, idp: IdpServer, person: dict[str, Any]) -> None:
        self.idp = idp
        self.person = person
        self.http = requests.Session()

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(urljoin(self.idp.url, path), allow_redirects=False, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.post(urljoin(self.idp.url, path), allow_redirects=False, timeout=10, **kwargs)

    def latest_code(self, recipient: str) -> str:
        page = self.get("/dev/outbox", params={"to": recipient}).text
        match = re.search(r'<pre class="body">[^<]*?\b(\d{6})\b', page)
        assert match, page[:500]
        return match.group(1)

    def sign_in(self, script_env: dict[str, str], portal: dict[str, Any],
                second_factor: str) -> dict[str, Any]:
        """openid-client asks for ``ACR_VALUES``; the citizen logs in and proves ``second_factor``
        ("totp", "sms", "passkey", or "none": they cancel). Returns what the portal got."""
        rp = NodeRelyingParty("openid_client_asks.mjs", self.idp, portal, **script_env)
        try:
            start = rp.hear()
            rp.say(callback=self._browse(start["url"], portal["redirect_uris"][0], second_factor))
            return rp.hear()
        finally:
            rp.close()

    def _browse(self, url: str, redirect_prefix: str, second_factor: str) -> str:
        response = self.http.get(url, allow_redirects=False, timeout=10)
        for _ in range(15):
            assert response.status_code in (302, 303), (response.status_code, response.text[:300])
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(redirect_prefix):
                return location
            path, uid = urlsplit(location).path, parse_qs(urlsplit(location).query).get(
                "interaction", [""])[0]
            if path == "/login":
                page = self.http.get(location, timeout=10)
                response = self.post("/login", data={
                    "csrf_token": _csrf(page.text), "nik": self.person["nik"],
                    "password": self.person["password"], "interaction": uid, "next": ""})
            elif path == "/login/step-up":
                response = self.step_up(uid, second_factor)
            elif path == "/consent":
                page = self.http.get(location, timeout=10)
                response = self.post("/consent", data={"csrf_token": _csrf(page.text),
                                                       "decision": "approve", "interaction": uid})
            else:
                response = self.http.get(location, allow_redirects=False, timeout=10)
        raise AssertionError("too many redirects")

    def step_up(self, uid: str, factor: str, next_path: str = "") -> requests.Response:
        context = {"interaction": uid} if uid else {"next": next_path}
        query = "&".join(f"{k}={v}" for k, v in context.items())
        page = self.get(f"/login/step-up?{query}&lang=en&factor={factor}").text
        assert "Email" not in re.findall(r'factor=(\w+)', page)  # email is never offered
        if factor == "none" or 'value="email"' in page:
            assert "Add a way to confirm it is you" in page, page[:500]
            return self.post(f"/login/step-up/cancel?{query}", data={"csrf_token": _csrf(page)})
        if factor == "passkey":
            csrf = re.search(r'data-csrf="([^"]+)"', page).group(1)
            options = self.post(f"/login/step-up/passkey/options?{query}",
                                headers={"X-CSRFToken": csrf}, json={})
            assert options.status_code == 200, options.text
            verified = self.post(f"/login/step-up/passkey/verify?{query}",
                                 headers={"X-CSRFToken": csrf},
                                 json=self.person["passkey"].get(options.json()))
            assert verified.status_code == 200, verified.text
            return self.get(verified.json()["redirect"])
        assert f'name="factor" type="hidden" value="{factor}"' in page, page[:800]
        if factor == "sms":
            sent = self.post("/login/step-up/send", data={"csrf_token": _csrf(page), "factor": "sms",
                                                          **context})
            assert sent.status_code == 302
            code = self.latest_code(self.person["phone"])
        else:
            code = _totp(self.person["totp_secret"])
        return self.post("/login/step-up", data={"csrf_token": _csrf(page), "factor": factor,
                                                 "code": code, **context})


def _person(idp: IdpServer, with_totp: bool) -> dict[str, Any]:
    people = [line for line in map(json.loads, idp.seed_output.splitlines()) if "password" in line]
    return dict(next(p for p in reversed(people) if ("totp_secret" in p) == with_totp))


def test_level_two_comes_from_an_sms_code_never_from_an_email_code(idp: IdpServer) -> None:
    citizen = Citizen(idp, _person(idp, with_totp=False))  # an email address and nothing else
    level2 = {"ACR_VALUES": LEVEL2}
    refused = citizen.sign_in(level2, register(idp, "portal-acr-email"), "none")
    assert refused["step"] == "refused"
    assert refused["error"] == "unmet_authentication_requirements"

    # The citizen adds a phone; with only a password behind it, it waits (seconds on this server).
    waiting_portal, sms_portal = register(idp, "portal-acr-wait"), register(idp, "portal-acr-sms")
    page = citizen.get("/account/security/phone").text
    citizen.post("/account/security/phone", data={"csrf_token": _csrf(page),
                                                  "phone": "0812 7777 0001",
                                                  "current": citizen.person["password"]})
    citizen.person["phone"] = "+6281277770001"
    verified = citizen.post("/account/security/phone/verify", data={
        "csrf_token": _csrf(page), "phone": citizen.person["phone"],
        "code": citizen.latest_code(citizen.person["phone"])})
    added = time.monotonic()
    assert verified.status_code == 302
    waiting = citizen.sign_in(level2, waiting_portal, "none")
    assert time.monotonic() - added < WAITING_SECONDS, "too slow to see the waiting period"
    assert waiting["error"] == "unmet_authentication_requirements"

    time.sleep(max(0.0, added + WAITING_SECONDS + 0.5 - time.monotonic()))
    done = citizen.sign_in(level2, sms_portal, "sms")
    assert done["step"] == "done" and done["acr"] == LEVEL2
    assert {"pwd", "sms", "mfa"} <= set(done["amr"]) and "mca" not in done["amr"]
    no_passkey = citizen.sign_in({"ACR_VALUES": LEVEL3}, register(idp, "portal-acr-sms3"), "none")
    assert no_passkey["error"] == "unmet_authentication_requirements"


def test_level_two_comes_from_an_authenticator_app(idp: IdpServer) -> None:
    citizen = Citizen(idp, _person(idp, with_totp=True))
    done = citizen.sign_in({"ACR_VALUES": LEVEL2}, register(idp, "portal-acr-totp"), "totp")
    assert done["step"] == "done" and done["acr"] == LEVEL2
    assert {"pwd", "otp", "mfa"} <= set(done["amr"])


def test_level_three_comes_only_from_a_passkey(idp: IdpServer) -> None:
    person = _person(idp, with_totp=True)
    citizen = Citizen(idp, person)
    # The authenticator app does not reach level 3: nothing to offer, the portal is told.
    refused = citizen.sign_in({"ACR_VALUES": LEVEL3}, register(idp, "portal-acr-app3"), "none")
    assert refused["error"] == "unmet_authentication_requirements"

    # Still logged in, she adds a passkey after proving her app just now, so it counts at once.
    assert citizen.step_up("", "totp", next_path="/account/security").status_code == 302
    security = citizen.get("/account/security").text
    csrf = re.search(r'data-csrf="([^"]+)"', security).group(1)
    person["passkey"] = SoftAuthenticator(urlsplit(idp.url).hostname or "", idp.url)
    options = citizen.post("/account/security/passkeys/options", headers={"X-CSRFToken": csrf},
                           json={})
    assert options.status_code == 200, options.text
    added = citizen.post("/account/security/passkeys", headers={"X-CSRFToken": csrf}, json={
        "credential": person["passkey"].create(options.json()), "name": "Kunci keamanan"})
    assert added.status_code == 200, added.text
    assert "usable from" not in citizen.get("/account/security?lang=en").text

    fresh = Citizen(idp, person)  # another visit: password, then the passkey
    done = fresh.sign_in({"ACR_VALUES": LEVEL3}, register(idp, "portal-acr-passkey"), "passkey")
    assert done["step"] == "done" and done["acr"] == LEVEL3
    assert {"pwd", "hwk", "user", "mfa"} <= set(done["amr"])
