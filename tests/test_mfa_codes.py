"""Recovery codes and codes sent by SMS to the verified phone: single use, expiry, notification,
limits. Codes by email are no second factor (``test_mfa_step_up.py``)."""

from __future__ import annotations

import re
import time

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions, Factory, csrf_token, outbox_messages
from tests.test_mfa_support import (
    audit_events,
    pending_authorization,
    prove_by_sms,
    sso_of,
    step_up_form,
    submit_code,
)


def _send_code(client: FlaskClient, query: str, factor: str = "sms") -> int:
    html = step_up_form(client, f"{query}&factor={factor}")
    from urllib.parse import parse_qsl

    context = {k: v for k, v in parse_qsl(query) if k in ("interaction", "next")}
    r = client.post("/login/step-up/send", data={"csrf_token": csrf_token(html), "factor": factor,
                                                 **context})
    return r.status_code


def _latest_code(app: Flask, recipient: str) -> str:
    m = re.search(r"\b(\d{6})\b", outbox_messages(app, recipient)[0])
    assert m, "no code in the message"
    return m.group(1)


PHONE = "+6281234567890"


def test_recovery_codes_need_a_usable_factor_to_back_up(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    """Made with the password alone, recovery codes would be a second factor of their own."""
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    page = client.get("/account/security").get_data(as_text=True)
    r = client.post("/account/security/recovery-codes", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 302 and r.headers["Location"] == "/account/security"
    assert "mfa_recovery_codes_generated" not in audit_events(app, citizen.id)


def test_recovery_code_works_once_and_notifies_the_citizen(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(phone=PHONE, phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    prove_by_sms(app, client, citizen, "/account/security")
    page = client.get("/account/security").get_data(as_text=True)
    shown = client.post("/account/security/recovery-codes", data={"csrf_token": csrf_token(page)})
    codes = re.findall(r"<code>([A-Z0-9-]{19})</code>", shown.get_data(as_text=True))
    assert shown.status_code == 200 and len(codes) == 10 and len(set(codes)) == 10
    auth.logout()

    auth.login(citizen.nik, citizen.password)
    interaction = pending_authorization(app)
    r = submit_code(client, f"interaction={interaction.uid}", "recovery", codes[3].lower())
    assert r.status_code == 302 and r.headers["Location"] == interaction.resume
    session = sso_of(app, client)
    assert session.acr == 2 and "kba" in session.amr
    assert "recovery_code_used" in audit_events(app, citizen.id)
    notice = outbox_messages(app, citizen.email)[0]
    assert "kode pemulihan" in notice and "9" in notice  # in her language, with nine codes left
    auth.logout()

    auth.login(citizen.nik, citizen.password)
    again = submit_code(client, f"interaction={interaction.uid}", "recovery", codes[3])
    assert again.status_code == 401 and sso_of(app, client).acr == 1
    other = submit_code(client, f"interaction={interaction.uid}", "recovery", codes[4])
    assert other.status_code == 302


def test_regenerated_recovery_codes_replace_the_old_ones(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(phone=PHONE, phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    prove_by_sms(app, client, citizen, "/account/security")
    page = client.get("/account/security").get_data(as_text=True)
    first = re.findall(r"<code>([A-Z0-9-]{19})</code>",
                       client.post("/account/security/recovery-codes",
                                   data={"csrf_token": csrf_token(page)}).get_data(as_text=True))
    # Regenerating while codes exist needs a fresh second factor: use one of the codes.
    assert submit_code(client, "next=/account/security", "recovery", first[0]).status_code == 302
    second = re.findall(r"<code>([A-Z0-9-]{19})</code>",
                        client.post("/account/security/recovery-codes",
                                    data={"csrf_token": csrf_token(page)}).get_data(as_text=True))
    assert len(second) == 10 and not set(first) & set(second)
    auth.logout()
    auth.login(citizen.nik, citizen.password)
    assert submit_code(client, "next=/account", "recovery", first[1]).status_code == 401


def test_sms_code_works_once(app: Flask, client: FlaskClient, auth: AuthActions,
                             factory: Factory) -> None:
    citizen = factory.citizen(phone=PHONE, phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    interaction = pending_authorization(app)
    query = f"interaction={interaction.uid}"
    assert _send_code(client, query) == 302
    code = _latest_code(app, PHONE)
    r = submit_code(client, query, "sms", code)
    assert r.status_code == 302 and r.headers["Location"] == interaction.resume
    session = sso_of(app, client)
    assert session.acr == 2 and "sms" in session.amr and "otp" not in session.amr
    auth.logout()
    auth.login(citizen.nik, citizen.password)
    assert submit_code(client, query, "sms", code).status_code == 401


def test_sms_code_expires(app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from idp.auth.mfa import sent_codes

    # The real store expires it; we only shorten the wait.
    monkeypatch.setitem(sent_codes.PURPOSES, "sms",
                        dataclasses.replace(sent_codes.PURPOSES["sms"], ttl=1))
    citizen = factory.citizen(phone=PHONE, phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    assert _send_code(client, "next=/account") == 302
    code = _latest_code(app, PHONE)
    time.sleep(2.1)
    assert submit_code(client, "next=/account", "sms", code).status_code == 401
    assert sso_of(app, client).acr == 1


def test_sending_codes_is_rate_limited_per_citizen(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    from idp import codes

    limit = codes.SECOND_FACTOR_SMS.sends_per_subject
    citizen = factory.citizen(phone=PHONE, phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    statuses = [_send_code(client, "next=/account") for _ in range(limit + 1)]
    assert statuses == [302] * limit + [429]
    assert len(outbox_messages(app, PHONE)) == limit


def test_sms_code_to_the_verified_phone_gives_level_two_with_amr_sms(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(phone=PHONE, phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    assert _send_code(client, "next=/account") == 302
    code = _latest_code(app, "+6281234567890")
    r = submit_code(client, "next=/account", "sms", code)
    assert r.status_code == 302
    session = sso_of(app, client)
    assert session.acr == 2 and "sms" in session.amr
