"""SatuID's own pages in a real browser (headless Chromium against gunicorn): language and errors."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.test_journey_browser import CHROMIUM_ARGS, Servers, Steps, start_servers

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    servers = start_servers(tmp_path_factory.mktemp("idp"), "sqlite", portals=False)
    yield servers
    servers.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.fixture
def steps(page: Page, idp: Servers, tmp_path: Path, request: pytest.FixtureRequest) -> Steps:
    return Steps(page, request.node.name, tmp_path, idp.logs)


def test_login_page_is_in_indonesian_by_default(idp: Servers, page: Page, steps: Steps) -> None:
    with steps.step("open the login page"):
        page.goto(f"{idp.idp}/login")
        expect(page.locator("html")).to_have_attribute("lang", "id")
        expect(page.get_by_role("heading", level=1)).to_have_text("Masuk ke SatuID")
        expect(page.locator("#nik")).to_have_attribute("autocomplete", "username")
        expect(page.locator("#password")).to_have_attribute("autocomplete", "current-password")


def test_language_switch_shows_english_and_is_remembered(idp: Servers, page: Page, steps: Steps) -> None:
    with steps.step("switch to English"):
        page.goto(f"{idp.idp}/login")
        page.get_by_role("navigation").get_by_role("link", name="EN").click()
        expect(page.locator("html")).to_have_attribute("lang", "en")
        expect(page.get_by_role("heading", level=1)).to_have_text("Log in to SatuID")
    with steps.step("the choice stays on the next page"):
        page.goto(f"{idp.idp}/password/forgot")
        expect(page.locator("html")).to_have_attribute("lang", "en")
    with steps.step("and back to Indonesian"):
        page.get_by_role("navigation").get_by_role("link", name="ID").click()
        expect(page.locator("html")).to_have_attribute("lang", "id")


def test_wrong_password_shows_a_clear_message(idp: Servers, page: Page, steps: Steps) -> None:
    citizen = next(line for line in idp.seeded if "password" in line)
    with steps.step("log in with a wrong password"):
        page.goto(f"{idp.idp}/login")
        page.fill("#nik", citizen["nik"])
        page.fill("#password", "bukan kata sandi yang benar")
        page.locator("main form button[type=submit]").click()
        expect(page.get_by_role("alert")).to_have_text("NIK atau kata sandi tidak benar.")
        expect(page.locator("#nik")).to_have_value(citizen["nik"])
        expect(page.locator("#password")).to_have_value("")
    with steps.step("the right password gets in"):
        page.fill("#password", citizen["password"])
        page.locator("main form button[type=submit]").click()
        expect(page).to_have_url(f"{idp.idp}/account")
