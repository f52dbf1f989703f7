"""Short-lived state: SSO sessions, one-time codes, counters, pending authorizations.

One small interface (in the spirit of node-oidc-provider's adapter) with two backends: Redis in
production, and the SQL database for the embedded default. Protocol and login code never know which
one runs. Values are JSON objects; every key has an expiry.

Redis is one server (``redis://``, ``rediss://``) or a Redis Cluster (``redis+cluster://host:port[,
host:port...]``, ``rediss+cluster://``), through the same ``RedisStore``: every command here, and every
MULTI/EXEC, touches a single key, so none is ever cross-slot. Which records share a slot anyway is
decided where keys are built, in ``idp.state``.
"""

from __future__ import annotations

import functools
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, Protocol, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import redis
from flask import current_app
from redis.cluster import ClusterNode, RedisCluster
from sqlalchemy import case, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from idp.config import ConfigError
from idp.models.store import StoreEntry, StoreSetMember

P = ParamSpec("P")
R = TypeVar("R")


class Store(Protocol):
    def put(self, key: str, value: dict[str, Any], ttl: int) -> None: ...
    def put_if_absent(self, key: str, value: dict[str, Any], ttl: int) -> bool: ...
    def get(self, key: str) -> dict[str, Any] | None: ...
    def take(self, key: str) -> dict[str, Any] | None:
        """Return and delete the value atomically: of two concurrent callers only one gets it."""
        ...
    def delete(self, *keys: str) -> None:
        """Delete every key given, in one command (on a cluster, keys of one slot: ``idp.state``)."""
        ...
    def incr(self, key: str, ttl: int) -> int:
        """Add one to a counter that expires ``ttl`` seconds after its first increment."""
        ...
    def ttl(self, key: str) -> int:
        """Seconds left before the key expires, 0 when absent."""
        ...
    def ttls(self, *keys: str) -> list[int]:
        """``ttl`` of each key, in one round trip."""
        ...
    def add_member(self, key: str, member: str, ttl: int) -> None: ...
    def remove_member(self, key: str, member: str) -> None: ...
    def members(self, key: str) -> set[str]: ...
    def ping(self) -> bool: ...


#: SatuID's own URL schemes for a Redis Cluster, and the scheme of each node's connection.
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

#: What a failed connection to a node looks like (AuthenticationError is a ConnectionError).
_NODE_OUTAGES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                 redis.exceptions.BusyLoadingError)


def is_cluster_url(url: str) -> bool:
    return url.partition("://")[0].lower() in CLUSTER_SCHEMES


def _cluster_client(url: str) -> Callable[[], RedisCluster]:
    """Check ``redis+cluster://[user:password@]host:port[,host:port...][?option=value...]`` now, and
    return what connects to it later. Each address is a startup node: one reachable node is enough,
    the client learns the others (and every change of masters) from the cluster itself. Options are
    redis-py's URL options (``rediss+cluster://`` for TLS)."""
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    addresses = [h.strip() for h in hosts.split(",") if h.strip()]
    if not addresses:
        raise ConfigError("IDP_REDIS_URL names no node of the Redis Cluster")
    if parts.path not in ("", "/", "/0"):
        raise ConfigError("IDP_REDIS_URL: a Redis Cluster has only database 0")
    nodes = []
    for address in addresses:
        try:
            node = urlsplit(f"//{address}")
            nodes.append(ClusterNode(node.hostname or "", node.port or 6379))  # type: ignore[no-untyped-call]
        except ValueError:
            raise ConfigError(f"IDP_REDIS_URL: {address!r} is not host:port") from None
    # The first node carries the URL's credentials and options; the others are extra startup nodes.
    first = urlunsplit((CLUSTER_SCHEMES[parts.scheme.lower()],
                        f"{userinfo}@{addresses[0]}" if userinfo else addresses[0], "", parts.query, ""))
    return lambda: RedisCluster(
        url=first, startup_nodes=nodes[1:], decode_responses=True, socket_timeout=5,
        # The servers decide whether a partly covered cluster still serves (their own
        # cluster-require-full-coverage); a key in a slot without a master raises
        # SlotNotCoveredError or ClusterDownError for that request, and /healthz says so.
        require_full_coverage=False,
    )


def _outages_as_connection_errors(method: Callable[P, R]) -> Callable[P, R]:
    """redis-py's cluster client reports "no node reachable" as a bare RedisClusterException, the
    class of its usage errors too (a command across slots); raise it as the ConnectionError it is, so
    that it is answered 503 (``idp.errors.UNAVAILABLE``) while a cross-slot bug stays a 500."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except redis.exceptions.RedisClusterException as e:
            if isinstance(e.__cause__, _NODE_OUTAGES):
                raise redis.exceptions.ConnectionError(str(e)) from e
            raise

    return call


def _seconds_left(ms: int) -> int:
    """PTTL's answer in whole seconds, rounded up (0.4 s left is still "wait"); -1/-2 (no expiry,
    no key) read as 0."""
    return max(0, -(-ms // 1000))


class RedisStore:
    """The store on one Redis server or on a Redis Cluster (chosen by the URL's scheme).

    The client is made on first use, not here: a cluster client asks a node for the slot map as soon
    as it is made, and a worker must start, and answer 503, while the cluster is down.
    """

    def __init__(self, url: str, prefix: str = "satuid:") -> None:
        self.cluster = is_cluster_url(url)
        if self.cluster and ("{" in prefix or "}" in prefix):
            # Redis Cluster hashes the first {...} of a key: one in the prefix would put every key
            # in one slot and override idp.state's tags.
            raise ConfigError("IDP_REDIS_PREFIX must not contain { or } on a Redis Cluster")
        self.prefix = prefix
        self._connect: Callable[[], redis.Redis | RedisCluster] = (
            _cluster_client(url) if self.cluster
            else lambda: redis.Redis.from_url(url, decode_responses=True, socket_timeout=5))
        self._client: redis.Redis | RedisCluster | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> redis.Redis | RedisCluster:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._connect()
        return self._client

    def _k(self, key: str) -> str:
        return self.prefix + key

    @_outages_as_connection_errors
    def put(self, key: str, value: dict[str, Any], ttl: int) -> None:
        self.client.set(self._k(key), json.dumps(value), ex=max(1, ttl))

    @_outages_as_connection_errors
    def put_if_absent(self, key: str, value: dict[str, Any], ttl: int) -> bool:
        return bool(self.client.set(self._k(key), json.dumps(value), ex=max(1, ttl), nx=True))

    @_outages_as_connection_errors
    def get(self, key: str) -> dict[str, Any] | None:
        raw = self.client.get(self._k(key))
        return json.loads(raw) if raw is not None else None

    @_outages_as_connection_errors
    def take(self, key: str) -> dict[str, Any] | None:
        raw = self.client.getdel(self._k(key))
        return json.loads(raw) if raw is not None else None

    @_outages_as_connection_errors
    def delete(self, *keys: str) -> None:
        self.client.delete(*(self._k(key) for key in keys))

    # incr and add_member send several commands, in one MULTI/EXEC on their one key (so one slot):
    # otherwise the key could expire between SET NX EX and INCR, and INCR would bring it back
    # without an expiry. redis-py's cluster client runs such a transaction since 6.1.

    @_outages_as_connection_errors
    def incr(self, key: str, ttl: int) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.set(self._k(key), 0, ex=max(1, ttl), nx=True)
        pipe.incr(self._k(key))
        return int(pipe.execute()[1])

    @_outages_as_connection_errors
    def ttl(self, key: str) -> int:
        return _seconds_left(int(self.client.pttl(self._k(key))))

    @_outages_as_connection_errors
    def ttls(self, *keys: str) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.pttl(self._k(key))
        return [_seconds_left(int(ms)) for ms in pipe.execute()]

    @_outages_as_connection_errors
    def add_member(self, key: str, member: str, ttl: int) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.sadd(self._k(key), member)
        pipe.expire(self._k(key), max(1, ttl), gt=True)
        pipe.expire(self._k(key), max(1, ttl), nx=True)
        pipe.execute()

    @_outages_as_connection_errors
    def remove_member(self, key: str, member: str) -> None:
        self.client.srem(self._k(key), member)

    @_outages_as_connection_errors
    def members(self, key: str) -> set[str]:
        return {str(m) for m in self.client.smembers(self._k(key))}

    @_outages_as_connection_errors
    def ping(self) -> bool:
        client = self.client
        if not isinstance(client, RedisCluster):
            return bool(client.ping())
        # A PING goes to one node and is answered even while the cluster refuses every key: ready
        # means every master answers and sees the cluster whole.
        for node in client.get_primaries():  # type: ignore[no-untyped-call]  # untyped in redis-py
            info = client.cluster_info(target_nodes=node)
            if info.get("cluster_state") != "ok":
                raise redis.exceptions.ClusterDownError(f"cluster_state is not ok on {node.name}")
        return True


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

    def delete(self, *keys: str) -> None:
        with self._begin() as conn:
            conn.execute(delete(StoreEntry).where(StoreEntry.key.in_(keys)))

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
        return self.ttls(key)[0]

    def ttls(self, *keys: str) -> list[int]:
        with self._begin() as conn:
            expiry = {key: at for key, at in conn.execute(
                select(StoreEntry.key, StoreEntry.expires_at).where(StoreEntry.key.in_(keys)))}
        now = time.time()
        return [max(0, math.ceil(expiry[key] - now)) if key in expiry else 0 for key in keys]

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
