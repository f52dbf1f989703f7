"""Append-only, hash-chained audit log.

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

from flask import current_app, has_request_context, request
from sqlalchemy import select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from idp.models.audit import AuditEvent
from idp.models.base import utcnow

GENESIS = "0" * 64
_CHAIN_LOCK = 0x5A7D_A0D1  # PostgreSQL advisory lock id for appending to the chain
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
    engine: Engine | None = None,
    **details: Any,
) -> None:
    """Write one audit row in its own transaction, so it stays even if the request fails later."""
    leaked = _FORBIDDEN_KEYS.intersection(k.lower() for k in details)
    if leaked:
        raise ValueError(f"audit details may not carry secrets: {sorted(leaked)}")
    engine = engine or current_app.extensions["idp.engine"]
    ip = client_ip()
    for _attempt in range(20):
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Writers queue on a transaction lock instead of racing for the tail and retrying.
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
            tail = conn.execute(
                select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
            ).scalar()
            prev = tail or GENESIS
            row = AuditEvent(
                at=utcnow().replace(microsecond=(utcnow().microsecond // 1000) * 1000),
                event=event,
                actor=actor,
                citizen_id=str(citizen_id) if citizen_id else None,
                client_id=client_id,
                ip=ip,
                details=details,
                prev_hash=prev,
            )
            row.hash = row_hash(prev, row)
            try:
                conn.execute(
                    AuditEvent.__table__.insert().values(
                        at=row.at, event=row.event, actor=row.actor, citizen_id=row.citizen_id,
                        client_id=row.client_id, ip=row.ip, details=row.details,
                        prev_hash=row.prev_hash, hash=row.hash,
                    )
                )
                return
            except IntegrityError:
                # Another writer linked to the same tail first; read the new tail and try again.
                continue
    raise RuntimeError("audit log: could not append after 20 attempts")


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    broken_id: int | None = None
    reason: str = ""


def verify(engine: Engine) -> VerifyResult:
    """Walk the chain in id order; report the first row whose link or content does not match."""
    from sqlalchemy.orm import Session

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
