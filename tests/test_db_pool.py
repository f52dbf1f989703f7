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

from idp import db
from idp.db import engine_of

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


@pytest.fixture
def pings(app: Flask, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the dialect's pings (the real ones run)."""
    dialect = engine_of(app).dialect
    seen: list[int] = []
    real = dialect.do_ping

    def counted(dbapi_conn: Any) -> bool:
        seen.append(1)
        return real(dbapi_conn)

    monkeypatch.setattr(dialect, "do_ping", counted)
    yield seen


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


def test_busy_connections_skip_the_ping(app: Flask, client: FlaskClient, pings: list[int]) -> None:
    assert client.get("/.well-known/openid-configuration").status_code == 200
    client.get("/healthz")  # opens the pool's connection
    pings.clear()
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    assert pings == []  # each checkout came right after the previous checkin


def test_idle_connection_is_pinged_and_replaced_when_dead(
        app: Flask, client: FlaskClient, pings: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    assert client.get("/healthz").status_code == 200
    victims = _backend_pids(app)
    assert victims
    url = engine_of(app).url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as admin:
        for pid in victims:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)  # every pooled connection counts as idle
    pings.clear()
    health = client.get("/healthz")
    assert health.status_code == 200, health.get_data(as_text=True)
    assert pings  # the dead connection was pinged, failed, and a fresh one served the request
    assert not victims & _backend_pids(app)
