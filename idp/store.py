"""Short-lived state: SSO sessions, one-time codes, counters, pending authorizations.

One small interface (in the spirit of node-oidc-provider's adapter) with two backends: Redis in
production, and the SQL database for the embedded default. Protocol and login code never know which
one runs. Values are JSON objects; every key has an expiry.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, cast

import redis
from flask import current_app
from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from idp.models.store import StoreEntry, StoreSetMember


class Store(Protocol):
    def put(self, key: str, value: dict[str, Any], ttl: int) -> None: ...
    def put_if_absent(self, key: str, value: dict[str, Any], ttl: int) -> bool: ...
    def get(self, key: str) -> dict[str, Any] | None: ...
    def take(self, key: str) -> dict[str, Any] | None:
        """Return and delete the value atomically: of two concurrent callers only one gets it."""
        ...
    def delete(self, key: str) -> None: ...
    def incr(self, key: str, ttl: int) -> int:
        """Add one to a counter that expires ``ttl`` seconds after its first increment."""
        ...
    def ttl(self, key: str) -> int:
        """Seconds left before the key expires, 0 when absent."""
        ...
    def add_member(self, key: str, member: str, ttl: int) -> None: ...
    def remove_member(self, key: str, member: str) -> None: ...
    def members(self, key: str) -> set[str]: ...
    def ping(self) -> bool: ...


class RedisStore:
    def __init__(self, url: str, prefix: str = "satuid:") -> None:
        self.client = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
        self.prefix = prefix

    def _k(self, key: str) -> str:
        return self.prefix + key

    def put(self, key: str, value: dict[str, Any], ttl: int) -> None:
        self.client.set(self._k(key), json.dumps(value), ex=max(1, ttl))

    def put_if_absent(self, key: str, value: dict[str, Any], ttl: int) -> bool:
        return bool(self.client.set(self._k(key), json.dumps(value), ex=max(1, ttl), nx=True))

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.client.get(self._k(key))
        return json.loads(raw) if raw is not None else None

    def take(self, key: str) -> dict[str, Any] | None:
        raw = self.client.getdel(self._k(key))
        return json.loads(raw) if raw is not None else None

    def delete(self, key: str) -> None:
        self.client.delete(self._k(key))

    def incr(self, key: str, ttl: int) -> int:
        pipe = self.client.pipeline()
        pipe.set(self._k(key), 0, ex=max(1, ttl), nx=True)
        pipe.incr(self._k(key))
        return int(pipe.execute()[1])

    def ttl(self, key: str) -> int:
        ms = int(self.client.pttl(self._k(key)))
        return max(0, -(-ms // 1000))  # round up: 0.4 s left is still "wait"

    def add_member(self, key: str, member: str, ttl: int) -> None:
        pipe = self.client.pipeline()
        pipe.sadd(self._k(key), member)
        pipe.expire(self._k(key), max(1, ttl), gt=True)
        pipe.expire(self._k(key), max(1, ttl), nx=True)
        pipe.execute()

    def remove_member(self, key: str, member: str) -> None:
        self.client.srem(self._k(key), member)

    def members(self, key: str) -> set[str]:
        return {str(m) for m in self.client.smembers(self._k(key))}

    def ping(self) -> bool:
        return bool(self.client.ping())


class DatabaseStore:
    """Short-lived state in the SQL database.

    Inside a unit of work (a request, a command) every call joins its transaction: on SQLite a
    second connection would wait for the file lock the request already holds. Outside one, each
    call is its own short transaction.
    """

    def __init__(self, engine: Engine,
                 unit_of_work: Callable[[], Connection | None] = lambda: None) -> None:
        self.engine = engine
        self._unit_of_work = unit_of_work
        self._insert = (sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert)

    @contextmanager
    def _begin(self) -> Iterator[Connection]:
        shared = self._unit_of_work()
        if shared is not None:
            yield shared
            return
        with self.engine.begin() as conn:
            yield conn

    def _maybe_purge(self) -> None:
        # Expired rows are invisible to readers; delete them now and then so the tables stay small.
        if random.random() < 0.01:
            self.purge()

    def purge(self) -> int:
        now = time.time()
        with self._begin() as conn:
            n = conn.execute(delete(StoreEntry).where(StoreEntry.expires_at < now)).rowcount
            n += conn.execute(delete(StoreSetMember).where(StoreSetMember.expires_at < now)).rowcount
        return n

    def put(self, key: str, value: dict[str, Any], ttl: int) -> None:
        row = {"key": key, "value": json.dumps(value), "counter": 0, "expires_at": time.time() + ttl}
        stmt = self._insert(StoreEntry).values(**row)
        stmt = stmt.on_conflict_do_update(
            index_elements=[StoreEntry.key],
            set_={"value": stmt.excluded.value, "counter": 0, "expires_at": stmt.excluded.expires_at},
        )
        with self._begin() as conn:
            conn.execute(stmt)
        self._maybe_purge()

    def put_if_absent(self, key: str, value: dict[str, Any], ttl: int) -> bool:
        now = time.time()
        row = {"key": key, "value": json.dumps(value), "counter": 0, "expires_at": now + ttl}
        insert = self._insert(StoreEntry).values(**row)
        # An expired row counts as absent: overwrite it, otherwise leave the live one alone.
        stmt = insert.on_conflict_do_update(
            index_elements=[StoreEntry.key],
            set_={"value": insert.excluded.value, "expires_at": insert.excluded.expires_at},
            where=StoreEntry.expires_at < now,
        ).returning(StoreEntry.key)
        with self._begin() as conn:
            return conn.execute(stmt).first() is not None

    def get(self, key: str) -> dict[str, Any] | None:
        with self._begin() as conn:
            raw = conn.execute(
                select(StoreEntry.value).where(
                    StoreEntry.key == key, StoreEntry.expires_at >= time.time()
                )
            ).scalar()
        return json.loads(raw) if raw is not None else None

    def take(self, key: str) -> dict[str, Any] | None:
        stmt = (
            delete(StoreEntry)
            .where(StoreEntry.key == key)
            .returning(StoreEntry.value, StoreEntry.expires_at)
        )
        with self._begin() as conn:
            row = conn.execute(stmt).first()
        if row is None or row.expires_at < time.time() or row.value is None:
            return None
        value: dict[str, Any] = json.loads(row.value)
        return value

    def delete(self, key: str) -> None:
        with self._begin() as conn:
            conn.execute(delete(StoreEntry).where(StoreEntry.key == key))

    def incr(self, key: str, ttl: int) -> int:
        now = time.time()
        insert = self._insert(StoreEntry).values(key=key, value=None, counter=1,
                                                 expires_at=now + ttl)
        expired = StoreEntry.expires_at < now
        stmt = insert.on_conflict_do_update(
            index_elements=[StoreEntry.key],
            set_={
                "counter": case((expired, 1), else_=StoreEntry.counter + 1),
                "expires_at": case((expired, now + ttl), else_=StoreEntry.expires_at),
            },
        ).returning(StoreEntry.counter)
        with self._begin() as conn:
            return int(conn.execute(stmt).scalar_one())

    def ttl(self, key: str) -> int:
        with self._begin() as conn:
            exp = conn.execute(select(StoreEntry.expires_at).where(StoreEntry.key == key)).scalar()
        return max(0, math.ceil(exp - time.time())) if exp is not None else 0

    def add_member(self, key: str, member: str, ttl: int) -> None:
        expires = time.time() + ttl
        stmt = self._insert(StoreSetMember).values(key=key, member=member, expires_at=expires)
        stmt = stmt.on_conflict_do_update(
            index_elements=[StoreSetMember.key, StoreSetMember.member],
            set_={"expires_at": stmt.excluded.expires_at},
        )
        with self._begin() as conn:
            conn.execute(stmt)

    def remove_member(self, key: str, member: str) -> None:
        with self._begin() as conn:
            conn.execute(
                delete(StoreSetMember).where(
                    StoreSetMember.key == key, StoreSetMember.member == member
                )
            )

    def members(self, key: str) -> set[str]:
        with self._begin() as conn:
            rows = conn.execute(
                select(StoreSetMember.member).where(
                    StoreSetMember.key == key, StoreSetMember.expires_at >= time.time()
                )
            ).scalars()
            return set(rows)

    def ping(self) -> bool:
        with self._begin() as conn:
            conn.execute(select(1))
        return True


def make_store(redis_url: str | None, engine: Engine, prefix: str = "satuid:",
               unit_of_work: Callable[[], Connection | None] = lambda: None) -> Store:
    return RedisStore(redis_url, prefix) if redis_url else DatabaseStore(engine, unit_of_work)


def get_store() -> Store:
    return cast(Store, current_app.extensions["idp.store"])
