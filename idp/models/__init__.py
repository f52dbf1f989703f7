"""Typed SQLAlchemy models, one module per domain. Importing this package registers them all."""

from idp.models.audit import AuditCheckpoint, AuditEvent, AuditNode
from idp.models.base import Base
from idp.models.citizen import AccountClosure, Citizen, IdentityVerification, OutboxMessage, Resident
from idp.models.consent import ClaimRelease, ConsentRecord
from idp.models.helpdesk import CaseAction, CaseEvent, FactorWaiting, HelpdeskCase, StaffMember
from idp.models.mfa import Passkey, RecoveryCode, TotpAuthenticator
from idp.models.oidc import Client, Grant, LogoutDelivery, ServiceRating, SigningKey, Token
from idp.models.store import StoreEntry, StoreSetMember

__all__ = ["AccountClosure", "AuditCheckpoint", "AuditEvent", "AuditNode", "Base", "CaseAction",
           "CaseEvent", "Citizen", "ClaimRelease", "Client", "ConsentRecord", "FactorWaiting", "Grant",
           "HelpdeskCase", "IdentityVerification", "LogoutDelivery", "OutboxMessage", "Passkey",
           "RecoveryCode", "Resident", "ServiceRating", "SigningKey", "StaffMember", "StoreEntry",
           "StoreSetMember", "Token", "TotpAuthenticator"]
