"""The waiting period of an authenticator added with nothing stronger than a password behind it.

Whoever holds a citizen's password and mailbox could otherwise add their own authenticator app,
phone or passkey and reach level 2 at once. So a factor added by a session that proved no usable
second factor in the last few minutes counts only from ``usable_from`` (``IDP_AUTHENTICATOR_
WAITING_SECONDS``, 24 h by default). Meanwhile every verified channel of the citizen is told, with a
one-time link that cancels it: the factor goes, and every SSO session of the citizen ends. A
helpdesk counter, having seen the citizen in person, may end the wait at once
(``clear_at_counter``).

Times are read from ``idp.clock`` so tests can move past the wait.
"""

from __future__ import annotations

import datetime as dt
import secrets
import uuid

from flask import current_app, url_for
from flask import session as ui_session
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from idp import audit, clock, i18n
from idp.auth import session as sso
from idp.auth.mfa.notices import notify
from idp.db import rowcount
from idp.identity import zones
from idp.models import Citizen
from idp.models.base import secret_digest
from idp.models.helpdesk import FactorWaiting
from idp.models.mfa import Passkey, TotpAuthenticator

#: The kinds of factor a waiting row can hold.
KINDS = ("totp", "passkey", "sms")
MAX_TOKEN_LENGTH = 64
#: How long after registering, in the browser that registered, factors are added without waiting.
NEW_ACCOUNT_SECONDS = 30 * 60
_NEW_ACCOUNT = "new_account"  # the UI cookie's entry: the sid of the session registration began


def mark_new_account(sid: str) -> None:
    """The SSO session ``sid`` was started by the registration that created the account.

    Factors added in it are usable at once: the account is minutes old, there is no earlier owner
    to take it over from, and whoever registered proved the NIK, name and birth date against the
    registry and a contact by code. Kept in the signed UI cookie of the browser that registered,
    for that session only."""
    ui_session[_NEW_ACCOUNT] = {"sid": sid, "until": int(clock.time()) + NEW_ACCOUNT_SECONDS}


def is_new_account(sid: str) -> bool:
    mark = ui_session.get(_NEW_ACCOUNT)
    return (isinstance(mark, dict) and mark.get("sid") == sid
            and int(mark.get("until", 0)) > clock.time())


def active(session: Session, citizen_id: uuid.UUID) -> list[FactorWaiting]:
    """The citizen's factors still waiting: neither cancelled nor past ``usable_from``."""
    return list(session.scalars(select(FactorWaiting).where(
        FactorWaiting.citizen_id == citizen_id, FactorWaiting.cancelled_at.is_(None),
        FactorWaiting.factor.in_(KINDS), FactorWaiting.usable_from > clock.now())
        .order_by(FactorWaiting.usable_from)))


def begin(session: Session, citizen: Citizen, factor: str, factor_ref: str = "") -> FactorWaiting:
    """Start the wait for a factor just added and tell every verified channel, with a cancel link."""
    assert factor in KINDS
    token = secrets.token_urlsafe(32)
    seconds = current_app.config["IDP"].authenticator_waiting_seconds
    row = FactorWaiting(citizen_id=citizen.id, factor=factor, factor_ref=factor_ref,
                        usable_from=clock.now() + dt.timedelta(seconds=seconds),
                        cancel_hash=secret_digest(token), created_at=clock.now())
    session.add(row)
    session.flush()
    link = current_app.config["IDP"].issuer + url_for("security.waiting_cancel", token=token)
    notify(citizen, _l("SatuID: a new way to log in was added"),
           _l("%(factor)s was added to your SatuID account. It can be used from %(when)s. If this "
              "was not you, cancel it now with this link: %(link)s\nCancelling removes it and logs "
              "out every device. Then change your password and contact the SatuID helpdesk.",
              factor=FACTOR_NAMES[factor], link=link,
              when=i18n.Moment(row.usable_from, zones.of_citizen(citizen))))
    audit.append("mfa_factor_waiting", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 factor=factor, usable_from=row.usable_from.isoformat())
    return row


FACTOR_NAMES = {"totp": _l("An authenticator app"), "passkey": _l("A passkey"),
                "sms": _l("A phone number for SMS codes")}


def by_token(session: Session, token: str) -> FactorWaiting | None:
    """The waiting row a cancel link names, while it can still be cancelled."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    row = session.scalar(select(FactorWaiting).where(
        FactorWaiting.cancel_hash == secret_digest(token)))
    if row is None or row.factor not in KINDS or row.cancelled_at is not None \
            or row.usable_from <= clock.now():
        return None
    return row


def cancel(session: Session, row: FactorWaiting, actor: str) -> None:
    """Remove the waiting factor, end every session of the citizen, and tell them."""
    citizen = session.get(Citizen, row.citizen_id)
    assert citizen is not None  # the row is deleted with the citizen
    if row.factor == "totp":
        session.execute(delete(TotpAuthenticator).where(TotpAuthenticator.citizen_id == citizen.id))
    elif row.factor == "passkey":
        passkey = session.get(Passkey, uuid.UUID(row.factor_ref)) if row.factor_ref else None
        if passkey is not None and passkey.citizen_id == citizen.id:
            session.delete(passkey)
    else:
        citizen.phone, citizen.phone_verified = None, False
    row.cancelled_at = clock.now()
    ended = sso.end_all(str(citizen.id), reason="factor_cancelled")
    audit.append("mfa_factor_cancelled", actor=actor, citizen_id=citizen.id, factor=row.factor,
                 sessions_ended=ended)
    notify(citizen, _l("SatuID: the new way to log in was cancelled"),
           _l("%(factor)s that was waiting on your SatuID account was removed, and every device "
              "was logged out. If you did not add it yourself, change your password now.",
              factor=FACTOR_NAMES[row.factor]))


def forget(session: Session, citizen_id: uuid.UUID, factor: str, factor_ref: str = "") -> None:
    """The citizen removed a factor themselves: its wait, if any, is over (as cancelled)."""
    session.execute(update(FactorWaiting).where(
        FactorWaiting.citizen_id == citizen_id, FactorWaiting.factor == factor,
        FactorWaiting.factor_ref == factor_ref, FactorWaiting.cancelled_at.is_(None),
        FactorWaiting.usable_from > clock.now()).values(cancelled_at=clock.now()))


def clear_at_counter(session: Session, citizen_id: uuid.UUID, case_id: uuid.UUID) -> int:
    """A helpdesk case saw the citizen in person: their waiting factors count from now. Returns how
    many were waiting. For the helpdesk to call within its own unit of work (audited here)."""
    rows = active(session, citizen_id)
    now = clock.now()
    for row in rows:
        row.usable_from = now
        row.case_id = case_id
    if rows:
        audit.append("mfa_factor_waiting_cleared", actor=f"case:{case_id}", citizen_id=citizen_id,
                     factors=[row.factor for row in rows], case_id=str(case_id))
    return len(rows)


#: How long a helpdesk reset lets the citizen add a new first authenticator without waiting.
HELPDESK_CLEARANCE = dt.timedelta(days=7)


def allow_next_at_once(session: Session, citizen_id: uuid.UUID, case_id: uuid.UUID) -> None:
    """A helpdesk case removed the citizen's factors after its own cooling-off (or at a counter):
    that wait stood in for this one, so the next first authenticator counts at once. Kept as a row
    of its own (factor "helpdesk"), already past its ``usable_from``."""
    session.add(FactorWaiting(citizen_id=citizen_id, factor="helpdesk", factor_ref=str(case_id),
                              usable_from=clock.now(), cancel_hash=secret_digest(secrets.token_urlsafe(32)),
                              case_id=case_id, created_at=clock.now()))



def use_allowance(session: Session, citizen_id: uuid.UUID) -> bool:
    """Spend a helpdesk reset's allowance (``allow_next_at_once``), if one is open: one factor
    counts at once, the next ones wait again."""
    row = session.scalar(select(FactorWaiting).where(
        FactorWaiting.citizen_id == citizen_id, FactorWaiting.factor == "helpdesk",
        FactorWaiting.cancelled_at.is_(None),
        FactorWaiting.created_at > clock.now() - HELPDESK_CLEARANCE).limit(1))
    if row is None:
        return False
    # Spent in one statement: two factors added at once cannot both use it.
    spent = session.execute(update(FactorWaiting).where(
        FactorWaiting.id == row.id, FactorWaiting.cancelled_at.is_(None))
        .values(cancelled_at=clock.now()))
    if rowcount(spent) != 1:
        return False
    audit.append("mfa_factor_waiting_waived", actor=f"case:{row.case_id}", citizen_id=citizen_id,
                 case_id=str(row.case_id))
    return True
