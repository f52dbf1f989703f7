"""The citizen's account: password and email changes, preferences and time zones, device names,
the download of everything held, and closing the account after its wait."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from idp import state
from idp.account.changes import NIK_SHOWN_WITHIN_SECONDS
from tests.conftest import AuthActions, Factory, csrf_token, outbox_messages
from tests.test_mfa_support import audit_events, code_at, enrol_totp, sso_of, submit_code

ANDROID_CHROME = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/126.0.0.0 Mobile Safari/537.36")


def post_form(client: FlaskClient, page: str, action: str | None = None, **data: str) -> Any:
    html = client.get(page).get_data(as_text=True)
    return client.post(action or page, data={"csrf_token": csrf_token(html), **data})


def form_token(html: str, prefix: str) -> str:
    """The CSRF token of a form with a field prefix (two forms on one page)."""
    m = re.search(rf'name="{prefix}-csrf_token" type="hidden" value="([^"]+)"', html)
    assert m, f"no {prefix} form on the page"
    return m.group(1)


def second_device(app: Flask, citizen: Any) -> FlaskClient:
    other = app.test_client()
    AuthActions(other).login(citizen.nik, citizen.password)
    assert sso_of(app, other) is not None
    return other


# ---- password ------------------------------------------------------------------------------------

def test_changing_the_password_needs_the_current_one_and_ends_every_other_session(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(locale="en")
    auth.login(citizen.nik, citizen.password)
    other = second_device(app, citizen)
    new = "sepeda ontel merah di pasar"

    wrong = post_form(client, "/account/password?lang=en", current="not my password",
                      password=new, confirm=new)
    assert wrong.status_code == 400 and "not your current password" in wrong.get_data(as_text=True)
    weak = post_form(client, "/account/password", current=citizen.password, password="password1234",
                     confirm="password1234")
    assert weak.status_code == 400
    same = post_form(client, "/account/password", current=citizen.password, password=citizen.password,
                     confirm=citizen.password)
    assert same.status_code == 400
    assert sso_of(app, other) is not None  # nothing changed so far

    done = post_form(client, "/account/password", current=citizen.password, password=new, confirm=new)
    assert done.status_code == 302 and done.headers["Location"].endswith("/account")
    assert sso_of(app, other) is None and sso_of(app, client) is not None
    assert "password of your SatuID account was changed" in outbox_messages(app, citizen.email)[0]
    assert {"password_check_failed", "password_changed"} <= set(audit_events(app, citizen.id))
    auth.logout()
    assert auth.login(citizen.nik, citizen.password).status_code != 302
    assert auth.login(citizen.nik, new).status_code == 302


def test_the_password_form_names_the_nik_for_password_managers(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    """The hidden username is what the login form saved (the NIK), so the new password replaces the
    right saved login; on a page shown again with an error too."""
    citizen = factory.citizen(locale="en")
    auth.login(citizen.nik, citizen.password)

    def inputs(html: str) -> dict[str, list[str]]:
        """The form's inputs by their autocomplete token."""
        found: dict[str, list[str]] = {}
        for tag in re.findall(r"<input[^>]*>", html):
            if m := re.search(r'autocomplete="([^"]+)"', tag):
                found.setdefault(m.group(1), []).append(tag)
        return found

    shown = client.get("/account/password").get_data(as_text=True)
    refused = post_form(client, "/account/password", current="not my password", password="x", confirm="x")
    assert refused.status_code == 400
    for html in (shown, refused.get_data(as_text=True)):
        found = inputs(html)
        [username] = found["username"]
        assert f'value="{citizen.nik}"' in username and " hidden" in username
        assert re.findall(r'name="(\w+)"', " ".join(found["current-password"])) == ["current"]
        assert re.findall(r'name="(\w+)"', " ".join(found["new-password"])) == ["password", "confirm"]
    # A session whose login is no longer recent (a cookie someone else may hold) is not shown the
    # full NIK, which every other page masks.
    aged = sso_of(app, client)
    aged.auth_time -= NIK_SHOWN_WITHIN_SECONDS + 60
    with app.test_request_context():
        state.sessions.put(aged, aged.key)
    later = client.get("/account/password")
    assert later.status_code == 200 and citizen.nik not in later.get_data(as_text=True)


def test_a_citizen_with_a_second_factor_proves_it_before_changing_the_password(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(locale="en")
    auth.login(citizen.nik, citizen.password)
    enrol_totp(app, client, citizen)
    auth.logout()
    auth.login(citizen.nik, citizen.password)  # password only: the factor is not fresh
    response = client.get("/account/password")
    assert response.status_code == 302 and "/login/step-up" in response.headers["Location"]


# ---- email ---------------------------------------------------------------------------------------

def test_replacing_the_email_verifies_the_new_one_and_tells_the_old_one_with_a_not_me_link(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(locale="en")
    old = citizen.email
    auth.login(citizen.nik, citizen.password)
    other = second_device(app, citizen)

    sent = post_form(client, "/account/email", email=" baru@Contoh.ID ", current=citizen.password)
    assert sent.status_code == 200
    code = re.search(r"\b(\d{6})\b", outbox_messages(app, "baru@contoh.id")[0])
    assert code
    html = sent.get_data(as_text=True)
    wrong = client.post("/account/email/verify?lang=en", data={
        "csrf_token": csrf_token(html), "email": "baru@contoh.id", "code": "000000"})
    assert wrong.status_code == 400 and "not correct" in wrong.get_data(as_text=True)
    forged = client.post("/account/email/verify", data={
        "csrf_token": csrf_token(html), "email": "thief@contoh.id", "code": code.group(1)})
    assert forged.status_code == 400  # the code proves only the address it was sent to
    sent = post_form(client, "/account/email", email="baru@contoh.id", current=citizen.password)
    code = re.search(r"\b(\d{6})\b", outbox_messages(app, "baru@contoh.id")[0])
    assert code
    ok = client.post("/account/email/verify", data={
        "csrf_token": csrf_token(html), "email": "baru@contoh.id", "code": code.group(1)})
    assert ok.status_code == 302

    with app.app_context():
        from idp.db import get_session
        from idp.models import Citizen

        row = get_session().get(Citizen, citizen.id)
        assert row.email == "baru@contoh.id" and row.email_verified
    told = outbox_messages(app, old)[0]
    link = re.search(r"https?://\S+/account/not-me/contact/\S+", told)
    assert link and "ba***@contoh.id" in told
    path = link.group(0).split("://", 1)[1].split("/", 1)[1]

    stranger = app.test_client()  # the owner of the old mailbox, not logged in
    page = stranger.get(f"/{path}?lang=en")
    assert page.status_code == 200 and "ba***@contoh.id" in page.get_data(as_text=True)
    reported = stranger.post(f"/{path}", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert reported.status_code == 200
    reference = re.search(r"\b([A-Z0-9]{4}-[A-Z0-9]{4})\b|case (\S+) ", reported.get_data(as_text=True))
    assert reference
    assert sso_of(app, client) is None and sso_of(app, other) is None  # every session ended
    assert "helpdesk" in outbox_messages(app, old)[0]  # answered at the old address
    with app.app_context():
        from sqlalchemy import select

        from idp.db import get_session
        from idp.models import HelpdeskCase

        case = get_session().scalar(select(HelpdeskCase).where(HelpdeskCase.citizen_id == citizen.id))
        assert case is not None and case.report["kind"] == "contact" and case.report["previous"] == old
        from idp.models import Citizen

        held = get_session().get(Citizen, citizen.id)
        assert held.email == "baru@contoh.id" and not held.email_verified  # no reset link goes there
    assert AuthActions(app.test_client()).login(citizen.nik, citizen.password).status_code != 302
    again = stranger.post(f"/{path}", data={"csrf_token": csrf_token(page.get_data(as_text=True))})
    assert again.status_code == 404  # one report per link


def test_email_change_needs_the_current_password(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(locale="en")
    auth.login(citizen.nik, citizen.password)
    refused = post_form(client, "/account/email", email="baru@contoh.id", current="wrong password!")
    assert refused.status_code == 400 and outbox_messages(app, "baru@contoh.id") == []
    bad = post_form(client, "/account/email", email="not an address", current=citizen.password)
    assert bad.status_code == 400


# ---- readable for a person -----------------------------------------------------------------------

def test_times_are_in_the_zone_of_the_niks_province_until_the_citizen_chooses(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    import datetime as dt

    from idp.identity import nik as nikmod

    bali = factory.citizen(nik=nikmod.build("517101", dt.date(1990, 8, 17), "F", 77))
    auth.login(bali.nik, bali.password)
    page = client.get("/account").get_data(as_text=True)
    assert " WITA" in page and " UTC" not in page
    saved = post_form(client, "/account/preferences", locale="en", time_zone="Asia/Jayapura")
    assert saved.status_code == 302
    page = client.get("/account").get_data(as_text=True)
    assert " WIT<" in page or " WIT " in page
    assert "Where you are logged in" in page  # the language followed the preference
    assert post_form(client, "/account/preferences", locale="fr", time_zone="").status_code == 400
    assert post_form(client, "/account/preferences", locale="id", time_zone="Europe/Paris").status_code == 400


def test_zones_follow_the_provinces() -> None:
    from idp.identity.zones import of_nik as time_zone_of

    assert time_zone_of("3174041708900001") == "Asia/Jakarta"  # DKI Jakarta
    assert time_zone_of("6171011708900001") == "Asia/Jakarta"  # Kalimantan Barat
    assert time_zone_of("6471011708900001") == "Asia/Makassar"  # Kalimantan Timur
    assert time_zone_of("7371011708900001") == "Asia/Makassar"  # Sulawesi Selatan
    assert time_zone_of("8171011708900001") == "Asia/Jayapura"  # Maluku
    assert time_zone_of("9471011708900001") == "Asia/Jayapura"  # Papua Tengah


def test_devices_are_named_not_shown_as_raw_user_agents(
        app: Flask, client: FlaskClient, factory: Factory) -> None:
    citizen = factory.citizen(locale="en")
    phone = app.test_client()
    phone.environ_base["HTTP_USER_AGENT"] = ANDROID_CHROME
    AuthActions(phone).login(citizen.nik, citizen.password)
    page = phone.get("/account").get_data(as_text=True)
    assert "Chrome di Android" in page and "Mozilla/5.0" not in page
    assert "Chrome on Android" in phone.get("/account?lang=en").get_data(as_text=True)


# ---- rights over data ----------------------------------------------------------------------------

def test_export_holds_everything_but_secrets_after_a_fresh_password(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(locale="en")
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen)
    assert client.get("/account/data").status_code == 302  # the factor is not fresh: step-up first
    assert submit_code(client, "next=/account/data", "totp", code_at(secret)).status_code == 302
    with app.app_context():
        from idp.consent import records
        from idp.db import get_session
        from idp.oidc import clients

        client_row, _ = clients.register(get_session(), client_id="sehat", name="Portal Kesehatan",
                                         redirect_uris=["https://sehat.example.id/cb"])
        get_session().flush()
        records.give(get_session(), citizen.id, client_row, ["openid", "profile"], ["name"])
        records.record_release(citizen.id, client_row, "id_token", ["sub", "name"])
        get_session().commit()

    page = client.get("/account/data")
    token = form_token(page.get_data(as_text=True), "export")
    refused = client.post("/account/data/export", data={"export-csrf_token": token,
                                                         "export-current": "wrong password!"})
    assert refused.status_code == 400
    response = client.post("/account/data/export", data={"export-csrf_token": token,
                                                          "export-current": citizen.password})
    assert response.status_code == 200
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_data(as_text=True)
    data = json.loads(body)
    assert data["format"] == "satuid-export/1"
    assert data["account"]["nik"] == citizen.nik and data["registry"]["nik"] == citizen.nik
    assert data["contacts"]["email"] == citizen.email
    assert [r["service"] for r in data["data_releases"]] == ["sehat"]
    assert data["data_releases"][0]["claims"] == ["sub", "name"]
    assert [c["action"] for c in data["consents"]] == ["granted"]
    assert len(data["factors"]["authenticator_apps"]) == 1 and data["sessions"]
    assert "data_exported" in audit_events(app, citizen.id)
    assert "mfa_totp_added" in [e["event"] for e in data["audit_events"]]
    assert secret not in body and "argon2" not in body and "password_hash" not in body


def test_closing_waits_seven_days_can_be_cancelled_by_link_then_closes_everything(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    from idp import clock

    citizen = factory.citizen(locale="en")
    auth.login(citizen.nik, citizen.password)
    with app.app_context():
        from idp.consent import records
        from idp.db import get_session
        from idp.models import Grant
        from idp.oidc import clients

        portal, _ = clients.register(get_session(), client_id="sehat", name="Portal Kesehatan",
                                     redirect_uris=["https://sehat.example.id/cb"])
        get_session().flush()
        records.give(get_session(), citizen.id, portal, ["openid"], [])
        get_session().add(Grant(client_id="sehat", citizen_id=citizen.id))
        get_session().commit()

    def request_closure() -> Any:
        page = client.get("/account/data").get_data(as_text=True)
        return client.post("/account/close", data={"close-csrf_token": form_token(page, "close"),
                                                   "close-current": citizen.password})

    assert request_closure().status_code == 302
    assert "will be closed" in client.get("/account/data?lang=en").get_data(as_text=True)
    notice = outbox_messages(app, citizen.email)[0]
    link = re.search(r"https?://\S+/account/close/cancel/\S+", notice)
    assert link
    path = "/" + link.group(0).split("://", 1)[1].split("/", 1)[1]
    stranger = app.test_client()
    page = stranger.get(path)
    assert page.status_code == 200
    token = csrf_token(page.get_data(as_text=True))
    assert stranger.post(path, data={"csrf_token": token}).status_code == 200
    assert stranger.get(path).status_code == 404  # used
    assert "will be closed" not in client.get("/account/data?lang=en").get_data(as_text=True)

    assert request_closure().status_code == 302
    runner = app.test_cli_runner()
    try:
        clock.advance(6 * 24 * 3600)
        assert runner.invoke(args=["accounts", "close-due"]).output.strip() == "closed 0"
        clock.advance(1 * 24 * 3600 + 60)
        assert runner.invoke(args=["accounts", "close-due"]).output.strip() == "closed 1"
        assert runner.invoke(args=["accounts", "close-due"]).output.strip() == "closed 0"
    finally:
        clock.reset()

    with app.app_context():
        from sqlalchemy import select

        from idp.db import get_session
        from idp.models import AuditEvent, Citizen, ConsentRecord, Grant, TotpAuthenticator

        s = get_session()
        row = s.get(Citizen, citizen.id)
        assert row.closed_at is not None and row.email is None and row.phone is None
        actions = s.scalars(select(ConsentRecord.action).where(
            ConsentRecord.citizen_id == citizen.id).order_by(ConsentRecord.id)).all()
        assert actions == ["granted", "withdrawn"]
        grants = s.scalars(select(Grant).where(Grant.citizen_id == citizen.id)).all()
        assert grants and all(g.revoked_at is not None for g in grants)
        assert not s.scalars(select(TotpAuthenticator).where(
            TotpAuthenticator.citizen_id == citizen.id)).all()
        events = set(s.scalars(select(AuditEvent.event).where(AuditEvent.citizen_id == str(citizen.id))))
        assert {"account_closure_requested", "account_closure_cancelled", "account_closed",
                "consent_withdrawn"} <= events  # the audit rows stay
    assert sso_of(app, client) is None
    assert auth.login(citizen.nik, citizen.password).status_code != 302

    # The resident may register again with the same NIK: a new account, the old row untouched.
    with app.app_context():
        from idp.db import get_session
        from idp.identity.passwords import hash_password
        from idp.models import Citizen

        get_session().add(Citizen(nik=citizen.nik, full_name=citizen.full_name, email="lagi@contoh.id",
                                  email_verified=True,
                                  password_hash=hash_password("teh manis hangat sekali")))
        get_session().commit()
    assert auth.login(citizen.nik, "teh manis hangat sekali").status_code == 302


def test_replacing_the_phone_tells_the_old_number_with_a_not_me_link(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    from tests.test_mfa_support import prove_by_sms

    old, new = "+6281234567801", "+6281234567802"
    citizen = factory.citizen(locale="en", phone=old, phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    assert prove_by_sms(app, client, citizen, "/account/security/phone").status_code == 302
    refused = post_form(client, "/account/security/phone", phone=new, current="not the password")
    assert refused.status_code == 400 and outbox_messages(app, new) == []
    sent = post_form(client, "/account/security/phone", phone=new, current=citizen.password)
    code = re.search(r"\b(\d{6})\b", outbox_messages(app, new)[0])
    assert sent.status_code == 200 and code
    ok = client.post("/account/security/phone/verify", data={
        "csrf_token": csrf_token(sent.get_data(as_text=True)), "phone": new, "code": code.group(1)})
    assert ok.status_code == 302
    told = outbox_messages(app, old)[0]
    assert "phone number of your SatuID account was changed" in told and new not in told
    assert re.search(r"/account/not-me/contact/\S+", told)


def test_addresses_that_mail_software_could_read_as_another_are_refused() -> None:
    import pytest

    from idp.identity.contact import InvalidContact, normalise_email

    for hostile in ("=?utf-8?q?attacker=40evil.id=2C?=x@kemenkeu.go.id", "x:y;@gmail.com", "a,b@c.id",
                    '"a b"@contoh.id', "a<b>@contoh.id", "(c)a@contoh.id", "a..b@contoh.id"):
        with pytest.raises(InvalidContact):
            normalise_email(hostile)
    assert normalise_email(" siti.rahayu+satu@Contoh.ID ") == "siti.rahayu+satu@contoh.id"


def test_one_waiting_closure_per_citizen_even_when_two_requests_race(app: Flask, factory: Factory) -> None:
    import pytest
    from sqlalchemy.exc import IntegrityError

    citizen = factory.citizen()
    with app.test_request_context():
        from idp.account import closing
        from idp.db import get_session
        from idp.models import AccountClosure, Citizen

        row = get_session().get(Citizen, citizen.id)
        first = closing.request_closure(get_session(), row)
        assert closing.request_closure(get_session(), row).id == first.id  # the second finds the first
        get_session().commit()
        get_session().add(AccountClosure(citizen_id=citizen.id, due_at=first.due_at, cancel_hash="x" * 64))
        with pytest.raises(IntegrityError):  # what a racing insert meets: the partial unique index
            get_session().commit()
        get_session().rollback()
