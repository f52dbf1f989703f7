"""Everything SatuID holds about a citizen, as one JSON document (UU PDP art. 7 and 13: the right to
see and to obtain one's personal data in a common machine-readable format).

What authenticates is described, never given: no password hash, TOTP seed, passkey public key or
recovery-code hash leaves the database. Staff are named by their role in the case, not their NIK.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.auth import session as sso
from idp.models import (
    AccountClosure,
    AuditEvent,
    CaseAction,
    CaseEvent,
    Citizen,
    ClaimRelease,
    Client,
    ConsentRecord,
    FactorWaiting,
    Grant,
    HelpdeskCase,
    IdentityVerification,
    Passkey,
    RecoveryCode,
    Resident,
    ServiceRating,
    TotpAuthenticator,
)
from idp.models.base import utcnow
from idp.useragents import device_name

FORMAT = "satuid-export/1"


def _t(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _unix(value: int) -> str:
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


def _rows(session: Session, model: Any, *where: Any, order: Any) -> list[Any]:
    return list(session.scalars(select(model).where(*where).order_by(order)))


def export(session: Session, citizen: Citizen) -> dict[str, Any]:
    """The document; times are ISO 8601 in UTC."""
    cid = citizen.id
    names = {c.client_id: c.name for c in session.scalars(select(Client))}
    resident = session.get(Resident, citizen.nik)
    cases = _rows(session, HelpdeskCase, HelpdeskCase.citizen_id == cid, order=HelpdeskCase.created_at)
    return {
        "format": FORMAT,
        "exported_at": _t(utcnow()),
        "registry": None if resident is None else {
            "nik": resident.nik, "full_name": resident.full_name, "birth_place": resident.birth_place,
            "birth_date": resident.birth_date.isoformat(), "sex": resident.sex,
            "street_address": resident.street_address, "village": resident.village,
            "district": resident.district, "regency": resident.regency, "province": resident.province,
            "postal_code": resident.postal_code, "family_card_number": resident.family_card_number},
        "account": {
            "id": str(cid), "nik": citizen.nik, "full_name": citizen.full_name,
            "language": citizen.locale, "time_zone": citizen.time_zone,
            "created_at": _t(citizen.created_at), "password_changed_at": _t(citizen.password_changed_at),
            "in_person_verified_at": _t(citizen.in_person_verified_at)},
        "contacts": {"email": citizen.email, "email_verified": citizen.email_verified,
                     "phone": citizen.phone, "phone_verified": citizen.phone_verified},
        "identity_verifications": [
            {"method": v.method, "trust_framework": v.trust_framework, "verified_at": _t(v.verified_at),
             "evidence": v.evidence, "case": v.case_id}
            for v in _rows(session, IdentityVerification, IdentityVerification.citizen_id == cid,
                           order=IdentityVerification.id)],
        "consents": [
            {"id": r.id, "service": r.client_id, "service_name": names.get(r.client_id),
             "action": r.action, "scopes": r.scopes, "claims": r.claims, "purpose": r.purpose,
             "at": _t(r.created_at)}
            for r in _rows(session, ConsentRecord, ConsentRecord.citizen_id == cid, order=ConsentRecord.id)],
        "data_releases": [
            {"id": r.id, "service": r.client_id, "service_name": names.get(r.client_id),
             "channel": r.channel, "claims": r.claims, "at": _t(r.released_at)}
            for r in _rows(session, ClaimRelease, ClaimRelease.citizen_id == cid, order=ClaimRelease.id)],
        "authorizations": [
            {"service": g.client_id, "service_name": names.get(g.client_id), "created_at": _t(g.created_at),
             "ended_at": _t(g.revoked_at), "ended_because": g.revoked_reason}
            for g in _rows(session, Grant, Grant.citizen_id == cid, order=Grant.created_at)],
        "sessions": [
            {"device": device_name(s.user_agent), "user_agent": s.user_agent, "ip": s.ip,
             "started_at": _unix(s.created_at), "last_active_at": _unix(s.last_seen),
             "level": s.acr, "methods": s.amr}
            for s in sorted(sso.sessions_of(str(cid)), key=lambda s: s.created_at)],
        "factors": {
            "authenticator_apps": [
                {"added_at": _t(t.created_at), "confirmed_at": _t(t.confirmed_at),
                 "last_used_at": _t(t.last_used_at)}
                for t in _rows(session, TotpAuthenticator, TotpAuthenticator.citizen_id == cid,
                               order=TotpAuthenticator.created_at)],
            "passkeys": [
                {"name": p.name, "added_at": _t(p.created_at), "last_used_at": _t(p.last_used_at),
                 "synced": p.device_type == "multi_device"}
                for p in _rows(session, Passkey, Passkey.citizen_id == cid, order=Passkey.created_at)],
            "recovery_codes": [
                {"made_at": _t(r.created_at), "used_at": _t(r.used_at)}
                for r in _rows(session, RecoveryCode, RecoveryCode.citizen_id == cid,
                               order=RecoveryCode.created_at)],
            "sms": {"phone": citizen.phone} if citizen.phone and citizen.phone_verified else None,
            "waiting": [
                {"factor": w.factor, "usable_from": _t(w.usable_from)}
                for w in _rows(session, FactorWaiting, FactorWaiting.citizen_id == cid,
                               order=FactorWaiting.usable_from)]},
        "helpdesk_cases": [_case(session, case) for case in cases],
        "ratings": [
            {"service": r.client_id, "month": r.month, "score": r.score, "comment": r.comment,
             "at": _t(r.created_at)}
            for r in _rows(session, ServiceRating, ServiceRating.citizen_id == cid, order=ServiceRating.id)],
        "closure_requests": [
            {"requested_at": _t(c.requested_at), "due_at": _t(c.due_at), "status": c.status,
             "ended_at": _t(c.ended_at)}
            for c in _rows(session, AccountClosure, AccountClosure.citizen_id == cid,
                           order=AccountClosure.id)],
        "audit_events": [
            # What an officer did is told without their address or notes (the case says why).
            {"id": e.id, "at": _t(e.at), "event": e.event, "actor": _actor(e.actor, cid),
             "service": e.client_id, **({} if e.actor.startswith("staff:") else
                                        {"ip": e.ip, "details": e.details})}
            for e in _rows(session, AuditEvent, AuditEvent.citizen_id == str(cid), order=AuditEvent.id)],
    }


def _actor(actor: str, citizen_id: uuid.UUID) -> str:
    """"you", "helpdesk", or the system: who did it, without naming an officer."""
    if actor == f"citizen:{citizen_id}":
        return "citizen"
    if actor.startswith("staff:"):
        return "helpdesk"
    return actor.split(":")[0]


def _case(session: Session, case: HelpdeskCase) -> dict[str, Any]:
    return {
        "reference": case.reference, "channel": case.channel, "status": case.status,
        "opened_at": _t(case.created_at), "closed_at": _t(case.closed_at), "report": case.report,
        "evidence_checked": case.evidence, "outcome": case.outcome,
        "actions": [{"kind": a.kind, "status": a.status, "proposed_at": _t(a.created_at),
                     "decided_at": _t(a.decided_at), "effective_at": _t(a.effective_at),
                     "done_at": _t(a.done_at)}
                    for a in _rows(session, CaseAction, CaseAction.case_id == case.id,
                                   order=CaseAction.created_at)],
        "timeline": [{"at": _t(e.at), "what": e.kind, "by": e.actor.split(":")[0]}
                     for e in _rows(session, CaseEvent, CaseEvent.case_id == case.id, order=CaseEvent.id)],
    }
