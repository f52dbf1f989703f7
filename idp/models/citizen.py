"""Citizens (accounts keyed on the NIK) and the population registry's residents."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    Uuid,
    and_,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime, timestamp, timestamp_or_none, utcnow, uuid_pk


class Resident(Base):
    """A row of the population registry (the database adapter of ``identity/registry.py``)."""

    __tablename__ = "registry_resident"

    nik: Mapped[str] = mapped_column(String(16), primary_key=True)
    full_name: Mapped[str] = mapped_column(String(200))
    birth_place: Mapped[str] = mapped_column(String(100))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    sex: Mapped[str] = mapped_column(String(1))  # "M" or "F", as on the KTP (L/P)
    street_address: Mapped[str] = mapped_column(String(255))
    village: Mapped[str] = mapped_column(String(100))
    district: Mapped[str] = mapped_column(String(100))
    regency: Mapped[str] = mapped_column(String(100))
    province: Mapped[str] = mapped_column(String(100))
    postal_code: Mapped[str] = mapped_column(String(5))
    family_card_number: Mapped[str] = mapped_column(String(16))


class Citizen(Base):
    """A SatuID account. The primary key is random; the NIK is unique but never the OIDC ``sub``."""

    __tablename__ = "citizen"

    id: Mapped[uuid_pk]
    # Unique among open accounts only: a closed account keeps its NIK (its audit rows and consent
    # history point at it) and the resident may register again.
    nik: Mapped[str] = mapped_column(String(16))
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str] = mapped_column(Text)
    password_changed_at: Mapped[timestamp]
    locale: Mapped[str] = mapped_column(String(8), default="id")
    # An IANA zone (Asia/Jakarta, Asia/Makassar, Asia/Jayapura); None: the zone of the NIK's province.
    time_zone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Kept for the helpdesk's counter checks; identity checks are ``IdentityVerification`` rows, and
    # no level of authentication depends on it.
    in_person_verified_at: Mapped[timestamp_or_none]
    created_at: Mapped[timestamp]

    # Set when the account was closed (``account.closing``): no login, no tokens, no contacts.
    closed_at: Mapped[timestamp_or_none]

    __table_args__ = (
        Index("ix_citizen_nik", "nik"),
        Index("uq_citizen_open_nik", "nik", unique=True, postgresql_where=text("closed_at IS NULL"),
              sqlite_where=text("closed_at IS NULL")),
    )

    def touch_password(self) -> None:
        self.password_changed_at = utcnow()

    @staticmethod
    def open_with_nik(nik: str) -> ColumnElement[bool]:
        """The condition that finds the open account of a NIK (closed ones keep theirs)."""
        return and_(Citizen.nik == nik, Citizen.closed_at.is_(None))


class OutboxMessage(Base):
    """A message to a citizen's email or phone, sent by the delivery worker (``idp.outbox``).

    ``status``: pending (due at ``next_attempt_at``), sending (claimed by a worker until
    ``lease_until``), sent, or failed (given up, or its worker stopped mid-send: never sent twice).
    """

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(8))  # "email" or "sms"
    recipient: Mapped[str] = mapped_column(String(255), index=True)
    citizen_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("citizen.id", ondelete="SET NULL"), nullable=True
    )
    subject: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[timestamp]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[timestamp]
    lease_until: Mapped[timestamp_or_none]
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    sent_at: Mapped[timestamp_or_none]

    __table_args__ = (Index("ix_outbox_message_due", "status", "next_attempt_at"),)


class AccountClosure(Base):
    """A citizen's request to close their account (UU PDP): it waits ``due_at`` (7 days), while a
    link on every channel can cancel it, then ``account.closing`` closes the account."""

    __tablename__ = "account_closure"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    citizen_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("citizen.id", ondelete="CASCADE"),
                                                  index=True)
    requested_at: Mapped[timestamp]
    due_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    cancel_hash: Mapped[str] = mapped_column(String(64), unique=True)  # SHA-256 of the link's token
    status: Mapped[str] = mapped_column(String(16), default="waiting")  # waiting, cancelled, closed
    ended_at: Mapped[timestamp_or_none]

    __table_args__ = (
        Index("ix_account_closure_due", "status", "due_at"),
        # One waiting closure per citizen: a double submission cannot leave a second one that
        # "keep my account" would not cancel.
        Index("uq_account_closure_waiting", "citizen_id", unique=True,
              postgresql_where=text("status = 'waiting'"), sqlite_where=text("status = 'waiting'")),
    )


class IdentityVerification(Base):
    """A check of who the citizen is, kept with the identity (OpenID Connect for Identity Assurance
    1.0 ``verification``): the registry match at registration (an electronic record), later an
    in-person check of the KTP-el at a counter (a document). Never rewritten; never inherited by an
    authenticator."""

    __tablename__ = "identity_verification"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    citizen_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("citizen.id", ondelete="CASCADE"),
                                                  index=True)
    method: Mapped[str] = mapped_column(String(32))  # "registry_record" or "in_person"
    trust_framework: Mapped[str] = mapped_column(String(64))
    verified_at: Mapped[timestamp]
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # one IA evidence element
    case_id: Mapped[str | None] = mapped_column(String(64), nullable=True)  # the helpdesk case
