"""The helpdesk: staff accounts and sessions, cases, lookups, four eyes, cooling-off, "not me"."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy import func, select

from idp import clock
from tests.conftest import AuthActions, Factory, csrf_token, make_app, outbox_messages
from tests.helpdesk_support import Officer, make_officer


@pytest.fixture(autouse=True)
def _clock() -> Iterator[None]:
    yield
    clock.reset()


def _with_totp(app: Flask, citizen: object) -> None:
    from idp.auth.mfa import totp
    from idp.db import get_session
    from idp.models import Citizen, TotpAuthenticator
    from idp.models.base import utcnow

    with app.app_context():
        s = get_session()
        row = s.get(Citizen, citizen.id)  # type: ignore[attr-defined]
        totp.begin_enrolment(s, row)
        auth = s.scalar(select(TotpAuthenticator).where(TotpAuthenticator.citizen_id == row.id))
        auth.confirmed_at = utcnow()
        s.commit()


def _count(app: Flask, model: type, **where: object) -> int:
    from idp.db import get_session

    with app.app_context():
        stmt = select(func.count()).select_from(model)
        for k, v in where.items():
            stmt = stmt.where(getattr(model, k) == v)
        return int(get_session().scalar(stmt) or 0)


def _action_ids(html: str) -> list[str]:
    return re.findall(r"/helpdesk/actions/([0-9a-f-]{36})/approve", html)


def _audit_ok(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0 and result.output.startswith("ok"), result.output


def test_staff_enrol_sign_in_with_a_code_and_keep_their_own_session(app: Flask, factory: Factory,
                                                                      auth: AuthActions) -> None:
    not_enrolled = Officer(app, "agent")
    r = not_enrolled.post("/helpdesk/login", {"email": not_enrolled.email,
                                              "password": not_enrolled.password})
    assert r.status_code == 401
    agent = Officer(app, "agent").enrol()
    # The enrolment link works once.
    assert agent.client.get(agent.enrolment_path).status_code == 404
    # The password alone is not a session: /helpdesk still sends to sign-in.
    r = agent.post("/helpdesk/login", {"email": agent.email, "password": agent.password})
    assert "/helpdesk/login/code" in r.location
    assert "/helpdesk/login" in agent.client.get("/helpdesk").location
    r = agent.post("/helpdesk/login/code", {"code": "000000"})
    assert r.status_code == 401
    r = agent.post("/helpdesk/login/code", {"code": agent.code()})
    assert r.status_code == 302
    assert agent.client.get("/helpdesk").status_code == 200

    # A citizen's SSO session opens nothing here.
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    assert "/helpdesk/login" in auth.client.get("/helpdesk").location

    listed = app.test_cli_runner().invoke(args=["staff", "list"]).output
    assert f"{agent.email}\tagent\tactive" in listed
    assert app.test_cli_runner().invoke(args=["staff", "disable", agent.email]).exit_code == 0
    assert "/helpdesk/login" in agent.client.get("/helpdesk").location
    _audit_ok(app)


def test_an_idle_staff_session_ends(backend: dict[str, str]) -> None:
    app = make_app({**backend, "IDP_STAFF_IDLE_SECONDS": "1"})
    try:
        agent = make_officer(app, "agent")
        assert agent.client.get("/helpdesk").status_code == 200
        time.sleep(2.2)
        assert "/helpdesk/login" in agent.client.get("/helpdesk").location
    finally:
        app.extensions["idp.engine"].dispose()


def test_a_lookup_needs_an_open_case_and_a_reason_and_is_capped(backend: dict[str, str]) -> None:
    app = make_app({**backend, "IDP_STAFF_DAILY_LOOKUPS": "2"})
    try:
        factory = Factory(app)
        citizen = factory.citizen()
        agent = make_officer(app, "agent")
        supervisor = make_officer(app, "supervisor")
        # No case, no lookup.
        assert agent.lookup("HD-NOCASE00", citizen.nik).status_code == 404
        case = agent.open_case("phone")
        r = agent.lookup(case, citizen.nik, reason="")
        assert r.status_code == 400
        assert citizen.full_name not in agent.case_page(case)
        assert agent.lookup(case, "3174040101900099").status_code == 409  # no such account
        assert agent.lookup(case, citizen.nik).status_code == 302
        assert citizen.full_name in agent.case_page(case)
        # The cap: the third lookup today is refused, and supervisors hear of it once.
        other = agent.open_case("phone")
        r = agent.lookup(other, citizen.nik)
        assert r.status_code == 409 and "limit" in r.get_data(as_text=True)
        agent.lookup(other, citizen.nik)
        alerts = outbox_messages(app, supervisor.email)
        assert len(alerts) == 1 and agent.email in alerts[0]
        from idp.models import AuditEvent

        assert _count(app, AuditEvent, event="helpdesk_lookup") == 2
        assert _count(app, AuditEvent, event="helpdesk_lookup_refused") == 2
        _audit_ok(app)
    finally:
        app.extensions["idp.engine"].dispose()


def test_staff_may_not_handle_their_own_nik(app: Flask, factory: Factory) -> None:
    citizen = factory.citizen()
    agent = make_officer(app, "agent", nik=citizen.nik)
    case = agent.open_case("counter")
    r = agent.lookup(case, citizen.nik)
    assert r.status_code == 409 and "own NIK" in r.get_data(as_text=True)


def test_an_mfa_reset_over_the_phone_needs_four_eyes_and_waits_out_the_cooling_off(
        app: Flask, factory: Factory, auth: AuthActions) -> None:
    from idp.models import CaseAction, TotpAuthenticator

    resident_citizen = factory.citizen()
    _with_totp(app, resident_citizen)
    auth.login(resident_citizen.nik, resident_citizen.password)  # a session that must end
    agent = make_officer(app, "agent")
    first, second = make_officer(app, "supervisor"), make_officer(app, "supervisor")
    case = agent.open_case("phone")
    agent.lookup(case, resident_citizen.nik)

    # Four-eyes actions need the identity established first.
    assert agent.propose(case, "remove_factors").status_code == 409
    agent.evidence(case, resident_citizen, family_card="0000000000000000")
    assert "does not match" in agent.case_page(case)
    assert agent.propose(case, "remove_factors").status_code == 409
    agent.evidence(case, resident_citizen)
    assert agent.propose(case, "remove_factors").status_code == 302
    action_id = _action_ids(first.case_page(case))[0]

    # An agent cannot approve; nor can the supervisor who proposed.
    assert agent.approve(action_id).status_code == 403
    own_case = first.open_case("phone")
    other_citizen = factory.citizen()
    first.lookup(own_case, other_citizen.nik)
    first.evidence(own_case, other_citizen)
    first.propose(own_case, "unlock")  # done at once by one officer
    first.propose(own_case, "remove_factors")
    own_action = _action_ids(second.case_page(own_case))[0]
    r = first.approve(own_action)
    assert r.status_code == 409 and "another supervisor" in r.get_data(as_text=True)

    assert first.approve(action_id).status_code == 302
    notices = outbox_messages(app, resident_citizen.email)
    assert "/helpdesk-change/cancel/" in notices[0] and case in notices[0]
    assert _count(app, TotpAuthenticator, citizen_id=resident_citizen.id) == 1  # still cooling off

    clock.advance(23 * 3600)
    apply_due = app.test_cli_runner().invoke(args=["helpdesk", "apply-due"])
    assert apply_due.output.strip() == "applied 0"
    assert _count(app, TotpAuthenticator, citizen_id=resident_citizen.id) == 1
    clock.advance(3600 + 60)
    # A working day has passed: the agent signs in again, and reading the case carries out what
    # is due (as ``flask helpdesk apply-due`` from cron does).
    assert "/helpdesk/login" in agent.client.get(f"/helpdesk/cases/{case}").location
    page = agent.sign_in().case_page(case)
    assert _count(app, TotpAuthenticator, citizen_id=resident_citizen.id) == 0
    assert _count(app, CaseAction, status="applied", kind="remove_factors") == 1
    assert "action_applied" in page
    assert "/login" in auth.client.get("/account").location  # every session ended
    assert case in outbox_messages(app, resident_citizen.email)[0]  # told it was done
    _audit_ok(app)


def test_the_citizen_cancels_a_pending_change_with_the_link_and_nothing_changes(
        app: Flask, factory: Factory) -> None:
    from idp.models import CaseAction, TotpAuthenticator

    citizen = factory.citizen()
    _with_totp(app, citizen)
    agent, supervisor = make_officer(app, "agent"), make_officer(app, "supervisor")
    case = agent.open_case("phone")
    agent.lookup(case, citizen.nik)
    agent.evidence(case, citizen)
    agent.propose(case, "replace_email", "pengambil.alih@example.id")
    supervisor.approve(_action_ids(supervisor.case_page(case))[0])
    link = re.search(r"(/helpdesk-change/cancel/\S+)", outbox_messages(app, citizen.email)[0])
    assert link
    browser = app.test_client()  # no login needed: the link is the proof
    page = browser.get(link.group(1)).get_data(as_text=True)
    assert browser.post(link.group(1), data={"csrf_token": csrf_token(page)}).status_code == 200
    assert browser.get(link.group(1)).status_code == 404  # once
    clock.advance(48 * 3600)
    assert app.test_cli_runner().invoke(args=["helpdesk", "apply-due"]).output.strip() == "applied 0"
    assert _count(app, CaseAction, status="cancelled") == 1
    assert _count(app, TotpAuthenticator, citizen_id=citizen.id) == 1
    assert outbox_messages(app, "pengambil.alih@example.id") == []
    _audit_ok(app)


def test_a_counter_case_records_in_person_verification_on_approval(app: Flask,
                                                                   factory: Factory) -> None:
    from idp.db import get_session
    from idp.identity import verification

    citizen = factory.citizen()
    agent, supervisor = make_officer(app, "agent"), make_officer(app, "supervisor")
    phone_case = agent.open_case("phone")
    agent.lookup(phone_case, citizen.nik)
    agent.evidence(phone_case, citizen)
    assert agent.propose(phone_case, "verify_in_person").status_code == 409  # counter only

    case = agent.open_case("counter")
    agent.lookup(case, citizen.nik)
    agent.evidence(case, citizen)  # the KTP-el not ticked
    assert agent.propose(case, "verify_in_person").status_code == 409
    agent.evidence(case, citizen, ktp_el=True)
    assert agent.propose(case, "verify_in_person").status_code == 302
    with app.app_context():
        assert verification.verified_in_person(get_session(), citizen.id) is None
    assert supervisor.approve(_action_ids(supervisor.case_page(case))[0]).status_code == 302
    with app.app_context():
        row = verification.verified_in_person(get_session(), citizen.id)
        assert row is not None and row.case_id == case
        assert row.evidence["type"] == "document" and row.evidence["method"] == "pipp"
    _audit_ok(app)


def test_a_citizen_reports_a_session_as_not_me_and_sees_the_case(app: Flask, factory: Factory,
                                                                 auth: AuthActions) -> None:
    citizen = factory.citizen()
    intruder = app.test_client()
    AuthActions(intruder).login(citizen.nik, citizen.password)
    auth.login(citizen.nik, citizen.password)
    home = auth.client.get("/account").get_data(as_text=True)
    report = re.search(r'href="(/account/not-me/session/[^"]+)"', home)
    assert report, "no Not me link on the sessions list"
    page = auth.client.get(report.group(1)).get_data(as_text=True)
    r = auth.client.post(report.group(1), data={"csrf_token": csrf_token(page),
                                                "end_sessions": "y"})
    assert r.status_code == 302
    assert "/login" in intruder.get("/account").location
    mine = auth.client.get("/account/cases").get_data(as_text=True)
    reference = re.search(r"HD-[A-Z0-9]{8}", mine)
    assert reference
    agent = make_officer(app, "agent")
    assert reference.group(0) in agent.client.get("/helpdesk").get_data(as_text=True)
    # Someone else's session id is not the citizen's to report.
    assert auth.client.get(f"/account/not-me/session/{uuid.uuid4().hex}").status_code == 404


def test_auditors_read_and_verify_but_change_nothing(app: Flask, factory: Factory) -> None:
    citizen = factory.citizen()
    agent, auditor = make_officer(app, "agent"), make_officer(app, "auditor")
    case = agent.open_case("counter")
    agent.lookup(case, citizen.nik)
    page = auditor.case_page(case)
    assert citizen.full_name in page and 'id="action-form"' not in page
    assert auditor.client.get("/helpdesk/cases/new").status_code == 403
    assert auditor.post(f"/helpdesk/cases/{case}/actions", {"kind": "unlock"}).status_code == 403
    assert auditor.post(f"/helpdesk/cases/{case}/lookup",
                        {"nik": citizen.nik, "reason": "x"}).status_code == 403
    r = auditor.post("/helpdesk/audit/verify", {}, page="/helpdesk/audit")
    assert r.status_code == 302
    assert app.test_cli_runner().invoke(args=["audit", "verify", "--queued"]).exit_code == 0
    assert "The log is intact" in auditor.client.get("/helpdesk/audit").get_data(as_text=True)
    assert agent.client.get("/helpdesk/audit").status_code == 403


def test_what_an_outside_review_tried_is_refused(app: Flask, factory: Factory,
                                                   auth: AuthActions) -> None:
    from idp.db import get_session
    from idp.models import CaseAction, Citizen

    # The same address with spaces is the same officer's lockout count.
    agent = make_officer(app, "agent")
    codes = [agent.post("/helpdesk/login", {"email": " " * i + agent.email, "password": "wrong"})
             .status_code for i in range(1, 6)]
    assert 429 in codes
    # One person, one account: no supervisor account for the agent's NIK.
    nik = app.test_cli_runner().invoke(args=["staff", "list"]).output  # the agent exists
    assert agent.email in nik
    with app.app_context():
        from idp.models import StaffMember

        agent_nik = get_session().scalar(select(StaffMember.nik))
    second = app.test_cli_runner().invoke(args=[
        "staff", "create", "--name", "Twin", "--email", "twin@helpdesk.satuid.go.id",
        "--nik", agent_nik, "--role", "supervisor"])
    assert second.exit_code != 0 and "already has this NIK" in second.output

    # Nothing to send a reset link to: refused before anything is recorded.
    citizen = factory.citizen()
    with app.app_context():
        row = get_session().get(Citizen, citizen.id)
        row.email_verified = False
        get_session().commit()
    clerk, supervisor = make_officer(app, "agent"), make_officer(app, "supervisor")
    case = clerk.open_case("phone")
    clerk.lookup(case, citizen.nik)
    assert clerk.propose(case, "reset_link").status_code == 409
    assert _count(app, CaseAction) == 0
    # An action cancelled by the citizen cannot be approved afterwards.
    clerk.evidence(case, citizen)
    clerk.propose(case, "remove_factors")
    action_id = _action_ids(supervisor.case_page(case))[0]
    with app.app_context():
        from idp.helpdesk import cases

        s = get_session()
        assert cases.cancel(s, s.get(CaseAction, uuid.UUID(action_id)), s.get(Citizen, citizen.id))
        s.commit()
    assert supervisor.approve(action_id).status_code == 409
    # The evidence is not a quiz: three comparisons per case.
    for _ in range(2):
        clerk.evidence(case, citizen, birth_place="Bandung")
    r = clerk.evidence(case, citizen)
    assert r.status_code == 409
    # Malformed references are a 404, not an error.
    auth.login(citizen.nik, citizen.password)
    for ref in ("99999999999999999999", "²", "1" * 70):
        assert auth.client.get(f"/account/not-me/release/{ref}").status_code == 404
    assert supervisor.client.get("/helpdesk/audit?before=99999999999999999999999").status_code in (
        200, 403)
    _audit_ok(app)
