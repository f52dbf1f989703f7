"""Login, the SSO session cookie, logout, lockout and the forgotten-password reset."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions, Factory, csrf_token, outbox_messages

COOKIE = "satuid_sso"


def session_cookie(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(COOKIE)
    return cookie.value if cookie else None


def test_login_page_is_indonesian_by_default_and_switches_to_english(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert '<html lang="id">' in page and "Masuk" in page
    english = client.get("/login?lang=en").get_data(as_text=True)
    assert '<html lang="en">' in english and "Log in to SatuID" in english
    # The choice is remembered.
    assert '<html lang="en">' in client.get("/login").get_data(as_text=True)


def test_login_form_carries_csrf_and_autocomplete_tokens(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    assert 'name="csrf_token"' in page
    assert re.search(r'<input[^>]*autocomplete="username"[^>]*name="nik"', page)
    assert re.search(r'<input[^>]*autocomplete="current-password"[^>]*name="password"', page)


def test_security_headers_on_pages(client: FlaskClient) -> None:
    r = client.get("/login")
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cache-Control"] == "no-store"


def test_citizen_logs_in_and_lands_on_account(auth: AuthActions, client: FlaskClient,
                                              factory: Factory) -> None:
    citizen = factory.citizen(full_name="Siti Rahayu")
    r = auth.login(citizen.nik, citizen.password)
    assert r.status_code == 302 and r.headers["Location"] == "/account"
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"
    home = client.get("/account")
    assert home.status_code == 200 and "Siti Rahayu" in home.get_data(as_text=True)


def test_nik_typed_with_spaces_is_accepted(auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()
    spaced = " ".join(citizen.nik[i:i + 4] for i in range(0, 16, 4))
    assert auth.login(spaced, citizen.password).status_code == 302


def test_wrong_password_and_unknown_nik_get_the_same_answer(auth: AuthActions, client: FlaskClient,
                                                            factory: Factory) -> None:
    citizen = factory.citizen()
    wrong = auth.login(citizen.nik, "not the right password")
    unknown_resident = factory.resident()
    unknown = auth.login(unknown_resident.nik, "not the right password")
    assert wrong.status_code == unknown.status_code == 401
    message = "NIK atau kata sandi tidak benar"
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)
    assert session_cookie(client) is None


def test_malformed_nik_is_explained(auth: AuthActions, client: FlaskClient) -> None:
    r = auth.login("12345", "whatever password", query_string={"lang": "en"})
    assert r.status_code == 400
    assert "A NIK has exactly 16 digits." in r.get_data(as_text=True)
    r = auth.login("9974041708900001", "whatever password", query_string={"lang": "id"})
    assert "bukan kode provinsi" in r.get_data(as_text=True)
    assert session_cookie(client) is None


def test_replayed_form_without_valid_csrf_token_is_refused(client: FlaskClient,
                                                          factory: Factory) -> None:
    citizen = factory.citizen()
    r = client.post("/login", data={"nik": citizen.nik, "password": citizen.password,
                                    "csrf_token": "forged"})
    assert r.status_code == 400
    assert session_cookie(client) is None
    other = factory.app.test_client()
    token = csrf_token(other.get("/login").get_data(as_text=True))
    r = client.post("/login", data={"nik": citizen.nik, "password": citizen.password,
                                    "csrf_token": token})
    assert r.status_code == 400 and session_cookie(client) is None


def test_logout_ends_the_session_server_side(auth: AuthActions, client: FlaskClient,
                                             factory: Factory, app: Flask) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    stolen = session_cookie(client)
    assert auth.logout().status_code == 302
    assert client.get("/account").status_code == 302
    # A copy of the old cookie no longer works either.
    thief = app.test_client()
    thief.set_cookie(COOKIE, stolen or "")
    assert thief.get("/account").status_code == 302


def test_login_renews_the_session_secret(auth: AuthActions, client: FlaskClient,
                                         factory: Factory, app: Flask) -> None:
    from idp.auth.session import sessions_of

    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    first = session_cookie(client)
    with app.test_request_context():
        [before] = sessions_of(str(citizen.id))
    # Logging in again from the same browser (as prompt=login does) gives a new secret...
    token = csrf_token(client.get("/logout").get_data(as_text=True))
    r = client.post("/login", data={"csrf_token": token, "nik": citizen.nik,
                                    "password": citizen.password})
    assert r.status_code == 302
    assert session_cookie(client) not in (None, first)
    # ...but the same public sid, which portals signed in earlier know from their ID tokens.
    with app.test_request_context():
        [after] = sessions_of(str(citizen.id))
    assert after.sid == before.sid and after.key != before.key
    thief = app.test_client()
    thief.set_cookie(COOKIE, first or "")
    assert thief.get("/account").status_code == 302


def test_an_old_cookie_caught_in_flight_by_a_new_login_does_not_come_back(
        auth: AuthActions, client: FlaskClient, factory: Factory, app: Flask) -> None:
    """A request that read the session just before a new login renewed its secret must not write
    the old secret back when it refreshes the idle timer."""
    from dataclasses import asdict

    from idp.auth import session as sso

    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    old_secret = session_cookie(client)
    with app.test_request_context():
        [old] = sso.sessions_of(str(citizen.id))
    token = csrf_token(client.get("/logout").get_data(as_text=True))
    assert client.post("/login", data={"csrf_token": token, "nik": citizen.nik,
                                       "password": citizen.password}).status_code == 302
    store = app.extensions["idp.store"]
    # The in-flight request's view of the old session, as it would save it.
    stale = {k: v for k, v in asdict(old).items() if k != "key"}
    stale["last_seen"] -= 60
    store.put(f"sso:{old.key}", stale, 600)
    with app.test_request_context():
        assert sso.load(old_secret) is None
        assert store.get(f"sso:{old.key}") is None
        [current] = sso.sessions_of(str(citizen.id))
        assert current.key != old.key
    assert client.get("/account").status_code == 200


def test_repeated_failures_delay_then_lock_without_revealing_registration(
        auth: AuthActions, client: FlaskClient, factory: Factory, app: Flask) -> None:
    citizen = factory.citizen()
    statuses = [auth.login(citizen.nik, f"wrong password {i}").status_code for i in range(3)]
    assert statuses[:2] == [401, 401]
    assert statuses[2] == 401  # third failure: the next attempt must wait
    r = auth.login(citizen.nik, citizen.password)
    assert r.status_code == 429 and "detik" in r.get_data(as_text=True)
    assert session_cookie(client) is None
    # Clear the delays to reach the lockout quickly, as a patient attacker would.
    from idp import state

    def clear_wait() -> None:
        with app.app_context():
            state.login_waits.delete(state.digest(citizen.nik))

    for _ in range(2):
        clear_wait()
        auth.login(citizen.nik, "still wrong password")
    clear_wait()
    r = auth.login(citizen.nik, citizen.password)
    assert r.status_code == 429 and "menit" in r.get_data(as_text=True)
    assert session_cookie(client) is None
    assert any("dijeda" in body for body in outbox_messages(app, citizen.email))
    # An unregistered NIK goes through the same steps and the same messages.
    stranger = factory.resident()
    for _ in range(3):
        auth.login(stranger.nik, "some password here")
    assert auth.login(stranger.nik, "some password here").status_code == 429


def test_per_ip_rate_limit(app: Flask, factory: Factory) -> None:
    from tests.conftest import make_app

    env = {"IDP_DATABASE_URL": app.config["IDP"].database_url,
           "IDP_REDIS_URL": app.config["IDP"].redis_url or "",
           "IDP_INSTANCE_PATH": str(app.config["IDP"].instance_path), "IDP_IP_RATE_LIMIT": "3"}
    limited = make_app(env)
    client = limited.test_client()
    actions = AuthActions(client)
    codes = [actions.login("3174045708900001", "x" * 12).status_code for _ in range(4)]
    assert codes[-1] == 429
    # IPv6 is counted by its /64: a new address in the same network does not start afresh. (A NIK
    # of its own each time: the NIK's own lockout is not what is tested here.)
    def from_(address: str, nik: str) -> int:
        other = AuthActions(limited.test_client())
        other.client.environ_base["REMOTE_ADDR"] = address
        return other.login(nik, "x" * 12).status_code
    assert [from_(f"2001:db8:1:2::{n}", f"317404570890000{n + 1}") for n in range(1, 5)][-1] == 429
    assert from_("2001:db8:1:3::1", "3174045708900009") != 429
    limited.extensions["idp.engine"].dispose()


def test_networks_are_counted_by_address_or_ipv6_64() -> None:
    from idp.auth.lockout import network_of

    assert network_of("203.0.113.7") == "203.0.113.7"
    assert network_of("2001:db8:1:2:aaaa::1") == network_of("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert network_of("::ffff:203.0.113.7") == "203.0.113.7"  # an IPv4 client on a dual stack
    assert network_of(None) == "" and network_of("not-an-address") == "not-an-address"


def test_password_rehashed_on_login_when_parameters_change(auth: AuthActions, factory: Factory,
                                                           app: Flask) -> None:
    from idp.models import Citizen

    citizen = factory.citizen()
    with app.app_context():
        from idp.db import get_session

        s = get_session()
        row = s.get(Citizen, citizen.id)
        from argon2 import PasswordHasher

        row.password_hash = PasswordHasher(time_cost=1, memory_cost=1024).hash(citizen.password)
        s.commit()
        old_hash = row.password_hash
    assert auth.login(citizen.nik, citizen.password).status_code == 302
    with app.app_context():
        from idp.db import get_session

        new_hash = get_session().get(Citizen, citizen.id).password_hash
    assert new_hash != old_hash and "m=8192" in new_hash


def reset_link(app: Flask, email: str) -> str:
    body = outbox_messages(app, email)[0]
    m = re.search(r"http://[^/\s]+(/password/reset/[A-Za-z0-9_\-]+)", body)
    assert m, body
    return m.group(1)


def test_forgotten_password_reset_through_outbox_ends_old_sessions(
        auth: AuthActions, client: FlaskClient, factory: Factory, app: Flask) -> None:
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    other_device = app.test_client()
    AuthActions(other_device).login(citizen.nik, citizen.password)
    assert other_device.get("/account").status_code == 200

    anonymous = AuthActions(app.test_client())
    r = anonymous.form("/password/forgot", {"nik": citizen.nik})
    assert r.status_code == 200
    path = reset_link(app, citizen.email)
    new_password = "mangga muda di halaman"
    r = anonymous.form(path, {"password": new_password, "confirm": new_password})
    assert r.status_code == 302
    assert client.get("/account").status_code == 302
    assert other_device.get("/account").status_code == 302
    assert any("diubah" in b for b in outbox_messages(app, citizen.email))
    # The link works once; the old password no longer does; the new one does.
    assert anonymous.client.get(path).status_code == 400
    fresh = AuthActions(app.test_client())
    assert fresh.login(citizen.nik, citizen.password).status_code == 401
    assert fresh.login(citizen.nik, new_password).status_code == 302


def test_forgot_password_answers_the_same_for_unknown_nik(factory: Factory, app: Flask) -> None:
    citizen = factory.citizen()
    stranger = factory.resident()
    a = AuthActions(app.test_client()).form("/password/forgot", {"nik": citizen.nik})
    b = AuthActions(app.test_client()).form("/password/forgot", {"nik": stranger.nik})
    assert a.status_code == b.status_code == 200
    assert a.get_data(as_text=True).replace(csrf_token_or(a), "") == \
        b.get_data(as_text=True).replace(csrf_token_or(b), "")


def test_forgot_password_does_the_same_work_for_an_unknown_nik(factory: Factory, app: Flask) -> None:
    """The time a request takes must not tell whether the NIK has an account: an unknown NIK also
    writes a (useless) link and an audit row, so both requests make one commit of the same size."""
    from sqlalchemy import func, select

    from idp.db import get_session
    from idp.models import AuditEvent

    def audit_rows() -> int:
        with app.app_context():
            return get_session().scalar(select(func.count()).select_from(AuditEvent)) or 0

    citizen = factory.citizen()
    stranger = factory.resident()
    before = audit_rows()
    AuthActions(app.test_client()).form("/password/forgot", {"nik": citizen.nik})
    after_known = audit_rows()
    AuthActions(app.test_client()).form("/password/forgot", {"nik": stranger.nik})
    assert after_known - before == audit_rows() - after_known == 1


def csrf_token_or(r) -> str:
    m = re.search(r'value="([^"]+)"', r.get_data(as_text=True))
    return m.group(1) if m else "\0"


def test_reset_refuses_a_weak_password_and_keeps_the_link(factory: Factory, app: Flask) -> None:
    citizen = factory.citizen()
    actions = AuthActions(app.test_client())
    actions.form("/password/forgot", {"nik": citizen.nik})
    path = reset_link(app, citizen.email)
    r = actions.form(path, {"password": "short", "confirm": "short"})
    assert r.status_code == 400 and "12" in r.get_data(as_text=True)
    assert actions.client.get(path).status_code == 200


def test_session_idle_timeout(factory: Factory, app: Flask, backend: dict[str, str]) -> None:
    from tests.conftest import make_app

    short = make_app({**backend, "IDP_SESSION_IDLE_SECONDS": "1"})
    client = short.test_client()
    citizen = factory.citizen()
    AuthActions(client).login(citizen.nik, citizen.password)
    assert client.get("/account").status_code == 200
    import time

    time.sleep(2.2)
    assert client.get("/account").status_code == 302


def test_unknown_page_is_a_translated_404(client: FlaskClient) -> None:
    r = client.get("/no-such-page")
    assert r.status_code == 404 and "Halaman tidak ditemukan" in r.get_data(as_text=True)


def test_citizen_logs_out_another_device_from_the_account_page(factory: Factory, app: Flask) -> None:
    citizen = factory.citizen()
    laptop = AuthActions(app.test_client())
    phone = AuthActions(app.test_client())
    laptop.login(citizen.nik, citizen.password)
    phone.login(citizen.nik, citizen.password)
    page = laptop.client.get("/account").get_data(as_text=True)
    assert page.count('name="sid"') == 2  # one row for the phone, one "all others" button
    r = laptop.client.post(
        "/account/sessions/end", data={"csrf_token": csrf_token(page), "sid": "others"})
    assert r.status_code == 302
    assert phone.client.get("/account").status_code == 302
    assert laptop.client.get("/account").status_code == 200


UNSAFE_NEXT = ["//evil.example", "/\t/evil.example", "/\n/evil.example", "/\\evil.example",
               "https://evil.example/", "/ /evil.example", "/\x7f/evil.example", "account"]


def test_only_local_paths_are_followed_after_login(auth: AuthActions, factory: Factory) -> None:
    from idp.interaction import safe_next

    for target in UNSAFE_NEXT:
        assert safe_next(target) is None, target
    assert safe_next("/account/sessions?lang=en") == "/account/sessions?lang=en"
    citizen = factory.citizen()
    r = auth.form("/login", {"nik": citizen.nik, "password": citizen.password,
                             "next": "/account/sessions"})
    assert r.headers["Location"] == "/account/sessions"
    for target in UNSAFE_NEXT:
        # Already logged in: the GET redirect is where a crafted link would land. A control
        # character refuses the whole request; anything else falls back to the account page.
        r = auth.client.get("/login", query_string={"next": target})
        if "\x7f" in target:
            assert r.status_code == 400, target
        else:
            assert r.status_code == 302 and r.headers["Location"] == "/account", target


def test_attempts_sent_at_once_get_no_more_checks_than_the_lockout_allows(app: Flask,
                                                                         factory: Factory) -> None:
    """Requests in flight together each reserve an attempt before the password is checked, so a
    burst cannot test more passwords than the lockout limit, then one of them locks the account."""
    from idp.auth import lockout

    citizen = factory.citizen()
    limit = app.config["IDP"].login_max_failures
    with app.test_request_context():
        burst = [lockout.begin(citizen.nik) for _ in range(limit + 5)]  # none finished yet
        checked = [a for a in burst if not a.blocked]
        assert len(checked) == limit
        throttles = [a.failed() for a in checked]  # every password was wrong
        assert throttles[-1].locked_for > 0
        assert lockout.begin(citizen.nik).throttle.locked_for > 0


def test_a_stranger_locking_a_nik_does_not_lock_out_its_owners_own_browser(
        factory: Factory, app: Flask) -> None:
    """OWASP device cookies: wrong passwords from a browser the owner never used lock that NIK for
    unknown browsers only; the owner's browser, known from an earlier login, still gets in, and the
    owner is told."""
    citizen = factory.citizen()
    owner = AuthActions(app.test_client())
    assert owner.login(citizen.nik, citizen.password).status_code == 302
    owner.logout()
    stranger = AuthActions(app.test_client())
    limit = app.config["IDP"].login_max_failures
    statuses = []
    for i in range(limit + 1):
        from idp import state

        with app.app_context():  # a patient stranger waits out the short delays
            state.login_waits.delete(state.digest(citizen.nik))
        statuses.append(stranger.login(citizen.nik, f"guess number {i} here").status_code)
    assert statuses[-1] == 429
    assert stranger.login(citizen.nik, citizen.password).status_code == 429  # locked for strangers
    assert AuthActions(app.test_client()).login(citizen.nik, citizen.password).status_code == 429
    mine = owner.login(citizen.nik, citizen.password)
    assert mine.status_code == 302 and mine.headers["Location"] == "/account"
    [notice] = [m for m in outbox_messages(app, citizen.email) if "dijeda" in m]
    assert "perangkat" in notice


def test_a_session_stored_by_the_previous_release_is_still_found(auth: AuthActions, factory: Factory,
                                                                 app: Flask, client: FlaskClient) -> None:
    """The previous release kept the whole store key in a sid's reference ("sso:<hash>")."""
    from idp.auth import session as sso

    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    with app.test_request_context():
        [current] = sso.sessions_of(str(citizen.id))
    app.extensions["idp.store"].put(f"sso-sid:{current.sid}", {"key": f"sso:{current.key}"}, 600)
    with app.test_request_context():
        [found] = sso.sessions_of(str(citizen.id))
    assert found.sid == current.sid and found.key == current.key
    assert client.get("/account").status_code == 200
