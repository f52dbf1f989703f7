"""Database engine and the unit of work.

One engine per app; one SQLAlchemy session per request, CLI command or background job. Domain
functions add and change rows but never commit: a request commits once, after its view returned
(``after_request``), and an error handler discards the work instead (``discard``), so a request
that fails half-way leaves nothing half-written. Commands and jobs use ``unit_of_work``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from flask import Flask, Response, current_app, g, has_app_context
from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import Connection, CursorResult, Engine, Result
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolProxiedConnection


def make_engine(url: str, ping_after_idle: float, prepare_threshold: int | None = 5) -> Engine:
    """``ping_after_idle``: a pooled connection returned less than this many seconds ago is handed
    out without a ping (``IDP_DB_PING_AFTER_IDLE_MS``; 0 pings on every checkout, as
    ``pool_pre_ping`` does). ``prepare_threshold``: psycopg prepares a statement on the server once
    a connection has run it this many times, which spares PostgreSQL parsing and analysing it;
    None never does (``IDP_DB_PREPARE_THRESHOLD=off``), for a pooler that hands each transaction
    another server connection and does not carry prepared statements across (PgBouncer before
    1.21, or without ``max_prepared_statements``)."""
    kwargs: dict[str, Any] = {}
    # Statement parameters (a NIK, a phone number, a message with a code) never appear in an
    # exception's text, and so never in a logged traceback.
    kwargs["hide_parameters"] = True
    if url.startswith("sqlite"):
        # Several gunicorn workers share the file: wait for the lock instead of failing.
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    else:
        kwargs.update(pool_size=10, max_overflow=10,
                      connect_args={"prepare_threshold": prepare_threshold})
    engine = create_engine(url, **kwargs)
    if not url.startswith("sqlite"):
        _ping_idle_connections(engine, ping_after_idle)
    else:

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL stays consistent on a crash and saves an fsync per commit.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


def _ping_idle_connections(engine: Engine, window: float) -> None:
    """Ping a pooled connection before use only when it has been idle (HikariCP's "alive bypass
    window"), instead of SQLAlchemy's ``pool_pre_ping`` on every checkout: under load a request's
    connection was returned a moment ago, and a ping would add a round trip to every request.

    A connection that fails its ping is replaced, and so is every other connection the pool made
    before it (``InvalidatePoolError``): a restart or failover kills them all. On a busy worker no
    connection sits idle long enough to be pinged, so after a restart the first statement of one
    request fails instead; SQLAlchemy then recycles the whole pool, and that request answers 503
    (``idp.errors``). The token endpoint reads the database before it spends an authorization
    code, so a failure there leaves the code for the retry; a pushed request (PAR) taken just before
    such a failure is lost, and the portal starts again (``IDP_DB_PING_AFTER_IDLE_MS=0`` trades a
    round trip per request for none lost)."""
    returned = "satuid_returned_at"

    @event.listens_for(engine, "connect")
    def _connected(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[returned] = time.monotonic()  # alive a moment ago

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[returned] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn: Any, record: ConnectionPoolEntry,
                     _proxy: PoolProxiedConnection) -> None:
        last = record.info.get(returned)
        if last is not None and time.monotonic() - last < window:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_conn)
        except engine.dialect.loaded_dbapi.Error as e:
            raise exc.InvalidatePoolError(f"pooled connection failed its ping: {type(e).__name__}") \
                from e
        if not alive:
            raise exc.InvalidatePoolError("pooled connection failed its ping")


def init_app(app: Flask) -> sessionmaker[Session]:
    settings = app.config["IDP"]
    engine = make_engine(settings.database_url, settings.db_ping_after_idle_ms / 1000,
                         settings.db_prepare_threshold)
    maker = sessionmaker(engine, expire_on_commit=False)
    # What the work queued for its commit (audit rows, back-channel logouts, after_commit callbacks)
    # goes with a rollback.
    event.listen(maker, "after_rollback", _forget_queued)
    event.listen(maker, "after_commit", _run_after_commit)
    app.extensions["idp.engine"] = engine
    app.extensions["idp.sessionmaker"] = maker
    app.after_request(_commit_request)
    app.teardown_appcontext(close_session)
    return maker


def _forget_queued(session: Session) -> None:
    session.info.clear()


_AFTER_COMMIT = "after_commit"  # Session.info: callbacks to run once the work has committed


def after_commit(callback: Callable[[], None], session: Session | None = None) -> None:
    """Run ``callback`` once the current unit of work commits, and never if it is thrown away: for
    a change outside the database (Redis) that must not happen unless the work it belongs to does."""
    callbacks = (session or get_session()).info.setdefault(_AFTER_COMMIT, [])
    if callback not in callbacks:
        callbacks.append(callback)


def _run_after_commit(session: Session) -> None:
    for callback in session.info.pop(_AFTER_COMMIT, []):
        callback()


def get_session() -> Session:
    """The unit of work of this request, command or job, opened on first use."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["idp.sessionmaker"]()
    session: Session = g.db_session
    return session


def current_connection() -> Connection | None:
    """The connection of the unit of work in progress, if it has begun one.

    The database store joins it: on the embedded default SQLite lets one writer at a time hold the
    file, and a second connection of the same request would wait for a lock its own request holds.
    Before the work has touched the database, the store commits its writes at once, as Redis does.
    """
    if not has_app_context():
        return None
    session: Session | None = g.get("db_session")
    transaction = session.get_transaction() if session is not None else None
    if session is None or transaction is None or not transaction.is_active:
        return None  # none begun, or committing (an after_commit callback): a short one of its own
    return session.connection()


def serialize(session: Session, lock_id: int, table: str) -> None:
    """Hold, until this unit of work ends, a lock that every writer of ``lock_id`` queues on:
    PostgreSQL's transaction-scoped advisory lock; on SQLite the database's write lock, taken at once
    by a no-op write to ``table`` (so a read that follows sees every earlier commit)."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": lock_id})
    else:
        conn.execute(text(f"UPDATE {table} SET rowid = rowid WHERE 0 = 1"))


def _commit_request(response: Response) -> Response:
    session: Session | None = g.get("db_session")
    if session is not None:
        try:
            session.commit()
        except BaseException:
            session.rollback()
            raise
    return response


def discard() -> None:
    """Throw away the current unit of work (an error is being answered instead)."""
    session: Session | None = g.get("db_session") if has_app_context() else None
    if session is not None:
        session.rollback()


def close_session(_exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        session.close()


@contextmanager
def unit_of_work() -> Iterator[Session]:
    """For a CLI command or a background job: commit once at the end, roll back on error."""
    session = get_session()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched (typed: ``Session.execute`` returns a plain ``Result``)."""
    return int(cast(CursorResult[Any], result).rowcount)


def engine_of(app: Flask) -> Engine:
    engine: Engine = app.extensions["idp.engine"]
    return engine


def get_engine() -> Engine:
    return engine_of(current_app)
