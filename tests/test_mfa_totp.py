"""Authenticator apps (TOTP): enrolment, replay, clock drift, brute force and lockout."""

from __future__ import annotations

from typing import Any

import pyotp
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from tests.conftest import AuthActions, Factory, csrf_token, make_app, outbox_messages
from tests.test_mfa_support import (
    audit_events,
    away_from_step_edge,
    code_at,
    enrol_totp,
    pending_authorization,
    relogin,
    sso_of,
    submit_code,
)


def _authenticator(app: Flask, citizen_id: object) -> Any:
    from idp.models.mfa import TotpAuthenticator

    with app.app_context():
        from idp.db import get_session

        return get_session().scalar(select(TotpAuthenticator).where(
            TotpAuthenticator.citizen_id == citizen_id))


def test_totp_enrolment_counts_only_after_a_first_valid_code(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    # The first authenticator needs only the password; it then waits (test_mfa_waiting.py).
    page = client.get("/account/security/totp")
    html = page.get_data(as_text=True)
    assert 'src="data:image/svg+xml' in html  # QR code rendered here, as SVG
    assert 'autocomplete="one-time-code"' in html
    pending = _authenticator(app, citizen.id)
    assert pending is not None and pending.confirmed_at is None

    wrong = client.post("/account/security/totp", data={"csrf_token": csrf_token(html),
                                                        "code": "000000"})
    assert wrong.status_code == 400
    assert _authenticator(app, citizen.id).confirmed_at is None

    secret = enrol_totp(app, client, citizen)
    stored = _authenticator(app, citizen.id)
    assert stored.confirmed_at is not None
    # Encrypted at rest: the seed is not in the row, and it decrypts only for this citizen.
    assert secret not in stored.secret_encrypted and stored.secret_encrypted.startswith("v1:")
    with app.app_context():
        from idp.auth.mfa import totp

        assert totp.decrypt_secret(stored.secret_encrypted, str(citizen.id)) == secret
    assert "mfa_totp_added" in audit_events(app, citizen.id)
    assert any("authenticator app was added" in body.lower() or "aplikasi autentikator" in body.lower()
               for body in outbox_messages(app, citizen.email))


def test_login_of_citizen_with_authenticator_continues_to_step_up(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    enrol_totp(app, client, citizen)
    auth.logout()
    r = auth.login(citizen.nik, citizen.password)
    assert r.status_code == 302 and r.headers["Location"].startswith("/login/step-up?next=")
    assert sso_of(app, client).acr == 1


def test_replayed_totp_code_is_refused(app: Flask, client: FlaskClient, auth: AuthActions,
                                       factory: Factory) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen)
    code = code_at(secret)
    first = submit_code(client, "next=/account", "totp", code)
    assert first.status_code == 302 and first.headers["Location"] == "/account"
    session = sso_of(app, client)
    assert session.acr == 2 and {"pwd", "otp"} <= set(session.amr)

    auth.logout()
    auth.login(citizen.nik, citizen.password)
    replay = submit_code(client, "next=/account", "totp", code)
    assert replay.status_code == 401
    assert sso_of(app, client).acr == 1


def test_totp_accepts_one_step_of_drift_and_refuses_two(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen)  # used the code of step -1
    relogin(auth, citizen)
    away_from_step_edge(5)
    for offset in (-2, 2):
        r = submit_code(client, "next=/account", "totp", code_at(secret, offset))
        assert r.status_code == 401, offset
    ahead = submit_code(client, "next=/account", "totp", code_at(secret, 1))
    assert ahead.status_code == 302
    assert sso_of(app, client).acr == 2


def enrolled(backend: dict[str, str], **settings: str) -> tuple[Flask, FlaskClient, AuthActions, Any, str]:
    """An app with these settings, and a logged-in citizen who set up an authenticator app."""
    app = make_app({**backend, **settings})
    client = app.test_client()
    auth = AuthActions(client)
    citizen = Factory(app).citizen()
    auth.login(citizen.nik, citizen.password)
    return app, client, auth, citizen, enrol_totp(app, client, citizen)


def test_totp_brute_force_locks_the_account_and_never_yields_a_session(
        backend: dict[str, str]) -> None:
    app, client, auth, citizen, secret = enrolled(backend, IDP_LOGIN_MAX_FAILURES="3")
    auth.logout()
    auth.login(citizen.nik, citizen.password)
    interaction = pending_authorization(app)

    statuses = [submit_code(client, f"interaction={interaction.uid}", "totp", guess).status_code
                for guess in ("111111", "222222", "333333")]
    assert statuses == [401, 401, 429]
    # The session that only had the password is gone, and the right code no longer helps.
    assert sso_of(app, client) is None
    r = client.get(f"/login/step-up?interaction={interaction.uid}")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    with app.test_request_context():
        from idp.auth import session as sso

        assert sso.sessions_of(str(citizen.id)) == []
    # A browser the citizen never used cannot even log in with the password meanwhile.
    assert AuthActions(app.test_client()).login(citizen.nik, citizen.password).status_code == 429
    # The owner's own browser gets a level-1 session, but no second factor is checked.
    assert auth.login(citizen.nik, citizen.password).status_code == 302
    away_from_step_edge()
    assert submit_code(client, "next=/account", "totp", pyotp.TOTP(secret).now()).status_code == 429
    assert sso_of(app, client).acr == 1
    events = audit_events(app, citizen.id)
    since = events[len(events) - 1 - events[::-1].index("mfa_totp_added"):]
    assert since.count("mfa_failed") == 3 and "lockout" in since
    assert "mfa_step_up" not in since
    app.extensions["idp.engine"].dispose()


def test_wrong_codes_between_password_logins_still_lock_the_second_factor(
        backend: dict[str, str]) -> None:
    """NIST SP 800-63B §5.2.2: second-factor failures have their own count, which a correct password
    does not clear. Twenty-four wrong codes interleaved with password logins used to leave the
    right code working; now the limit's wrong code locks, and later codes are not even checked."""
    from idp import state

    app, client, auth, citizen, secret = enrolled(backend)
    limit = app.config["IDP"].login_max_failures
    statuses = []
    for guess in range(24):
        with app.app_context():  # a patient attacker waits out the short delays
            state.factor_waits.delete(str(citizen.id))
        if sso_of(app, client) is not None:
            auth.logout()
        assert auth.login(citizen.nik, citizen.password).status_code == 302
        statuses.append(submit_code(client, "next=/account", "totp", f"{guess:06d}").status_code)
    assert 429 in statuses[:limit] and set(statuses[limit:]) == {429}
    away_from_step_edge()
    right = submit_code(client, "next=/account", "totp", pyotp.TOTP(secret).now())
    assert right.status_code == 429 and sso_of(app, client).acr == 1
    assert AuthActions(app.test_client()).login(citizen.nik, citizen.password).status_code == 429
    events = audit_events(app, citizen.id)
    assert events.count("mfa_failed") == limit  # the rest were refused unchecked
    app.extensions["idp.engine"].dispose()


def test_after_a_second_factor_lock_ends_the_right_code_is_checked_and_accepted(
        backend: dict[str, str]) -> None:
    """A lock does not outlive itself: once it ends, the next code is checked (one check per lock);
    the owner's right code gets in, a wrong one locks again for twice as long."""
    from idp import state

    app, client, auth, citizen, secret = enrolled(backend, IDP_LOGIN_MAX_FAILURES="2")
    relogin(auth, citizen)
    assert [submit_code(client, "next=/account", "totp", g).status_code
            for g in ("111111", "222222")] == [401, 429]
    auth.login(citizen.nik, citizen.password)  # the owner's browser: a level-1 session
    with app.app_context():
        first_lock = state.factor_locks.remaining(str(citizen.id))
        state.factor_locks.delete(str(citizen.id))  # as if it had run out
    assert submit_code(client, "next=/account", "totp", "333333").status_code == 429
    with app.app_context():
        assert state.factor_locks.remaining(str(citizen.id)) > first_lock  # twice as long
        state.factor_locks.delete(str(citizen.id))
    if sso_of(app, client) is None:
        auth.login(citizen.nik, citizen.password)
    away_from_step_edge()
    assert submit_code(client, "next=/account", "totp", pyotp.TOTP(secret).now()).status_code == 302
    assert sso_of(app, client).acr == 2
    app.extensions["idp.engine"].dispose()


def test_seed_demo_creates_a_citizen_with_a_working_authenticator_once(
        app: Flask, client: FlaskClient, auth: AuthActions) -> None:
    import json

    runner = app.test_cli_runner()
    outputs = [runner.invoke(args=["seed-demo"]) for _ in range(2)]
    assert all(o.exit_code == 0 for o in outputs), outputs[0].output
    lines = [json.loads(line) for line in outputs[1].output.splitlines() if "totp_secret" in line]
    assert len(lines) == 1
    demo = lines[0]
    with app.app_context():
        from sqlalchemy import func

        from idp.db import get_session
        from idp.models.mfa import TotpAuthenticator

        assert get_session().scalar(select(func.count()).select_from(TotpAuthenticator)) == 1
    r = auth.login(demo["nik"], demo["password"])
    assert r.headers["Location"].startswith("/login/step-up")
    away_from_step_edge()
    done = submit_code(client, "next=/account", "totp", pyotp.TOTP(demo["totp_secret"]).now())
    assert done.status_code == 302 and sso_of(app, client).acr == 2

