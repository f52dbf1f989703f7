"""``/metrics``: counters and latency histograms from every gunicorn worker, and scrapes that never
read a large table.

Through the Flask test client (one process, plain registry) the counters move with logins, failures
and lockouts, and a scrape's SQL touches only the outbox's index and the planner's statistics.
Against gunicorn with two workers, flows served by both add up in one scrape, the token endpoint's
histogram counts every call, counters survive a worker's replacement, the bearer token still guards
the page, and on PostgreSQL the statistics collector sees no scan of ``citizen``, ``audit_event`` or
``service_rating`` while ``/metrics`` is scraped.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.values import mmap_key

from idp import audit
from idp.db import get_session, unit_of_work
from idp.models import AuditEvent
from tests.conftest import AuthActions, Factory, csrf_token, make_app, services_available
from tests.oidc_rp import pkce_pair
from tests.servers import IdpServer

TOKEN = "metrics-bearer-token-for-tests"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, read with prometheus_client's own parser."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    return parse(response.get_data(as_text=True))


# ---- one process, the Flask test client ----------------------------------------------------------

def test_logins_failures_and_lockouts_are_counted_and_requests_timed(backend: dict[str, str]) -> None:
    app = make_app({**backend, "IDP_LOGIN_MAX_FAILURES": "3"})
    factory = Factory(app)
    citizen, target = factory.citizen(), factory.citizen()
    unregistered = factory.resident()  # in the registry, without an account
    client = app.test_client()
    before = scrape(client)

    guessing = AuthActions(app.test_client())
    statuses = [guessing.login(target.nik, "not the password at all").status_code for _ in range(3)]
    assert statuses == [401, 401, 429]  # the third failure locks (limit 3)
    assert guessing.login(target.nik, target.password).status_code == 429  # paused: not even checked
    dummy_before = scrape(client)
    assert guessing.login(unregistered.nik, "whatever password").status_code == 401
    dummy = "satuid_password_hashing_cpu_seconds_total"
    # The unknown NIK's dummy check costs a verify, and is counted as one.
    assert value(scrape(client), dummy, operation="verify") > value(dummy_before, dummy,
                                                                    operation="verify")
    assert AuthActions(app.test_client()).login(citizen.nik, citizen.password).status_code == 302

    after = scrape(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("satuid_logins_total") == 1
    assert delta("satuid_login_failures_total", reason="bad_password") == 3
    assert delta("satuid_login_failures_total", reason="throttled") == 1
    assert delta("satuid_login_failures_total", reason="unknown_account") == 1
    assert delta("satuid_login_failures_total", reason="rate_limited") == 0
    assert delta("satuid_lockouts_total", factor="password") == 1
    # Five passwords checked (three wrong, the unknown NIK's dummy check, the right one), none
    # hashed: argon2's CPU is counted apart from the rest of the login's.
    assert delta("satuid_password_hashing_cpu_seconds_total", operation="verify") > 0
    assert delta("satuid_password_hashing_cpu_seconds_total", operation="hash") == 0
    # Six login forms shown, five refused, one accepted: each request timed under its endpoint.
    histogram = "satuid_http_request_duration_seconds_count"
    assert delta(histogram, endpoint="auth.login", status="2xx") == 6
    assert delta(histogram, endpoint="auth.login", status="4xx") == 5
    assert delta(histogram, endpoint="auth.login", status="3xx") == 1
    assert delta(histogram, endpoint="health.metrics", status="2xx") == 3  # the scrapes before this
    assert value(after, "satuid_http_request_duration_seconds_bucket", endpoint="auth.login",
                 status="3xx", le="+Inf") == value(after, histogram, endpoint="auth.login", status="3xx")
    # The outbox gauge counts what waits or failed; sent messages are counted as they are sent.
    assert {labels for name, labels in after if name == "satuid_outbox_messages"} == {
        frozenset({("status", status)}) for status in ("pending", "sending", "failed")}


def test_a_scrape_reads_only_indexes_the_catalog_and_statistics(app: Flask, client: FlaskClient) -> None:
    """The outbox by its status index, the newest audit checkpoint by its primary key, and on
    PostgreSQL the planner's estimates, the partitions in the catalog and the statistics collector's
    row counts: never a scan of a table that grows."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
               executemany: bool) -> None:
        statements.append((statement, parameters))

    engine: sa.Engine = app.extensions["idp.engine"]
    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.get("/metrics").status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)

    tables = {t for statement, _ in statements
              for t in re.findall(r'\b(?:FROM|JOIN)\s+"?(\w+)', statement, flags=re.IGNORECASE)}
    postgres = engine.dialect.name == "postgresql"
    assert tables == {"outbox_message", "oidc_logout_delivery", "audit_checkpoint"} | (
        {"pg_class", "pg_inherits", "pg_stat_user_tables"} if postgres else set())
    # Each table by its index. On SQLite, a search of the index; the newest checkpoint is the
    # first entry of its primary key's index read backwards (LIMIT 1).
    indexes = {"outbox_message": ("ix_outbox_message_due", "SEARCH"),
               "oidc_logout_delivery": ("ix_oidc_logout_delivery_status", "SEARCH"),
               "audit_checkpoint": ("pk_audit_checkpoint" if postgres
                                    else "sqlite_autoindex_audit_checkpoint", "SCAN")}
    for table, (index, sqlite_step) in indexes.items():
        (statement, parameters), = [(s, p) for s, p in statements if f"FROM {table}" in s]
        with engine.connect() as conn:
            if postgres:
                # Forbid sequential scans: the plan must then show that an index can answer.
                conn.exec_driver_sql("SET enable_seqscan = off")
                plan = "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement,
                                                                         parameters))
                assert index in plan and "Seq Scan" not in plan, plan
            else:
                plan = "\n".join(row[-1] for row in conn.exec_driver_sql(
                    "EXPLAIN QUERY PLAN " + statement, parameters))
                assert plan.startswith(f"{sqlite_step} {table} USING") and index in plan, plan
    if not postgres:
        assert "LIMIT" in next(s for s, _ in statements if "FROM audit_checkpoint" in s)


def test_the_audit_logs_checkpoint_and_partitions_are_gauged(app: Flask, client: FlaskClient) -> None:
    """What the alerts on the audit log read: the newest checkpoint's size and time, and on
    PostgreSQL where the monthly partitions end and whether events fell into the default one."""
    postgres = app.extensions["idp.engine"].dialect.name == "postgresql"
    before = scrape(client)
    assert not [name for name, _ in before if name.startswith("satuid_audit_checkpoint")]  # none yet

    with app.app_context():
        for i in range(3):
            with unit_of_work():
                audit.append("login", actor="citizen:x", citizen_id=None, attempt=i)
    signed_at = time.time()
    result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0, result.output
    with app.app_context():
        events = get_session().scalar(sa.text("SELECT count(*) FROM audit_event"))
    after = scrape(client)
    assert value(after, "satuid_audit_checkpoint_tree_size") == events >= 3
    assert signed_at - 1 <= value(after, "satuid_audit_checkpoint_timestamp_seconds") <= time.time()
    if not postgres:
        assert not [name for name, _ in after if name.startswith("satuid_audit_partitions")]
        return

    # The checkpointer made this month's partition and the next two: they end where the fourth
    # month begins.
    today = dt.datetime.now(dt.UTC).date()
    months = today.year * 12 + today.month - 1 + 3
    end = dt.datetime(months // 12, months % 12 + 1, 1, tzinfo=dt.UTC)
    assert value(after, "satuid_audit_partitions_end_timestamp_seconds") == end.timestamp()
    assert ("satuid_audit_default_partition_rows", frozenset()) in after  # present, and 0
    assert value(after, "satuid_audit_default_partition_rows") == 0
    with app.app_context(), unit_of_work() as session:
        session.connection().execute(AuditEvent.__table__.insert().values(
            at=end + dt.timedelta(days=40), event="late", actor="system", details={}))
        session.execute(sa.text("SELECT pg_stat_force_next_flush()"))  # counted when it commits
    assert value(scrape(client), "satuid_audit_default_partition_rows") == 1


# ---- gunicorn, two workers -----------------------------------------------------------------------

def _stale_counter_file(directory: Path) -> Path:
    """A counter file left by a process of an earlier run, claiming a thousand logins."""
    finished = os.spawnlp(os.P_NOWAIT, "true", "true")
    os.waitpid(finished, 0)
    path = directory / f"counter_{finished}.db"
    stale = MmapedDict(str(path))
    stale.write_value(mmap_key("satuid_logins", "satuid_logins_total", (), (), "Logins."), 1000.0, 0.0)
    stale.close()
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def idp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdpServer]:
    """The SQLite server makes its metrics directory itself; the PostgreSQL one is given the
    operator's (``PROMETHEUS_MULTIPROC_DIR``), where an earlier run left a file."""
    if request.param == "postgres" and not services_available():
        pytest.skip("PostgreSQL/Redis not reachable here (CI sets IDP_TEST_REQUIRE_SERVICES=1)")
    base = tmp_path_factory.mktemp(f"metrics-{request.param}")
    # The scan test ends the server's connections between requests to flush their statistics: each
    # connection is pinged before use, so none of them fails a request.
    env = {"IDP_METRICS_TOKEN": TOKEN, "IDP_IP_RATE_LIMIT": "10000", "IDP_DB_PING_AFTER_IDLE_MS": "0"}
    stale = None
    if request.param == "postgres":
        (base / "metrics").mkdir()
        stale = _stale_counter_file(base / "metrics")
        env["PROMETHEUS_MULTIPROC_DIR"] = str(base / "metrics")
    server = IdpServer(base / "instance", backend=request.param, name="metrics", extra_env=env)
    with server:
        directory = metrics_dir(server)
        if stale is None:
            assert directory.name.startswith("satuid-metrics-") and directory.is_dir()
        else:
            assert directory == base / "metrics" and not stale.exists()
        yield server
    assert directory.exists() == (stale is not None)  # the server's own is removed when it stops


@pytest.fixture(scope="module")
def portal(idp: IdpServer) -> dict[str, str]:
    import json

    out = idp.flask("clients", "create", "--name", "Portal Metrik", "--client-id", "portal-metrik",
                    "--redirect-uri", "https://metrik.example.id/cb", "--scope",
                    "openid profile offline_access")
    return dict(json.loads(out))


@pytest.fixture(scope="module")
def citizens(idp: IdpServer) -> list[dict[str, Any]]:
    import json

    lines = [json.loads(line) for line in idp.seed_output.splitlines()]
    return [line for line in lines if "password" in line and "totp_secret" not in line]


def workers(idp: IdpServer) -> set[int]:
    assert idp.process is not None
    master = idp.process.pid
    return {int(pid) for pid in Path(f"/proc/{master}/task/{master}/children").read_text().split()}


def metrics_dir(idp: IdpServer) -> Path:
    """The directory the workers keep their values in: where their counter files are mapped (once
    a worker has loaded the app)."""
    deadline = time.monotonic() + 30
    while True:
        found = set()
        for pid in workers(idp):
            maps = Path(f"/proc/{pid}/maps").read_text().split()
            found |= {Path(m).parent for m in maps if m.endswith(f"/counter_{pid}.db")}
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(found) == 1, f"no single metrics directory (multiprocess mode?): {found}"
    return found.pop()


def logins_in(path: Path) -> float:
    """What one process's counter file says about logins."""
    return sum(s.value for m in MultiProcessCollector.merge([str(path)]) for s in m.samples
               if s.name == "satuid_logins_total")


def get_metrics(idp: IdpServer) -> Samples:
    response = requests.get(idp.url + "/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert response.status_code == 200, response.text[:300]
    return parse(response.text)


def sign_in(idp: IdpServer, portal: dict[str, str], citizen: dict[str, Any]) -> dict[str, Any]:
    """The authorization code flow as a browser and a portal run it; every request on a new
    connection, so that either worker may take it."""
    browser = requests.Session()
    browser.headers["Connection"] = "close"
    verifier, challenge = pkce_pair()
    redirect_uri = "https://metrik.example.id/cb"
    params = {"response_type": "code", "client_id": portal["client_id"], "redirect_uri": redirect_uri,
              "scope": "openid profile offline_access", "state": secrets.token_urlsafe(8),
              "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
              "code_challenge_method": "S256"}
    response = browser.get(f"{idp.url}/authorize?{urlencode(params)}", allow_redirects=False, timeout=10)
    for _ in range(10):
        assert response.status_code in (302, 303), (response.status_code, response.text[:300])
        location = urljoin(response.url, response.headers["Location"])
        if location.startswith(redirect_uri):
            break
        path, query = urlsplit(location).path, parse_qs(urlsplit(location).query)
        if path in ("/login", "/consent"):
            page = browser.get(location, timeout=10)
            form = {"csrf_token": csrf_token(page.text), "interaction": query["interaction"][0]}
            form |= ({"nik": citizen["nik"], "password": citizen["password"], "next": ""}
                     if path == "/login" else {"decision": "approve"})
            response = browser.post(idp.url + path, data=form, allow_redirects=False, timeout=10)
        else:
            response = browser.get(location, allow_redirects=False, timeout=10)
    else:
        raise AssertionError("the flow did not reach the portal")
    code = parse_qs(urlsplit(location).query)["code"][0]
    token = requests.post(idp.url + "/token", auth=(portal["client_id"], portal["client_secret"]),
                          data={"grant_type": "authorization_code", "code": code,
                                "redirect_uri": redirect_uri, "code_verifier": verifier},
                          headers={"Connection": "close"}, timeout=10)
    assert token.status_code == 200, token.text
    return dict(token.json())


def test_the_bearer_token_guards_the_page(idp: IdpServer) -> None:
    assert requests.get(idp.url + "/metrics", timeout=10).status_code == 401
    assert requests.get(idp.url + "/metrics", headers={"Authorization": "Bearer wrong"},
                        timeout=10).status_code == 401
    assert value(get_metrics(idp), "satuid_logins_total") >= 0


def test_counts_from_both_workers_add_up_and_survive_a_worker_restart(
        idp: IdpServer, portal: dict[str, str], citizens: list[dict[str, Any]]) -> None:
    directory = metrics_dir(idp)
    assert len(workers(idp)) == 2
    flows, refreshes, logins = [], 0, 0
    for citizen in citizens:  # one at a time first: each citizen consents once
        flows.append(sign_in(idp, portal, citizen))
    with ThreadPoolExecutor(max_workers=6) as pool:
        for _ in range(5):
            flows += pool.map(lambda c: sign_in(idp, portal, c), citizens * 2)
            logins = {pid: logins_in(directory / f"counter_{pid}.db") for pid in workers(idp)}
            if all(logins.values()):
                break
    assert all(logins.values()), f"one worker served every login: {logins}"
    for token in flows[:3]:
        refreshed = requests.post(idp.url + "/token", auth=(portal["client_id"], portal["client_secret"]),
                                  data={"grant_type": "refresh_token",
                                        "refresh_token": token["refresh_token"]}, timeout=10)
        assert refreshed.status_code == 200, refreshed.text
        refreshes += 1
    refused = requests.post(idp.url + "/token", auth=(portal["client_id"], portal["client_secret"]),
                            data={"grant_type": "authorization_code", "code": "no-such-code",
                                  "redirect_uri": "https://metrik.example.id/cb"}, timeout=10)
    assert refused.status_code == 400
    for _ in range(2):
        page = requests.Session()
        form = page.get(idp.url + "/login", timeout=10)
        assert page.post(idp.url + "/login", data={
            "csrf_token": csrf_token(form.text), "nik": citizens[0]["nik"], "password": "wrong-password-1",
            "next": ""}, timeout=10).status_code == 401

    metrics = get_metrics(idp)
    n = len(flows)
    every_file = sum(logins_in(Path(f)) for f in glob.glob(str(directory / "counter_*.db")))
    assert value(metrics, "satuid_logins_total") == n == every_file
    assert value(metrics, "satuid_login_failures_total", reason="bad_password") == 2
    assert value(metrics, "satuid_authorizations_total", outcome="code") == n
    # A login page per flow, and a consent page for each citizen's first.
    assert value(metrics, "satuid_authorizations_total", outcome="interaction") == n + len(citizens)
    assert value(metrics, "satuid_tokens_issued_total", grant_type="authorization_code") == n
    assert value(metrics, "satuid_tokens_issued_total", grant_type="refresh_token") == refreshes
    histogram = "satuid_http_request_duration_seconds"
    assert value(metrics, histogram + "_count", endpoint="oidc.token", status="2xx") == n + refreshes
    assert value(metrics, histogram + "_bucket", endpoint="oidc.token", status="2xx",
                 le="+Inf") == n + refreshes
    assert value(metrics, histogram + "_count", endpoint="oidc.token", status="4xx") == 1
    assert 0 < value(metrics, histogram + "_sum", endpoint="oidc.token", status="2xx") < 10 * (n + refreshes)

    # A worker replaced: what it counted stays counted.
    gone = min(workers(idp))
    os.kill(gone, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (gone in workers(idp) or len(workers(idp)) != 2):
        time.sleep(0.2)
    assert gone not in workers(idp) and len(workers(idp)) == 2
    assert (directory / f"counter_{gone}.db").exists()
    after = get_metrics(idp)
    assert value(after, "satuid_logins_total") == n
    assert value(after, histogram + "_count", endpoint="oidc.token", status="2xx") == n + refreshes


# ---- PostgreSQL: what a scrape reads -------------------------------------------------------------

WATCHED = ("citizen", "audit_event", "service_rating")


def _admin(idp: IdpServer) -> sa.Engine:
    return sa.create_engine(idp.env()["IDP_DATABASE_URL"], isolation_level="AUTOCOMMIT")


def _flush_statistics(engine: sa.Engine) -> None:
    """End the server's connections: a backend that exits writes out its statistics at once (an
    idle one may hold them for seconds). The server's pool reconnects on its next request."""
    with engine.connect() as conn:
        others = "datname = current_database() AND pid <> pg_backend_pid()"
        conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {others}"))
        deadline = time.monotonic() + 10
        while conn.scalar(sa.text(f"SELECT count(*) FROM pg_stat_activity WHERE {others}")):
            assert time.monotonic() < deadline, "the server's connections did not end"
            time.sleep(0.05)


def _scans(engine: sa.Engine) -> dict[str, int]:
    """Sequential and index scans of each watched table, its partitions (audit_event) included."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
        rows = conn.execute(sa.text(
            "SELECT coalesce(parent.relname, s.relname), s.seq_scan + coalesce(s.idx_scan, 0) "
            "FROM pg_stat_user_tables s LEFT JOIN pg_inherits i ON i.inhrelid = s.relid "
            "LEFT JOIN pg_class parent ON parent.oid = i.inhparent")).all()
    totals = dict.fromkeys(WATCHED, 0)
    for table, scans in rows:
        if table in totals:
            totals[table] += int(scans)
    return totals


@pytest.mark.parametrize("idp", ["postgres"], indirect=True)  # PostgreSQL's statistics views
def test_scraping_scans_no_citizen_audit_or_rating_table(idp: IdpServer,
                                                          citizens: list[dict[str, Any]]) -> None:
    engine = _admin(idp)
    try:
        _flush_statistics(engine)
        start = _scans(engine)
        # The measure sees the server's reads: a login looks the citizen up.
        page = requests.Session()
        form = page.get(idp.url + "/login", timeout=10)
        assert page.post(idp.url + "/login", data={
            "csrf_token": csrf_token(form.text), "nik": citizens[0]["nik"],
            "password": citizens[0]["password"], "next": ""}, allow_redirects=False,
            timeout=10).status_code == 302
        _flush_statistics(engine)
        after_login = _scans(engine)
        assert after_login["citizen"] > start["citizen"], (start, after_login)

        for _ in range(5):
            metrics = get_metrics(idp)
            assert value(metrics, "satuid_outbox_messages", status="pending") >= 0
        _flush_statistics(engine)
        assert _scans(engine) == after_login
    finally:
        engine.dispose()
