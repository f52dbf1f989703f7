"""The short-lived state store behaves the same on Redis and on the database backend."""

from __future__ import annotations

import threading
import time

from flask import Flask

from idp.store import Store


def store_of(app: Flask) -> Store:
    return app.extensions["idp.store"]


def test_put_get_delete_round_trip(app: Flask) -> None:
    store = store_of(app)
    store.put("k", {"a": 1, "b": ["x"]}, 60)
    assert store.get("k") == {"a": 1, "b": ["x"]}
    store.put("k", {"a": 2}, 60)
    assert store.get("k") == {"a": 2}
    store.delete("k")
    assert store.get("k") is None


def test_several_keys_are_deleted_and_timed_at_once(app: Flask) -> None:
    store = store_of(app)
    store.put("a", {"v": 1}, 60)
    store.put("b", {"v": 2}, 30)
    store.put("c", {"v": 3}, 60)
    a, b, none = store.ttls("a", "b", "none")
    assert 55 <= a <= 60 and 25 <= b <= 30 and none == 0
    store.delete("a", "b", "none")
    assert store.get("a") is None and store.get("b") is None and store.get("c") == {"v": 3}
    assert store.ttls("a", "c")[0] == 0 and store.ttls("a", "c")[1] > 0


def test_values_expire(app: Flask) -> None:
    store = store_of(app)
    store.put("short", {"v": 1}, 1)
    assert store.ttl("short") in (0, 1)
    time.sleep(2.1)
    assert store.get("short") is None
    assert store.take("short") is None


def test_take_returns_value_once(app: Flask) -> None:
    store = store_of(app)
    store.put("code", {"grant": "g1"}, 60)
    assert store.take("code") == {"grant": "g1"}
    assert store.take("code") is None
    assert store.get("code") is None


def test_concurrent_take_yields_the_value_to_exactly_one_caller(app: Flask) -> None:
    store = store_of(app)
    for round_ in range(5):
        key = f"race:{round_}"
        store.put(key, {"n": round_}, 60)
        results: list[object] = []
        barrier = threading.Barrier(8)

        def taker(key: str = key, barrier: threading.Barrier = barrier,
                  results: list[object] = results) -> None:
            barrier.wait()
            results.append(store.take(key))

        threads = [threading.Thread(target=taker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r for r in results if r is not None] == [{"n": round_}]


def test_put_if_absent_refuses_a_live_key_but_reuses_an_expired_one(app: Flask) -> None:
    store = store_of(app)
    assert store.put_if_absent("once", {"v": 1}, 60) is True
    assert store.put_if_absent("once", {"v": 2}, 60) is False
    assert store.get("once") == {"v": 1}
    assert store.put_if_absent("brief", {"v": 1}, 1) is True
    time.sleep(2.1)
    assert store.put_if_absent("brief", {"v": 2}, 60) is True
    assert store.get("brief") == {"v": 2}


def test_counter_counts_and_restarts_after_expiry(app: Flask) -> None:
    store = store_of(app)
    assert [store.incr("c", 60) for _ in range(3)] == [1, 2, 3]
    assert store.incr("e", 1) == 1
    time.sleep(2.1)
    assert store.incr("e", 1) == 1


def test_concurrent_increments_are_not_lost(app: Flask) -> None:
    store = store_of(app)

    def bump() -> None:
        for _ in range(10):
            store.incr("shared", 60)

    threads = [threading.Thread(target=bump) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.incr("shared", 60) == 51


def test_sets_add_remove_and_list_members(app: Flask) -> None:
    store = store_of(app)
    store.add_member("s", "a", 60)
    store.add_member("s", "b", 60)
    store.add_member("s", "a", 60)
    assert store.members("s") == {"a", "b"}
    store.remove_member("s", "a")
    assert store.members("s") == {"b"}
    assert store.members("nothing") == set()


def test_a_record_in_an_older_shape_reads_as_absent_not_as_an_error(app: Flask) -> None:
    """A record written by another release without a field this one needs is treated as gone."""
    from idp import state

    with app.app_context():
        store_of(app).put("par:old", {"params": {"scope": "openid"}}, 60)  # no client_id
        assert state.pushed_requests.get("old") is None
