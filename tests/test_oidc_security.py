"""RFC 9700 (OAuth 2.0 Security BCP) negative cases, refresh rotation, revocation, introspection."""

from __future__ import annotations

import time
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.oidc_rp import Portal, pkce_pair, query, register_portal


def _portal(app, client, **fields) -> Portal:
    info = register_portal(app, **fields)
    return Portal(client, info["client_id"], info["secret"], info["redirect_uri"])


def _signed_in(app, client, factory, scope: str = "openid profile", **fields) -> Any:
    citizen = factory.citizen()
    portal = _portal(app, client, **fields)
    result = portal.sign_in(citizen.nik, citizen.password, scope=scope)
    return portal, result["code"]


def test_replayed_code_is_refused_and_revokes_issued_tokens(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory, scope="openid profile offline_access")
    first = portal.token(code).get_json()
    replay = portal.token(code)
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert info.status_code == 401 and 'error="invalid_token"' in info.headers["WWW-Authenticate"]
    refreshed = portal.refresh(first["refresh_token"])
    assert refreshed.get_json()["error"] == "invalid_grant"


def test_wrong_pkce_verifier_is_refused(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory)
    wrong, _ = pkce_pair()
    response = portal.token(code, verifier=wrong)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_grant"


def test_missing_pkce_verifier_is_refused(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory)
    response = portal.token(code, code_verifier=None, verifier="")
    assert response.get_json()["error"] == "invalid_request"


def test_authorization_without_pkce_or_with_plain_is_refused(app, client, factory, auth) -> None:
    portal = _portal(app, client)
    for extra in ({"code_challenge": None, "code_challenge_method": None},
                  {"code_challenge_method": "plain"}, {"code_challenge_method": None}):
        result = query(client.get(portal.authorize_url(**extra)).headers["Location"])
        assert result["error"] == "invalid_request", extra
        assert result["iss"] == "http://127.0.0.1:5000" and result["state"] == portal.last["state"]


def test_wrong_redirect_uri_at_token_is_refused(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory,
                              redirect_uris=["https://portal-test.example.id/cb",
                                             "https://portal-test.example.id/other"])
    response = portal.token(code, redirect_uri="https://portal-test.example.id/other")
    assert response.get_json()["error"] == "invalid_grant"


def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(app, client) -> None:
    portal = _portal(app, client)
    for uri in ("https://evil.example/cb", "https://portal-test.example.id/cb/../x",
                "https://portal-test.example.id/cb?x=1"):
        response = client.get(portal.authorize_url(redirect_uri=uri) + "&lang=en")
        assert response.status_code == 400 and "Location" not in response.headers
        assert "not valid" in response.get_data(as_text=True)
    response = client.get(portal.authorize_url(redirect_uri=None))
    assert response.status_code == 400 and "Location" not in response.headers


def test_unknown_client_gets_an_error_page(app, client) -> None:
    portal = Portal(client, "nobody", "x", "https://nobody.example/cb")
    response = client.get(portal.authorize_url())
    assert response.status_code == 400 and "Location" not in response.headers
    assert "tidak" in response.get_data(as_text=True).lower() or "not" in response.get_data(as_text=True)


def test_another_clients_code_is_refused(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory)
    other = _portal(app, client, client_id="other-portal")
    response = other.token(code, verifier=portal.last["verifier"], redirect_uri=portal.redirect_uri)
    assert response.get_json()["error"] == "invalid_grant"


def test_expired_code_is_refused(app, client, factory) -> None:
    app.config["OIDC_CODE_LIFETIME"] = 1
    portal, code = _signed_in(app, client, factory)
    time.sleep(2.1)
    assert portal.token(code).get_json()["error"] == "invalid_grant"


def test_disabled_client_can_neither_authorize_nor_exchange(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["clients", "disable", portal.client_id]).exit_code == 0
    assert portal.token(code).get_json()["error"] == "invalid_client"
    response = client.get(portal.authorize_url())
    assert response.status_code == 400 and "Location" not in response.headers


def test_wrong_client_secret_is_refused(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory)
    portal.secret = "not-the-secret"
    response = portal.token(code)
    assert response.status_code == 401 and response.get_json()["error"] == "invalid_client"


def test_refresh_tokens_rotate_and_reuse_revokes_the_family(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory, scope="openid profile offline_access")
    first = portal.token(code).get_json()
    second = portal.refresh(first["refresh_token"])
    assert second.status_code == 200 and second.headers["Cache-Control"] == "no-store"
    second = second.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    reuse = portal.refresh(first["refresh_token"])
    assert reuse.get_json()["error"] == "invalid_grant"
    # The whole family is gone: the newest refresh and access tokens too.
    third = portal.refresh(second["refresh_token"])
    assert third.get_json()["error"] == "invalid_grant"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {second['access_token']}"})
    assert info.status_code == 401


def test_a_rotation_revokes_a_sibling_left_live_in_its_grant(app, client, factory) -> None:
    """One live refresh token per grant: a sibling that a race left live beside the token used (two
    answers to one rotation) dies with the rotation, and the new token and the grant stand."""
    import sqlalchemy as sa

    from idp.db import get_session
    from idp.models import Token
    from idp.models.base import secret_digest

    portal, code = _signed_in(app, client, factory, scope="openid profile offline_access")
    first = portal.token(code).get_json()
    with app.app_context():
        session = get_session()
        row = session.scalars(sa.select(Token).where(
            Token.refresh_hash == secret_digest(first["refresh_token"]))).one()
        columns = {c.key: getattr(row, c.key) for c in sa.inspect(Token).column_attrs
                   if c.key != "id"}
        session.add(Token(**{**columns, "jti": "sibling-jti",
                             "refresh_hash": secret_digest("the-sibling-refresh-token")}))
        session.commit()
    rotated = portal.refresh(first["refresh_token"])
    assert rotated.status_code == 200
    # Revoked, not rotated: refused without being taken for a reuse, so the grant stands.
    assert portal.refresh("the-sibling-refresh-token").get_json()["error"] == "invalid_grant"
    assert portal.refresh(rotated.get_json()["refresh_token"]).status_code == 200
    with app.app_context():
        sibling = get_session().scalars(sa.select(Token).where(Token.jti == "sibling-jti")).one()
        assert sibling.refresh_revoked_at is not None and sibling.refresh_used_at is None


def test_the_rotation_statement_sets_only_the_siblings_revocation() -> None:
    """The rotation's CTE is an UPDATE: a parameter named like a column would add that column to
    its SET, on every sibling. Compiled with exactly the parameters ``save`` sends."""
    from sqlalchemy.dialects import postgresql

    from idp.oidc import tokens

    keys = [f"new_{c}" for c in tokens._NEW_TOKEN_COLUMNS] + ["of_grant", "token_id", "now"]
    sql = str(tokens._ROTATE_POSTGRESQL.compile(dialect=postgresql.psycopg.dialect(), column_keys=keys))
    update, insert = sql.split(" INSERT INTO ")
    assert update.split(" SET ")[1].split(" WHERE ")[0] == \
        "refresh_revoked_at=%(now)s::TIMESTAMP WITH TIME ZONE"
    assert insert.split("(")[1].split(")")[0].split(", ") == list(tokens._NEW_TOKEN_COLUMNS)


def test_refresh_with_a_wider_scope_is_refused_and_leaves_the_token_usable(app, client,
                                                                          factory) -> None:
    portal, code = _signed_in(app, client, factory, scope="openid profile offline_access")
    first = portal.token(code).get_json()
    wider = portal.post("/token", {"grant_type": "refresh_token", "refresh_token": first["refresh_token"],
                                   "scope": "openid profile email offline_access"})
    assert wider.status_code == 400 and wider.get_json()["error"] == "invalid_scope"
    assert portal.refresh(first["refresh_token"]).status_code == 200


def test_narrowed_refresh_keeps_the_original_scope_on_the_new_refresh_token(app, client,
                                                                           factory) -> None:
    """RFC 6749 §6: the access token may be narrowed; the rotated refresh token is not."""
    portal, code = _signed_in(app, client, factory, scope="openid profile offline_access")
    first = portal.token(code).get_json()
    narrow = portal.post("/token", {"grant_type": "refresh_token",
                                    "refresh_token": first["refresh_token"], "scope": "openid"})
    body = narrow.get_json()
    assert narrow.status_code == 200 and body["scope"] == "openid" and body["refresh_token"]
    seen = portal.post("/introspect", {"token": body["refresh_token"],
                                       "token_type_hint": "refresh_token"}).get_json()
    assert set(seen["scope"].split()) == {"openid", "profile", "offline_access"}
    again = portal.refresh(body["refresh_token"]).get_json()
    assert set(again["scope"].split()) == {"openid", "profile", "offline_access"}


def _offline_tokens(app, client, factory) -> Any:
    """A citizen signed in at a portal that holds an access and a refresh token for them."""
    citizen = factory.citizen()
    portal = _portal(app, client)
    code = portal.sign_in(citizen.nik, citizen.password,
                          scope="openid profile offline_access")["code"]
    return citizen, portal, portal.token(code).get_json()


def test_password_reset_revokes_every_grant_of_the_citizen(app, client, factory) -> None:
    """Through the real pages: forgot password, the link from the outbox, a new password."""
    from tests.conftest import AuthActions
    from tests.test_login import reset_link

    citizen, portal, tokens = _offline_tokens(app, client, factory)
    anonymous = AuthActions(app.test_client())
    anonymous.form("/password/forgot", {"nik": citizen.nik})
    new_password = "mangga muda di halaman"
    reset = anonymous.form(reset_link(app, citizen.email),
                           {"password": new_password, "confirm": new_password})
    assert reset.status_code == 302
    assert portal.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info.status_code == 401


def test_operator_ending_sessions_revokes_every_grant(app, client, factory) -> None:
    citizen, portal, tokens = _offline_tokens(app, client, factory)
    result = app.test_cli_runner().invoke(args=["sessions", "end", citizen.nik])
    assert result.exit_code == 0, result.output
    assert portal.refresh(tokens["refresh_token"]).get_json()["error"] == "invalid_grant"


def test_a_portal_no_longer_registered_for_offline_access_gets_no_new_refresh_token(
        app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory, scope="openid profile offline_access")
    first = portal.token(code).get_json()
    from idp.db import get_session
    from idp.models import Client

    with app.app_context():
        row = get_session().get(Client, portal.client_id)
        row.scopes = [s for s in row.scopes if s != "offline_access"]
        get_session().commit()
    last = portal.refresh(first["refresh_token"]).get_json()
    assert "access_token" in last and "refresh_token" not in last
    assert "offline_access" not in last["scope"].split()


def test_no_refresh_token_without_offline_access(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory, scope="openid profile")
    assert "refresh_token" not in portal.token(code).get_json()


def test_revocation_and_introspection_see_only_own_tokens(app, client, factory) -> None:
    portal, code = _signed_in(app, client, factory, scope="openid profile offline_access")
    tokens = portal.token(code).get_json()
    other = _portal(app, client, client_id="other-portal")
    seen = portal.post("/introspect", {"token": tokens["access_token"]}).get_json()
    assert seen["active"] is True and seen["client_id"] == portal.client_id and seen["scope"]
    assert portal.post("/introspect", {"token": tokens["refresh_token"],
                                       "token_type_hint": "refresh_token"}).get_json()["active"] is True
    assert other.post("/introspect", {"token": tokens["access_token"]}).get_json() == {"active": False}
    unauthenticated = client.post("/introspect", data={"token": tokens["access_token"]})
    assert unauthenticated.status_code in (400, 401)
    assert portal.post("/revoke", {"token": tokens["access_token"]}).status_code == 200
    assert portal.post("/introspect", {"token": tokens["access_token"]}).get_json() == {"active": False}
    assert portal.post("/revoke", {"token": tokens["refresh_token"]}).status_code == 200
    refreshed = portal.refresh(tokens["refresh_token"])
    assert refreshed.get_json()["error"] == "invalid_grant"
    assert portal.post("/revoke", {"token": "unknown"}).status_code == 200  # RFC 7009 §2.2


def test_userinfo_refuses_missing_and_forged_tokens(client) -> None:
    response = client.get("/userinfo")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    forged = client.get("/userinfo", headers={"Authorization": "Bearer a.b.c"})
    assert forged.status_code == 401 and forged.get_json()["error"] == "invalid_token"


def test_authorization_errors_after_validation_redirect_with_iss(app, client) -> None:
    portal = _portal(app, client)
    for extra, error in (({"prompt": "none login"}, "invalid_request"),
                         ({"response_type": "token"}, "unsupported_response_type"),
                         ({"claims": "not json"}, "invalid_request"),
                         ({"request": "eyJ.x.y"}, "request_not_supported")):
        response = client.get(portal.authorize_url(**extra))
        location = response.headers.get("Location", "")
        assert location.startswith(portal.redirect_uri), (extra, response.status_code)
        assert query(location)["error"] == error and query(location)["iss"]


def test_repeated_parameters_are_refused(app, client) -> None:
    portal = _portal(app, client)
    url = portal.authorize_url() + "&" + urlencode({"state": "again"})
    assert client.get(url).status_code == 400


def _assertion(key, client_id: str, lifetime: int = 60, jti: str | None = None) -> str:
    import secrets

    from joserfc import jwt

    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": "http://127.0.0.1:5000/token",
              "iat": now, "exp": now + lifetime, "jti": jti or secrets.token_urlsafe(12)}
    return jwt.encode({"alg": "RS256"}, claims, key)


def _pkjwt_introspect(client, client_id: str, assertion: str) -> Any:
    return client.post("/introspect", data={
        "token": "nothing", "client_id": client_id,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion})


def test_private_key_jwt_assertions_are_single_use_and_short_lived(app, client) -> None:
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, private=True)
    register_portal(app, client_id="portal-kunci", token_endpoint_auth_method="private_key_jwt",
                    jwks={"keys": [key.as_dict(private=False)]})
    assertion = _assertion(key, "portal-kunci")
    assert _pkjwt_introspect(client, "portal-kunci", assertion).status_code == 200
    replay = _pkjwt_introspect(client, "portal-kunci", assertion)
    # RFC 6749 §5.2: 400 when the client did not use the Authorization header.
    assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_client"
    # An assertion that would outlive the replay memory is refused outright.
    long_lived = _assertion(key, "portal-kunci", lifetime=24 * 3600)
    refused = _pkjwt_introspect(client, "portal-kunci", long_lived).get_json()
    assert refused["error"] == "invalid_client" and "future" in refused["error_description"]
    # An hour, the common libraries' default, is accepted.
    assert _pkjwt_introspect(client, "portal-kunci", _assertion(key, "portal-kunci", 3600)).status_code == 200
    # A very long jti is accepted once like any other (stored by hash, not as a key).
    big = _assertion(key, "portal-kunci", jti="j" * 5000)
    assert _pkjwt_introspect(client, "portal-kunci", big).status_code == 200


def test_unreachable_jwks_uri_is_invalid_client_not_an_error_page(app, client) -> None:
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, private=True)
    register_portal(app, client_id="portal-jauh", token_endpoint_auth_method="private_key_jwt",
                    jwks_uri="http://127.0.0.1:9/jwks.json")
    response = _pkjwt_introspect(client, "portal-jauh", _assertion(key, "portal-jauh"))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_private_key_jwt_accepts_every_advertised_algorithm(app, client, alg: str) -> None:
    import secrets

    from joserfc import jwt
    from joserfc.jwk import ECKey, RSAKey

    assert alg in client.get("/.well-known/openid-configuration").get_json()[
        "token_endpoint_auth_signing_alg_values_supported"]
    key = ECKey.generate_key("P-256", private=True) if alg == "ES256" else RSAKey.generate_key(
        2048, private=True)
    register_portal(app, client_id="portal-alg", token_endpoint_auth_method="private_key_jwt",
                    jwks={"keys": [key.as_dict(private=False)]})
    now = int(time.time())
    claims = {"iss": "portal-alg", "sub": "portal-alg", "aud": "http://127.0.0.1:5000",
              "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(12)}
    assertion = jwt.encode({"alg": alg}, claims, key, algorithms=[alg])
    assert _pkjwt_introspect(client, "portal-alg", assertion).status_code == 200


def test_private_key_jwt_refuses_an_assertion_naming_several_audiences(app, client) -> None:
    """Audience injection (2025): an assertion must name one audience, this server's."""
    import secrets

    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, private=True)
    register_portal(app, client_id="portal-aud", token_endpoint_auth_method="private_key_jwt",
                    jwks={"keys": [key.as_dict(private=False)]})
    now = int(time.time())
    claims = {"iss": "portal-aud", "sub": "portal-aud",
              "aud": ["http://127.0.0.1:5000", "https://other-as.example"],
              "iat": now, "exp": now + 60, "jti": secrets.token_urlsafe(12)}
    response = _pkjwt_introspect(client, "portal-aud", jwt.encode({"alg": "RS256"}, claims, key))
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_client"


def test_a_retry_of_a_just_rotated_refresh_token_is_answered_then_reuse_revokes(
        backend, factory) -> None:
    """Within the grace window a portal that retries (a timeout, two refreshes at once) gets tokens;
    after it, presenting the rotated token is a reuse and revokes the family (RFC 9700 §4.14.2)."""
    import threading

    from tests.conftest import make_app

    app = make_app({**backend, "IDP_REFRESH_REUSE_GRACE_SECONDS": "2"})
    client = app.test_client()
    factory = type(factory)(app)
    portal, code = _signed_in(app, client, factory, scope="openid profile offline_access")
    first = portal.token(code).get_json()
    # Two refreshes with the same token at once: both answered, nothing revoked.
    results: list[Any] = []

    def refresh() -> None:
        results.append(Portal(app.test_client(), portal.client_id, portal.secret,
                              portal.redirect_uri).refresh(first["refresh_token"]))

    threads = [threading.Thread(target=refresh) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r.status_code for r in results] == [200, 200], [r.get_json() for r in results]
    newest = results[1].get_json()
    assert portal.refresh(newest["refresh_token"]).status_code == 200
    time.sleep(2.5)
    reuse = portal.refresh(first["refresh_token"])
    assert reuse.get_json()["error"] == "invalid_grant"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {newest['access_token']}"})
    assert info.status_code == 401  # the family is gone
    app.extensions["idp.engine"].dispose()


def test_a_code_replayed_while_its_first_redemption_is_in_flight_still_revokes(app, client,
                                                                              factory) -> None:
    """The code's grant is known from its issue: a replay that finds the code already taken (the
    first redemption still running) revokes the grant, as a replay after it does."""
    from idp import state
    from idp.db import get_session
    from idp.models import Grant
    from idp.models.base import secret_digest

    portal, code = _signed_in(app, client, factory)
    with app.app_context():
        taken = state.codes.take(secret_digest(code))  # the first redemption has just taken it
        assert taken is not None
    assert portal.token(code).get_json()["error"] == "invalid_grant"
    with app.app_context():
        grant = get_session().get(Grant, uuid.UUID(taken.grant_id))
        assert grant is not None and grant.revoked_reason == "code_replay"


def test_the_retry_window_gives_one_answer_per_rotation_and_no_second_chain(backend, factory) -> None:
    """A stolen token replayed within the window gets at most one retry, and the two chains cannot
    both live: using either revokes the other; a second retry is a reuse and revokes the grant."""
    from tests.conftest import make_app

    app = make_app({**backend, "IDP_REFRESH_REUSE_GRACE_SECONDS": "5"})
    client = app.test_client()
    portal, code = _signed_in(app, client, type(factory)(app), scope="openid profile offline_access")
    first = portal.token(code).get_json()
    rotated = portal.refresh(first["refresh_token"]).get_json()   # the portal's answer
    retry = portal.refresh(first["refresh_token"])                 # within the window: answered
    assert retry.status_code == 200
    sibling = retry.get_json()
    # The retry replaced the first answer: its refresh token no longer works (and revokes nothing).
    assert portal.refresh(rotated["refresh_token"]).get_json()["error"] == "invalid_grant"
    assert portal.refresh(sibling["refresh_token"]).status_code == 200
    # A second retry of the same rotated token is a reuse: the whole grant goes.
    assert portal.refresh(first["refresh_token"]).get_json()["error"] == "invalid_grant"
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {sibling['access_token']}"})
    assert info.status_code == 401
    app.extensions["idp.engine"].dispose()


def test_a_portals_jwks_uri_is_fetched_once_for_many_assertions(app, client) -> None:
    """Keys from a jwks_uri are kept a few minutes: requests naming a portal cannot make SatuID
    fetch its keys on every call (a lever to tie up workers)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, private=True)
    fetched: list[str] = []

    class Keys(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            body = json.dumps({"keys": [key.as_dict(private=False)]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        register_portal(app, client_id="portal-kunci-jauh", token_endpoint_auth_method="private_key_jwt",
                        jwks_uri=f"http://127.0.0.1:{server.server_address[1]}/jwks.json")
        for _ in range(3):
            response = _pkjwt_introspect(client, "portal-kunci-jauh", _assertion(key, "portal-kunci-jauh"))
            assert response.status_code == 200
        assert fetched == ["/jwks.json"]
    finally:
        server.shutdown()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)  # SQLite has no row locks to wait on
def test_a_refresh_token_revoked_while_its_claim_waits_is_refused_and_revokes_nothing(
        app, client, factory) -> None:
    """A sibling's use revokes this token while this use waits on the row's lock: the use is
    refused, and is not taken for a reuse (which would revoke the grant the winner just rotated)."""
    import threading

    import sqlalchemy as sa

    portal, code = _signed_in(app, client, factory, scope="openid profile offline_access")
    first = portal.token(code).get_json()
    engine = sa.create_engine(app.config["IDP"].database_url)
    results: list[Any] = []
    with engine.connect() as other:
        # The winner's sibling revocation, not yet committed, holds the row's lock.
        other.execute(sa.text("UPDATE oidc_token SET refresh_revoked_at = now() "
                              "WHERE refresh_hash IS NOT NULL"))
        use = threading.Thread(target=lambda: results.append(portal.refresh(first["refresh_token"])))
        use.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # until the claim waits on that lock
            # From a connection of its own: a transaction sees one snapshot of pg_stat_activity.
            with engine.connect() as watcher:
                waiting = watcher.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()")).scalar()
            if waiting:
                break
            time.sleep(0.02)
        assert waiting, "the claim never waited on the row's lock"
        other.commit()
    use.join(10)
    engine.dispose()
    assert results[0].get_json()["error"] == "invalid_grant"
    # Not a reuse: the grant stands, so its access token still works.
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {first['access_token']}"})
    assert info.status_code == 200
