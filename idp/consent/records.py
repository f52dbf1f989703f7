"""Consent records: what a citizen agreed to share with a portal, append-only (UU PDP Art. 20–22).

The consent in force for (citizen, portal) is the latest record; granted and extended records carry
the whole consented set, withdrawn ones end it. Nothing is ever updated or deleted.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from idp import audit, revocation
from idp.models import Client, ConsentRecord

SCOPE_LABELS = {
    "openid": _l("A SatuID identifier for this service (not your NIK)"),
    "offline_access": _l("Keep access while you are not using the service, until you withdraw consent"),
}
CLAIM_LABELS = {
    "name": _l("Your full name"),
    "birthdate": _l("Your date of birth"),
    "gender": _l("Your sex"),
    "locale": _l("Your preferred language"),
    "email": _l("Your email address"),
    "email_verified": _l("Whether your email address is verified"),
    "phone_number": _l("Your phone number"),
    "phone_number_verified": _l("Whether your phone number is verified"),
    "address": _l("Your address from the population registry"),
    "nik": _l("Your NIK (national identity number)"),
    "sub": _l("Your SatuID identifier for this service"),
    "place_of_birth": _l("Your place of birth"),
    "verified_claims": _l("That these details were checked against the population registry, and when"),
}


@dataclass
class Consent:
    scopes: set[str]
    claims: set[str]

    def covers(self, scopes: list[str], claims: list[str]) -> bool:
        return set(scopes) <= self.scopes and set(claims) <= self.claims


# The three columns of the latest record, not the ORM row, in a statement built once: every silent
# sign-on asks this.
_LATEST = (select(ConsentRecord.action, ConsentRecord.scopes, ConsentRecord.claims)
           .where(ConsentRecord.citizen_id == bindparam("citizen_id"),
                  ConsentRecord.client_id == bindparam("client_id"))
           .order_by(ConsentRecord.id.desc()).limit(1))


def active(session: Session, citizen_id: uuid.UUID, client_id: str) -> Consent | None:
    record = session.execute(_LATEST, {"citizen_id": citizen_id, "client_id": client_id}).first()
    if record is None or record.action == "withdrawn":
        return None
    return Consent(set(record.scopes), set(record.claims))


def give(session: Session, citizen_id: uuid.UUID, client: Client, scopes: list[str],
         claims: list[str]) -> ConsentRecord:
    """Record consent to ``scopes``/``claims`` on top of what is already in force."""
    current = active(session, citizen_id, client.client_id)
    action = "granted" if current is None else "extended"
    if current is not None:
        scopes = sorted(current.scopes | set(scopes))
        claims = sorted(current.claims | set(claims))
    record = ConsentRecord(citizen_id=citizen_id, client_id=client.client_id, action=action,
                           scopes=sorted(scopes), claims=sorted(claims), purpose=client.purpose)
    session.add(record)
    audit.append("consent_" + action, actor=f"citizen:{citizen_id}", citizen_id=citizen_id,
                 client_id=client.client_id, scopes=record.scopes, claims=record.claims)
    return record


def withdraw(session: Session, citizen_id: uuid.UUID, client: Client) -> bool:
    """Withdraw consent and revoke every grant (access and refresh tokens) of the portal for this
    citizen."""
    if active(session, citizen_id, client.client_id) is None:
        return False
    session.add(ConsentRecord(citizen_id=citizen_id, client_id=client.client_id, action="withdrawn",
                              scopes=[], claims=[], purpose=client.purpose))
    audit.append("consent_withdrawn", actor=f"citizen:{citizen_id}", citizen_id=citizen_id,
                 client_id=client.client_id)
    revocation.revoke_grants(citizen_id, client.client_id, reason="consent_withdrawn")
    return True


def history(session: Session, citizen_id: uuid.UUID) -> list[ConsentRecord]:
    return list(session.scalars(select(ConsentRecord).where(ConsentRecord.citizen_id == citizen_id)
                                .order_by(ConsentRecord.id.desc())))


def record_release(citizen_id: uuid.UUID, client: Client, channel: str, names: list[str]) -> None:
    """Log a release of claims (ID token or userinfo) for /account/activity and the audit log."""
    audit.release(citizen_id, client.client_id, channel, names)
