"""The connection pool pings a connection only after it has sat idle, and replaces one that died
while idle, so a request never fails on a connection the server closed long ago."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from idp.db import engine_of
from tests.conftest import Factory, make_app
from tests.oidc_rp import Portal, register_portal

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


def _with_window(backend: dict[str, str], ms: int) -> Iterator[Flask]:
    app = make_app({**backend, "IDP_DB_PING_AFTER_IDLE_MS": str(ms)}, TESTING=True)
    yield app
    engine_of(app).dispose()


@pytest.fixture
def always_ping(backend: dict[str, str]) -> Iterator[Flask]:
    """An app whose pool pings every connection it hands out (as ``pool_pre_ping``)."""
    yield from _with_window(backend, 0)


@pytest.fixture
def never_ping(backend: dict[str, str]) -> Iterator[Flask]:
    """An app whose pool takes every connection for just returned: a busy worker's."""
    yield from _with_window(backend, 3_600_000)


def count_pings(app: Flask, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the dialect's pings (the real ones run)."""
    dialect = engine_of(app).dialect
    seen: list[int] = []
    real = dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        seen.append(1)
        return real(dbapi_conn)

    monkeypatch.setattr(dialect, "do_ping", counted)
    return seen


def _backend_pids(app: Flask) -> set[int]:
    """The server processes behind the pool's connections (one per connection the pool holds)."""
    engine = engine_of(app)
    with engine.connect() as conn:
        name = conn.execute(text("SELECT current_database()")).scalar_one()
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> "
                             "pg_backend_pid()", (name,)).fetchall()
    return {row[0] for row in rows}


def test_busy_connections_skip_the_ping(app: Flask, client: FlaskClient,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    pings = count_pings(app, monkeypatch)
    assert client.get("/.well-known/openid-configuration").status_code == 200
    client.get("/healthz")  # opens the pool's connection
    pings.clear()
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    assert pings == []  # each checkout came right after the previous checkin


def test_idle_connection_is_pinged_and_replaced_when_dead(
        always_ping: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    app, client = always_ping, always_ping.test_client()
    assert client.get("/healthz").status_code == 200
    victims = _backend_pids(app)
    assert victims
    url = engine_of(app).url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        for pid in victims:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    pings = count_pings(app, monkeypatch)
    health = client.get("/healthz")
    assert health.status_code == 200, health.get_data(as_text=True)
    assert pings  # the dead connection was pinged, failed, and a fresh one served the request
    assert not victims & _backend_pids(app)


def _kill_connections(app: Flask) -> None:
    """What a PostgreSQL restart does to the pool: every connection it holds is closed by the server."""
    victims = _backend_pids(app)
    url = engine_of(app).url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        for pid in victims:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def test_a_code_survives_a_restart_between_requests(never_ping: Flask) -> None:
    """On a busy worker (no ping), the first statement after a restart fails: at the token endpoint
    that happens before the code is spent, so the portal's retry gets its tokens and the grant is not
    revoked as a replay."""
    app, client = never_ping, never_ping.test_client()
    citizen = Factory(app).citizen()
    info = register_portal(app, client_id="portal-restart")
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    code = portal.sign_in(citizen.nik, citizen.password)["code"]
    _kill_connections(app)
    failed = portal.token(code)
    assert failed.status_code == 503 and failed.get_json()["error"] == "temporarily_unavailable"
    retried = portal.token(code)
    assert retried.status_code == 200, retried.get_data(as_text=True)
    with engine_of(app).connect() as conn:
        revoked = conn.execute(text("SELECT count(*) FROM oidc_grant WHERE revoked_at IS NOT NULL")
                               ).scalar_one()
    assert revoked == 0


def test_a_failure_at_commit_answers_503(never_ping: Flask) -> None:
    """A request whose first statement is its commit (the audit rows) still answers 503, not 500."""
    app, client = never_ping, never_ping.test_client()
    citizen = Factory(app).citizen()
    info = register_portal(app, client_id="portal-commit")
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    code = portal.sign_in(citizen.nik, citizen.password)["code"]
    other = register_portal(app, client_id="portal-other")
    unknown = client.post("/token", data={"grant_type": "authorization_code", "code": "unknown",
                                          "redirect_uri": other["redirect_uri"],
                                          "code_verifier": "x" * 43},
                          auth=(other["client_id"], other["secret"]))
    assert unknown.status_code == 400  # the portal is now in the worker's cache
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: errors go to the handlers
    _kill_connections(app)
    # Another portal presenting this code: refused with an audit row, and no statement before it.
    r = client.post("/token", data={"grant_type": "authorization_code", "code": code,
                                    "redirect_uri": other["redirect_uri"], "code_verifier": "x" * 43},
                    auth=(other["client_id"], other["secret"]))
    assert r.status_code == 503, r.get_data(as_text=True)
    assert r.get_json()["error"] == "temporarily_unavailable"


@pytest.mark.parametrize("threshold, runs, prepared", [("0", 1, True), ("off", 8, False),
                                                     ("OFF", 8, False)])
def test_statements_are_prepared_unless_a_pooler_needs_them_not(
        backend: dict[str, str], threshold: str, runs: int, prepared: bool) -> None:
    """The threshold reaches psycopg: at 0 a statement is prepared on the server the first time
    (psycopg's own default waits for the fifth); ``off`` prepares none however often it runs, for a
    pooler that would send the next transaction's EXECUTE to a server connection that never saw the
    PREPARE. ``pg_prepared_statements`` lists the prepared statements of its own session."""
    app = make_app({**backend, "IDP_DB_PREPARE_THRESHOLD": threshold}, TESTING=True)
    citizen = Factory(app).citizen()
    try:
        with engine_of(app).connect() as conn:
            for _ in range(runs):
                conn.execute(text("SELECT nik FROM citizen WHERE id = :id"), {"id": citizen.id})
            names = conn.execute(text("SELECT statement FROM pg_prepared_statements")).scalars().all()
        assert any("FROM citizen WHERE id" in name for name in names) == prepared, names
    finally:
        engine_of(app).dispose()


def test_a_prepare_threshold_that_is_not_a_number_is_refused(backend: dict[str, str]) -> None:
    from idp.config import ConfigError

    for wrong in ("never", "-1"):
        with pytest.raises(ConfigError, match="IDP_DB_PREPARE_THRESHOLD"):
            make_app({**backend, "IDP_DB_PREPARE_THRESHOLD": wrong})
