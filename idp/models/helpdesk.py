"""The helpdesk: staff accounts, cases about a citizen, and the actions taken inside them.

Staff are not citizens: they have their own table, password, authenticator and session cookie. Every
action on a citizen happens inside a case, and every step of a case is a ``CaseEvent`` (besides its
row in the hash-chained audit log), so the case page reads as a timeline.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, timestamp, timestamp_or_none, uuid_pk

ROLES = ("agent", "supervisor", "auditor")


class StaffMember(Base):
    """A helpdesk officer. Enrolment (password and authenticator) happens through a one-time link."""

    __tablename__ = "staff"

    id: Mapped[uuid_pk]
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(255), unique=True)
    nik: Mapped[str] = mapped_column(String(16), index=True)  # a case about this NIK is not theirs
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(Text, nullable=True)
    totp_secret_encrypted: Mapped[str | None] = mapped_column(Text, nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(Integer, nullable=True)  # no code twice
    enrolment_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    enrolment_expires_at: Mapped[timestamp_or_none]
    enrolled_at: Mapped[timestamp_or_none]
    disabled_at: Mapped[timestamp_or_none]
    created_at: Mapped[timestamp]

    @property
    def active(self) -> bool:
        return self.enrolled_at is not None and self.disabled_at is None


class HelpdeskCase(Base):
    """A request about one citizen: at a counter, over the phone, or the citizen's "not me" report."""

    __tablename__ = "helpdesk_case"

    id: Mapped[uuid_pk]
    reference: Mapped[str] = mapped_column(String(16), unique=True)  # read out over the phone
    channel: Mapped[str] = mapped_column(String(16))  # "counter", "phone" or "not_me"
    citizen_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("citizen.id", ondelete="SET NULL"), nullable=True, index=True)
    summary: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)  # open, closed
    # Which facts the person stated matched the registry, and for a counter visit the KTP-el.
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    evidence_checked_at: Mapped[timestamp_or_none]
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # a "not me" report's entry
    opened_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("staff.id"), nullable=True)
    outcome: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[timestamp]
    closed_at: Mapped[timestamp_or_none]


class CaseAction(Base):
    """Something done to the citizen's account inside a case: proposed, approved, waiting, applied
    or cancelled. Staff never see or set a secret: an action triggers what the citizen then does."""

    __tablename__ = "helpdesk_action"

    id: Mapped[uuid_pk]
    case_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("helpdesk_case.id", ondelete="CASCADE"),
                                               index=True)
    kind: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)
    proposed_by: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("staff.id"))
    approved_by: Mapped[uuid.UUID | None] = mapped_column(Uuid, ForeignKey("staff.id"), nullable=True)
    effective_at: Mapped[timestamp_or_none]
    cancel_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    created_at: Mapped[timestamp]
    decided_at: Mapped[timestamp_or_none]
    done_at: Mapped[timestamp_or_none]


class CaseEvent(Base):
    """One line of a case's timeline."""

    __tablename__ = "helpdesk_case_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    case_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("helpdesk_case.id", ondelete="CASCADE"),
                                               index=True)
    at: Mapped[timestamp]
    actor: Mapped[str] = mapped_column(String(64))  # "staff:<id>", "citizen:<id>" or "system"
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class FactorWaiting(Base):
    """A first authenticator added with nothing stronger than an emailed code behind it: it counts
    toward level 2 only from ``usable_from``; until then every channel was told and may cancel it
    (which removes the factor), and a counter case may let it count at once."""

    __tablename__ = "mfa_factor_waiting"

    id: Mapped[uuid_pk]
    citizen_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("citizen.id", ondelete="CASCADE"),
                                                  index=True)
    factor: Mapped[str] = mapped_column(String(16))  # "totp", "passkey" or "sms"
    factor_ref: Mapped[str] = mapped_column(String(64), default="")  # the passkey's id
    usable_from: Mapped[dt.datetime] = mapped_column()
    cancel_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[timestamp]
    cancelled_at: Mapped[timestamp_or_none]
    case_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, nullable=True)  # cleared at a counter
