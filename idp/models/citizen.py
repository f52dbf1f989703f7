"""Citizens (accounts keyed on the NIK) and the population registry's residents."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, timestamp, timestamp_or_none, utcnow, uuid_pk


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
    nik: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    full_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(255), nullable=True)
    email_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    phone: Mapped[str | None] = mapped_column(String(32), nullable=True)
    phone_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    password_hash: Mapped[str] = mapped_column(Text)
    password_changed_at: Mapped[timestamp]
    locale: Mapped[str] = mapped_column(String(8), default="id")
    # Kept for the helpdesk's counter checks; identity checks are ``IdentityVerification`` rows, and
    # no level of authentication depends on it.
    in_person_verified_at: Mapped[timestamp_or_none]
    created_at: Mapped[timestamp]

    def touch_password(self) -> None:
        self.password_changed_at = utcnow()


class OutboxMessage(Base):
    """A message to a citizen's email or phone. A delivery worker (or /dev/outbox) reads it."""

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
    sent_at: Mapped[timestamp_or_none]


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
