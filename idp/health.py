"""Liveness/readiness and Prometheus metrics for operators."""

from __future__ import annotations

import dataclasses
import hmac

from flask import Blueprint, Response, abort, current_app, jsonify, request
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from idp import audit
from idp.db import get_engine, get_session
from idp.metrics import CONTENT_TYPE, AuditLogState, DatabaseGauges, exposition
from idp.models import AuditCheckpoint, OutboxMessage
from idp.store import get_store

bp = Blueprint("health", __name__)

#: The outbox's statuses a scrape counts: few rows, found through ``ix_outbox_message_due``.
OUTBOX_WAITING = ("pending", "sending", "failed")


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
    need the database read an index or the planner's statistics, never a large table: the outbox
    by its status index, without the ``sent`` rows (``satuid_outbox_sends_total`` counts those),
    and the citizens as PostgreSQL estimates them; the audit log's newest checkpoint by its primary
    key, and its partitions from the catalog and the statistics collector. Audit events and ratings
    are counted as they are written, so no scrape groups or reads those tables."""
    token = current_app.config["IDP"].metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(401)

    s = get_session()
    counts = {status: count for status, count in s.execute(
        select(OutboxMessage.status, func.count()).where(OutboxMessage.status.in_(OUTBOX_WAITING))
        .group_by(OutboxMessage.status))}
    outbox = {status: counts.get(status, 0) for status in OUTBOX_WAITING}
    gauges = DatabaseGauges(outbox, _citizens_estimate(s), _audit_log_state(s))
    return Response(exposition(gauges), content_type=CONTENT_TYPE)


def _citizens_estimate(s: Session) -> float | None:
    """PostgreSQL's row estimate for ``citizen`` (none on SQLite, or before the table's first
    ANALYZE): a count would read every row."""
    if s.get_bind().dialect.name != "postgresql":
        return None
    estimate = s.scalar(text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('citizen')"))
    return float(estimate) if estimate is not None and estimate >= 0 else None



def _audit_log_state(s: Session) -> AuditLogState:
    """The newest checkpoint (one row by the primary key) and, on PostgreSQL, where the monthly
    partitions end (the catalog) and how many events fell into the default one (the statistics
    collector's live-row count, which lags a second or so): nothing here reads ``audit_event``."""
    newest = s.execute(select(AuditCheckpoint.tree_size, AuditCheckpoint.at)
                       .order_by(AuditCheckpoint.tree_size.desc()).limit(1)).first()
    state = AuditLogState(checkpoint_size=newest.tree_size, checkpoint_at=newest.at.timestamp()) \
        if newest is not None else AuditLogState()
    if s.get_bind().dialect.name != "postgresql":
        return state
    end = audit.partitions_end(s.connection())
    default_rows = s.scalar(text("SELECT n_live_tup FROM pg_stat_user_tables "
                                 "WHERE relid = to_regclass('audit_event_default')"))
    return dataclasses.replace(
        state, partitions_end=end.timestamp() if end is not None else None,
        default_partition_rows=float(default_rows) if default_rows is not None else None)
