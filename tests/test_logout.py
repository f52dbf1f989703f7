"""RP-initiated and back-channel logout (Flask test client, a real receiver over HTTP)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select, update

from tests.conftest import csrf_token
from tests.oidc_rp import Portal, query, register_portal
from tests.servers import LogoutReceiver

EVENT = "http://schemas.openid.net/event/backchannel-logout"


@pytest.fixture
def receiver() -> Any:
    with LogoutReceiver() as r:
        yield r


def _sign_in(app, client, factory, **fields) -> Any:
    citizen = factory.citizen()
    info = register_portal(app, **fields)
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    result = portal.sign_in(citizen.nik, citizen.password)
    tokens = portal.token(result["code"]).get_json()
    return portal, tokens, info


def portal_citizen(app, portal: Portal, sub: str) -> str:
    """The citizen id behind a portal's pairwise ``sub`` (as SatuID itself would find it)."""
    from idp.db import get_session
    from idp.models import Citizen, Client
    from idp.oidc.pairwise import pairwise_subject

    with app.app_context():
        session = get_session()
        client = session.get(Client, portal.client_id)
        return next(str(c.id) for c in session.scalars(select(Citizen))
                    if pairwise_subject(client, str(c.id)) == sub)


def _check_logout_token(client, token: str, audience: str, sid: str) -> dict:
    decoded = jwt.decode(token, KeySet.import_key_set(client.get("/jwks").get_json()))
    assert decoded.header["typ"] == "logout+jwt"
    jwt.JWTClaimsRegistry(iss={"essential": True, "value": "http://127.0.0.1:5000"},
                          aud={"essential": True, "value": audience},
                          iat={"essential": True}, jti={"essential": True}).validate(decoded.claims)
    claims = decoded.claims
    assert claims["sid"] == sid and claims["events"] == {EVENT: {}} and "nonce" not in claims
    return claims


def test_rp_initiated_logout_with_hint_ends_session_and_notifies_portals(app, client, factory,
                                                                         receiver) -> None:
    portal, tokens, info = _sign_in(app, client, factory, backchannel_logout_uri=receiver.url)
    id_token = tokens["id_token"]
    sid = jwt.decode(id_token, KeySet.import_key_set(client.get("/jwks").get_json())).claims["sid"]
    response = client.get("/end-session", query_string={
        "id_token_hint": id_token, "post_logout_redirect_uri": info["post_logout"][0], "state": "xyz"})
    assert response.status_code == 302
    assert response.headers["Location"] == info["post_logout"][0] + "?state=xyz"
    received = receiver.wait_for(1)
    claims = _check_logout_token(client, received[0], portal.client_id, sid)
    id_claims = jwt.decode(id_token, KeySet.import_key_set(client.get("/jwks").get_json())).claims
    assert claims["sub"] == id_claims["sub"]
    # The SSO session is over: the next authorization asks to log in.
    assert "/login?" in client.get(portal.authorize_url()).headers["Location"]


def test_unregistered_post_logout_uri_is_not_followed(app, client, factory) -> None:
    _portal, tokens, _info = _sign_in(app, client, factory)
    response = client.get("/end-session", query_string={
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": "https://evil.example/"})
    assert response.status_code == 200 and "Location" not in response.headers


def test_logout_without_hint_asks_for_confirmation(app, client, factory) -> None:
    portal, _tokens, info = _sign_in(app, client, factory)
    page = client.get("/end-session", query_string={
        "client_id": portal.client_id, "post_logout_redirect_uri": info["post_logout"][0]})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'value="logout"' in html
    assert html.index('value="logout"') < html.index('value="stay"')  # approve first
    handle = html.split('name="handle" value="')[1].split('"')[0]
    response = client.post("/end-session/confirm", data={"csrf_token": csrf_token(html), "handle": handle,
                                                         "decision": "logout"})
    assert response.headers["Location"] == info["post_logout"][0]
    assert "/login?" in client.get(portal.authorize_url()).headers["Location"]


def test_logout_at_satuid_and_password_reset_send_backchannel_tokens(app, client, factory, auth,
                                                                     receiver) -> None:
    import re

    from tests.conftest import outbox_messages

    app.config["OIDC_SYNC_LOGOUT_DELIVERY"] = True
    citizen = factory.citizen()
    info = register_portal(app, backchannel_logout_uri=receiver.url)
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    portal.sign_in(citizen.nik, citizen.password)
    auth.logout()
    assert len(receiver.wait_for(1)) == 1
    portal.sign_in(citizen.nik, citizen.password)
    auth.form("/password/forgot", {"nik": citizen.nik})
    link = re.search(r"http\S+/password/reset/\S+", outbox_messages(app, citizen.email)[0]).group(0)
    path = link.split("127.0.0.1:5000")[1]
    new_password = "teh manis hangat sore"
    auth.form(path, {"password": new_password, "confirm": new_password})
    assert len(receiver.wait_for(2)) == 2


def test_operator_ending_sessions_sends_backchannel_tokens(app, client, factory, receiver) -> None:
    citizen = factory.citizen()
    info = register_portal(app, backchannel_logout_uri=receiver.url)
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    portal.sign_in(citizen.nik, citizen.password)
    result = app.test_cli_runner().invoke(args=["sessions", "end", citizen.nik])
    assert result.exit_code == 0, result.output
    assert len(receiver.wait_for(1)) == 1


def test_failed_delivery_is_retried_with_backoff(app, client, factory, receiver) -> None:
    app.config["OIDC_SYNC_LOGOUT_DELIVERY"] = True
    receiver.status = 503
    citizen = factory.citizen()
    info = register_portal(app, backchannel_logout_uri=receiver.url)
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    portal.sign_in(citizen.nik, citizen.password)
    from idp.db import get_session
    from idp.models import LogoutDelivery

    client.post("/logout", data={"csrf_token": csrf_token(client.get("/logout").get_data(True))})
    with app.app_context():
        row = get_session().scalars(select(LogoutDelivery)).one()
        assert row.status == "retry" and row.attempts == 1 and row.last_error == "HTTP 503"
        assert row.next_attempt_at > dt.datetime.now(dt.UTC)
    receiver.status = 200
    runner = app.test_cli_runner()
    assert '"delivered"' not in runner.invoke(args=["logout", "deliver"]).output  # not due yet
    with app.app_context():
        session = get_session()
        session.execute(update(LogoutDelivery).values(next_attempt_at=dt.datetime.now(dt.UTC)))
        session.commit()
    assert '"delivered": 1' in runner.invoke(args=["logout", "deliver"]).output
    assert len(receiver.wait_for(1)) == 1
    with app.app_context():
        row = get_session().scalars(select(LogoutDelivery)).one()
        assert row.status == "delivered" and row.attempts == 2 and row.delivered_at is not None


def test_a_delivery_is_claimed_by_one_worker_only(app, client, factory, receiver) -> None:
    from idp.models import LogoutDelivery
    from idp.oidc.logout import _claim

    app.config["OIDC_SYNC_LOGOUT_DELIVERY"] = True
    receiver.status = 503
    citizen = factory.citizen()
    info = register_portal(app, backchannel_logout_uri=receiver.url)
    Portal(client, info["client_id"], info["secret"], info["redirect_uri"]).sign_in(citizen.nik,
                                                                                   citizen.password)
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/logout").get_data(True))})
    with app.app_context():
        from idp.db import get_session

        session = get_session()
        session.execute(update(LogoutDelivery).values(next_attempt_at=dt.datetime.now(dt.UTC)))
        session.commit()
        row_id = session.scalars(select(LogoutDelivery.id)).one()
        assert _claim(session, row_id) is True
        assert _claim(session, row_id) is False  # leased


def test_rp_logout_query_values_roundtrip(app, client, factory) -> None:
    _portal, tokens, info = _sign_in(app, client, factory)
    response = client.get("/end-session", query_string={"id_token_hint": tokens["id_token"]})
    assert response.status_code == 200  # no redirect asked: our own "logged out" page
    assert query(info["post_logout"][0]) == {}


def test_only_an_id_token_is_taken_as_id_token_hint(app, client, factory) -> None:
    """Only an ID token from this session logs out without asking. An access token is no hint, nor
    a logout token, though it names this session's sid and carries iss and aud."""
    from idp.db import get_session
    from idp.models import Client
    from idp.oidc.logout import logout_token

    portal, tokens, info = _sign_in(app, client, factory)
    id_claims = jwt.decode(tokens["id_token"], KeySet.import_key_set(client.get("/jwks").get_json()))
    with app.test_request_context():
        from idp.auth.session import sessions_of

        [sso] = sessions_of(portal_citizen(app, portal, id_claims.claims["sub"]))
        session = get_session()
        forged = logout_token(session, session.get(Client, portal.client_id), sso.citizen_id, sso.sid)
    for hint in (tokens["access_token"], forged):
        response = client.get("/end-session", query_string={
            "id_token_hint": hint, "post_logout_redirect_uri": info["post_logout"][0]})
        html = response.get_data(as_text=True)
        assert response.status_code == 200 and 'value="logout"' in html
        # The session is still there: the portal signs in again silently.
        assert "code=" in client.get(portal.authorize_url(prompt="none")).headers["Location"]


def test_each_portal_sees_its_own_sid_and_is_logged_out_by_it(app, client, factory, receiver) -> None:
    """Two portals of different sectors signed in by one SSO session get different ``sid`` values
    (they cannot join their users on it), and each logout token names the portal's own."""
    citizen = factory.citizen()
    sids = {}
    for client_id in ("portal-pajak", "portal-sekolah"):
        info = register_portal(app, client_id=client_id, backchannel_logout_uri=receiver.url,
                               sector_identifier=f"{client_id}.example.id")
        portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
        result = portal.sign_in(citizen.nik, citizen.password)
        id_token = portal.token(result["code"]).get_json()["id_token"]
        sids[client_id] = jwt.decode(id_token, KeySet.import_key_set(client.get("/jwks").get_json())
                                     ).claims["sid"]
    assert sids["portal-pajak"] != sids["portal-sekolah"]
    token = csrf_token(client.get("/logout").get_data(as_text=True))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    received = {}
    for raw in receiver.wait_for(2):
        claims = jwt.decode(raw, KeySet.import_key_set(client.get("/jwks").get_json())).claims
        received[claims["aud"]] = claims["sid"]
    assert received == sids


def test_a_logout_token_is_signed_when_it_is_sent_not_when_it_was_queued(app, client, factory,
                                                                       receiver) -> None:
    """Back-Channel Logout §2.6: a portal rejects an expired token, so a retry after a long outage
    must carry a fresh one."""
    import time

    from idp.db import get_session
    from idp.models import LogoutDelivery
    from idp.oidc.logout import deliver_due

    receiver.status = 503
    _sign_in(app, client, factory, backchannel_logout_uri=receiver.url)
    token = csrf_token(client.get("/logout").get_data(as_text=True))
    client.post("/logout", data={"csrf_token": token})
    with app.app_context():
        deliver_due(app)
    queued_at = int(time.time())
    time.sleep(2)
    receiver.status = 200
    with app.app_context():
        session = get_session()
        session.execute(update(LogoutDelivery).values(next_attempt_at=dt.datetime.now(dt.UTC)))
        session.commit()
        assert deliver_due(app) == {"delivered": 1}
    [raw] = receiver.wait_for(1)
    claims = jwt.decode(raw, KeySet.import_key_set(client.get("/jwks").get_json())).claims
    assert claims["iat"] >= queued_at + 2 and claims["exp"] > time.time()


def test_a_session_ended_by_work_that_then_fails_stays_with_its_portals_told_nothing(
        app, client, factory, receiver) -> None:
    """Ending a session and queueing its back-channel logouts happen together, when the work
    commits: a request that fails after ending the session leaves both undone (the session is
    still there, no portal was told), never a session gone with its portals never told."""
    from idp.auth import session as sso

    @app.get("/test/end-then-fail")
    def end_then_fail() -> str:
        current = sso.current()
        assert current is not None
        sso.end(current, reason="test")
        raise RuntimeError("a failure after the session was ended")

    portal, tokens, _info = _sign_in(app, client, factory, backchannel_logout_uri=receiver.url)
    citizen_id = portal_citizen(app, portal, jwt.decode(
        tokens["id_token"], KeySet.import_key_set(client.get("/jwks").get_json())).claims["sub"])
    assert client.get("/test/end-then-fail").status_code == 500
    with app.test_request_context():
        assert len(sso.sessions_of(citizen_id)) == 1  # still in the store
    with app.app_context():
        from idp.db import get_session
        from idp.models import LogoutDelivery

        assert get_session().scalars(select(LogoutDelivery)).all() == []
    assert receiver.tokens == []
