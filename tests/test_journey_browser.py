"""The whole citizen journey in headless Chromium, against real servers on free ports.

SatuID runs under gunicorn on a fresh, migrated and seeded database (the embedded SQLite default, and
PostgreSQL + Redis); the two example portals run as ``python -m clients.run``. The citizen registers
from the population registry (reading the code in the development outbox, as they would read their
mail), sets up an authenticator app when registration offers it, signs in at the health portal, gets
into the social-assistance portal without a password, opens the level-2 medical records with the
app's code, and signs out of one portal to find the other signed out too (back-channel logout). When
a step fails, screenshots of every step so far and the servers' logs are kept under
``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from tests.conftest import services_available
from tests.servers import IdpServer, free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.e2e]


# ---- servers ------------------------------------------------------------------------------------

def wait_until_up(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=1).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up in {timeout} s:\n{log.read_text()[-3000:]}")


@dataclass
class Servers:
    """SatuID and the two portals, with what seed-demo printed and where the logs are."""

    server: IdpServer
    health: str
    social: str
    logs: list[Path]
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def idp(self) -> str:
        return self.server.url

    @property
    def seeded(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.server.seed_output.splitlines() if line.startswith("{")]

    def registrant(self) -> dict[str, str]:
        """A registry resident without an account yet (seed-demo lists them)."""
        return next(line["register"] for line in self.seeded if "register" in line)

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        self.server.stop()


def start_servers(tmp: Path, backend: str, portals: bool = True) -> Servers:
    """A fresh SatuID (migrated, seeded, under gunicorn) and, beside it, the two example portals.

    seed-demo registers the portals with the addresses they will have (redirect, post-logout and
    back-channel logout URIs), so their free ports are chosen first.
    """
    health, social = (f"http://127.0.0.1:{free_port()}" for _ in range(2))
    idp = IdpServer(tmp / "idp", backend=backend, name="journey",
                    extra_env={"SATUID_DEMO_HEALTH_URL": health, "SATUID_DEMO_SOCIAL_URL": social})
    idp.start()
    servers = Servers(server=idp, health=health, social=social, logs=[idp.instance / "gunicorn.log"])
    if not portals:
        return servers
    env = {**os.environ, "SATUID_ISSUER": idp.url}
    try:
        for name, url in (("health", health), ("social", social)):
            log = tmp / f"{name}.log"
            servers.logs.append(log)
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "clients.run", name, "--port", url.rsplit(":", 1)[1],
                     "--session-db", str(tmp / f"{name}.sqlite")],
                    cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
            servers.processes.append(process)
            wait_until_up(f"{url}/", process, log)
    except BaseException:
        servers.stop()
        raise
    return servers


# ---- browser ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
    yield browser
    browser.close()


class Steps:
    """Named steps of a journey; on a failure every step's screenshot and the logs are kept."""

    def __init__(self, page: Page, name: str, tmp: Path, logs: list[Path]) -> None:
        self.page, self.name, self.tmp, self.logs = page, name, tmp / "shots", logs
        self.tmp.mkdir(exist_ok=True)
        self.count = 0

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.count += 1
        label = f"{self.count:02d}-{re.sub(r'[^a-z0-9]+', '-', title.lower()).strip('-')}"
        try:
            yield
        except BaseException:
            self._keep(label + "-FAILED")
            raise
        with contextlib.suppress(Exception):
            self.page.screenshot(path=str(self.tmp / f"{label}.png"), full_page=True)

    def _keep(self, label: str) -> None:
        target = ARTIFACTS / self.name
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        with contextlib.suppress(Exception):
            self.page.screenshot(path=str(target / f"{label}.png"), full_page=True)
        for shot in self.tmp.glob("*.png"):
            shutil.copy(shot, target / shot.name)
        for log in self.logs:
            if log.exists():
                shutil.copy(log, target / log.name)


# ---- the journey --------------------------------------------------------------------------------

def read_code_from_outbox(page: Page, idp: str, recipient: str) -> str:
    """Open the development outbox in a new tab, as the citizen would open their mail."""
    inbox = page.context.new_page()
    try:
        inbox.goto(f"{idp}/dev/outbox?to={recipient}")
        body = inbox.locator("article.message pre.body").first.inner_text()
    finally:
        inbox.close()
    found = re.search(r"\b(\d{6})\b", body)
    assert found, f"no code in the message: {body!r}"
    return found.group(1)


@pytest.fixture(params=["sqlite", "postgres"])
def servers(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Servers]:
    if request.param == "postgres" and not services_available():
        pytest.skip("PostgreSQL/Redis not reachable here (CI sets IDP_TEST_REQUIRE_SERVICES=1)")
    started = start_servers(tmp_path, request.param)
    yield started
    started.stop()


def test_citizen_registers_signs_in_once_steps_up_and_signs_out_everywhere(
        servers: Servers, browser: Browser, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    context = browser.new_context(locale="id-ID")
    context.set_default_timeout(10_000)
    page = context.new_page()
    steps = Steps(page, request.node.name, tmp_path, servers.logs)
    person = servers.registrant()
    email = f"{person['nik']}@example.id"
    password = "Sawah-Hijau-Di-Ubud-2026"
    try:
        with steps.step("portal A sends the citizen to SatuID"):
            page.goto(servers.health)
            expect(page.get_by_role("heading", name="Belum masuk")).to_be_visible()
            page.get_by_test_id("login").click()
            expect(page).to_have_url(re.compile(re.escape(servers.idp) + r"/login\?"))

        with steps.step("register from the population registry"):
            page.locator("main a[href*='/register']").click()
            page.fill("#nik", person["nik"])
            page.fill("#full_name", person["name"])
            page.fill("#birth_date", person["birth_date"])
            page.locator("main button[type=submit]").click()
            page.fill("#email", email)
            page.locator("main button[type=submit]").click()

        with steps.step("verify the email with the code from the outbox"):
            page.fill("#code", read_code_from_outbox(page, servers.idp, email))
            page.locator("main button[value=verify]").click()

        with steps.step("choose a password"):
            page.fill("#password", password)
            page.fill("#confirm", password)
            page.locator("main button[type=submit]").click()

        with steps.step("registration offers an authenticator app, which counts at once"):
            expect(page).to_have_url(servers.idp + "/register/secure")
            page.locator("main a[href*='/account/security/totp']").click()
            totp = pyotp.TOTP(page.locator("#totp-secret").inner_text().replace(" ", ""))
            page.fill("#code", totp.now())
            page.locator("main form:has(#code) button[type=submit]").first.click()
            expect(page.locator("main form[action$='/totp/remove']")).to_have_count(1)
            expect(page.locator("main form[action$='/account/security/waiting/cancel']")).to_have_count(0)
            page.locator("main a[href='/register/done']").click()

        with steps.step("consent at portal A and land back signed in"):
            expect(page).to_have_url(re.compile(re.escape(servers.idp) + r"/consent\?"))
            page.locator("main button[value=approve]").click()
            expect(page).to_have_url(servers.health + "/")
            expect(page.get_by_test_id("signed-in-as")).to_have_text(person["name"])
            expect(page.get_by_test_id("acr")).to_have_text("urn:satuid:loa:1")
            health_sub = page.locator("td[data-claim=sub]").first.inner_text()

        with steps.step("portal B needs only consent, no password"):
            page.goto(servers.social)
            page.get_by_test_id("login").click()
            expect(page).to_have_url(re.compile(re.escape(servers.idp) + r"/consent\?"))
            expect(page.locator("input[type=password]")).to_have_count(0)
            page.locator("main button[value=approve]").click()
            expect(page).to_have_url(servers.social + "/")
            expect(page.get_by_test_id("signed-in-as")).to_have_text(person["name"])
            # Different sectors, different pairwise subjects: the portals cannot join their users.
            assert page.locator("td[data-claim=sub]").first.inner_text() != health_sub

        with steps.step("medical records at portal A: step-up with the authenticator app"):
            page.goto(servers.health)
            page.locator("main a[href='/rekam-medis']").click()
            expect(page).to_have_url(re.compile(re.escape(servers.idp) + r"/login/step-up\?"))
            page.fill("#code", totp.at(time.time() + 30))  # the next step: one step of drift is fine
            page.locator("main form:has(#code) button[type=submit]").first.click()
            expect(page).to_have_url(servers.health + "/rekam-medis")
            expect(page.get_by_test_id("assurance")).to_contain_text("urn:satuid:loa:2")

        with steps.step("sign out at portal B"):
            page.goto(servers.social)
            page.locator("header form[action='/logout'] button").click()
            expect(page.get_by_role("heading", name="Anda sudah keluar")).to_be_visible()
            page.goto(f"{servers.idp}/account")
            expect(page).to_have_url(re.compile(re.escape(servers.idp) + r"/login"))

        with steps.step("portal A is signed out too (back-channel logout)"):
            deadline = time.monotonic() + 10
            while True:
                page.goto(servers.health)
                if page.get_by_test_id("signed-in-as").count() == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            expect(page.get_by_role("heading", name="Belum masuk")).to_be_visible()
            page.goto(servers.health + "/rekam-medis")
            expect(page).to_have_url(re.compile(re.escape(servers.idp) + r"/login\?"))
    finally:
        context.close()
