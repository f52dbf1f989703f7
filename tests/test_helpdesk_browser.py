"""A lost phone, recovered through the helpdesk, in headless Chromium with three browsers at once.

SatuID serves real HTTP from a thread of this test process, so the test holds the clock
(``idp.clock``) that cooling-off periods are measured by. An agent, a supervisor and the citizen each
have a browser context of their own: the agent proposes removing the citizen's second factors after
a phone call, a supervisor approves, the citizen is told and cancels it with the notice's link; it is
proposed and approved again, and applied once a day has passed on the clock. The citizen then adds a
new authenticator app, which counts at once (the cooling-off stood in for its waiting period), and
reaches level 2 with it. A "not me" report from the sessions list reaches the helpdesk queue, and
``flask audit verify`` says ok.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyotp
import pytest
from flask import Flask
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
from sqlalchemy import select
from werkzeug.serving import make_server

from idp import clock
from tests.conftest import AuthActions, Factory, make_app, outbox_messages
from tests.servers import free_port
from tests.test_journey_browser import CHROMIUM_ARGS

pytestmark = [pytest.mark.browser]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


@pytest.fixture
def served(backend: dict[str, str]) -> Iterator[tuple[Flask, str]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = make_app({**backend, "IDP_ISSUER": url, "IDP_WEBAUTHN_ORIGIN": url})
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield app, url
    finally:
        server.shutdown()
        clock.reset()
        app.extensions["idp.engine"].dispose()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class StaffBrowser:
    """An officer in a browser context of their own, enrolled through their one-time link."""

    def __init__(self, app: Flask, browser: Browser, url: str, role: str, name: str) -> None:
        self.url = url
        self.email = f"{name.lower()}@helpdesk.satuid.go.id"
        self.password = "meja bundar kantor pusat"
        result = app.test_cli_runner().invoke(args=[
            "staff", "create", "--name", name, "--email", self.email,
            "--nik", f"32010102018500{len(name):02d}", "--role", role])
        assert result.exit_code == 0, result.output
        link = re.search(r"(http://\S+/helpdesk/enrol/\S+)", result.output)
        assert link
        self.context: BrowserContext = browser.new_context(locale="en-US")
        self.page: Page = self.context.new_page()
        self.page.goto(link.group(1) + "?lang=en")
        self.secret = (self.page.locator("#totp-secret").inner_text()).replace(" ", "")
        if time.time() % 30 > 20:  # the codes start a step back: not where a boundary may pass
            time.sleep(31 - time.time() % 30)  # before the server checks the first of them
        self.step = int(time.time() // 30) - 1
        self.page.fill("#password", self.password)
        self.page.fill("#code", self.code())
        self.page.click("button[type=submit]")
        expect(self.page.locator(".flash.success")).to_be_visible()

    def code(self) -> str:
        self.step = max(self.step, int(time.time() // 30) - 1)  # never behind the window
        code = pyotp.TOTP(self.secret).at(self.step * 30)
        self.step += 1
        return code

    def sign_in(self) -> StaffBrowser:
        self.page.goto(self.url + "/helpdesk/login")
        self.page.fill("#email", self.email)
        self.page.fill("#password", self.password)
        self.page.click("form button[type=submit]")
        self.page.fill("#code", self.code())
        self.page.click("form button[type=submit]")
        expect(self.page.locator("h1")).to_have_text("Helpdesk queue")
        return self


def _shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"helpdesk-{name}.png"), full_page=True)


def _cancel_link(app: Flask, email: str) -> str:
    notice = next(m for m in outbox_messages(app, email) if "/helpdesk-change/cancel/" in m)
    found = re.search(r"(http://\S+/helpdesk-change/cancel/\S+)", notice)
    assert found
    return found.group(1)


def _propose_reset(agent: StaffBrowser, nik: str) -> str:
    page = agent.page
    page.goto(agent.url + "/helpdesk/cases/new")
    page.select_option("#channel", "phone")
    page.fill("#summary", "Lost phone with the authenticator app; no recovery codes")
    page.click("#case-form button")
    reference = page.locator("h1").inner_text().split()[-1]
    page.fill("#nik", nik)
    page.fill("#reason", "Caller asks to reset their second factors")
    page.click("#lookup button")
    # What the caller says, compared with the registry (the test factory's resident).
    page.fill("#name", "Siti Rahayu")
    page.fill("#birth_date", "1990-08-17")
    page.fill("#birth_place", "Jakarta")
    page.fill("#family_card", "3174040101090001")
    page.click("#evidence-form button")
    expect(page.locator("#evidence")).not_to_contain_text("does not match")
    page.select_option("#kind", "remove_factors")
    page.click("#action-form button")
    expect(page.locator("#actions")).to_contain_text("waiting for a supervisor")
    return reference


def _approve(supervisor: StaffBrowser, reference: str) -> None:
    page = supervisor.page
    page.goto(supervisor.url + "/helpdesk")
    page.click(f"#to-approve a:has-text('{reference}')")
    page.click("#actions button:has-text('Approve')")
    expect(page.locator("#actions")).to_contain_text("cooling off")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the flows run on both in test_helpdesk
def test_a_phone_mfa_reset_with_four_eyes_a_cancel_and_a_cooling_off(
        served: tuple[Flask, str], browser: Browser) -> None:
    from idp.auth.mfa import totp as totpmod
    from idp.db import get_session
    from idp.models import AuditEvent, Citizen, TotpAuthenticator
    from idp.models.base import utcnow

    app, url = served
    citizen = Factory(app).citizen()
    with app.app_context():
        s = get_session()
        totpmod.begin_enrolment(s, s.get(Citizen, citizen.id))
        s.scalar(select(TotpAuthenticator)).confirmed_at = utcnow()
        s.commit()

    agent = StaffBrowser(app, browser, url, "agent", "Agus").sign_in()
    supervisor = StaffBrowser(app, browser, url, "supervisor", "Sri").sign_in()
    person = browser.new_context(locale="en-US")
    citizen_page = person.new_page()
    other_device = app.test_client()
    AuthActions(other_device).login(citizen.nik, citizen.password)  # a session they will not know
    try:
        # "Not me": the citizen does not recognise the other session and reports it.
        citizen_page.goto(url + "/login?lang=en")
        citizen_page.fill("#nik", citizen.nik)
        citizen_page.fill("#password", citizen.password)
        citizen_page.click("form button[type=submit]")
        citizen_page.goto(url + "/account")
        citizen_page.click("a.not-me")
        citizen_page.click("form button[type=submit]")
        expect(citizen_page.locator(".flash.success")).to_contain_text("HD-")
        report = re.search(r"HD-[A-Z0-9]{8}", citizen_page.locator(".flash.success").inner_text())
        assert report
        supervisor.page.goto(url + "/helpdesk")
        expect(supervisor.page.locator("#open-cases")).to_contain_text(report.group(0))
        assert other_device.get("/account").status_code == 302  # that session ended

        # 1. Proposed, approved, notified, cancelled by the citizen with the link.
        first = _propose_reset(agent, citizen.nik)
        _approve(supervisor, first)
        _shot(supervisor.page, "approved")
        citizen_page.goto(_cancel_link(app, citizen.email) + "?lang=en")
        citizen_page.click("form button[type=submit]")
        expect(citizen_page.locator("h1")).to_have_text("The change was cancelled")
        agent.page.goto(f"{url}/helpdesk/cases/{first}")
        expect(agent.page.locator("#actions")).to_contain_text("cancelled")

        # 2. Proposed and approved again; a day passes on the clock; the change is carried out.
        second = _propose_reset(agent, citizen.nik)
        _approve(supervisor, second)
        citizen_page.goto(url + "/account/cases")
        expect(citizen_page.locator(f"#case-{second}")).to_contain_text("cooling off")
        clock.advance(24 * 3600 + 60)
        applied = app.test_cli_runner().invoke(args=["helpdesk", "apply-due"])
        assert applied.output.strip() == "applied 1"
        with app.app_context():
            assert get_session().scalar(select(TotpAuthenticator)) is None

        # 3. Every session ended: the citizen logs in again, adds a new authenticator app, and
        #    reaches level 2 with it at once.
        citizen_page.goto(url + "/account/cases")
        expect(citizen_page).to_have_url(re.compile(r"/login"))
        citizen_page.fill("#nik", citizen.nik)
        citizen_page.fill("#password", citizen.password)
        citizen_page.click("form button[type=submit]")
        citizen_page.goto(url + "/account/cases")
        expect(citizen_page.locator(f"#case-{second}")).to_contain_text("done")
        citizen_page.goto(url + "/account/security/totp")
        secret = citizen_page.locator("#totp-secret").inner_text().replace(" ", "")
        citizen_page.fill("#code", pyotp.TOTP(secret).at(time.time() - 30))
        citizen_page.click("form button[type=submit]")
        _shot(citizen_page, "new-authenticator")
        citizen_page.goto(url + "/login/step-up?next=/account")
        citizen_page.fill("#code", pyotp.TOTP(secret).now())
        citizen_page.click("form button[type=submit]")
        expect(citizen_page).to_have_url(re.compile(r"/account$"))
        with app.app_context():
            step_up = get_session().scalar(select(AuditEvent).where(
                AuditEvent.event == "mfa_step_up").order_by(AuditEvent.id.desc()))
            assert step_up is not None and step_up.details["acr"] == 2
    except Exception:
        for name, page in (("agent", agent.page), ("supervisor", supervisor.page),
                           ("citizen", citizen_page)):
            _shot(page, f"failed-{name}")
        raise
    finally:
        for context in (agent.context, supervisor.context, person):
            context.close()
    verify = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert verify.exit_code == 0 and verify.output.startswith("ok"), verify.output
