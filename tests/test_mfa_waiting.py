"""A first factor added with nothing stronger than the password behind it waits before it counts:
every channel is told, with a link that cancels it; a counter case ends the wait; a factor added
after a fresh usable second factor, or while registering, counts at once. And sessions and grants
recorded when an email code counted as a second factor lose it."""

from __future__ import annotations

import re
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import AuthActions, Factory, csrf_token, outbox_messages
from tests.test_mfa_support import (
    audit_events,
    code_at,
    enrol_totp,
    pending_authorization,
    sso_of,
    step_up_form,
    submit_code,
)

DAY = 24 * 3600


@pytest.fixture
def clock() -> Iterator[Any]:
    from idp import clock

    clock.reset()
    try:
        yield clock
    finally:
        clock.reset()


def _waiting_rows(app: Flask, citizen_id: Any) -> list[Any]:
    from idp.models import FactorWaiting

    with app.app_context():
        from idp.db import get_session

        return list(get_session().scalars(select(FactorWaiting).where(
            FactorWaiting.citizen_id == citizen_id)))


def _cancel_link(app: Flask, recipient: str) -> str:
    body = next(b for b in outbox_messages(app, recipient) if "/account/security/waiting/" in b)
    match = re.search(r"https?://[^/\s]+(/account/security/waiting/[A-Za-z0-9_-]+)", body)
    assert match, body
    return match.group(1)


def test_a_first_authenticator_added_with_the_password_alone_waits_a_day(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory, clock: Any) -> None:
    citizen = factory.citizen(phone="+6281234567831", phone_verified=False)
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen, wait=True)
    [row] = _waiting_rows(app, citizen.id)
    assert row.factor == "totp" and row.cancelled_at is None
    assert 23 * 3600 < (row.usable_from.timestamp() - time.time()) <= DAY
    assert "mfa_factor_waiting" in audit_events(app, citizen.id)
    assert "/account/security/waiting/" in outbox_messages(app, citizen.email)[0]
    security = client.get("/account/security?lang=en").get_data(as_text=True)
    assert "For your safety, usable from" in security

    # Not usable yet: the step-up offers nothing, and says when it will be.
    level2 = pending_authorization(app)
    html = step_up_form(client, f"interaction={level2.uid}&lang=en")
    assert "Add a way to confirm it is you" in html and "waiting period" in html
    assert submit_code(client, f"interaction={level2.uid}", "totp",
                       code_at(secret)).status_code == 400
    assert sso_of(app, client).acr == 1

    clock.advance(DAY + 1)
    done = submit_code(client, f"interaction={level2.uid}", "totp", code_at(secret))
    assert done.status_code == 302 and done.headers["Location"] == level2.resume
    assert sso_of(app, client).acr == 2


def test_the_cancel_link_needs_no_login_removes_the_factor_and_ends_every_session(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory, clock: Any) -> None:
    from idp.models.mfa import TotpAuthenticator

    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    enrol_totp(app, client, citizen, wait=True)
    link = _cancel_link(app, citizen.email)

    stranger = app.test_client()  # the citizen reading their mail on another device
    page = stranger.get(link + "?lang=en")
    assert page.status_code == 200 and "Cancel the new way to log in" in page.get_data(True)
    refused = stranger.post(link, data={})  # no CSRF token: nothing happens
    assert refused.status_code in (200, 400)
    assert _waiting_rows(app, citizen.id)[0].cancelled_at is None
    done = stranger.post(link, data={"csrf_token": csrf_token(page.get_data(True))})
    assert done.status_code == 200
    with app.app_context():
        from idp.db import get_session

        assert get_session().scalar(select(TotpAuthenticator).where(
            TotpAuthenticator.citizen_id == citizen.id)) is None
    assert _waiting_rows(app, citizen.id)[0].cancelled_at is not None
    assert sso_of(app, client) is None  # the session that added it is over
    assert "mfa_factor_cancelled" in audit_events(app, citizen.id)
    assert "telah dihapus" in outbox_messages(app, citizen.email)[0]  # in her language
    assert stranger.get(link).status_code == 404  # once only


def test_a_counter_case_ends_the_wait(app: Flask, client: FlaskClient, auth: AuthActions,
                                      factory: Factory, clock: Any) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen, wait=True)
    case_id = uuid.uuid4()
    with app.app_context():
        from idp.auth.mfa import waiting
        from idp.db import get_session

        assert waiting.clear_at_counter(get_session(), citizen.id, case_id) == 1
        get_session().commit()
    assert _waiting_rows(app, citizen.id)[0].case_id == case_id
    assert "mfa_factor_waiting_cleared" in audit_events(app, citizen.id)
    r = submit_code(client, "next=/account", "totp", code_at(secret))
    assert r.status_code == 302 and sso_of(app, client).acr == 2


def test_a_factor_added_after_a_fresh_second_factor_counts_at_once(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(phone="+6281234567832", phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    enrol_totp(app, client, citizen, wait=True)  # proves the phone by SMS first
    assert _waiting_rows(app, citizen.id) == []


def test_a_phone_added_from_the_security_page_is_verified_by_sms_and_waits(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory, clock: Any) -> None:
    from idp.models import Citizen

    phone = "+6281234567833"
    citizen = factory.citizen()  # registered with an email address only
    auth.login(citizen.nik, citizen.password)
    page = client.get("/account/security/phone?lang=en")
    assert page.status_code == 200 and 'autocomplete="tel"' in page.get_data(True)
    sent = client.post("/account/security/phone", data={
        "csrf_token": csrf_token(page.get_data(True)), "phone": "0812-3456-7833",
        "current": citizen.password})
    assert sent.status_code == 200
    code = re.search(r"\b(\d{6})\b", outbox_messages(app, phone)[0]).group(1)
    html = sent.get_data(as_text=True)
    wrong = client.post("/account/security/phone/verify", data={
        "csrf_token": csrf_token(html), "phone": phone, "code": "000000"})
    assert wrong.status_code == 400
    elsewhere = client.post("/account/security/phone/verify", data={
        "csrf_token": csrf_token(html), "phone": "+6281234567899", "code": code})
    assert elsewhere.status_code == 400  # the code proves only the number it went to
    sent = client.post("/account/security/phone", data={
        "csrf_token": csrf_token(html), "phone": phone, "current": citizen.password})
    code = re.search(r"\b(\d{6})\b", outbox_messages(app, phone)[0]).group(1)
    ok = client.post("/account/security/phone/verify", data={
        "csrf_token": csrf_token(html), "phone": phone, "code": code})
    assert ok.status_code == 302
    with app.app_context():
        from idp.db import get_session

        stored = get_session().get(Citizen, citizen.id)
        assert stored.phone == phone and stored.phone_verified
    [row] = _waiting_rows(app, citizen.id)
    assert row.factor == "sms"
    assert "mfa_phone_added" in audit_events(app, citizen.id)
    level2 = pending_authorization(app)
    assert 'value="sms"' not in step_up_form(client, f"interaction={level2.uid}&lang=en")
    clock.advance(DAY + 1)
    assert 'name="factor" type="hidden" value="sms"' in step_up_form(
        client, f"interaction={level2.uid}&lang=en")


def test_a_passkey_in_its_waiting_period_is_not_offered(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory, clock: Any) -> None:
    from idp.models import FactorWaiting
    from idp.models.base import secret_digest, utcnow
    from tests.test_mfa_step_up import _add_passkey_row

    citizen = factory.citizen()
    passkey_id = _add_passkey_row(app, citizen.id)
    with app.app_context():
        import datetime as dt

        from idp.db import get_session

        get_session().add(FactorWaiting(
            citizen_id=citizen.id, factor="passkey", factor_ref=passkey_id,
            usable_from=utcnow() + dt.timedelta(days=1), cancel_hash=secret_digest("x")))
        get_session().commit()
    auth.login(citizen.nik, citizen.password)
    level3 = pending_authorization(app, required_acr=3)
    assert "Add a way to confirm it is you" in step_up_form(client,
                                                            f"interaction={level3.uid}&lang=en")
    html = client.get("/account/security").get_data(as_text=True)
    options = client.post(f"/login/step-up/passkey/options?interaction={level3.uid}",
                          headers={"X-CSRFToken": csrf_token(html)})
    assert options.status_code == 400
    clock.advance(DAY + 1)
    options = client.post(f"/login/step-up/passkey/options?interaction={level3.uid}",
                          headers={"X-CSRFToken": csrf_token(html)})
    assert options.status_code == 200


def test_factors_added_while_registering_count_at_once(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    """The account is minutes old: there is no earlier owner to take it over from."""
    from tests.test_registration import PASSWORD, identity, last_code

    resident = factory.resident()
    assert identity(auth, resident.nik).status_code == 302
    auth.form("/register/contact", {"email": "siti@example.id"})
    auth.form("/register/verify", {"code": last_code(app, "siti@example.id"), "action": "verify"})
    assert auth.form("/register/password", {"password": PASSWORD, "confirm": PASSWORD}
                     ).headers["Location"] == "/register/secure"
    secure = client.get("/register/secure").get_data(as_text=True)
    totp_url = re.search(r'href="(/account/security/totp[^"]*)"', secure).group(1)
    page = client.get(totp_url.replace("&amp;", "&")).get_data(as_text=True)
    seed = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', page).group(1).replace(" ", "")
    r = client.post(totp_url.replace("&amp;", "&"),
                    data={"csrf_token": csrf_token(page), "code": code_at(seed, -1)})
    assert r.status_code == 302 and r.headers["Location"].endswith("next=/register/done")
    citizen = sso_of(app, client).citizen_id
    assert _waiting_rows(app, uuid.UUID(citizen)) == []
    level2 = pending_authorization(app)
    assert 'name="factor" type="hidden" value="totp"' in step_up_form(
        client, f"interaction={level2.uid}")
    # Another browser logging in with the password gets no such pass.
    other = app.test_client()
    AuthActions(other).login(resident.nik, PASSWORD)
    assert other.get("/account/security/phone").status_code == 302  # must prove the app first


# ---- what the previous release recorded ------------------------------------------------------------

def test_an_old_session_with_an_email_code_loses_it_and_its_level(
        app: Flask, client: FlaskClient, factory: Factory) -> None:
    from idp import state
    from idp.models.base import secret_digest
    from idp.state import SessionRef, SsoSession
    from tests.test_mfa_support import COOKIE

    citizen = factory.citizen()
    now = int(time.time())
    shapes = {"email only": (["pwd", "mca", "mfa"], 2, 1, ["pwd"]),
              "email and app": (["pwd", "mca", "mfa", "otp"], 2, 2, ["pwd", "mfa", "otp"])}
    for amr, acr, level, kept in shapes.values():
        secret = secrets.token_urlsafe(32)
        sid = secrets.token_urlsafe(16)
        with app.test_request_context():
            old = SsoSession(sid=sid, citizen_id=str(citizen.id), auth_time=now, amr=amr, acr=acr,
                             created_at=now, last_seen=now - 60,
                             factor_times={m: now for m in amr})
            state.sessions.put(old, secret_digest(secret))
            state.session_refs.put(SessionRef(key=secret_digest(secret)), sid)
        client.set_cookie(COOKIE, secret)
        read = sso_of(app, client)
        assert read.acr == level and read.amr == kept and "mca" not in read.factor_times
        assert sso_of(app, client).amr == kept  # and so it was saved


def test_a_refresh_grant_from_an_email_code_is_renewed_without_it(
        app: Flask, client: FlaskClient, factory: Factory) -> None:
    from idp.models import Token
    from tests.oidc_rp import Portal, register_portal

    citizen = factory.citizen()
    info = register_portal(app, "lama")
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    result = portal.sign_in(citizen.nik, citizen.password, scope="openid offline_access",
                            prompt="consent")
    first = portal.token(result["code"]).get_json()
    with app.app_context():
        from idp.db import get_session

        session = get_session()
        for row in session.scalars(select(Token).where(Token.citizen_id == citizen.id)):
            row.amr, row.acr = ["pwd", "mca", "mfa"], 2  # as the previous release stored it
        session.commit()
    assert portal.refresh(first["refresh_token"]).status_code == 200
    with app.app_context():
        from idp.db import get_session

        newest = get_session().scalars(select(Token).where(Token.citizen_id == citizen.id)
                                       .order_by(Token.id.desc())).first()
        assert newest.acr == 1 and newest.amr == ["pwd"]


def test_the_security_page_cancels_a_waiting_factor_too(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory, clock: Any) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    enrol_totp(app, client, citizen, wait=True)
    page = client.get("/account/security?lang=en").get_data(as_text=True)
    assert 'name="factor" value="totp"' in page
    done = client.post("/account/security/waiting/cancel",
                       data={"csrf_token": csrf_token(page), "factor": "totp"})
    assert done.status_code == 200 and _waiting_rows(app, citizen.id)[0].cancelled_at is not None
    assert sso_of(app, client) is None
