"""The citizen's home in headless Chromium at 360×740, against real servers: SatuID under gunicorn
(PostgreSQL + Redis) and the example health portal as its own process.

The citizen finds the health portal under its life event, starts its sign-in from SatuID (third-party
initiated login) and lands signed in at the portal; rates it; changes their password and sees their
other device logged out; replaces their email (the old address is told, the new one verified with a
code); downloads their data and finds in it the release the portal just received; starts closing the
account and keeps it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import services_available
from tests.test_journey_browser import (  # noqa: F401  (fixtures)
    Servers,
    Steps,
    browser,
    playwright,
    read_code_from_outbox,
    start_servers,
)

pytestmark = [pytest.mark.browser, pytest.mark.e2e]
PHONE = {"viewport": {"width": 360, "height": 740}, "device_scale_factor": 2, "is_mobile": True,
         "has_touch": True, "locale": "id-ID"}


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[Servers]:
    if not services_available():
        pytest.skip("PostgreSQL/Redis not reachable here (CI sets IDP_TEST_REQUIRE_SERVICES=1)")
    started = start_servers(tmp_path, "postgres")
    yield started
    started.stop()


def no_sideways_scroll(page: Page) -> None:
    """Fails when the page is wider than the phone. Callers wait for the page they expect first:
    evaluated mid-navigation, the document can be missing."""
    page.wait_for_load_state()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, f"{page.url} is {width} px wide"


def log_in(page: Page, nik: str, password: str) -> None:
    page.fill("#nik", nik)
    page.fill("#password", password)
    page.locator("main button[type=submit]").first.click()


def test_citizen_home_services_rating_password_email_export_and_closing(
        servers: Servers, browser: Browser,  # noqa: F811  (the imported fixture)
        tmp_path: Path, request: pytest.FixtureRequest) -> None:
    people = [line for line in servers.seeded if "password" in line]
    with_app = {line["nik"] for line in people if "totp_secret" in line}
    person = next(line for line in people if line["nik"] not in with_app)
    context = browser.new_context(**PHONE, accept_downloads=True)
    context.set_default_timeout(10_000)
    page = context.new_page()
    steps = Steps(page, request.node.name, tmp_path, servers.logs)
    idp, password = servers.idp, person["password"]
    new_password, new_email = "Gunung-Bromo-Pagi-Buta-2026", "baru.sekali@contoh.id"
    try:
        with steps.step("the services home groups the health portal under its life event"):
            page.goto(idp + "/")
            no_sideways_scroll(page)
            health = page.locator("#event-health li.service[data-client='portal-kesehatan']")
            expect(health).to_have_count(1)
            page.fill("#q", "imunisasi")
            page.locator("form[role=search] button").click()
            expect(page.locator("li.service[data-client='portal-kesehatan']").first).to_be_visible()
            expect(page.locator("li.service[data-client='portal-bansos']")).to_have_count(0)

        with steps.step("Masuk starts the portal's own sign-in; the citizen lands signed in there"):
            page.goto(idp + "/layanan")
            page.locator("#event-health li.service[data-client='portal-kesehatan'] a.button",
                         has_text="Masuk").click()
            expect(page).to_have_url(re.compile(re.escape(idp) + r"/login\?"))
            no_sideways_scroll(page)
            log_in(page, person["nik"], password)
            expect(page).to_have_url(re.compile(re.escape(idp) + r"/consent\?"))
            page.locator("main button[value=approve]").click()
            expect(page).to_have_url(servers.health + "/")
            expect(page.get_by_test_id("signed-in-as")).to_have_text(person["name"])

        with steps.step("rate the service"):
            page.goto(idp + "/layanan")
            page.locator("#event-health li.service[data-client='portal-kesehatan'] "
                         "a[href$='/layanan/portal-kesehatan/nilai']").click()
            expect(page).to_have_url(idp + "/layanan/portal-kesehatan/nilai")
            no_sideways_scroll(page)
            page.locator("input[name=score][value='5']").check()
            page.fill("#comment", "Cepat dan jelas.")
            page.locator("main button[type=submit]").click()
            expect(page.locator(".flash.success")).to_contain_text("Terima kasih")
            expect(page.locator("li.service[data-client='portal-kesehatan']").first).to_contain_text(
                "Sudah dinilai bulan ini")

        other = browser.new_context(**PHONE)
        other_page = other.new_page()
        with steps.step("another device is signed in to SatuID"):
            other_page.goto(idp + "/login")
            log_in(other_page, person["nik"], password)
            other_page.goto(idp + "/account")
            expect(other_page).to_have_url(idp + "/account")

        with steps.step("change the password: the other device is logged out"):
            page.goto(idp + "/account")
            no_sideways_scroll(page)
            page.locator("main a[href='/account/password']").click()
            expect(page).to_have_url(idp + "/account/password")
            no_sideways_scroll(page)
            page.fill("#current", password)
            page.fill("#password", new_password)
            page.fill("#confirm", new_password)
            page.locator("main button[type=submit]").click()
            expect(page).to_have_url(idp + "/account")
            expect(page.locator(".flash.success")).to_be_visible()
            other_page.goto(idp + "/account")
            expect(other_page).to_have_url(re.compile(re.escape(idp) + r"/login"))
            other.close()

        with steps.step("replace the email: a code to the new address"):
            page.locator("main a[href='/account/email']").click()
            expect(page).to_have_url(idp + "/account/email")
            no_sideways_scroll(page)
            page.fill("#email", new_email)
            page.fill("#current", new_password)
            page.locator("main button[type=submit]").click()
            page.fill("#code", read_code_from_outbox(page, idp, new_email))
            page.locator("main button[type=submit]").click()
            expect(page).to_have_url(idp + "/account")
            expect(page.locator("main dl.facts")).to_contain_text(new_email)

        with steps.step("the old address was told, with a not-me link"):
            inbox = context.new_page()
            inbox.goto(f"{idp}/dev/outbox?to={person['email']}")
            told = inbox.locator("article.message pre.body").first.inner_text()
            assert "/account/not-me/contact/" in told and "ba***@contoh.id" in told
            inbox.close()

        with steps.step("download everything: the portal's data release is in it"):
            page.goto(idp + "/account/data")
            no_sideways_scroll(page)
            page.fill("#export-current", new_password)
            with page.expect_download() as download:
                page.locator("form[action='/account/data/export'] button").click()
            data = json.loads(Path(download.value.path()).read_text())
            releases = [r for r in data["data_releases"] if r["service"] == "portal-kesehatan"]
            assert releases and "name" in {c for r in releases for c in r["claims"]}
            assert data["contacts"]["email"] == new_email
            assert data["ratings"][0]["score"] == 5

        with steps.step("start closing the account, then keep it"):
            page.fill("#close-current", new_password)
            page.locator("form[action='/account/close'] button").click()
            expect(page.locator("main .flash.error")).to_be_visible()
            no_sideways_scroll(page)
            page.locator("form[action='/account/close/cancel'] button").click()
            expect(page.locator(".flash.success")).to_be_visible()
            expect(page.locator("form[action='/account/close']")).to_have_count(1)
            page.goto(idp + "/account")
            expect(page).to_have_url(idp + "/account")
    finally:
        context.close()
