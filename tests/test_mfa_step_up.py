"""Step-up: only the missing factor, strongest first, portals' restrictions, cancel, fresh factor
for changes, and the warning before the last factor goes."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions, Factory, csrf_token, outbox_messages
from tests.test_mfa_support import (
    audit_events,
    code_at,
    enrol_totp,
    pending_authorization,
    prove_by_sms,
    relogin,
    sso_of,
    step_up_form,
    submit_code,
)


def test_step_up_from_level_one_session_asks_only_for_the_second_factor(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(phone="+6281234567801", phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen)
    relogin(auth, citizen)
    before = sso_of(app, client)
    assert before.acr == 1 and before.amr == ["pwd"]
    interaction = pending_authorization(app, required_acr=2)

    html = step_up_form(client, f"interaction={interaction.uid}&lang=en")
    assert "Portal Pajak" in html
    assert 'name="password"' not in html and 'name="nik"' not in html
    assert 'name="factor" type="hidden" value="totp"' in html  # strongest enrolled first
    assert "factor=sms" in html  # with a way to pick another

    r = submit_code(client, f"interaction={interaction.uid}", "totp", code_at(secret))
    assert r.status_code == 302 and r.headers["Location"] == interaction.resume
    after = sso_of(app, client)
    assert after.sid == before.sid  # same session, raised
    assert after.acr == 2 and {"pwd", "otp", "mfa"} <= set(after.amr)
    assert "otp" in after.factor_times
    assert "mfa_step_up" in audit_events(app, citizen.id)


def test_step_up_without_a_session_sends_the_citizen_to_log_in_first(
        app: Flask, client: FlaskClient) -> None:
    interaction = pending_authorization(app)
    r = client.get(f"/login/step-up?interaction={interaction.uid}")
    assert r.status_code == 302 and r.headers["Location"] == f"/login?interaction={interaction.uid}"


def test_citizen_without_a_suitable_factor_is_told_how_to_add_one_and_may_cancel(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()  # a verified email, but this portal accepts only authenticators
    auth.login(citizen.nik, citizen.password)
    interaction = pending_authorization(app, allowed_factors=["totp", "passkey"])
    html = step_up_form(client, f"interaction={interaction.uid}&lang=en")
    assert "Add a way to confirm it is you" in html
    link = re.search(r'href="(/account/security\?next=[^"]+)"', html)
    assert link and "step-up" in link.group(1)
    assert client.get(link.group(1).replace("&amp;", "&")).status_code == 200

    r = client.post(f"/login/step-up/cancel?interaction={interaction.uid}",
                    data={"csrf_token": csrf_token(html)})
    assert r.status_code == 302
    assert r.headers["Location"] == interaction.resume
    with app.test_request_context():
        from idp import interaction as interactions

        finished = interactions.load(interaction.uid)
    assert finished is not None and finished.result == {"error": "unmet_authentication_requirements"}
    assert sso_of(app, client).acr == 1


def test_a_code_by_email_is_never_a_second_factor(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    """NIST SP 800-63B: the mailbox that resets the password proves nothing more than it."""
    citizen = factory.citizen()  # a verified email and nothing else
    auth.login(citizen.nik, citizen.password)
    interaction = pending_authorization(app)  # any factor accepted
    html = step_up_form(client, f"interaction={interaction.uid}&factor=email&lang=en")
    assert "Add a way to confirm it is you" in html and 'value="email"' not in html
    r = submit_code(client, f"interaction={interaction.uid}", "email", "123456")
    assert r.status_code == 400
    sent = client.post("/login/step-up/send", data={"csrf_token": csrf_token(html),
                                                    "factor": "email",
                                                    "interaction": interaction.uid})
    assert sent.status_code == 400 and outbox_messages(app, citizen.email) == []
    assert sso_of(app, client).acr == 1


def test_a_portal_refusing_sms_is_not_offered_sms(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    """SMS is a "restricted" authenticator (SP 800-63B §5.1.3.3): level 2, unless a portal's
    accepted factors leave it out."""
    citizen = factory.citizen(phone="+6281234567802", phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    anything = pending_authorization(app)
    assert 'name="factor" type="hidden" value="sms"' in step_up_form(
        client, f"interaction={anything.uid}&lang=en")
    strict = pending_authorization(app, allowed_factors=["totp", "passkey"])
    html = step_up_form(client, f"interaction={strict.uid}&factor=sms&lang=en")
    assert "Add a way to confirm it is you" in html and 'value="sms"' not in html


def test_level_three_needs_a_passkey_even_for_an_identity_checked_in_person(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    """acr says how the citizen authenticated, nothing else: an authenticator app added by a citizen
    once verified in person does not inherit level 3 from that (only a passkey with user
    verification is phishing-resistant)."""
    verified = factory.citizen(in_person_verified_at=dt.datetime.now(dt.UTC))
    auth.login(verified.nik, verified.password)
    enrol_totp(app, client, verified)
    level3 = pending_authorization(app, required_acr=3)
    assert "Add a way to confirm it is you" in step_up_form(client, f"interaction={level3.uid}&lang=en")
    level2 = pending_authorization(app, required_acr=2)
    assert "totp" in step_up_form(client, f"interaction={level2.uid}&lang=en")


def test_removing_a_factor_needs_a_fresh_second_factor(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen)
    relogin(auth, citizen)
    page = client.get("/account/security").get_data(as_text=True)
    r = client.post("/account/security/totp/remove", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login/step-up?next=")
    assert "mfa_totp_removed" not in audit_events(app, citizen.id)

    done = submit_code(client, "next=/account/security", "totp", code_at(secret))
    assert done.status_code == 302 and done.headers["Location"] == "/account/security"
    r = client.post("/account/security/totp/remove", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 302 and r.headers["Location"] == "/account/security"
    assert "mfa_totp_removed" in audit_events(app, citizen.id)
    assert any("removed" in b or "dihapus" in b for b in outbox_messages(app, citizen.email))


def test_adding_a_second_authenticator_needs_a_fresh_second_factor(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    enrol_totp(app, client, citizen)
    relogin(auth, citizen)
    page = client.get("/account/security").get_data(as_text=True)
    r = client.post("/account/security/passkeys/options", headers={"X-CSRFToken": csrf_token(page)})
    assert r.status_code == 403 and r.get_json()["error"] == "step_up_required"
    r = client.post("/account/security/recovery-codes", data={"csrf_token": csrf_token(page)})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login/step-up")


def test_removing_the_last_factor_warns_about_portals_that_require_one(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    from idp.models.consent import ConsentRecord
    from idp.models.oidc import Client

    citizen = factory.citizen()
    with app.app_context():
        from idp.db import get_session

        db = get_session()
        db.add(Client(client_id="pajak", name="Portal Pajak", redirect_uris=["https://pajak.example/cb"],
                      scopes=["openid"], minimum_loa=2))
        db.add(Client(client_id="berita", name="Portal Berita", redirect_uris=["https://b.example/cb"],
                      scopes=["openid"], minimum_loa=1))
        db.flush()
        db.add_all([ConsentRecord(citizen_id=citizen.id, client_id=c, action="granted",
                                  scopes=["openid"]) for c in ("pajak", "berita")])
        db.commit()
    auth.login(citizen.nik, citizen.password)
    secret = enrol_totp(app, client, citizen)
    submit_code(client, "next=/account/security", "totp", code_at(secret))
    page = client.get("/account/security").get_data(as_text=True)
    warn = client.post("/account/security/totp/remove?lang=en", data={"csrf_token": csrf_token(page)})
    html = warn.get_data(as_text=True)
    assert warn.status_code == 409 and "Portal Pajak" in html and "Portal Berita" not in html
    assert "mfa_totp_removed" not in audit_events(app, citizen.id)
    r = client.post("/account/security/totp/remove",
                    data={"csrf_token": csrf_token(html), "confirm": "1"})
    assert r.status_code == 302 and "mfa_totp_removed" in audit_events(app, citizen.id)


def test_step_up_page_speaks_indonesian_by_default(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(phone="+6281234567804", phone_verified=True)
    auth.login(citizen.nik, citizen.password)
    html = step_up_form(client, f"interaction={pending_authorization(app).uid}")
    assert '<html lang="id">' in html
    assert "Pastikan bahwa ini Anda" in html and "Kirim kode" in html


def _add_passkey_row(app: Flask, citizen_id, name: str = "Ponsel") -> Any:
    """A stored credential as a registration leaves it (the ceremony itself runs in
    test_passkey_browser.py with a virtual authenticator)."""
    import os

    from idp.models.mfa import Passkey

    with app.app_context():
        from idp.db import get_session

        session = get_session()
        row = Passkey(citizen_id=citizen_id, credential_id=os.urandom(32), public_key=os.urandom(77),
                      sign_count=0, transports=["internal"], device_type="multi_device", name=name)
        session.add(row)
        session.commit()
        return str(row.id)


def _passkey_names(app: Flask, citizen_id) -> list[str]:
    from sqlalchemy import select

    from idp.models.mfa import Passkey

    with app.app_context():
        from idp.db import get_session

        return list(get_session().scalars(select(Passkey.name).where(Passkey.citizen_id == citizen_id)))


def test_passkeys_are_renamed_and_removed_only_by_their_owner(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen(phone="+6281234567803", phone_verified=True)
    other = factory.citizen()
    mine = _add_passkey_row(app, citizen.id)
    theirs = _add_passkey_row(app, other.id, "Milik orang lain")
    auth.login(citizen.nik, citizen.password)
    page = client.get("/account/security?lang=en").get_data(as_text=True)
    assert "Ponsel" in page and "Milik orang lain" not in page
    token = csrf_token(page)

    r = client.post(f"/account/security/passkeys/{mine}/rename", data={"csrf_token": token,
                                                                       "name": "Laptop kantor"})
    assert r.status_code == 302 and _passkey_names(app, citizen.id) == ["Laptop kantor"]
    too_long = client.post(f"/account/security/passkeys/{mine}/rename",
                           data={"csrf_token": token, "name": "x" * 65})
    assert too_long.status_code == 302 and _passkey_names(app, citizen.id) == ["Laptop kantor"]
    for target in (theirs, "not-a-uuid"):
        for action in ("rename", "remove"):
            r = client.post(f"/account/security/passkeys/{target}/{action}",
                            data={"csrf_token": token, "name": "dicuri"})
            assert r.status_code == 404, (target, action)
    assert _passkey_names(app, other.id) == ["Milik orang lain"]

    # Removing needs a second factor proved just now; the password session alone is sent to step up.
    r = client.post(f"/account/security/passkeys/{mine}/remove", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login/step-up")
    assert _passkey_names(app, citizen.id) == ["Laptop kantor"]
    assert prove_by_sms(app, client, citizen, "/account/security").status_code == 302
    token = csrf_token(client.get("/account/security").get_data(as_text=True))
    r = client.post(f"/account/security/passkeys/{mine}/remove", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"] == "/account/security"
    assert _passkey_names(app, citizen.id) == []
    assert {"mfa_passkey_renamed", "mfa_passkey_removed"} <= set(audit_events(app, citizen.id))
    assert any("passkey" in body.lower() for body in outbox_messages(app, citizen.email))


def test_a_new_passkey_is_named_by_the_masked_nik_not_the_whole_nik(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    """Authenticators show the WebAuthn user name (on the lock screen, in the passkey list): it is the
    masked NIK, as the authenticator app's label is, never the whole number."""
    import json

    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)  # no usable factor yet: the passkey would wait
    html = client.get("/account/security").get_data(as_text=True)
    options = client.post("/account/security/passkeys/options",
                          headers={"X-CSRFToken": csrf_token(html)})
    assert options.status_code == 200, options.get_data(as_text=True)[:200]
    user = json.loads(options.get_data(as_text=True))["user"]
    assert user["name"] == citizen.nik[:6] + "******" + citizen.nik[-4:]
    assert citizen.nik not in options.get_data(as_text=True)
