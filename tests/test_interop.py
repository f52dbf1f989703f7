"""Stock relying-party libraries, in their default configuration, sign a citizen in through SatuID
over real HTTP (gunicorn), each validating the ID token itself: Authlib (``test_oidc_e2e.py``),
openid-client and oauth4webapi from npm (run with Node), and oidc-client-ts as a public client in a
single-page app in headless Chromium (``test_spa_browser.py``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.conftest import REQUIRE_SERVICES, services_available
from tests.servers import IdpServer
from tests.test_oidc_e2e import Browser

pytestmark = pytest.mark.e2e

INTEROP = Path(__file__).resolve().parent / "interop"


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    if shutil.which("node") is None or not (INTEROP / "node_modules").is_dir():
        if REQUIRE_SERVICES:
            raise RuntimeError("Node and tests/interop/node_modules are needed (make test installs them)")
        pytest.skip("Node or the npm libraries are not installed here")
    backend = "postgres" if services_available() else "sqlite"
    with IdpServer(tmp_path_factory.mktemp("interop"), backend=backend, name="interop") as server:
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

    def __init__(self, script: str, idp: IdpServer, portal: dict[str, Any]) -> None:
        env = {**os.environ, "ISSUER": idp.url, "CLIENT_ID": portal["client_id"],
               "CLIENT_SECRET": portal["client_secret"], "REDIRECT_URI": portal["redirect_uris"][0],
               "POST_LOGOUT_URI": portal["post_logout_redirect_uris"][0]}
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
