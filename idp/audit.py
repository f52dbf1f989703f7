"""Append-only, hash-chained audit log.

An event joins the unit of work that caused it and is written when that work commits: a request
that fails leaves no audit row of what it did not do.

Each row's ``hash`` is SHA-256 over its predecessor's hash and the row's own canonical content, so
changing, deleting or reordering a row breaks every link after it; ``flask audit verify`` finds the
first broken one. Rows never carry a password, code, token or secret: callers pass names and ids only,
and ``append`` refuses detail keys that look like secrets.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from flask import has_request_context, request
from sqlalchemy import event, insert, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from idp.db import get_session, serialize
from idp.models.audit import AuditEvent
from idp.models.base import utcnow

GENESIS = "0" * 64
_CHAIN_LOCK = 0x5A7D_A0D1  # PostgreSQL advisory lock id for appending to the chain
_PENDING = "audit_pending"  # key of the unit of work's events in Session.info
_FORBIDDEN_KEYS = {"password", "code", "secret", "token", "otp", "client_secret", "refresh_token"}


def _content(row: AuditEvent) -> str:
    return json.dumps(
        {
            "at": row.at.isoformat(),
            "event": row.event,
            "actor": row.actor,
            "citizen_id": row.citizen_id,
            "client_id": row.client_id,
            "ip": row.ip,
            "details": row.details,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )


def row_hash(prev_hash: str, row: AuditEvent) -> str:
    return hashlib.sha256((prev_hash + _content(row)).encode()).hexdigest()


def client_ip() -> str | None:
    if not has_request_context():
        return None
    return request.remote_addr


def append(
    event: str,
    *,
    actor: str = "system",
    citizen_id: uuid.UUID | str | None = None,
    client_id: str | None = None,
    session: Session | None = None,
    **details: Any,
) -> None:
    """Record an event in the unit of work: it is written, linked to the chain, when the work
    commits, and never when the work is thrown away (nothing half-written)."""
    leaked = _FORBIDDEN_KEYS.intersection(k.lower() for k in details)
    if leaked:
        raise ValueError(f"audit details may not carry secrets: {sorted(leaked)}")
    now = utcnow()
    row = {
        "at": now.replace(microsecond=(now.microsecond // 1000) * 1000),
        "event": event, "actor": actor, "citizen_id": str(citizen_id) if citizen_id else None,
        "client_id": client_id, "ip": client_ip(), "details": details,
    }
    (session or get_session()).info.setdefault(_PENDING, []).append(row)


def write_pending(session: Session) -> None:
    """``before_commit``: link the unit of work's events to the chain's tail and insert them.

    The tail is read under a lock held only until this commit: PostgreSQL's transaction-scoped
    advisory lock, or on SQLite the database's write lock, taken first by a no-op write.
    """
    rows: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not rows:
        return
    serialize(session, _CHAIN_LOCK, "audit_event")
    conn = session.connection()
    prev = conn.execute(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).scalar()
    prev = prev or GENESIS
    values = []
    for row in rows:
        event = AuditEvent(**row, prev_hash=prev)
        event.hash = row_hash(prev, event)
        values.append({**row, "prev_hash": prev, "hash": event.hash})
        prev = event.hash
    conn.execute(insert(AuditEvent), values)


def init_app(maker: sessionmaker[Session]) -> None:
    event.listen(maker, "before_commit", write_pending)


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    broken_id: int | None = None
    reason: str = ""


def verify(engine: Engine) -> VerifyResult:
    """Walk the chain in id order; report the first row whose link or content does not match."""
    prev = GENESIS
    checked = 0
    with Session(engine) as session:
        for row in session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(1000):
            if row.prev_hash != prev:
                return VerifyResult(False, checked, row.id, "prev_hash does not link to the row before")
            if row_hash(prev, row) != row.hash:
                return VerifyResult(False, checked, row.id, "content does not match its hash")
            prev = row.hash
            checked += 1
    return VerifyResult(True, checked)
