"""Closing an account at the citizen's request (UU PDP art. 8 and 16: the right to end processing
and to have one's data erased).

The request waits ``WAIT`` (7 days) while a link on every channel, or the account page, can cancel
it: a thief who knows the password must not be able to erase the owner. Then ``close_due`` (run by
``flask accounts close-due``) withdraws every consent, revokes every grant and token, ends every
session with back-channel logout to the portals, removes the factors and contacts, and marks the
account closed. The row stays, with the NIK and name, because consent records, claim releases,
helpdesk cases and audit rows point at it and the law requires them kept; no one can log in to it,
and the NIK may register a new account.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

from flask import current_app, url_for
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from idp import audit, i18n, revocation
from idp.auth import session as sso
from idp.auth.mfa.notices import notify
from idp.consent import records
from idp.db import get_session, rowcount, unit_of_work
from idp.identity import zones
from idp.models import (
    AccountClosure,
    Citizen,
    Client,
    ConsentRecord,
    FactorWaiting,
    Grant,
    Passkey,
    RecoveryCode,
    TotpAuthenticator,
)
from idp.models.base import secret_digest, utcnow

WAIT = dt.timedelta(days=7)


def pending(session: Session, citizen_id: uuid.UUID) -> AccountClosure | None:
    return session.scalar(select(AccountClosure).where(AccountClosure.citizen_id == citizen_id,
                                                       AccountClosure.status == "waiting"))


def request_closure(session: Session, citizen: Citizen) -> AccountClosure:
    """Start the wait (or return the one in progress) and tell every channel, with the cancel link."""
    existing = pending(session, citizen.id)
    if existing is not None:
        return existing
    token = secrets.token_urlsafe(32)
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    # Two submissions at once: the partial unique index keeps one waiting row, and the second
    # request finds it instead of failing.
    inserted = session.execute(dialect.insert(AccountClosure).values(
        citizen_id=citizen.id, requested_at=utcnow(), due_at=utcnow() + WAIT,
        cancel_hash=secret_digest(token), status="waiting").on_conflict_do_nothing()
        .returning(AccountClosure.id)).scalar()
    if inserted is None:
        row = pending(session, citizen.id)
        assert row is not None
        return row
    row = session.get(AccountClosure, inserted)
    assert row is not None
    link = current_app.config["IDP"].issuer + url_for("account.cancel_closure_link", token=token)
    notify(citizen, _l("SatuID: your account will be closed"),
           _l("You asked to close your SatuID account. It will be closed on %(when)s: every service "
              "loses access and you can no longer log in. To keep your account, cancel with this "
              "link: %(link)s\nIf this was not you, cancel now and change your password.",
              when=i18n.Moment(row.due_at, zones.of_citizen(citizen)), link=link))
    audit.append("account_closure_requested", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 due_at=row.due_at.isoformat())
    return row


def by_cancel_token(session: Session, token: str) -> AccountClosure | None:
    if not token or len(token) > 64:
        return None
    return session.scalar(select(AccountClosure).where(AccountClosure.cancel_hash == secret_digest(token),
                                                       AccountClosure.status == "waiting"))


def cancel(session: Session, row: AccountClosure, actor: str) -> bool:
    """Cancel a waiting closure (compare-and-set: a closure already done stays done)."""
    done = rowcount(session.execute(update(AccountClosure).where(
        AccountClosure.citizen_id == row.citizen_id, AccountClosure.status == "waiting").values(
        status="cancelled", ended_at=utcnow()))) >= 1
    if done:
        citizen = session.get(Citizen, row.citizen_id)
        if citizen is not None:
            notify(citizen, _l("SatuID: your account stays open"),
                   _l("The closing of your SatuID account was cancelled. Nothing was changed."))
        audit.append("account_closure_cancelled", actor=actor, citizen_id=row.citizen_id)
    return done


def close(session: Session, citizen: Citizen, reason: str = "account_closed") -> None:
    """Close the account now, in this unit of work (``close_due`` after the wait)."""
    cid = citizen.id
    for client_id in set(session.scalars(select(ConsentRecord.client_id).where(
            ConsentRecord.citizen_id == cid))):
        client = session.get(Client, client_id)
        if client is not None:
            records.withdraw(session, cid, client)
    # Portals that still hold a grant from a session that is gone are told too.
    live = {s.sid for s in sso.sessions_of(str(cid))}
    told: dict[str, set[str]] = {}
    for grant in session.scalars(select(Grant).where(Grant.citizen_id == cid, Grant.revoked_at.is_(None))):
        if grant.sid and grant.sid not in live:
            told.setdefault(grant.sid, set()).add(grant.client_id)
    revocation.revoke_grants(cid, None, reason=reason)
    ended = sso.end_all(str(cid), reason=reason)
    for sid, client_ids in told.items():
        sso.session_ended.send(current_app._get_current_object(),  # type: ignore[attr-defined]  # Werkzeug's proxy
                               sid=sid, citizen_id=str(cid), client_ids=sorted(client_ids), reason=reason)
    notify(citizen, _l("SatuID: your account is closed"),
           _l("Your SatuID account is closed. Services no longer receive your data. The records the "
              "law requires are kept. You can create a new account with your NIK at any time."))
    for model in (TotpAuthenticator, Passkey, RecoveryCode, FactorWaiting):
        session.execute(delete(model).where(model.citizen_id == cid))
    citizen.email = citizen.phone = None
    citizen.email_verified = citizen.phone_verified = False
    citizen.password_hash = "!closed"  # no argon2 hash: nothing verifies against it
    citizen.closed_at = utcnow()
    audit.append("account_closed", actor="system", citizen_id=cid, sessions_ended=ended, reason=reason)


def close_due() -> int:
    """Close every account whose wait is over; each in its own unit of work, claimed with a
    compare-and-set, so two runs at once close each account once. Returns how many were closed."""
    session = get_session()
    due = list(session.scalars(select(AccountClosure.id).where(
        AccountClosure.status == "waiting", AccountClosure.due_at <= utcnow()).order_by(AccountClosure.id)))
    session.commit()
    closed = 0
    for closure_id in due:
        with unit_of_work() as work:
            claimed = rowcount(work.execute(update(AccountClosure).where(
                AccountClosure.id == closure_id, AccountClosure.status == "waiting",
                AccountClosure.due_at <= utcnow()).values(status="closed", ended_at=utcnow()))) == 1
            row = work.get(AccountClosure, closure_id)
            citizen = work.get(Citizen, row.citizen_id) if claimed and row is not None else None
            if citizen is not None and citizen.closed_at is None:
                close(work, citizen)
                closed += 1
    return closed
