"""When PostgreSQL or Redis is down: a readable 503 with Retry-After, an OAuth error to the portal
where its redirect_uri can be checked, JSON 503 at the API, nothing half-written, and recovery
without restarting SatuID. The test stops and starts servers of its own, never the shared ones."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event, func, select

from idp import metrics
from idp.cache import Cache
from idp.db import get_session
from idp.models import Client
from idp.oidc import clients
from tests.conftest import REQUIRE_SERVICES, TEST_SETTINGS, Factory, make_app, migrate
from tests.oidc_rp import Portal, query, register_portal
from tests.servers import PG_BIN, OwnPostgres, OwnRedis
from tests.test_metrics import parse, value


@pytest.fixture
def services(tmp_path: Path) -> Iterator[tuple[OwnPostgres, OwnRedis]]:
    if not (PG_BIN / "initdb").exists() or shutil.which("redis-server") is None:
        if REQUIRE_SERVICES:
            raise RuntimeError("the outage tests need PostgreSQL's server binaries and redis-server")
        pytest.skip("no PostgreSQL server binaries or redis-server here")
    # Under /tmp itself: pytest's own folders are private to root, and PostgreSQL runs as postgres.
    directory = Path(tempfile.mkdtemp(prefix="satuid-pg-"))
    postgres = OwnPostgres(directory).init()
    redis = OwnRedis().start()
    try:
        yield postgres, redis
    finally:
        redis.stop()
        with contextlib.suppress(Exception):
            postgres.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def outage_app(services: tuple[OwnPostgres, OwnRedis], tmp_path: Path) -> Iterator[Flask]:
    postgres, redis = services
    migrate(postgres.url)
    app = make_app({"IDP_INSTANCE_PATH": str(tmp_path / "instance"), "IDP_DATABASE_URL": postgres.url,
                    "IDP_REDIS_URL": redis.url, "IDP_REDIS_PREFIX": "outage:", **TEST_SETTINGS})
    yield app
    app.extensions["idp.engine"].dispose()


def durable(app: Flask) -> dict[str, int]:
    from idp.db import get_session
    from idp.models import AuditEvent, ConsentRecord, Grant, Token

    with app.app_context():
        s = get_session()
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m)) or 0
                for m in (Grant, Token, ConsentRecord, AuditEvent)}


def assert_unavailable_page(response: Any) -> None:
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert response.mimetype == "text/html"


def test_redis_down_then_back(services: tuple[OwnPostgres, OwnRedis], outage_app: Flask,
                              monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _postgres, redis = services
    client = outage_app.test_client()
    citizen = Factory(outage_app).citizen()
    info = register_portal(outage_app, client_id="portal-padam")
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    first = portal.sign_in(citizen.nik, citizen.password, scope="openid offline_access")
    refresh_token = portal.token(first["code"]).get_json()["refresh_token"]
    before = durable(outage_app)

    unavailable = metrics.REGISTRY.get_sample_value("satuid_authorizations_total",
                                                    {"outcome": "unavailable"}) or 0.0
    errors = metrics.REGISTRY.get_sample_value("satuid_authorizations_total", {"outcome": "error"})
    loaded: list[str] = []
    cache: Cache[str, str] = Cache(blind_max_age=0.3)

    def use() -> None:
        with outage_app.app_context():  # a request's context: the store is asked afresh
            cache.get("portal", loaded.append)

    use()
    use()
    assert loaded == ["portal"]  # filled under the store's mark
    redis.stop()
    r = client.get(portal.authorize_url())
    assert r.status_code == 302 and r.headers["Location"].startswith(portal.redirect_uri)
    sent = query(r.headers["Location"])
    assert sent["error"] == "temporarily_unavailable" and sent["state"] == portal.last["state"]
    assert sent["iss"] == "http://127.0.0.1:5000"
    unknown = client.get("/authorize", query_string={"client_id": "nobody", "redirect_uri": "https://x/cb",
                                                     "response_type": "code", "scope": "openid"})
    assert_unavailable_page(unknown)  # no trustworthy redirect_uri: the page
    # The log's public face stays up without the store that counts its requests.
    assert client.get("/audit/checkpoint").status_code == 404  # a fresh log: none signed yet
    # Both answers are counted as the outage they are, not as the portals' errors.
    assert metrics.REGISTRY.get_sample_value("satuid_authorizations_total",
                                             {"outcome": "unavailable"}) == unavailable + 2
    assert metrics.REGISTRY.get_sample_value("satuid_authorizations_total",
                                             {"outcome": "error"}) == errors
    page = client.get("/login")
    assert_unavailable_page(page)
    assert "sementara" in page.get_data(as_text=True)  # Indonesian by default
    assert "temporarily unavailable" in client.get("/login?lang=en").get_data(as_text=True)
    # Codes live in Redis: redeeming one must wait. (A refresh needs only PostgreSQL and goes on.)
    token = client.post("/token", data={"grant_type": "authorization_code", "code": "x",
                                        "redirect_uri": portal.redirect_uri, "code_verifier": "v" * 43},
                        auth=(portal.client_id, portal.secret))
    assert token.status_code == 503 and token.get_json()["error"] == "temporarily_unavailable"
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["checks"] == {"database": "ok", "store": "unavailable"}
    assert durable(outage_app) == before  # nothing half-written
    scraped = client.get("/metrics")  # the outage is in the scrape, for the alerts
    assert scraped.status_code == 200
    samples = parse(scraped.get_data(as_text=True))
    assert value(samples, "satuid_store_up") == 0 and value(samples, "satuid_database_up") == 1

    # A refresh needs only PostgreSQL and goes on. No change can be announced meanwhile, so the
    # worker keeps the portal and the signing keys for a few seconds, not for the outage, and not
    # for no time at all (a query for each on every grant).
    read: list[str] = []

    def reads(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        read.extend(t for t in ("FROM oidc_client", "FROM oidc_signing_key") if t in statement)

    engine = outage_app.extensions["idp.engine"]
    event.listen(engine, "before_cursor_execute", reads)
    try:
        for _ in range(3):
            refreshed = portal.refresh(refresh_token)
            assert refreshed.status_code == 200, refreshed.get_json()
            refresh_token = refreshed.get_json()["refresh_token"]
    finally:
        event.remove(engine, "before_cursor_execute", reads)
    # Read at most once each (none when an earlier request of the outage read them).
    assert read.count("FROM oidc_client") <= 1 and read.count("FROM oidc_signing_key") <= 1, read

    # An operator disables the portal meanwhile: it commits, the news cannot be sent (the log says
    # what to do), and the worker stops honouring the portal once its few seconds are up.
    monkeypatch.setattr(clients._cached, "_blind_max_age", 0.3)
    with caplog.at_level(logging.WARNING, logger="idp.cache"):
        out = outage_app.test_cli_runner().invoke(args=["clients", "disable", portal.client_id])
    assert out.exit_code == 0, out.output
    assert "store drop-caches" in caplog.text
    time.sleep(0.4)
    refused = portal.refresh(refresh_token)
    assert refused.status_code == 401 and refused.get_json()["error"] == "invalid_client"
    # Telling the workers by hand waits for the store, and says so.
    out = outage_app.test_cli_runner().invoke(args=["store", "drop-caches"])
    assert out.exit_code != 0 and "cannot be reached" in out.output
    # A cache filled before the outage started again when the store went: its value is loaded
    # anew, kept for those seconds only, and dropped once the store is back.
    use()
    use()
    assert loaded == ["portal", "portal"]
    time.sleep(0.4)
    use()
    assert loaded == ["portal", "portal", "portal"]

    redis.start()  # the same port; it kept nothing, so the SSO session is gone
    assert client.get("/healthz").status_code == 200
    assert value(parse(client.get("/metrics").get_data(as_text=True)), "satuid_store_up") == 1
    use()  # the store is back with a mark: what was kept blind goes
    assert len(loaded) == 4
    with outage_app.app_context():
        get_session().get(Client, portal.client_id).active = True  # type: ignore[union-attr]
        get_session().commit()
    r = client.get(portal.authorize_url())
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


def test_a_worker_that_met_a_redis_outage_tells_every_worker_when_it_is_back(
        services: tuple[OwnPostgres, OwnRedis], tmp_path: Path) -> None:
    """Redis cut off for a while and back with its data: the old mark would tell a worker that met
    no outage that nothing changed, though a change may have committed unannounced meanwhile. The
    first process to read the store again after meeting the outage announces a new mark."""
    from idp import cache, state

    postgres, _redis = services
    kept = OwnRedis(keep_in=tmp_path).start()
    migrate(postgres.url)
    app = make_app({"IDP_INSTANCE_PATH": str(tmp_path / "instance"), "IDP_DATABASE_URL": postgres.url,
                    "IDP_REDIS_URL": kept.url, **TEST_SETTINGS})
    try:
        with app.app_context():
            before = cache.generation()
        assert before is not None
        kept.stop()
        with app.app_context():
            assert cache.generation() is None  # this process meets the outage
        kept.start()
        with app.app_context():
            # The store came back with its data: a worker that met nothing would see no change.
            survived = state.cache_generation.get("generation")
            assert survived is not None and survived.v == before
        with app.app_context():
            after = cache.generation()
        assert after not in (None, before)
        with app.app_context():
            assert state.cache_generation.get("generation") == state.Generation(after)
            assert cache.generation() == after  # announced once, not on every read

        # Another outage, and another process announces first: this one takes that mark and
        # announces nothing more (every announcement drops every worker's caches).
        kept.stop()
        with app.app_context():
            assert cache.generation() is None
        kept.start()
        with app.app_context():
            state.cache_generation.put(state.Generation("from-another-worker"), "generation")
        with app.app_context():
            assert cache.generation() == "from-another-worker"
        with app.app_context():
            assert state.cache_generation.get("generation") == state.Generation("from-another-worker")
    finally:
        app.extensions["idp.engine"].dispose()
        kept.stop()


def test_postgres_down_then_back(services: tuple[OwnPostgres, OwnRedis], outage_app: Flask) -> None:
    postgres, _redis = services
    client: FlaskClient = outage_app.test_client()
    citizen = Factory(outage_app).citizen()
    info = register_portal(outage_app, client_id="portal-padam")
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    first = portal.sign_in(citizen.nik, citizen.password)
    tokens = portal.token(first["code"]).get_json()
    before = durable(outage_app)

    postgres.stop()
    assert_unavailable_page(client.get(portal.authorize_url()))  # the portal cannot be checked
    assert_unavailable_page(client.get("/account"))
    for path, data in (("/token", {"grant_type": "authorization_code", "code": "x"}),
                       ("/introspect", {"token": "x"}), ("/revoke", {"token": "x"})):
        r = client.post(path, data=data, auth=(portal.client_id, portal.secret))
        assert r.status_code == 503 and r.get_json()["error"] == "temporarily_unavailable", path
    info_r = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert info_r.status_code == 503 and info_r.headers["Retry-After"]
    health = client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["checks"]["database"] == "unavailable"
    # The scrape still answers, with the outage in it: the alerts need it most now.
    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    samples = parse(scraped.get_data(as_text=True))
    assert value(samples, "satuid_database_up") == 0
    assert value(samples, "satuid_http_request_duration_seconds_count", endpoint="oidc.token",
                 status="5xx") >= 1
    assert not [name for name, _ in samples if name == "satuid_outbox_messages"]  # not read

    postgres.start()
    assert client.get("/healthz").status_code == 200
    assert value(parse(client.get("/metrics").get_data(as_text=True)), "satuid_database_up") == 1
    assert durable(outage_app) == before  # nothing half-written while it was down
    # The SSO session lived in Redis: the portal signs the citizen in again without a login.
    again = client.get(portal.authorize_url(prompt="none"))
    assert again.status_code == 302 and "code=" in again.headers["Location"]
