"""Passkeys in a real browser: Debian's chromium through Playwright, with the Chrome DevTools
Protocol's virtual authenticator (user verification on), against SatuID served over real HTTP.

The citizen registers a passkey from the login security page, logs out, and then a portal asks
for level 3: password, then the passkey as the second factor, consent, and the portal's ID token
carries acr 3. WebAuthn needs a secure context; ``http://localhost`` is one, so the issuer, the
WebAuthn origin and the relying party id all use ``localhost``.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from werkzeug.serving import make_server

from tests.conftest import Factory, make_app, outbox_messages
from tests.oidc_rp import Portal, query, register_portal

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def live_idp(tmp_path: Path, sqlite_template: Path) -> Iterator[tuple[Any, str]]:
    """SatuID on the embedded default, served by werkzeug on a free 127.0.0.1 port."""
    holder: dict[str, Any] = {}

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        return holder["app"](environ, start_response)

    server = make_server("127.0.0.1", 0, wsgi, threaded=True)
    base = f"http://localhost:{server.server_port}"
    instance = tmp_path / "instance"
    instance.mkdir()
    shutil.copy(sqlite_template, instance / "satuid.db")
    from tests.conftest import TEST_SETTINGS

    app = make_app({**TEST_SETTINGS, "IDP_INSTANCE_PATH": str(instance),
                    "IDP_DATABASE_URL": f"sqlite:///{instance / 'satuid.db'}", "IDP_REDIS_URL": "",
                    "IDP_ISSUER": base, "IDP_WEBAUTHN_ORIGIN": base, "IDP_WEBAUTHN_RP_ID": "localhost"})
    app.config["TESTING"] = False  # behave like a deployment: CSRF and cookies as in production
    holder["app"] = app
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, base
    finally:
        server.shutdown()
        thread.join(timeout=10)
        app.extensions["idp.engine"].dispose()


def _session_of(app: Any, cookie: str) -> Any:
    with app.test_request_context():
        from idp.auth import session as sso

        return sso.load(cookie)


@pytest.mark.browser
def test_passkey_registered_in_the_browser_gives_a_portal_acr_3(
        live_idp: tuple[Any, str], request: pytest.FixtureRequest) -> None:
    from playwright.sync_api import sync_playwright

    from idp import clock

    app, base = live_idp
    citizen = Factory(app).citizen()
    info = register_portal(app, "pajak")
    portal = Portal(browser=app.test_client(), client_id=info["client_id"], secret=info["secret"],
                    redirect_uri=info["redirect_uri"])
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        context = browser.new_context(locale="en-US")
        page = context.new_page()
        try:
            cdp = context.new_cdp_session(page)
            cdp.send("WebAuthn.enable")
            cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
                "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
                "hasUserVerification": True, "isUserVerified": True,
                "automaticPresenceSimulation": True}})

            page.goto(f"{base}/login?lang=en")
            page.fill("input[name=nik]", citizen.nik)
            page.fill("input[name=password]", citizen.password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/account")

            # The first factor needs only the password, and then waits a day before it counts.
            page.goto(f"{base}/account/security")
            page.fill("#passkey-register input[name=name]", "Laptop kantor")
            page.click("#passkey-register button[type=submit]")
            page.wait_for_selector("text=Your passkey is registered.")
            assert page.locator("td", has_text="Laptop kantor").count() == 1
            assert page.locator("text=For your safety, usable from").count() == 1
            assert "/account/security/waiting/" in outbox_messages(app, citizen.email)[0]
            clock.advance(24 * 3600 + 1)

            page.goto(f"{base}/logout")
            page.click("main form button[type=submit]")
            page.wait_for_url(f"{base}/login")

            # A portal asks for level 3: password, then the passkey as the second factor.
            callbacks: list[str] = []
            page.route(f"{portal.redirect_uri}**", lambda route: (
                callbacks.append(route.request.url), route.fulfill(status=200, body="portal")))
            page.goto(base + portal.authorize_url("openid", acr_values="urn:satuid:loa:3"))
            page.wait_for_url(f"{base}/login?**")
            page.fill("input[name=nik]", citizen.nik)
            page.fill("input[name=password]", citizen.password)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/login/step-up**")
            page.click("#passkey-authenticate")  # the strongest factor is offered first
            page.wait_for_url(f"{base}/consent**")
            page.click("button[value=approve]")
            page.wait_for_url(f"{portal.redirect_uri}**")

            cookie = next(c["value"] for c in context.cookies() if c["name"] == "satuid_sso")
            session = _session_of(app, cookie)
            assert session.acr == 3
            assert {"pwd", "user", "mfa"} <= set(session.amr) and ({"hwk", "swk"} & set(session.amr))

            code = query(callbacks[-1])["code"]
            tokens = requests.post(f"{base}/token", auth=(portal.client_id, portal.secret), data={
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": portal.redirect_uri, "code_verifier": portal.last["verifier"],
            }, timeout=10).json()
            payload = tokens["id_token"].split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            assert claims["acr"] == "urn:satuid:loa:3"
            assert "user" in claims["amr"] and "pwd" in claims["amr"]
        except Exception:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
            raise
        finally:
            clock.reset()
            context.close()
            browser.close()
