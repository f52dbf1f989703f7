"""Consent records and claim releases (UU PDP, Law 27 of 2022): append-only, never rewritten."""

from __future__ import annotations

import uuid

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, BigId, timestamp


class ConsentRecord(Base):
    """One event in a citizen's consent to a portal: granted, extended or withdrawn.

    The latest record for (citizen, portal) is the consent in force; a granted or extended record
    holds the full set of scopes and claims consented to at that moment.
    """

    __tablename__ = "consent_record"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    citizen_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("citizen.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(100), ForeignKey("oidc_client.client_id"))
    action: Mapped[str] = mapped_column(String(16))  # granted, extended, withdrawn
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    claims: Mapped[list[str]] = mapped_column(JSON, default=list)
    purpose: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[timestamp]

    __table_args__ = (Index("ix_consent_record_citizen_client", "citizen_id", "client_id"),)


class ClaimRelease(Base):
    """Claims handed to a portal (in an ID token or from userinfo), shown at /account/activity."""

    __tablename__ = "claim_release"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    citizen_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("citizen.id", ondelete="CASCADE"),
                                                  index=True)
    client_id: Mapped[str] = mapped_column(String(100), ForeignKey("oidc_client.client_id"))
    channel: Mapped[str] = mapped_column(String(16))  # id_token, userinfo
    claims: Mapped[list[str]] = mapped_column(JSON, default=list)
    released_at: Mapped[timestamp]
    # The audit event recording this release (no foreign key: the log is partitioned on PostgreSQL).
    audit_event_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
