"""Liveness/readiness and Prometheus-style metrics for operators."""

from __future__ import annotations

import hmac

from flask import Blueprint, Response, abort, current_app, jsonify, request
from sqlalchemy import func, select, text

from idp.db import get_engine, get_session
from idp.models import AuditEvent, Citizen, OutboxMessage
from idp.outbox.delivery import STATUSES as OUTBOX_STATUSES
from idp.services.ratings import summary
from idp.store import get_store

bp = Blueprint("health", __name__)


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
    """Gauges and counters for Prometheus; behind a bearer token when IDP_METRICS_TOKEN is set."""
    token = current_app.config["IDP"].metrics_token
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), token.encode()):
            abort(401)

    s = get_session()
    lines = [
        "# TYPE satuid_citizens gauge",
        f"satuid_citizens {s.scalar(select(func.count()).select_from(Citizen))}",
    ]
    outbox = dict(s.execute(select(OutboxMessage.status, func.count())
                            .group_by(OutboxMessage.status)).all())
    lines.append("# TYPE satuid_outbox_messages gauge")
    lines += [f'satuid_outbox_messages{{status="{status}"}} {outbox.get(status, 0)}'
              for status in OUTBOX_STATUSES]
    ratings = summary(s)
    lines.append("# TYPE satuid_service_ratings gauge")
    lines += [f'satuid_service_ratings{{client_id="{r.client_id}"}} {r.count}' for r in ratings]
    lines.append("# TYPE satuid_service_rating_average gauge")
    lines += [f'satuid_service_rating_average{{client_id="{r.client_id}"}} {r.average}' for r in ratings]
    for event, count in s.execute(
        select(AuditEvent.event, func.count()).group_by(AuditEvent.event)
    ):
        lines.append(f'satuid_audit_events_total{{event="{event}"}} {count}')
    return Response("\n".join(lines) + "\n", mimetype="text/plain; version=0.0.4")
