"""Relying parties, signing keys, grants and tokens, and the back-channel logout outbox.

Every code, access token and refresh token carries the id of the grant it came from (as in
node-oidc-provider), so a replayed code or a reused refresh token revokes the whole grant in one
statement.
"""

from __future__ import annotations

import datetime as dt
import hmac
import uuid
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin
from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from idp.models.base import Base, UTCDateTime, secret_digest, timestamp, timestamp_or_none, uuid_pk

#: The life events and needs the services home groups portals by (Perpres 82/2023): a fixed list,
#: translated for citizens in ``idp.services.catalogue``; the operator assigns them per portal.
LIFE_EVENTS = ("birth", "education", "health", "social_assistance", "work", "business", "tax",
               "population_documents", "retirement", "death")

#: The two ways of sending a client secret (RFC 6749 §2.3.1): HTTP Basic, or in the request body.
SECRET_METHODS = ("client_secret_basic", "client_secret_post")


class Client(Base, ClientMixin):
    """A relying party (a service portal). Secrets are stored as SHA-256 of a 256-bit random value.

    Implements Authlib's ``ClientMixin``: exact redirect_uri matching (RFC 9700 §2.1), the code flow
    only, and the one token endpoint authentication method the portal registered.
    """

    __tablename__ = "oidc_client"

    client_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    logo_uri: Mapped[str | None] = mapped_column(String(500), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(100), default="")
    purpose: Mapped[str] = mapped_column(Text, default="")  # shown on the consent page
    secret_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    post_logout_redirect_uris: Mapped[list[str]] = mapped_column(JSON, default=list)
    sector_identifier: Mapped[str | None] = mapped_column(String(255), nullable=True)
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32), default="client_secret_basic")
    jwks: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    jwks_uri: Mapped[str | None] = mapped_column(String(500), nullable=True)
    backchannel_logout_uri: Mapped[str | None] = mapped_column(String(500), nullable=True)
    id_token_signed_response_alg: Mapped[str] = mapped_column(String(8), default="RS256")
    minimum_loa: Mapped[int] = mapped_column(Integer, default=1)
    accepted_factors: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty: any
    # The portal serves only citizens whose identity was checked in person (a KTP-el at a counter).
    requires_in_person: Mapped[bool] = mapped_column(Boolean, default=False)
    # The services home (``/layanan``): the life events the service belongs to, where SatuID starts
    # its sign-in (OIDC Core §4, third-party initiated login) and its complaint channel.
    life_events: Mapped[list[str]] = mapped_column(JSON, default=list)
    initiate_login_uri: Mapped[str | None] = mapped_column(String(500), nullable=True)
    complaint_uri: Mapped[str | None] = mapped_column(String(500), nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[timestamp]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # OIDC Core §3.1.2.1: redirect_uri is REQUIRED; no default is ever assumed.
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return ""
        return " ".join(s for s in scope.split() if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.secret_hash:
            return False
        return hmac.compare_digest(secret_digest(client_secret), self.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """A client that holds a secret may send it either way: stock libraries differ in their
        default (openid-client and mozilla-django-oidc post it, Authlib sends Basic), and so do
        Keycloak and node-oidc-provider accept both. ``private_key_jwt`` and public clients
        authenticate only the way they registered."""
        if self.token_endpoint_auth_method in SECRET_METHODS:
            return method in SECRET_METHODS
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")

    @property
    def client_metadata(self) -> dict[str, object]:
        return {"post_logout_redirect_uris": list(self.post_logout_redirect_uris)}


class SigningKey(Base):
    """A signing key: published as ``next``, signs as ``current``, stays published as ``retired``."""

    __tablename__ = "oidc_signing_key"

    kid: Mapped[str] = mapped_column(String(64), primary_key=True)
    alg: Mapped[str] = mapped_column(String(8))
    state: Mapped[str] = mapped_column(String(8), index=True)  # next, current, retired
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    private_encrypted: Mapped[str] = mapped_column(Text)  # Fernet token of the private JWK
    created_at: Mapped[timestamp]
    activated_at: Mapped[timestamp_or_none]
    retired_at: Mapped[timestamp_or_none]

    # One current and one next key per algorithm, even when two workers start on an empty database.
    __table_args__ = (Index("uq_oidc_signing_key_alg_live", "alg", "state", unique=True,
                            postgresql_where=text("state IN ('current', 'next')"),
                            sqlite_where=text("state IN ('current', 'next')")),)


class Grant(Base):
    """One authorization of a portal by a citizen: every code and token issued from it."""

    __tablename__ = "oidc_grant"

    id: Mapped[uuid_pk]
    client_id: Mapped[str] = mapped_column(String(100), ForeignKey("oidc_client.client_id"), index=True)
    citizen_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("citizen.id", ondelete="CASCADE"),
                                                  index=True)
    sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[timestamp]
    revoked_at: Mapped[timestamp_or_none]
    revoked_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Token(Base):
    """An access token (by its ``jti``) and, with ``offline_access``, its refresh token (by hash)."""

    __tablename__ = "oidc_token"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    grant_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("oidc_grant.id", ondelete="CASCADE"),
                                                index=True)
    client_id: Mapped[str] = mapped_column(String(100))
    citizen_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(Text)
    claims_request: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    auth_time: Mapped[int] = mapped_column(Integer)
    acr: Mapped[int] = mapped_column(Integer)
    amr: Mapped[list[str]] = mapped_column(JSON, default=list)
    sid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    issued_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    access_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    access_revoked_at: Mapped[timestamp_or_none]
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    # RFC 6749 §6: a rotated refresh token keeps the scope of the one it replaces, even when the
    # access token beside it was narrowed. None: the same as ``scope``.
    refresh_scope: Mapped[str | None] = mapped_column(Text, nullable=True)
    refresh_expires_at: Mapped[timestamp_or_none]
    refresh_used_at: Mapped[timestamp_or_none]  # rotated: presenting it again is reuse
    refresh_revoked_at: Mapped[timestamp_or_none]

    __table_args__ = (Index("ix_oidc_token_citizen_client", "citizen_id", "client_id"),)


class LogoutDelivery(Base):
    """A back-channel logout token waiting for (or done with) delivery to a portal."""

    __tablename__ = "oidc_logout_delivery"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(100), index=True)
    citizen_id: Mapped[str] = mapped_column(String(36))
    sid: Mapped[str] = mapped_column(String(64))
    uri: Mapped[str] = mapped_column(String(500))
    logout_token: Mapped[str] = mapped_column(Text)  # unused: tokens are signed when sent
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[timestamp_or_none]
    last_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[timestamp]
    delivered_at: Mapped[timestamp_or_none]


class ServiceRating(Base):
    """A citizen's rating of a service they used (1–5, an optional comment): one per month."""

    __tablename__ = "service_rating"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    citizen_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("citizen.id", ondelete="CASCADE"))
    client_id: Mapped[str] = mapped_column(String(100), ForeignKey("oidc_client.client_id"), index=True)
    month: Mapped[str] = mapped_column(String(7))  # "2026-11", in UTC+7 (WIB)
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[timestamp]

    __table_args__ = (Index("uq_service_rating_month", "citizen_id", "client_id", "month", unique=True),)
