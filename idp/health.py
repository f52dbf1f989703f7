"""Liveness/readiness and Prometheus metrics for operators."""

from __future__ import annotations

import dataclasses
import hmac
import logging

from flask import Blueprint, Response, abort, current_app, jsonify, request
from sqlalchemy import func, select, text
from sqlalchemy.orm import InstrumentedAttribute, Session

from idp import audit
from idp.db import get_engine, get_session
from idp.errors import UNAVAILABLE
from idp.metrics import CONTENT_TYPE, AuditLogState, DatabaseGauges, StoreGauge, exposition
from idp.models import AuditCheckpoint, LogoutDelivery, OutboxMessage
from idp.store import RedisStore, get_store

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)

#: The outbox's statuses a scrape counts: few rows, found through ``ix_outbox_message_due``.
OUTBOX_WAITING = ("pending", "sending", "failed")
#: The back-channel logouts' statuses a scrape counts, found through the index on ``status``.
LOGOUTS_WAITING = ("pending", "retry", "failed")


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    try:
        get_store().ping()
        checks["store"] = "ok"
    except Exception:
        checks["store"] = "unavailable"
    healthy = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if healthy else "unavailable", checks=checks), 200 if healthy else 503


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics, behind a bearer token when IDP_METRICS_TOKEN is set.

    Counters and histograms come from every worker's files (``idp.metrics``); the few gauges that
    need the database read an index, the catalog or PostgreSQL's statistics, never a large table:
    the outbox and the back-channel logouts by their status indexes, without the rows done with
    (the ``_total`` counters count those), the citizens as PostgreSQL estimates them, the audit
    log's newest checkpoint by its primary key, and its partitions from the catalog and the
    statistics. Audit events and ratings are counted as they are written, so no scrape groups or
    reads those tables.

    With the database unreachable (or its pool exhausted) the scrape still answers: the counters
    without the database's gauges, and ``satuid_database_up 0``. That is when they matter most.
    With Redis configured, ``satuid_store_up`` says whether it answered a PING."""
    token = current_app.config["IDP"].metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(401)

    s = get_session()
    try:
        gauges = DatabaseGauges(
            _waiting(s, OutboxMessage.status, OUTBOX_WAITING),
            _waiting(s, LogoutDelivery.status, LOGOUTS_WAITING),
            _citizens_estimate(s), _audit_log_state(s))
    except UNAVAILABLE as e:
        s.rollback()
        log.warning("/metrics without the database's gauges: %s", type(e).__name__)
        gauges = DatabaseGauges.unreachable()
    store = get_store()
    if not isinstance(store, RedisStore):  # the embedded store is the database, gauged above
        return Response(exposition(gauges), content_type=CONTENT_TYPE)
    try:
        store_up = store.ping()
    except UNAVAILABLE:
        store_up = False
    return Response(exposition(gauges, StoreGauge(store_up)), content_type=CONTENT_TYPE)


def _waiting(s: Session, status: InstrumentedAttribute[str], statuses: tuple[str, ...]
             ) -> dict[str, int]:
    """Rows of each of ``statuses``, counted through the index on ``status``."""
    query = select(status, func.count()).where(status.in_(statuses)).group_by(status)
    counts: dict[str, int] = dict(s.execute(query).all())
    return {name: counts.get(name, 0) for name in statuses}


def _citizens_estimate(s: Session) -> float | None:
    """PostgreSQL's row estimate for ``citizen`` (none on SQLite, or before the table's first
    ANALYZE): a count would read every row."""
    if s.get_bind().dialect.name != "postgresql":
        return None
    estimate = s.scalar(text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('citizen')"))
    return float(estimate) if estimate is not None and estimate >= 0 else None


def _audit_log_state(s: Session) -> AuditLogState:
    """The newest checkpoint (one row by the primary key) and, on PostgreSQL, where the monthly
    partitions end (the catalog) and how many events fell into the default one: nothing here reads
    ``audit_event``. The default partition's rows are the larger of the live-row count (current
    within a second of a commit, but zero again after a crash or a failover to a standby) and the
    planner's estimate (kept in the catalog, replicated, refreshed by autovacuum's ANALYZE). A count
    would read through every dead row a move out of it leaves until vacuum."""
    newest = s.execute(select(AuditCheckpoint.tree_size, AuditCheckpoint.at)
                       .order_by(AuditCheckpoint.tree_size.desc()).limit(1)).first()
    state = AuditLogState(checkpoint_size=newest.tree_size, checkpoint_at=newest.at.timestamp()) \
        if newest is not None else AuditLogState()
    if s.get_bind().dialect.name != "postgresql":
        return state
    end = audit.partitions_end(s.connection())
    default_rows = s.scalar(text(
        "SELECT greatest(s.n_live_tup, c.reltuples) FROM pg_class c "
        "JOIN pg_stat_user_tables s ON s.relid = c.oid "
        "WHERE c.oid = to_regclass('audit_event_default')"))
    return dataclasses.replace(
        state, partitions_end=end.timestamp() if end is not None else None,
        default_partition_rows=float(default_rows) if default_rows is not None else None)
