"""The short-lived store on a Redis Cluster of the test's own (three masters): every operation, with
keys spread over every master; a whole login and authorization code flow, any step on any worker;
records of a TOGETHER group in one slot; and a master stopped, then all of them, answered 503 with
/healthz saying the store is unavailable, never a 500."""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from redis.cluster import RedisCluster, key_slot

from idp.config import ConfigError
from idp.store import RedisStore
from tests import test_store as parity
from tests.conftest import REQUIRE_SERVICES, TEST_SETTINGS, Factory, csrf_token, make_app, redis_prefix
from tests.oidc_rp import Portal, query, register_portal
from tests.redis_cluster import OwnRedisCluster, cluster_binaries_present


def _own_cluster() -> OwnRedisCluster:
    if not cluster_binaries_present():
        if REQUIRE_SERVICES:
            raise RuntimeError("the Redis Cluster tests need redis-server and redis-cli")
        pytest.skip("no redis-server or redis-cli here")
    return OwnRedisCluster().start()


@pytest.fixture(scope="module")
def cluster() -> Iterator[OwnRedisCluster]:
    own = _own_cluster()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
def failing_cluster() -> Iterator[OwnRedisCluster]:
    """A cluster of the test's own that the test takes down."""
    own = _own_cluster()
    try:
        yield own
    finally:
        own.stop()


def cluster_env(cluster: OwnRedisCluster, tmp_path: Path, sqlite_template: Path) -> dict[str, str]:
    """Durable data in the embedded database, short-lived state on the cluster only."""
    (tmp_path / "instance").mkdir(exist_ok=True)
    db = tmp_path / "instance" / "satuid.db"
    if not db.exists():
        shutil.copy(sqlite_template, db)
    return {"IDP_INSTANCE_PATH": str(tmp_path / "instance"), "IDP_DATABASE_URL": f"sqlite:///{db}",
            "IDP_REDIS_URL": cluster.url, "IDP_REDIS_PREFIX": redis_prefix(), **TEST_SETTINGS}


@pytest.fixture
def cluster_app(cluster: OwnRedisCluster, tmp_path: Path, sqlite_template: Path) -> Iterator[Flask]:
    app = make_app(cluster_env(cluster, tmp_path, sqlite_template))
    yield app
    app.extensions["idp.engine"].dispose()


def store_of(app: Flask) -> RedisStore:
    store = app.extensions["idp.store"]
    assert isinstance(store, RedisStore) and store.cluster
    return store


def masters_of(store: RedisStore, keys: list[str]) -> dict[str, str]:
    """Which master the client routes each key to (by the slot map it learnt from the cluster)."""
    assert isinstance(store.client, RedisCluster)
    return {k: store.client.get_node_from_key(store.prefix + k).name for k in keys}


# ---- the URL --------------------------------------------------------------------------------------

def test_cluster_url_names_its_startup_nodes_and_refuses_what_a_cluster_cannot_do() -> None:
    assert RedisStore("redis+cluster://a:7000,b:7001").cluster
    assert RedisStore("rediss+cluster://user:secret@[::1]:7000,h").cluster
    assert not RedisStore("redis://127.0.0.1:6379").cluster
    with pytest.raises(ConfigError, match="database 0"):
        RedisStore("redis+cluster://a:7000/3")
    with pytest.raises(ConfigError, match="host:port"):
        RedisStore("redis+cluster://a:port")
    with pytest.raises(ConfigError, match="no node"):
        RedisStore("redis+cluster://")
    with pytest.raises(ConfigError, match="PREFIX"):
        RedisStore("redis+cluster://a:7000", prefix="{satuid}:")


def test_records_of_a_together_group_share_a_slot_and_others_need_not() -> None:
    from idp import state
    from idp.auth import lockout

    groups = [(g.failures, g.waits, g.locks) for g in
              (lockout.PASSWORDS, lockout.SECOND_FACTORS, lockout.ENROLMENTS, lockout.STAFF)]
    groups += [(state.registration_failures, state.registration_locks),
               (state.staff_lookups, state.staff_lookup_alerts)]
    for group in groups:
        for subject in ("9f2c4e", "5d0b7a31-c7ad-4d84-9a5e-1c2f3e4d5a6b"):
            parts = (subject, "2025-01-31") if group[0] is state.staff_lookups else (subject,)
            assert len({key_slot(("satuid:" + kind.key(*parts)).encode()) for kind in group}) == 1
    # Sessions keep the shape the previous release reads (a rolling deploy must not log anyone out).
    assert state.session_refs.key("sid1") == "sso-sid:sid1"
    assert state.login_failures.key("abc") == "fail:{abc}"


# ---- the store on the cluster ---------------------------------------------------------------------

def test_every_operation_works_with_keys_on_every_master(cluster: OwnRedisCluster,
                                                          cluster_app: Flask) -> None:
    store = store_of(cluster_app)
    # Enough keys that every master holds some: chosen by the cluster's own slot map.
    keys: list[str] = []
    while len(set(masters_of(store, keys).values())) < len(cluster.ports) or len(keys) < 12:
        keys.append(f"spread:{len(keys)}")
    for i, key in enumerate(keys):
        store.put(f"{key}:v", {"n": i}, 60)
        assert store.put_if_absent(f"{key}:once", {"n": i}, 60) is True
        assert store.put_if_absent(f"{key}:once", {"n": -1}, 60) is False
        assert [store.incr(f"{key}:c", 60) for _ in range(3)] == [1, 2, 3]
        store.add_member(f"{key}:s", "a", 60)
        store.add_member(f"{key}:s", "b", 60)
    for i, key in enumerate(keys):
        assert store.get(f"{key}:v") == {"n": i}
        assert store.get(f"{key}:once") == {"n": i}
        assert 55 <= store.ttl(f"{key}:c") <= 60
        assert store.members(f"{key}:s") == {"a", "b"}
    # Each master, asked itself, holds some of them: the client routed every key to its slot.
    held = cluster.keys_by_node(store.prefix + "spread:*")
    assert all(held.values()), {p: len(k) for p, k in held.items()}
    assert sum(len(k) for k in held.values()) == 4 * len(keys)
    for i, key in enumerate(keys):
        assert store.take(f"{key}:v") == {"n": i}
        assert store.take(f"{key}:v") is None
        store.remove_member(f"{key}:s", "a")
        assert store.members(f"{key}:s") == {"b"}
        store.delete(f"{key}:once")
        assert store.get(f"{key}:once") is None and store.ttl(f"{key}:once") == 0
    assert store.ping() is True


@pytest.mark.parametrize("case", [name for name in vars(parity) if name.startswith("test_")])
def test_the_parity_cases_of_the_other_backends_hold_on_the_cluster(case: str, cluster_app: Flask) -> None:
    """Every case of tests/test_store.py (written for SQLite and Redis) against the cluster."""
    getattr(parity, case)(cluster_app)


def test_a_together_group_takes_one_transaction_where_unrelated_keys_cannot(cluster_app: Flask) -> None:
    from idp import state

    store = store_of(cluster_app)
    assert isinstance(store.client, RedisCluster)
    subject = "b1946ac92492d2347c6235b4d2611184"
    together = [store.prefix + k.key(subject) for k in
                (state.login_failures, state.login_waits, state.login_locks)]
    pipe = store.client.pipeline(transaction=True)
    for key in together:
        pipe.set(key, 1, ex=60)
    pipe.execute()
    assert [store.client.get(key) for key in together] == ["1", "1", "1"]
    apart = [f"{store.prefix}a", f"{store.prefix}b"]
    assert key_slot(apart[0].encode()) != key_slot(apart[1].encode())
    pipe = store.client.pipeline(transaction=True)
    for key in apart:
        pipe.set(key, 1, ex=60)
    with pytest.raises(redis.exceptions.CrossSlotTransactionError):
        pipe.execute()


def test_login_and_code_flow_on_the_cluster_any_step_on_any_worker(
        cluster: OwnRedisCluster, tmp_path: Path, sqlite_template: Path) -> None:
    """Two workers (two apps, one database, one cluster): what one began, the other finishes."""
    env = cluster_env(cluster, tmp_path, sqlite_template)
    first, second = make_app(env), make_app(env)
    try:
        citizen = Factory(first).citizen()
        info = register_portal(first, client_id="portal-kluster")
        browser = first.test_client()
        portal = Portal(browser, info["client_id"], info["secret"], info["redirect_uri"])
        result = portal.sign_in(citizen.nik, citizen.password, scope="openid profile email")
        assert result["state"] == portal.last["state"] and "code" in result

        # The code, kept on the cluster by the first worker, is redeemed at the second.
        other = second.test_client()
        tokens = Portal(other, portal.client_id, portal.secret, portal.redirect_uri,
                        last=portal.last).token(result["code"])
        assert tokens.status_code == 200, tokens.get_json()
        body = tokens.get_json()
        userinfo = other.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert userinfo.status_code == 200 and userinfo.get_json()["email"] == citizen.email
        # The SSO session, kept on the cluster, signs the citizen in at the second worker too.
        cookie = browser.get_cookie("satuid_sso")
        assert cookie is not None
        other.set_cookie("satuid_sso", cookie.value)
        again = other.get(portal.authorize_url("openid profile email", prompt="none"))
        assert again.status_code == 302 and "code" in query(again.headers["Location"]), again.headers

        # Take-once on the cluster: the code replayed at the first worker is refused.
        replay = portal.token(result["code"])
        assert replay.status_code == 400 and replay.get_json()["error"] == "invalid_grant"

        # The flow's records are spread over the masters, and held nowhere else.
        store = store_of(first)
        held = cluster.keys_by_node(store.prefix + "*")
        assert sum(1 for keys in held.values() if keys) >= 2, held
        assert any(k.startswith(store.prefix + "sso:") for keys in held.values() for k in keys)
        with sqlite3.connect(env["IDP_DATABASE_URL"].removeprefix("sqlite:///")) as db:
            assert db.execute("SELECT count(*) FROM store_entry").fetchone() == (0,)
    finally:
        for app in (first, second):
            app.extensions["idp.engine"].dispose()


# ---- outages --------------------------------------------------------------------------------------

def assert_unavailable_page(response: Any) -> None:
    assert response.status_code == 503, response.status_code
    assert response.headers["Retry-After"] and response.mimetype == "text/html"


def assert_store_unavailable(client: Any) -> None:
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.get_json()["checks"] == {"database": "ok", "store": "unavailable"}


def test_a_stopped_master_then_the_whole_cluster_answer_503_never_500(
        failing_cluster: OwnRedisCluster, tmp_path: Path, sqlite_template: Path) -> None:
    from idp import state

    env = cluster_env(failing_cluster, tmp_path, sqlite_template)
    app = make_app(env)
    try:
        client = app.test_client()
        citizen = Factory(app).citizen()
        info = register_portal(app, client_id="portal-padam")
        portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
        code = portal.sign_in(citizen.nik, citizen.password)["code"]
        assert client.get("/healthz").status_code == 200
        store = store_of(app)

        # One master stops. A login attempt reads its throttle under keys of that master (the form
        # was fetched before: its CSRF token lives in the signed UI cookie, not in the store).
        with app.test_request_context():
            failures = state.login_failures.key(state.digest(citizen.nik))
        down = int(masters_of(store, [failures])[failures].rpartition(":")[2])
        browser = app.test_client()
        form = csrf_token(browser.get("/login").get_data(as_text=True))
        failing_cluster.stop_master(down)
        attempt = browser.post("/login", data={"csrf_token": form, "nik": citizen.nik,
                                               "password": "not the password"})
        assert_unavailable_page(attempt)
        assert_store_unavailable(client)

        # Seconds later the other masters declare the cluster down: every key is refused.
        failing_cluster.wait_state("fail")
        assert_unavailable_page(client.get("/account"))
        assert_unavailable_page(client.get("/login"))
        token = portal.token(code)
        assert token.status_code == 503 and token.get_json()["error"] == "temporarily_unavailable"
        assert_store_unavailable(client)

        # No master at all; and a worker that starts now still starts, and answers the same.
        for port in failing_cluster.running():
            failing_cluster.stop_master(port)
        assert_unavailable_page(client.get("/account"))
        assert_store_unavailable(client)
        late = make_app(env)
        try:
            newcomer = late.test_client()
            page = newcomer.get("/login")  # the empty form needs no store
            assert page.status_code == 200
            assert_unavailable_page(newcomer.post("/login", data={
                "csrf_token": csrf_token(page.get_data(as_text=True)), "nik": citizen.nik,
                "password": citizen.password}))
            assert_store_unavailable(newcomer)
        finally:
            late.extensions["idp.engine"].dispose()
    finally:
        app.extensions["idp.engine"].dispose()


def test_concurrent_requests_share_one_lazily_made_client(cluster: OwnRedisCluster) -> None:
    store = RedisStore(cluster.url, prefix=redis_prefix())
    clients: list[object] = []
    barrier = threading.Barrier(6)

    def first_use() -> None:
        barrier.wait()
        clients.append(store.client)

    threads = [threading.Thread(target=first_use) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(c) for c in clients}) == 1


def test_a_throttle_is_read_and_ended_in_one_command_on_the_cluster(cluster_app: Flask) -> None:
    from idp import state
    from idp.auth import lockout

    guard = lockout.SECOND_FACTORS
    with cluster_app.test_request_context():
        guard.failures.incr("c1")
        guard.waits.put(state.Stamp(at=1), "c1", ttl=40)
        guard.locks.put(state.Stamp(at=1), "c1", ttl=90)
        locked, waiting = state.remaining_together((guard.locks, guard.waits), "c1")
        assert 85 <= locked <= 90 and 35 <= waiting <= 40
        state.delete_together((guard.failures, guard.waits, guard.locks), "c1")
        assert state.remaining_together((guard.locks, guard.waits), "c1") == [0, 0]
        assert guard.failures.incr("c1") == 1  # the count started again
        with pytest.raises(ValueError, match="hash_tag"):
            state.delete_together((state.codes, state.code_grants), "c1")
