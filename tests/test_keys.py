"""Signing keys: encrypted at rest, published before they sign, retired after their tokens expire."""

from __future__ import annotations

import datetime as dt

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import select

from tests.oidc_rp import Portal, register_portal


def _states(app) -> dict[str, str]:
    from idp.db import get_session
    from idp.models import SigningKey

    with app.app_context():
        return {k.kid: k.state for k in get_session().scalars(
            select(SigningKey).where(SigningKey.alg == "RS256"))}


def test_private_keys_are_encrypted_at_rest(app, client) -> None:
    client.get("/jwks")
    from idp.db import get_session
    from idp.models import SigningKey

    with app.app_context():
        for row in get_session().scalars(select(SigningKey)):
            assert '"d"' not in row.private_encrypted and row.private_encrypted.startswith("gAAAA")
            assert "d" not in row.public_jwk


def test_rotation_publishes_next_before_it_signs_and_keeps_old_tokens_valid(app, client, factory) -> None:
    citizen = factory.citizen()
    info = register_portal(app)
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    result = portal.sign_in(citizen.nik, citizen.password)
    before = portal.token(result["code"]).get_json()
    jwks_before = client.get("/jwks").get_json()
    published_before = {k["kid"] for k in jwks_before["keys"]}
    states = _states(app)
    next_kid = next(k for k, s in states.items() if s == "next")
    assert next_kid in published_before  # published before it signs anything

    output = app.test_cli_runner().invoke(args=["keys", "rotate"]).output
    assert f"{next_kid} now signs" in output
    result = portal.sign_in(scope="openid profile")
    after = portal.token(result["code"]).get_json()
    new_header = jwt.decode(after["id_token"], KeySet.import_key_set(jwks_before)).header
    assert new_header["kid"] == next_kid  # an RP holding the old JWKS validates the new token
    jwks_after = KeySet.import_key_set(client.get("/jwks").get_json())
    jwt.decode(before["id_token"], jwks_after)  # and the old token still validates
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {before['access_token']}"})
    assert info.status_code == 200


def test_retired_keys_leave_the_jwks_after_the_longest_token_lifetime(app, client) -> None:
    client.get("/jwks")
    runner = app.test_cli_runner()
    runner.invoke(args=["keys", "rotate"])
    retired = [k for k, s in _states(app).items() if s == "retired"]
    assert retired and retired[0] in {k["kid"] for k in client.get("/jwks").get_json()["keys"]}
    from idp import clock

    try:
        clock.advance(24 * 3600)  # every token the retired key signed has expired
        assert retired[0] not in {k["kid"] for k in client.get("/jwks").get_json()["keys"]}
        runner.invoke(args=["keys", "rotate"])
        assert _states(app)[retired[0]] == "removed"
    finally:
        clock.reset()


def test_two_workers_creating_keys_at_once_leave_one_current_key(app) -> None:
    """Workers start together on an empty database: each finds no keys; they queue on a lock, the
    first creates the keys and the others find them."""
    import threading

    from sqlalchemy.orm import Session

    from idp.db import get_session
    from idp.models import SigningKey
    from idp.oidc import keys

    with app.app_context():
        engine = get_session().get_bind()

        def worker() -> None:
            with app.app_context(), Session(engine) as session:
                keys.ensure_keys(session)
                session.commit()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with Session(engine) as check:
            live = sorted(check.execute(select(SigningKey.alg, SigningKey.state)
                                        .where(SigningKey.state != "retired")).all())
        assert live == [("ES256", "current"), ("ES256", "next"), ("RS256", "current"), ("RS256", "next")]
        assert keys.signing_key(get_session(), "RS256") is not None
        assert keys.rotate(get_session())
        get_session().commit()
        assert sorted(_states(app).values()) == ["current", "next", "retired"]


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_migration_keeps_one_live_key_where_a_race_left_two(kind: str, tmp_path) -> None:
    """A database from before the unique index, holding the duplicate keys that race left."""
    import sqlalchemy as sa
    from alembic import command

    from idp.cli import alembic_config
    from tests.conftest import old_database

    with old_database(kind, tmp_path, "0003_mfa") as url:
        engine = sa.create_engine(url)
        insert = sa.text("INSERT INTO oidc_signing_key (kid, alg, state, public_jwk, private_encrypted,"
                         " created_at) VALUES (:kid, 'RS256', :state, '{}', 'x', :at)")
        with engine.begin() as conn:
            for kid, state in [("a", "current"), ("b", "current"), ("c", "next"), ("d", "next")]:
                conn.execute(insert, {"kid": kid, "state": state,
                                      "at": dt.datetime.now(dt.UTC)})
        command.upgrade(alembic_config(url), "head")
        with engine.connect() as conn:
            states = dict(conn.execute(sa.text("SELECT kid, state FROM oidc_signing_key")).all())
            retired_at = conn.execute(sa.text(
                "SELECT retired_at FROM oidc_signing_key WHERE kid = 'a'")).scalar()
        engine.dispose()
        assert states == {"a": "retired", "b": "current", "c": "retired", "d": "next"}
        assert retired_at is not None
