"""Typed SQLAlchemy models, one module per domain. Importing this package registers them all."""

from idp.models.audit import AuditEvent
from idp.models.base import Base
from idp.models.citizen import Citizen, OutboxMessage, Resident
from idp.models.consent import ClaimRelease, ConsentRecord  # noqa: F401
from idp.models.mfa import Passkey, RecoveryCode, TotpAuthenticator  # noqa: F401
from idp.models.oidc import Client, Grant, LogoutDelivery, SigningKey, Token  # noqa: F401
from idp.models.store import StoreEntry, StoreSetMember

__all__ = ["AuditEvent", "Base", "Citizen", "OutboxMessage", "Resident", "StoreEntry", "StoreSetMember"]
