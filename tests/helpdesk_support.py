"""Officers for helpdesk tests: created by ``flask staff create``, enrolled and signed in through
the real pages, each with a test client (a browser) of their own."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import time
from typing import Any

import pyotp
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import csrf_token

_serial = itertools.count(500)


def officer_nik() -> str:
    from idp.identity import nik as nikmod

    return nikmod.build("320101", dt.date(1985, 1, 2), "M", next(_serial))


class Officer:
    def __init__(self, app: Flask, role: str, nik: str | None = None) -> None:
        self.app = app
        self.role = role
        self.email = f"{role}{next(_serial)}@helpdesk.satuid.go.id"
        self.password = "meja bundar kantor pusat"
        self.client: FlaskClient = app.test_client()
        self.client.get("/helpdesk/login?lang=en")  # the pages remember the language; tests read English
        result = app.test_cli_runner().invoke(args=[
            "staff", "create", "--name", f"Petugas {role}", "--email", self.email,
            "--nik", nik or officer_nik(), "--role", role])
        assert result.exit_code == 0, result.output
        match = re.search(r"(/helpdesk/enrol/\S+)", result.output)
        assert match, result.output
        self.enrolment_path = match.group(1)
        self.secret = ""
        self._step = int(time.time() // 30) - 1

    def code(self) -> str:
        """A code of a step not used before (each step is accepted once), and never older than the
        step before the current one (the window): a step boundary may pass between two codes."""
        self._step = max(self._step, int(time.time() // 30) - 1)
        assert self._step <= int(time.time() // 30) + 1, "more codes than the window allows"
        code = pyotp.TOTP(self.secret).at(self._step * 30)
        self._step += 1
        return code

    def enrol(self) -> Officer:
        page = self.client.get(self.enrolment_path).get_data(as_text=True)
        found = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page)
        assert found
        self.secret = found.group(1).replace(" ", "")
        r = self.client.post(self.enrolment_path, data={
            "csrf_token": csrf_token(page), "password": self.password, "code": self.code()})
        assert r.status_code == 302, r.get_data(as_text=True)
        return self

    def sign_in(self) -> Officer:
        r = self.post("/helpdesk/login", {"email": self.email, "password": self.password})
        assert r.status_code == 302 and "/helpdesk/login/code" in r.location, r.status_code
        r = self.post("/helpdesk/login/code", {"code": self.code()})
        assert r.status_code == 302, r.get_data(as_text=True)
        return self

    def token(self, path: str = "/helpdesk/login") -> str:
        return csrf_token(self.client.get(path).get_data(as_text=True))

    def post(self, path: str, data: dict[str, str], page: str | None = None) -> Any:
        token = self.token(page or ("/helpdesk/login" if "login" in path else "/helpdesk"))
        return self.client.post(path, data={"csrf_token": token, **data})

    def open_case(self, channel: str, summary: str = "Lost phone, no recovery codes") -> str:
        r = self.post("/helpdesk/cases/new", {"channel": channel, "summary": summary})
        assert r.status_code == 302, r.get_data(as_text=True)
        return str(r.location.rsplit("/", 1)[-1])

    def lookup(self, case: str, nik: str, reason: str = "Citizen asks for an MFA reset") -> Any:
        return self.post(f"/helpdesk/cases/{case}/lookup", {"nik": nik, "reason": reason})

    def evidence(self, case: str, resident: Any, ktp_el: bool = False, **wrong: str) -> Any:
        # The registry row the test factory makes for every citizen (tests.conftest.Factory).
        data = {"name": resident.full_name, "birth_date": "1990-08-17", "birth_place": "Jakarta",
                "family_card": "3174040101090001", **wrong}
        if ktp_el:
            data["ktp_el"] = "y"
        return self.post(f"/helpdesk/cases/{case}/evidence", data)

    def propose(self, case: str, kind: str, value: str = "") -> Any:
        return self.post(f"/helpdesk/cases/{case}/actions", {"kind": kind, "value": value})

    def case_page(self, case: str) -> str:
        return self.client.get(f"/helpdesk/cases/{case}").get_data(as_text=True)

    def approve(self, action_id: str) -> Any:
        return self.post(f"/helpdesk/actions/{action_id}/approve", {})


def make_officer(app: Flask, role: str, nik: str | None = None) -> Officer:
    return Officer(app, role, nik).enrol().sign_in()
