"""Second factors: TOTP authenticators, passkeys (WebAuthn credentials) and recovery codes.

Secrets never sit in clear in the database: the TOTP seed is encrypted (AES-GCM, key derived with
HKDF from the key-encryption key), a passkey row holds only a public key, and recovery codes are
stored as SHA-256 digests (see ``idp.auth.mfa.recovery`` for why a fast hash is right there).
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import JSON, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, timestamp, timestamp_or_none, uuid_pk


class TotpAuthenticator(Base):
    """A citizen's authenticator app (one per citizen). Counts as a factor once confirmed."""

    __tablename__ = "mfa_totp"

    id: Mapped[uuid_pk]
    citizen_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("citizen.id", ondelete="CASCADE"), unique=True
    )
    secret_encrypted: Mapped[str] = mapped_column(Text)
    confirmed_at: Mapped[timestamp_or_none]
    created_at: Mapped[timestamp]
    last_used_at: Mapped[timestamp_or_none]

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


class Passkey(Base):
    """A WebAuthn credential (W3C WebAuthn Level 3 §6.5.2 "credential record")."""

    __tablename__ = "mfa_passkey"

    id: Mapped[uuid_pk]
    citizen_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("citizen.id", ondelete="CASCADE"), index=True
    )
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1024), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(Integer, default=0)
    transports: Mapped[list[str]] = mapped_column(JSON, default=list)
    # "single_device" (bound to one authenticator) or "multi_device" (synced): decides hwk/swk.
    device_type: Mapped[str] = mapped_column(String(16), default="single_device")
    name: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[timestamp]
    last_used_at: Mapped[timestamp_or_none]


class RecoveryCode(Base):
    """One single-use recovery code, kept only as a digest."""

    __tablename__ = "mfa_recovery_code"
    __table_args__ = (UniqueConstraint("citizen_id", "code_hash", name="uq_mfa_recovery_code_citizen_hash"),)

    id: Mapped[uuid_pk]
    citizen_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("citizen.id", ondelete="CASCADE"), index=True
    )
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[timestamp]
    used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
