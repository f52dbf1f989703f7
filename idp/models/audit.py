"""The audit log: events, the Merkle tree over them, and its signed checkpoints (``idp.audit``).

An event is inserted with no place in the tree; the checkpointer later gives it the next leaf index
and its leaf hash. On PostgreSQL ``audit_event`` is partitioned by month of ``at`` (migration
``0008_audit_merkle``), so its primary key there is (id, at); ids stay unique, drawn from one sequence.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, LargeBinary, SmallInteger, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, BigId, UTCDateTime, timestamp


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        # The checkpointer's queue: events not yet in the tree (few, whatever the log's size).
        Index("ix_audit_event_pending", "id", postgresql_where="leaf_index IS NULL",
              sqlite_where="leaf_index IS NULL"),
        # The newest events of one kind, by one index step (``audit.newest``).
        Index("ix_audit_event_event_id", "event", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[timestamp]
    event: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(100))  # "citizen:<id>", "staff:<id>", "system", "anonymous"
    citizen_id: Mapped[str | None] = mapped_column(String(36), index=True, nullable=True)
    client_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # 128 random bits the leaf commits to, so that a leaf hash seen in a proof cannot be matched
    # against guessed fields; None for events written before salts (their leaves had none).
    salt: Mapped[bytes | None] = mapped_column(LargeBinary(16), nullable=True)
    leaf_index: Mapped[int | None] = mapped_column(BigInteger, index=True, nullable=True)
    leaf_hash: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)


class AuditNode(Base):
    """The hash of a complete, aligned subtree of 2**level leaves starting at leaf index * 2**level.

    Kept only from ``audit.STORED_LEVEL`` up (one row per 256 leaves and their ancestors), so that a
    proof reads O(log n) nodes and at most 256 leaf hashes whatever the log's size.
    """

    __tablename__ = "audit_node"

    level: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    hash: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditCheckpoint(Base):
    """A signed statement of the tree's size and root at a time (a C2SP signed note)."""

    __tablename__ = "audit_checkpoint"

    tree_size: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary(32))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    note: Mapped[str] = mapped_column(Text)
    verifier_key: Mapped[str] = mapped_column(String(200))
