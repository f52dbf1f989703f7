"""Identity assurance to a stock relying-party library over real HTTP: openid-client asks for
``verified_claims`` and gets the registry match for a registered citizen, then, after a counter case
in which two officers checked the KTP-el (done through the helpdesk pages over HTTP), the in-person
document evidence with its case."""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pyotp
import requests
import sqlalchemy as sa

from tests.servers import IdpServer
from tests.test_interop import NodeRelyingParty, citizen, idp, register  # noqa: F401
from tests.test_oidc_e2e import Browser, _csrf

CLAIMS = json.dumps({"id_token": {"verified_claims": {
    "verification": {"trust_framework": None, "evidence": None},
    "claims": {"name": None, "birthdate": None}}}})


def ask(server: IdpServer, client_id: str, person: dict[str, Any]) -> dict[str, Any]:
    portal = register(server, client_id)
    rp = NodeRelyingParty("openid_client_asks.mjs", server, portal, CLAIMS=CLAIMS,
                          SCOPE="openid profile")
    try:
        start = rp.hear()
        rp.say(callback=Browser(server).go(start["url"], portal["redirect_uris"][0], person))
        return rp.hear()
    finally:
        rp.close()


class Officer:
    """An officer's browser over HTTP: enrolled from the link ``flask staff create`` printed."""

    def __init__(self, server: IdpServer, role: str, nik: str) -> None:
        self.idp, self.http = server, requests.Session()
        self.email = f"{role}@helpdesk.satuid.go.id"
        output = server.flask("staff", "create", "--name", role.title(), "--email", self.email,
                           "--nik", nik, "--role", role)
        link = re.search(r"(http://\S+/helpdesk/enrol/\S+)", output)
        assert link, output
        page = self.http.get(link.group(1), timeout=10).text
        secret = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)
        assert secret
        self.totp, self.step = pyotp.TOTP(secret.group(1).replace(" ", "")), int(time.time() // 30) - 1
        self.post(link.group(1), {"password": "meja bundar kantor pusat", "code": self.code()}, page)
        self.post("/helpdesk/login", {"email": self.email, "password": "meja bundar kantor pusat"})
        self.post("/helpdesk/login/code", {"code": self.code()}, "/helpdesk/login/code")

    def code(self) -> str:
        self.step = max(self.step, int(time.time() // 30) - 1) + 1  # never behind the window
        return str(self.totp.at((self.step - 1) * 30))

    def post(self, path: str, data: dict[str, str], page: str | None = None) -> requests.Response:
        url = path if path.startswith("http") else self.idp.url + path
        html = page if page and page.startswith("<") else self.http.get(
            self.idp.url + (page or "/helpdesk/login"), timeout=10).text
        response = self.http.post(url, data={"csrf_token": _csrf(html), **data},
                                  allow_redirects=False, timeout=10)
        assert response.status_code == 302, (path, response.status_code, response.text[:400])
        return response


def test_verified_claims_carry_the_registry_match_then_the_counter_check(
        idp: IdpServer, citizen: dict[str, Any]) -> None:  # noqa: F811
    done = ask(idp, "portal-ia-1", citizen)
    verified = done["id_token"]["verified_claims"]
    assert verified["verification"]["trust_framework"] == "id_dukcapil"
    assert [e["type"] for e in verified["verification"]["evidence"]] == ["electronic_record"]
    assert set(verified["claims"]) == {"name", "birthdate"}

    # A counter visit: an agent checks the KTP-el and the registry facts, a supervisor approves.
    engine = sa.create_engine(idp.env().get("IDP_DATABASE_URL") or
                              f"sqlite:///{idp.instance / 'satuid.db'}")
    with engine.connect() as conn:
        resident = conn.execute(sa.text(
            "SELECT full_name, birth_date, birth_place, family_card_number FROM registry_resident "
            "WHERE nik = :nik"), {"nik": citizen["nik"]}).one()
    engine.dispose()
    agent = Officer(idp, "agent", "3201010201850501")
    supervisor = Officer(idp, "supervisor", "3201010201850502")
    reference = agent.post("/helpdesk/cases/new", {"channel": "counter",
                                                   "summary": "In-person identity check"},
                           "/helpdesk/cases/new").headers["Location"].rsplit("/", 1)[-1]
    case_page = f"/helpdesk/cases/{reference}"
    agent.post(f"{case_page}/lookup", {"nik": citizen["nik"], "reason": "Counter visit"}, case_page)
    birth_date = resident.birth_date if isinstance(resident.birth_date, str) \
        else resident.birth_date.isoformat()
    agent.post(f"{case_page}/evidence", {"name": resident.full_name, "birth_date": birth_date,
                                         "birth_place": resident.birth_place,
                                         "family_card": resident.family_card_number,
                                         "ktp_el": "y"}, case_page)
    agent.post(f"{case_page}/actions", {"kind": "verify_in_person", "value": ""}, case_page)
    html = supervisor.http.get(idp.url + case_page, timeout=10).text
    action = re.search(r"/helpdesk/actions/([0-9a-f-]{36})/approve", html)
    assert action, html[-2000:]
    supervisor.post(f"/helpdesk/actions/{action.group(1)}/approve", {}, case_page)

    done = ask(idp, "portal-ia-2", citizen)
    [evidence] = done["id_token"]["verified_claims"]["verification"]["evidence"]
    assert evidence["type"] == "document" and evidence["method"] == "pipp"
    assert evidence["check_details"][0]["txn"] == reference
    assert done["userinfo"]["sub"] == done["id_token"]["sub"]
