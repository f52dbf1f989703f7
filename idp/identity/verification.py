"""Who the citizen was checked to be, and how (OpenID Connect for Identity Assurance 1.0).

Registration matches the NIK, name and birth date against the population registry: an electronic
record, under the trust framework ``id_dukcapil``. The helpdesk's counter check of the KTP-el (a
document, in person) is recorded the same way, with its case. These are facts about the
identity; no level of authentication (``acr``) follows from them.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.models import Citizen, IdentityVerification
from idp.models.base import utcnow

TRUST_FRAMEWORK = "id_dukcapil"
REGISTRY = {"name": "Direktorat Jenderal Kependudukan dan Pencatatan Sipil", "country_code": "IDN"}
#: The claims the registry vouches for, and the IA evidence types SatuID records.
VERIFIED_CLAIMS = ("name", "birthdate", "gender", "place_of_birth", "address", "nik")
EVIDENCE_TYPES = ("electronic_record", "document")


def registry_evidence() -> dict[str, Any]:
    """IA 1.0 §5.4.4 ``electronic_record``: the population register, checked by its data."""
    return {"type": "electronic_record",
            "check_details": [{"check_method": "data", "organization": "Dukcapil"}],
            "record": {"type": "population_register", "source": dict(REGISTRY)}}


def record_registry_match(session: Session, citizen_id: uuid.UUID) -> IdentityVerification:
    """Registration matched the citizen against the registry: keep that fact with the identity."""
    row = IdentityVerification(citizen_id=citizen_id, method="registry_record",
                               trust_framework=TRUST_FRAMEWORK, verified_at=utcnow(),
                               evidence=registry_evidence())
    session.add(row)
    return row


def latest(session: Session, citizen_id: uuid.UUID) -> IdentityVerification | None:
    """The most recent verification of the citizen's identity."""
    return session.scalar(select(IdentityVerification)
                          .where(IdentityVerification.citizen_id == citizen_id)
                          .order_by(IdentityVerification.verified_at.desc(),
                                    IdentityVerification.id.desc()).limit(1))


def verification_element(row: IdentityVerification) -> dict[str, Any]:
    """IA 1.0 §5.4 ``verification``: the trust framework, when, and the evidence."""
    evidence = {**row.evidence, "time": row.verified_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {"trust_framework": row.trust_framework,
            "time": row.verified_at.strftime("%Y-%m-%dT%H:%M:%SZ"), "evidence": [evidence]}


def document_evidence(case_reference: str) -> dict[str, Any]:
    """IA 1.0 §5.4.4 ``document``: the KTP-el checked by an officer at a counter (physical
    in-person proofing, ``pipp``), with the helpdesk case that recorded it."""
    return {"type": "document",
            "check_details": [{"check_method": "vpip", "organization": "SatuID",
                               "txn": case_reference}],
            "method": "pipp",
            "document_details": {"type": "idcard", "issuer": dict(REGISTRY)}}


def record_in_person(session: Session, citizen: Citizen, case_reference: str) -> IdentityVerification:
    """A counter case checked the KTP-el: a fact about the identity, with its date and case."""
    now = utcnow()
    row = IdentityVerification(citizen_id=citizen.id, method="in_person",
                               trust_framework=TRUST_FRAMEWORK, verified_at=now,
                               evidence=document_evidence(case_reference), case_id=case_reference)
    citizen.in_person_verified_at = now
    session.add(row)
    return row


def verified_in_person(session: Session, citizen_id: uuid.UUID) -> IdentityVerification | None:
    return session.scalar(select(IdentityVerification)
                          .where(IdentityVerification.citizen_id == citizen_id,
                                 IdentityVerification.method == "in_person")
                          .order_by(IdentityVerification.verified_at.desc()).limit(1))
