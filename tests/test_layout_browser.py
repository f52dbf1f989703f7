"""Every citizen page fits a 360-pixel-wide phone: nothing scrolls sideways, in either language.

Most citizens reach SatuID on a cheap Android phone, where a page wider than the screen hides its
buttons off to the side. Headless Chromium at 360×740 (a common small phone) visits every page a
citizen can open, logged out and logged in, after the account has been given the content that breaks
layouts in practice: a long email address, several sessions, consents at both demo portals, data
releases, codes in the outbox. The page list comes from the app's URL map, so a page added later is
checked without touching this file; pages that need a parameter or a flow are added by hand.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, Route

from tests.conftest import make_app
from tests.servers import IdpServer, free_port
from tests.test_journey_browser import browser, playwright  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

WIDTH = 360  # CSS pixels: a common small Android phone
PHONE = {"viewport": {"width": WIDTH, "height": 740}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True}
LANGUAGES = ("id", "en")
# No spaces to break at: the kind of address (and, below, user agents) that widens a page.
LONG_EMAIL = "rahayu.siti.kusumawardhani.pratiwi@dinas-kependudukan-pencatatan-sipil.jakarta.go.id"
LONG_USER_AGENTS = (
    "Mozilla/5.0 (Linux; Android 13; SM-A145F Build/TP1A.220624.014; wv) AppleWebKit/537.36 (KHTML, "
    "like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36 "
    "[FB_IAB/FB4A;FBAV/460.0.0.48.109;FBBV/587375010;FBDM/{density=2.0,width=720,height=1465}]",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0 "
    "KementerianDalamNegeriDesktopKioskBuild/2024.05.17-rc3-jakarta-pusat-kelurahan-gambir-loket-07",
)
# Protocol and operations endpoints: machines read them, not citizens.
NOT_PAGES = {"static", "oidc.discovery", "oidc.jwks", "oidc.userinfo", "oidc.token", "health.healthz",
             "health.metrics"}
STAFF_BLUEPRINTS = ("helpdesk.",)  # the helpdesk's own pages are for staff at a desk, not phones
# Pages that take a parameter: made-up tokens render the citizen's "link not valid" pages.
PARAMETRISED = ("/layanan?q=kesehatan", "/account/close/cancel/nonexistent-token",
                "/password/reset/nonexistent-token", "/helpdesk-change/cancel/nonexistent-token",
                "/account/security/waiting/nonexistent-token", "/account/not-me/contact/nonexistent-token",
                "/authorize/resume/nonexistent-request", "/layanan/portal-tidak-ada/nilai")

# The elements whose right edge is past the layout viewport, widest first: what to fix when a page
# scrolls. A phone browser zooms out to show an overflowing page whole, which widens ``innerWidth``
# with it; ``clientWidth`` stays the width the page was laid out for.
MEASURE = """() => {
  const width = document.documentElement.clientWidth, wide = new Map();
  const name = (el) => {
    let text = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "");
    if (typeof el.className === "string" && el.className.trim())
      text += "." + el.className.trim().split(/\\s+/).join(".");
    return text;
  };
  const note = (el, right) => {
    if (right > width + 0.5 && right > (wide.get(el) || 0)) wide.set(el, right);
  };
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width > 0) note(el, box.right);
  }
  // Text that runs out of its box (a long address in a paragraph of the right width).
  const texts = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = texts.nextNode(); node; node = texts.nextNode()) {
    if (!node.textContent.trim() || getComputedStyle(node.parentElement).overflowX !== "visible") continue;
    range.selectNodeContents(node);
    note(node.parentElement, range.getBoundingClientRect().right);
  }
  const found = [...wide].sort((a, b) => b[1] - a[1]).slice(0, 4).map(([el, right]) => ({
    element: name(el), right: Math.round(right),
    text: (el.textContent || "").replace(/\\s+/g, " ").trim().slice(0, 60)}));
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
          clientWidth: width, wide: found};
}"""


# ---- checking a page -----------------------------------------------------------------------------

def with_lang(url: str, lang: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}lang={lang}"


@dataclass
class Checker:
    """Measures pages as they are shown and keeps a line for each one that scrolls sideways."""

    base: str
    problems: list[str] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)

    def check(self, page: Page, label: str = "") -> None:
        """The page as it is shown now (also a page that only a form's answer shows)."""
        shown = page.url.removeprefix(self.base)
        self.seen.append(label or shown)
        found: dict[str, Any] = page.evaluate(MEASURE)
        if found["scrollWidth"] > found["innerWidth"] or found["innerWidth"] > WIDTH:
            wide = "; ".join(f"<{w['element']}> to x={w['right']} ({w['text']!r})" for w in found["wide"])
            self.problems.append(f"{label or shown} (at {shown}): {found['scrollWidth']} px wide on a "
                                 f"{WIDTH} px screen; widest: {wide or 'none found'}")

    def visit(self, page: Page, path: str) -> None:
        """``path`` in each language. A redirect is not measured here (its target is a page of its
        own in the list), nor is an answer that is not an HTML page (JSON, plain text)."""
        for lang in LANGUAGES:
            response = page.goto(with_lang(self.base + path, lang))
            assert response is not None
            if urlsplit(page.url).path != urlsplit(self.base + path).path:
                return
            if "text/html" not in response.headers.get("content-type", ""):
                return
            assert page.locator("html").get_attribute("lang") == lang, f"{path}: not in {lang}"
            self.check(page, f"{path} [{lang}]")

    def report(self) -> str:
        return f"{len(self.problems)} of {len(self.seen)} pages scroll sideways at {WIDTH} px:\n" + \
            "\n".join(self.problems)


def page_paths(server: IdpServer) -> list[str]:
    """Every GET route without parameters, except protocol endpoints and the staff helpdesk."""
    app = make_app({k: v for k, v in server.env().items() if k.startswith("IDP_")})
    try:
        paths = {rule.rule for rule in app.url_map.iter_rules()
                 if "GET" in (rule.methods or ()) and not rule.arguments
                 and rule.endpoint not in NOT_PAGES and not rule.endpoint.startswith(STAFF_BLUEPRINTS)}
    finally:
        app.extensions["idp.engine"].dispose()
    return sorted(paths)


# ---- the site, and a citizen with a lived-in account ----------------------------------------------

@dataclass
class Site:
    server: IdpServer
    portal_urls: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def seeded(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.server.seed_output.splitlines() if line.startswith("{")]

    def citizen(self, *, with_totp: bool = False) -> dict[str, str]:
        """A demo citizen (seed-demo prints NIK and password), with an authenticator app or without."""
        return next(line for line in self.seeded
                    if "password" in line and ("totp_secret" in line) == with_totp)

    def portals(self) -> list[dict[str, str]]:
        return list({line["client"]: line for line in self.seeded if "client" in line}.values())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    # The demo portals get addresses nothing listens on; the browser's requests to them are answered
    # by the test itself (``answer_callbacks``).
    portal_urls = {"SATUID_DEMO_HEALTH_URL": f"http://127.0.0.1:{free_port()}",
                   "SATUID_DEMO_SOCIAL_URL": f"http://127.0.0.1:{free_port()}"}
    server = IdpServer(tmp_path_factory.mktemp("layout") / "idp", name="layout", extra_env=portal_urls)
    server.start()
    try:
        yield Site(server, portal_urls)
    finally:
        server.stop()


@contextlib.contextmanager
def phone(browser: Browser, **options: Any) -> Iterator[Page]:  # noqa: F811  (the imported fixture)
    context = browser.new_context(**{**PHONE, **options})
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def log_in(page: Page, site: Site, citizen: dict[str, str]) -> None:
    page.goto(f"{site.url}/login")
    page.fill("#nik", citizen["nik"])
    page.fill("#password", citizen["password"])
    page.locator("main form button[type=submit]").click()
    page.wait_for_load_state()


def latest_code(context: BrowserContext, site: Site, recipient: str) -> str:
    inbox = context.new_page()
    try:
        inbox.goto(f"{site.url}/dev/outbox?{urlencode({'to': recipient})}")
        body = inbox.locator("article.message pre.body").first.inner_text()
    finally:
        inbox.close()
    found = re.search(r"\b(\d{6})\b", body)
    assert found, f"no code in the message: {body!r}"
    return found.group(1)


def answer_callbacks(context: BrowserContext, site: Site) -> list[str]:
    """Stand in for the demo portals: record the authorization codes SatuID sends them."""
    codes: list[str] = []

    def callback(route: Route) -> None:
        codes.extend(parse_qs(urlsplit(route.request.url).query).get("code", []))
        route.fulfill(status=200, content_type="text/html", body="<!doctype html><title>portal</title>")

    for url in site.portal_urls.values():
        context.route(f"{url}/**", callback)
    return codes


def authorization_request(site: Site, portal: dict[str, str], **extra: str) -> tuple[str, str]:
    """A portal's authorization request with PKCE: its URL, and the verifier for the token request."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    query = {"client_id": portal["client"], "response_type": "code", "redirect_uri": portal["redirect_uri"],
             "scope": "openid profile email phone address", "state": secrets.token_urlsafe(8),
             "nonce": secrets.token_urlsafe(8), "code_challenge": challenge, "code_challenge_method": "S256",
             **extra}
    return f"{site.url}/authorize?{urlencode(query)}", verifier


def sign_in_at_portal(page: Page, site: Site, portal: dict[str, str], checker: Checker) -> None:
    """The consent page (checked), then the code exchanged and the user info read, as the portal
    would: a consent, a grant and data releases in the account."""
    codes = answer_callbacks(page.context, site)
    url, verifier = authorization_request(site, portal)
    page.goto(url)
    assert "/consent" in page.url, page.url
    consent = page.url
    for lang in LANGUAGES:
        page.goto(with_lang(consent, lang))
        checker.check(page, f"/consent ({portal['client']}) [{lang}]")
    page.locator("main button[value=approve]").click()
    page.wait_for_url(portal["redirect_uri"] + "**")
    assert codes, "no authorization code reached the portal"
    token = requests.post(f"{site.url}/token", auth=(portal["client"], portal["client_secret"]), timeout=10,
                          data={"grant_type": "authorization_code", "code": codes[-1],
                                "redirect_uri": portal["redirect_uri"], "code_verifier": verifier})
    assert token.status_code == 200, token.text
    userinfo = requests.get(f"{site.url}/userinfo", timeout=10,
                            headers={"Authorization": f"Bearer {token.json()['access_token']}"})
    assert userinfo.status_code == 200, userinfo.text


def test_the_measure_sees_a_page_that_scrolls_sideways(browser: Browser) -> None:  # noqa: F811
    """Guard against a check that passes everything: a too-wide element is reported by name."""
    checker = Checker("")
    with phone(browser) as page:
        page.set_content('<meta name="viewport" content="width=device-width, initial-scale=1">'
                         '<body><p id="wide" style="width:500px">x</p></body>')
        checker.check(page, "too wide")
    assert len(checker.problems) == 1
    assert "<p#wide>" in checker.problems[0]


def test_no_citizen_page_scrolls_sideways_on_a_360px_phone(site: Site, browser: Browser) -> None:  # noqa: F811
    """One pass over everything, so that a failure lists every page that scrolls and its widest
    element, not just the first."""
    checker = Checker(site.url)
    paths = [*page_paths(site.server), *PARAMETRISED]
    citizen = site.citizen()

    # Logged out: the pages of someone who has no account yet, or is about to log in.
    with phone(browser) as page:
        for path in paths:
            checker.visit(page, path)

    # Registering from the population registry, with a long address, up to the offer of a second
    # factor: each step in both languages.
    registrant = next(line["register"] for line in site.seeded if "register" in line)
    with phone(browser) as page:
        page.goto(f"{site.url}/register")
        page.fill("#nik", registrant["nik"])
        page.fill("#full_name", registrant["name"])
        page.fill("#birth_date", registrant["birth_date"])
        page.locator("main button[type=submit]").click()
        checker.visit(page, "/register/contact")
        page.fill("#email", "dewi." + LONG_EMAIL)
        page.locator("main button[type=submit]").click()
        checker.visit(page, "/register/verify")
        page.fill("#code", latest_code(page.context, site, "dewi." + LONG_EMAIL))
        page.locator("main button[value=verify]").click()
        checker.visit(page, "/register/password")
        page.fill("#password", "Sawah-Hijau-Di-Ubud-2026")
        page.fill("#confirm", "Sawah-Hijau-Di-Ubud-2026")
        page.locator("main button[type=submit]").click()
        checker.visit(page, "/register/secure")

    # A citizen with an authenticator app is asked for its code when logging in: the step-up page.
    with phone(browser) as page:
        log_in(page, site, site.citizen(with_totp=True))
        assert "/login/step-up" in page.url, page.url
        checker.visit(page, page.url.removeprefix(site.url))

    # The same citizen on a desktop and in an in-app browser: sessions to list on the account page.
    for user_agent in LONG_USER_AGENTS:
        with phone(browser, user_agent=user_agent) as page:
            log_in(page, site, citizen)

    with phone(browser) as page:
        log_in(page, site, citizen)
        assert page.url == f"{site.url}/account", page.url
        for lang in LANGUAGES:  # a new, long address: the form's answer asks for the code
            page.goto(f"{site.url}/account/email?lang={lang}")
            page.fill("#email", LONG_EMAIL)
            page.fill("#current", citizen["password"])
            with page.expect_navigation():  # measure the answer, not the page it replaces
                page.locator("main button[type=submit]").click()
            checker.check(page, f"/account/email, code sent [{lang}]")
        page.fill("#code", latest_code(page.context, site, LONG_EMAIL))
        with page.expect_navigation():
            page.locator("main button[type=submit]").first.click()
        for lang in LANGUAGES:  # a phone number on its way: the form's answer asks for the SMS code
            page.goto(f"{site.url}/account/security/phone?lang={lang}")
            page.fill("#phone", "+62 812 3456 7890")
            page.fill("#current", citizen["password"])
            with page.expect_navigation():  # measure the answer, not the page it replaces
                page.locator("main button[type=submit]").click()
            checker.check(page, f"/account/security/phone, code sent [{lang}]")
            assert page.locator("#code").count() == 1, page.url  # the answer is the code page
        for portal in site.portals():
            sign_in_at_portal(page, site, portal, checker)
        # A portal asks for more than a password, and the citizen has no second factor yet.
        page.goto(authorization_request(site, site.portals()[0], acr_values="urn:satuid:loa:2")[0])
        assert "/login/step-up" in page.url, page.url
        checker.visit(page, page.url.removeprefix(site.url))

        page.goto(f"{site.url}/account")
        assert LONG_EMAIL in page.locator("main").inner_text()
        not_me = page.locator("main a.not-me").first.get_attribute("href")
        assert not_me, "no other session listed"
        for path in [*paths, not_me,
                     *(f"/layanan/{portal['client']}/nilai" for portal in site.portals())]:
            checker.visit(page, path)
            if path.startswith("/account"):
                assert "/login" not in page.url, f"{path}: logged out on the way"

        for lang in LANGUAGES:  # last: recovery codes are a second factor, which changes later pages
            page.goto(f"{site.url}/account/security?lang={lang}")
            with page.expect_navigation():  # measure the answer, not the page it replaces
                page.locator("main form[action$='/recovery-codes'] button").click()
            checker.check(page, f"/account/security/recovery-codes [{lang}]")

    assert not checker.problems, checker.report()
