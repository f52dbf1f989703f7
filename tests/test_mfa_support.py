"""Helpers shared by the second-factor tests: enrol through the real pages, read the session,
make a pending authorization the way ``/authorize`` would. This module holds no tests itself."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any

import pyotp
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions, csrf_token

COOKIE = "satuid_sso"


def sso_of(app: Flask, client: FlaskClient) -> Any:
    """The SSO session the client's cookie points at (or None), read from the real store."""
    cookie = client.get_cookie(COOKIE)
    if cookie is None:
        return None
    with app.test_request_context():
        from idp.auth import session as sso

        return sso.load(cookie.value)


def away_from_step_edge(margin: float = 3.0) -> None:
    """Wait until the current 30-second TOTP step has at least ``margin`` seconds left, so a code
    computed now is still judged against the same step by the server."""
    left = 30 - time.time() % 30
    if left < margin:
        time.sleep(left + 0.2)


def code_at(secret: str, offset_steps: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * offset_steps)


def relogin(auth: AuthActions, citizen: Any) -> None:
    """A new SSO session at level 1 (password only)."""
    auth.logout()
    auth.login(citizen.nik, citizen.password)


def prove_by_sms(app: Flask, client: FlaskClient, citizen: Any, next_path: str) -> Any:
    """Step up with a code sent by SMS to the citizen's verified phone; returns the response to
    the code."""
    from urllib.parse import urlencode

    from tests.conftest import outbox_messages

    query = urlencode({"next": next_path})
    html = step_up_form(client, f"{query}&factor=sms")
    sent = client.post("/login/step-up/send", data={"csrf_token": csrf_token(html),
                                                    "factor": "sms", "next": next_path})
    assert sent.status_code == 302, sent.status_code
    code = re.search(r"\b(\d{6})\b", outbox_messages(app, citizen.phone)[0])
    assert code, "no code in the newest message"
    return submit_code(client, query, "sms", code.group(1))


def past_the_wait(app: Flask, citizen_id: Any) -> None:
    """Let the citizen's factors in their waiting period count now, as a counter would."""
    with app.app_context():
        from idp.auth.mfa import waiting
        from idp.db import get_session

        waiting.clear_at_counter(get_session(), citizen_id, uuid.uuid4())
        get_session().commit()


def enrol_totp(app: Flask, client: FlaskClient, citizen: Any, wait: bool = False) -> str:
    """Set up an authenticator app from the account page (already logged in); returns the secret.

    A citizen with a usable factor proves it first (by SMS). A first authenticator added with the
    password alone waits a day before it counts; unless
    ``wait``, the helper lets it count at once (``past_the_wait``), so a test can use it. The first
    code confirmed is the previous step's, leaving the current step's code unused for the test
    itself (a code is accepted once)."""
    if client.get("/account/security/totp").status_code == 302:  # a usable factor: prove it now
        assert prove_by_sms(app, client, citizen, "/account/security").status_code == 302
    away_from_step_edge()
    page = client.get("/account/security/totp")
    assert page.status_code == 200, page.status_code
    html = page.get_data(as_text=True)
    m = re.search(r'id="totp-secret">([A-Z2-7 ]+)<', html)
    assert m, "no secret shown"
    secret = m.group(1).replace(" ", "")
    r = client.post("/account/security/totp",
                    data={"csrf_token": csrf_token(html), "code": code_at(secret, -1)})
    assert r.status_code == 302, r.get_data(as_text=True)
    if not wait:
        past_the_wait(app, citizen.id)
    return secret


def pending_authorization(app: Flask, **fields: Any) -> Any:
    """An Interaction as ``/authorize`` creates it when the session's level is too low."""
    with app.test_request_context():
        from idp import interaction

        values: dict[str, Any] = {"resume": "/authorize/resume?id=abc", "prompt": "mfa",
                                  "required_acr": 2, "client_id": "pajak",
                                  "client_name": "Portal Pajak"}
        values.update(fields)
        return interaction.create(**values)


def step_up_form(client: FlaskClient, query: str) -> str:
    page = client.get(f"/login/step-up?{query}")
    assert page.status_code == 200, page.status_code
    return page.get_data(as_text=True)


def submit_code(client: FlaskClient, query: str, factor: str, code: str) -> Any:
    html = step_up_form(client, f"{query}&factor={factor}")
    from urllib.parse import parse_qsl

    context = {k: v for k, v in parse_qsl(query) if k in ("interaction", "next")}
    return client.post("/login/step-up", data={"csrf_token": csrf_token(html), "factor": factor,
                                               "code": code, **context})


def audit_events(app: Flask, citizen_id: Any) -> list[str]:
    from sqlalchemy import select

    from idp.models import AuditEvent

    with app.app_context():
        from idp.db import get_session

        return list(get_session().scalars(select(AuditEvent.event).where(
            AuditEvent.citizen_id == str(citizen_id)).order_by(AuditEvent.id)))
