"""A single-page app on oidc-client-ts signs in through SatuID as a public client with PKCE, in
headless Chromium, across origins (CORS): user info, refresh, revocation and RP-initiated logout."""

from __future__ import annotations

import functools
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.servers import IdpServer
from tests.test_interop import INTEROP, idp  # noqa: F401  (the module-scoped server fixture)
from tests.test_passkey_browser import CHROMIUM_ARGS

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def spa_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The SPA's files on an origin of their own (another port is another origin)."""
    root = tmp_path_factory.mktemp("spa")
    for name in ("index.html", "callback.html", "app.js"):
        shutil.copy(INTEROP / "spa" / name, root / name)
    shutil.copy(INTEROP / "node_modules/oidc-client-ts/dist/browser/oidc-client-ts.min.js", root)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()


def test_oidc_client_ts_spa_signs_in_refreshes_revokes_and_logs_out(
        idp: IdpServer, spa_site: tuple[str, Path]) -> None:  # noqa: F811
    from playwright.sync_api import sync_playwright

    origin, root = spa_site
    portal = json.loads(idp.flask(
        "clients", "create", "--name", "Portal SPA", "--client-id", "portal-spa",
        "--auth-method", "none", "--redirect-uri", f"{origin}/callback.html",
        "--post-logout-uri", f"{origin}/", "--scope", "openid profile offline_access"))
    (root / "config.js").write_text(
        f"const CONFIG = {json.dumps({'issuer': idp.url, 'client_id': portal['client_id']})}\n")
    citizen = next(line for line in map(json.loads, idp.seed_output.splitlines()) if "password" in line)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        try:
            page.goto(origin + "/")
            page.click("#sign-in")
            page.wait_for_url(f"{idp.url}/login?*")
            page.fill("input[name=nik]", citizen["nik"])
            page.fill("input[name=password]", citizen["password"])
            page.click("button[type=submit]")
            page.wait_for_url(f"{idp.url}/consent?*")
            page.click("button[value=approve]")
            page.wait_for_url(f"{origin}/callback.html?*")
            page.wait_for_function("window.__result || window.__error", timeout=15000)
            result = page.evaluate("window.__result || window.__error")
            assert isinstance(result, dict), (result, errors)
            assert result["sub"] and result["name"] == citizen["name"] and result["refreshed"]
            page.click("#sign-out")
            page.wait_for_url(f"{origin}/")  # back from SatuID's end-session endpoint
            # The revoked refresh token no longer works at the token endpoint.
            assert page.evaluate("sessionStorage.getItem('revoked')") == "invalid_grant"
            # After logout SatuID asks for a login again.
            page.goto(origin + "/")
            page.click("#sign-in")
            page.wait_for_url(f"{idp.url}/login?*")
        finally:
            browser.close()
