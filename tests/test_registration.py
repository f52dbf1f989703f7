"""Registration of a registry resident: identity match, verified contact, password, one account."""

from __future__ import annotations

import datetime as dt
import re
import time
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from idp.models import AuditEvent, Citizen
from tests.conftest import AuthActions, Factory, csrf_token, outbox_messages

BORN = dt.date(1990, 8, 17)
PASSWORD = "gunung rinjani berkabut pagi"


@pytest.fixture
def resident(factory: Factory) -> Any:
    return factory.resident(full_name="Siti Rahayu", birth_date=BORN, sex="F")


def citizens(app: Flask) -> int:
    with app.app_context():
        from idp.db import get_session

        return get_session().scalar(select(func.count()).select_from(Citizen)) or 0


def last_code(app: Flask, recipient: str) -> str:
    bodies = outbox_messages(app, recipient)
    assert bodies, f"no message to {recipient}"
    match = re.search(r"\b(\d{6})\b", bodies[0])
    assert match, bodies[0]
    return match.group(1)


def identity(auth: AuthActions, nik: str, name: str = "Siti Rahayu", born: str = "1990-08-17",
             path: str = "/register?lang=en") -> Any:
    return auth.form(path, {"nik": nik, "full_name": name, "birth_date": born})


def register_until_code(auth: AuthActions, nik: str, email: str = "siti@example.id") -> None:
    assert identity(auth, nik).status_code == 302
    resp = auth.form("/register/contact", {"email": email})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/register/verify")


def test_resident_registers_end_to_end_through_the_outbox(app: Flask, client: FlaskClient,
                                                          auth: AuthActions, resident) -> None:
    # The NIK may be typed with spaces and the name in any case and spacing.
    spaced = " ".join(resident.nik[i:i + 4] for i in range(0, 16, 4))
    resp = identity(auth, spaced, name="  siti   RAHAYU ")
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/register/contact")

    page = client.get("/register/contact").get_data(as_text=True)
    assert 'autocomplete="email"' in page and 'autocomplete="tel"' in page
    resp = auth.form("/register/contact", {"email": "Siti@Example.ID"})
    assert resp.status_code == 302
    code = last_code(app, "Siti@example.id")

    page = client.get("/register/verify").get_data(as_text=True)
    assert 'autocomplete="one-time-code"' in page
    resp = auth.form("/register/verify", {"code": code, "action": "verify"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/register/password")

    page = client.get("/register/password").get_data(as_text=True)
    assert page.count('autocomplete="new-password"') == 2
    resp = auth.form("/register/password", {"password": PASSWORD, "confirm": PASSWORD})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/register/secure")
    secure = client.get("/register/secure?lang=en").get_data(as_text=True)
    assert "Add your phone for SMS codes" in secure and "Set up an authenticator app" in secure
    assert client.get("/register/done").headers["Location"].endswith("/account")

    with app.app_context():
        from idp.db import get_session

        citizen = get_session().scalar(select(Citizen).where(Citizen.nik == resident.nik))
        assert citizen is not None
        assert citizen.full_name == "Siti Rahayu"  # the registry's spelling, not the typed one
        assert citizen.email == "Siti@example.id" and citizen.email_verified
        assert not citizen.phone_verified
        assert citizen.password_hash.startswith("$argon2id$")
        events = get_session().scalars(select(AuditEvent.event).where(
            AuditEvent.citizen_id == str(citizen.id))).all()
        assert "registered" in events
    # Registration starts the SSO session: the account page opens, and the password logs in.
    assert client.get("/account").status_code == 200
    auth.logout()
    assert auth.login(resident.nik, PASSWORD).status_code == 302


def test_phone_number_is_normalised_to_plus_62_and_verified_by_sms(
        app: Flask, client: FlaskClient, auth: AuthActions, resident) -> None:
    assert identity(auth, resident.nik).status_code == 302
    assert auth.form("/register/contact", {"phone": "0812-3456-7890"}).status_code == 302
    code = last_code(app, "+6281234567890")
    assert auth.form("/register/verify", {"code": code, "action": "verify"}).status_code == 302
    assert auth.form("/register/password", {"password": PASSWORD, "confirm": PASSWORD}
                     ).status_code == 302
    with app.app_context():
        from idp.db import get_session

        citizen = get_session().scalar(select(Citizen).where(Citizen.nik == resident.nik))
        assert citizen.phone == "+6281234567890" and citizen.phone_verified
        assert citizen.email is None and not citizen.email_verified


def test_registration_resumes_the_pending_authorization(app: Flask, client: FlaskClient,
                                                        auth: AuthActions, resident) -> None:
    with app.test_request_context():
        from idp import interaction

        pending = interaction.create(resume="/authorize/resume/abc", client_id="portal",
                                     client_name="Portal Pajak")
    login_page = client.get(f"/login?interaction={pending.uid}").get_data(as_text=True)
    assert f"/register?interaction={pending.uid}" in login_page
    assert identity(auth, resident.nik, path=f"/register?interaction={pending.uid}"
                    ).status_code == 302
    auth.form("/register/contact", {"email": "siti@example.id"})
    auth.form("/register/verify", {"code": last_code(app, "siti@example.id"), "action": "verify"})
    resp = auth.form("/register/password", {"password": PASSWORD, "confirm": PASSWORD})
    assert resp.status_code == 302 and resp.headers["Location"] == "/register/secure"
    assert client.get("/register/done").headers["Location"] == "/authorize/resume/abc"


@pytest.mark.parametrize("change", [
    {"nik": "3174045708909999"},               # valid NIK, not in the registry
    {"name": "Siti Rahmawati"},                # another name
    {"born": "1890-08-17"},                    # same day and month, another century
])
def test_details_not_matching_the_registry_are_refused_without_saying_which(
        app: Flask, client: FlaskClient, auth: AuthActions, resident, change: dict[str, str]) -> None:
    args = {"nik": resident.nik, **change}
    resp = identity(auth, args.pop("nik"), **args)
    assert resp.status_code == 400
    page = resp.get_data(as_text=True)
    assert "could not find a resident with this NIK, full name and date of birth" in page
    assert client.get("/register/contact").status_code == 302  # no wizard was started
    assert citizens(app) == 0


def test_birth_date_that_contradicts_the_nik_is_refused_at_once(app: Flask, auth: AuthActions,
                                                               resident) -> None:
    resp = identity(auth, resident.nik, born="1990-08-18")
    assert resp.status_code == 400
    assert "not the one in your NIK" in resp.get_data(as_text=True)
    assert citizens(app) == 0


def test_malformed_nik_gets_the_nik_message(auth: AuthActions) -> None:
    resp = identity(auth, "1234")
    assert resp.status_code == 400
    assert "A NIK has exactly 16 digits." in resp.get_data(as_text=True)


def test_repeated_mismatches_pause_registration_for_that_nik(app: Flask, auth: AuthActions,
                                                            resident) -> None:
    for _ in range(5):
        assert identity(auth, resident.nik, name="Orang Lain").status_code == 400
    # Even the right details are refused while the pause lasts: no guessing the name.
    resp = identity(auth, resident.nik)
    assert resp.status_code == 429
    assert "paused for an hour" in resp.get_data(as_text=True)


def test_registry_record_contradicting_its_nik_is_refused(app: Flask, factory: Factory,
                                                         auth: AuthActions) -> None:
    # The registry says male, the NIK (day + 40) says female.
    from idp.identity import nik as nikmod

    bad = factory.resident(nik=nikmod.build("317106", BORN, "F", 77), sex="M", birth_date=BORN)
    resp = identity(auth, bad.nik)
    assert resp.status_code == 400
    assert "Dukcapil" in resp.get_data(as_text=True)
    assert citizens(app) == 0


def test_second_registration_of_the_same_nik_reveals_nothing_on_the_page(
        app: Flask, factory: Factory, auth: AuthActions, resident) -> None:
    """A registered NIK walks the same pages as a new one; only the contact's owner learns it has
    an account, and the account's owner is told someone tried."""
    existing = factory.citizen(full_name="Budi Santoso", birth_date=dt.date(1985, 3, 9), sex="M")
    taken = identity(auth, existing.nik, name="Budi Santoso", born="1985-03-09")
    fresh = identity(AuthActions(app.test_client()), resident.nik)
    assert taken.status_code == fresh.status_code == 302
    assert taken.headers["Location"] == fresh.headers["Location"]
    resp = auth.form("/register/contact", {"email": "penyusup@example.id"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/register/verify")
    [notice] = outbox_messages(app, "penyusup@example.id")
    assert "already has an account" in notice  # in the registrant's language (English here)
    masked = existing.nik[:6] + "******" + existing.nik[-4:]  # as SatuID shows a NIK everywhere
    assert existing.nik not in notice and masked in notice
    assert not re.search(r"\b\d{6}\b", notice.replace(masked, ""))  # no code to go on with
    # The owner hears of it in their own language (Indonesian by default), once a day at most.
    notices = [b for b in outbox_messages(app, existing.email) if "mencoba membuka akun SatuID baru" in b]
    assert len(notices) == 1
    again = AuthActions(app.test_client())
    assert identity(again, existing.nik, name="Budi Santoso", born="1985-03-09").status_code == 302
    assert again.form("/register/contact", {"email": "penyusup2@example.id"}).status_code == 302
    assert len([b for b in outbox_messages(app, existing.email)
                if "mencoba membuka akun SatuID baru" in b]) == 1
    # Any code typed is wrong, as for a mistyped code; no second account ever appears.
    for guess in ("000000", "123456"):
        page = auth.form("/register/verify", {"code": guess, "action": "verify"})
        assert page.status_code == 400 and "not correct" in page.get_data(as_text=True)
    assert citizens(app) == 1


def test_two_wizards_for_one_nik_create_one_account(app: Flask, resident) -> None:
    # Both pass step 1 before either finishes; the unique constraint refuses the second.
    first, second = AuthActions(app.test_client()), AuthActions(app.test_client())
    register_until_code(first, resident.nik, "a@example.id")
    register_until_code(second, resident.nik, "b@example.id")
    first.form("/register/verify", {"code": last_code(app, "a@example.id"), "action": "verify"})
    second.form("/register/verify", {"code": last_code(app, "b@example.id"), "action": "verify"})
    ok = first.form("/register/password", {"password": PASSWORD, "confirm": PASSWORD})
    assert ok.status_code == 302
    refused = second.form("/register/password", {"password": PASSWORD, "confirm": PASSWORD})
    assert refused.status_code == 409
    assert "one NIK, one account" in refused.get_data(as_text=True)
    assert citizens(app) == 1


def test_wrong_code_is_refused_and_counts_attempts(app: Flask, client: FlaskClient,
                                                   auth: AuthActions, resident) -> None:
    register_until_code(auth, resident.nik)
    code = last_code(app, "siti@example.id")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    resp = auth.form("/register/verify", {"code": wrong, "action": "verify"})
    assert resp.status_code == 400
    assert "not correct. You have 4 attempts left" in resp.get_data(as_text=True)
    assert client.get("/register/password").status_code == 302  # not verified: sent back
    for _ in range(4):
        auth.form("/register/verify", {"code": wrong, "action": "verify"})
    # After five wrong codes even the right one no longer works.
    resp = auth.form("/register/verify", {"code": code, "action": "verify"})
    assert resp.status_code == 400
    assert "expired or was already used" in resp.get_data(as_text=True)
    assert citizens(app) == 0


def test_replayed_code_is_refused(app: Flask, auth: AuthActions, resident) -> None:
    register_until_code(auth, resident.nik)
    code = last_code(app, "siti@example.id")
    assert auth.form("/register/verify", {"code": code, "action": "verify"}).status_code == 302
    replay = auth.form("/register/verify", {"code": code, "action": "verify"})
    assert replay.status_code == 400
    assert "expired or was already used" in replay.get_data(as_text=True)


def test_code_from_another_registration_is_refused(app: Flask, factory: Factory, resident) -> None:
    other = factory.resident(full_name="Budi Santoso", birth_date=dt.date(1985, 3, 9), sex="M")
    mine, theirs = AuthActions(app.test_client()), AuthActions(app.test_client())
    register_until_code(mine, resident.nik, "siti@example.id")
    assert theirs.form("/register?lang=en", {"nik": other.nik, "full_name": "Budi Santoso",
                                             "birth_date": "1985-03-09"}).status_code == 302
    theirs.form("/register/contact", {"email": "budi@example.id"})
    resp = mine.form("/register/verify", {"code": last_code(app, "budi@example.id"),
                                          "action": "verify"})
    assert resp.status_code == 400


def test_expired_code_is_refused(app: Flask, auth: AuthActions, resident,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from idp import codes

    monkeypatch.setattr(codes, "REGISTRATION", dataclasses.replace(codes.REGISTRATION, ttl=1))
    register_until_code(auth, resident.nik)
    code = last_code(app, "siti@example.id")
    time.sleep(2.2)
    resp = auth.form("/register/verify", {"code": code, "action": "verify"})
    assert resp.status_code == 400
    assert "expired or was already used" in resp.get_data(as_text=True)


def test_resend_replaces_the_code_and_is_limited(app: Flask, auth: AuthActions, resident) -> None:
    register_until_code(auth, resident.nik)
    first = last_code(app, "siti@example.id")
    assert auth.form("/register/verify", {"code": "", "action": "resend"}).status_code == 302
    second = last_code(app, "siti@example.id")
    assert len(outbox_messages(app, "siti@example.id")) == 2
    if first != second:
        assert auth.form("/register/verify", {"code": first, "action": "verify"}).status_code == 400
    auth.form("/register/verify", {"code": "", "action": "resend"})
    auth.form("/register/verify", {"code": "", "action": "resend"})
    resp = auth.form("/register/verify", {"code": "", "action": "resend"})
    assert resp.status_code == 429
    assert "Too many codes were sent" in resp.get_data(as_text=True)
    assert len(outbox_messages(app, "siti@example.id")) == 4


@pytest.mark.parametrize(("password", "message"), [
    ("pendek123", "at least 12 characters"),
    ("bismillah123456", "too common"),
    ("Indonesia2024!!", "too common"),
    ("siti rahayu selamanya", "Do not use your name"),
])
def test_weak_password_is_refused_and_no_account_is_created(
        app: Flask, client: FlaskClient, auth: AuthActions, resident, password: str,
        message: str) -> None:
    register_until_code(auth, resident.nik)
    auth.form("/register/verify", {"code": last_code(app, "siti@example.id"), "action": "verify"})
    resp = auth.form("/register/password", {"password": password, "confirm": password})
    assert resp.status_code == 400
    assert message in resp.get_data(as_text=True)
    assert citizens(app) == 0
    # The wizard is still there: a better password finishes it.
    assert auth.form("/register/password", {"password": PASSWORD, "confirm": PASSWORD}
                     ).status_code == 302


def test_steps_cannot_be_skipped(client: FlaskClient, auth: AuthActions, resident) -> None:
    assert client.get("/register/password").headers["Location"].endswith("/register")
    assert identity(auth, resident.nik).status_code == 302
    assert client.get("/register/password").headers["Location"].endswith("/register/contact")
    assert client.get("/register/verify").headers["Location"].endswith("/register/contact")


def test_forms_need_a_csrf_token(client: FlaskClient, resident) -> None:
    resp = client.post("/register", data={"nik": resident.nik, "full_name": "Siti Rahayu",
                                          "birth_date": "1990-08-17"})
    assert resp.status_code == 400
    assert citizens(client.application) == 0


def test_identity_page_uses_autocomplete_tokens_and_indonesian_by_default(
        client: FlaskClient) -> None:
    page = client.get("/register").get_data(as_text=True)
    csrf_token(page)
    for token in ("username", "name", "bday"):
        assert f'autocomplete="{token}"' in page
    assert "Buat akun SatuID" in page


def test_registration_is_rate_limited_per_network(app: Flask, client: FlaskClient,
                                                  auth: AuthActions) -> None:
    limit = app.config["IDP"].ip_rate_limit
    token = csrf_token(client.get("/register").get_data(as_text=True))
    statuses = [client.post("/register", data={"csrf_token": token, "nik": "1", "full_name": "x",
                                               "birth_date": "1990-01-01"}).status_code
                for _ in range(limit + 1)]
    assert statuses[-1] == 429 and 429 not in statuses[:-1]
