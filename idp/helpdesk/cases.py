"""Cases: every helpdesk action on a citizen happens inside one, with four eyes where it counts.

A case has a channel (a counter visit, a phone call, or the citizen's own "not me" report), the
citizen it is about (found by a NIK lookup, which needs the case and a reason, is audited and capped
per officer per day), the evidence the officer checked against the registry, and actions:

==================  ==========  ===============================================================
action              who         when it takes effect
==================  ==========  ===============================================================
reset_link          an agent    at once: a reset link goes to the citizen's verified channels
unlock              an agent    at once: the password and second-factor locks end
remove_factors      four eyes   approved at a counter: at once; over the phone: after the
replace_email       four eyes   cooling-off (24 h), while every channel of the citizen is told
replace_phone       four eyes   and can cancel it with one link
verify_in_person    four eyes   counter only, the KTP-el checked: on approval
clear_waiting       four eyes   counter only: a new authenticator's waiting period ends
==================  ==========  ===============================================================

Staff never see or set a password, a secret or a code; an officer never acts on a case about their
own NIK; the officer who proposes may not approve. Each step is a line of the case's timeline and
a row of the audit log, and is told to the citizen on every verified channel.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from flask import current_app, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from idp import audit, clock, i18n, outbox, revocation, state
from idp.auth import lockout, reset
from idp.auth import session as sso
from idp.auth.mfa import waiting
from idp.config import Settings
from idp.db import rowcount
from idp.identity import contact as contacts
from idp.identity import verification, zones
from idp.identity.registry import get_registry, normalise_name, same_name
from idp.models import (
    CaseAction,
    CaseEvent,
    Citizen,
    FactorWaiting,
    HelpdeskCase,
    Passkey,
    RecoveryCode,
    StaffMember,
    TotpAuthenticator,
)
from idp.models.base import secret_digest, utcnow

CHANNELS = ("counter", "phone", "not_me")
CHANNEL_LABELS = {"counter": _l("Counter visit"), "phone": _l("Phone call"),
                  "not_me": _l("\"Not me\" report")}
#: The facts an officer compares with what the person says (and at a counter, the KTP-el shown).
FACTS = ("name", "birth_date", "birth_place", "family_card")
#: Comparisons per case: the facts are not a quiz to retry until they match.
MAX_EVIDENCE_CHECKS = 3


@dataclass(frozen=True)
class ActionKind:
    label: Any
    four_eyes: bool
    counter_only: bool = False
    param: str | None = None  # "email" or "phone": the new contact the action sets


ACTIONS = {
    "reset_link": ActionKind(_l("Send a password-reset link to the verified channels"), False),
    "unlock": ActionKind(_l("Unlock the account"), False),
    "remove_factors": ActionKind(_l("Remove every second factor"), True),
    "replace_email": ActionKind(_l("Replace the email address"), True, param="email"),
    "replace_phone": ActionKind(_l("Replace the phone number"), True, param="phone"),
    "verify_in_person": ActionKind(_l("Record the in-person identity check"), True, counter_only=True),
    "clear_waiting": ActionKind(_l("End a new authenticator's waiting period"), True,
                                counter_only=True),
}
STATUS_LABELS = {"proposed": _l("waiting for a supervisor"), "waiting": _l("cooling off"),
                 "applying": _l("in progress"), "applied": _l("done"), "cancelled": _l("cancelled"),
                 "rejected": _l("rejected"), "failed": _l("could not be done")}


class CaseRefused(Exception):
    """What an officer asked cannot be done; the message is shown to them."""


def _settings() -> Settings:
    settings: Settings = current_app.config["IDP"]
    return settings


def _reference() -> str:
    return "HD-" + "".join(secrets.choice("ACDEFGHJKLMNPQRTUVWXY34679") for _ in range(8))


def event(session: Session, case: HelpdeskCase, actor: str, what: str, **detail: Any) -> None:
    """A line of the case's timeline and a row of the audit log."""
    session.add(CaseEvent(case_id=case.id, actor=actor, kind=what, detail=detail))
    audit.append(f"helpdesk_{what}", actor=actor, citizen_id=case.citizen_id, session=session,
                 case=case.reference, **detail)


def _actor(member: StaffMember) -> str:
    return f"staff:{member.id}"


def _move(session: Session, action: CaseAction, from_: tuple[str, ...], to: str,
          **values: Any) -> bool:
    """Change an action's status only if it is still in one of ``from_``, in one statement: two
    supervisors approving at once, or a citizen cancelling while the change is carried out, cannot
    both win (SQLite has no SELECT ... FOR UPDATE)."""
    result = session.execute(update(CaseAction).where(
        CaseAction.id == action.id, CaseAction.status.in_(from_)).values(status=to, **values))
    moved = rowcount(result) == 1
    session.refresh(action)
    return moved


def citizen_of(session: Session, case: HelpdeskCase) -> Citizen | None:
    return session.get(Citizen, case.citizen_id) if case.citizen_id else None


def _tell(session: Session, citizen: Citizen, subject: Any, body: Any, **values: Any) -> None:
    with force_locale(citizen.locale):
        outbox.notify_citizen(session, citizen, str(subject), str(body) % values if values
                              else str(body))


def _own(member: StaffMember, citizen: Citizen | None) -> None:
    if citizen is not None and citizen.nik == member.nik:
        raise CaseRefused(_("This case is about your own NIK: another officer must handle it."))


def _workable(member: StaffMember, case: HelpdeskCase) -> None:
    if member.role not in ("agent", "supervisor"):
        raise CaseRefused(_("Your role does not allow this."))
    if case.status != "open":
        raise CaseRefused(_("This case is closed."))


# ---- opening, lookup, evidence -------------------------------------------------------------------

_NIK_LIKE = re.compile(r"\d{12,}")


def _scrub(text: str) -> str:
    """Free text goes to the audit log: long digit runs (a NIK, a KK number) are cut out."""
    return _NIK_LIKE.sub("[number]", text.strip())[:500]


def open_case(session: Session, member: StaffMember, channel: str, summary: str) -> HelpdeskCase:
    if member.role not in ("agent", "supervisor") or channel not in ("counter", "phone"):
        raise CaseRefused(_("Your role does not allow this."))
    case = HelpdeskCase(reference=_reference(), channel=channel, summary=_scrub(summary),
                        opened_by=member.id)
    session.add(case)
    session.flush()
    event(session, case, _actor(member), "case_opened", channel=channel)
    return case


def lookup(session: Session, member: StaffMember, case: HelpdeskCase, nik: str,
           reason: str) -> Citizen:
    """Find the citizen a case is about: only inside an open case, with a reason, audited, and
    capped per officer per day (supervisors are told once the cap is reached)."""
    _workable(member, case)
    if not reason.strip():
        raise CaseRefused(_("Give the reason for this lookup."))
    if case.citizen_id is not None:
        raise CaseRefused(_("This case is already about a citizen."))
    day = clock.now().strftime("%Y-%m-%d")
    count = state.staff_lookups.incr(str(member.id), day)
    cap = _settings().staff_daily_lookups
    if count > cap:
        _alert_supervisors(session, member, count, cap, day)
        audit.append("helpdesk_lookup_refused", actor=_actor(member), session=session,
                     case=case.reference, reason="daily_cap", count=count)
        raise CaseRefused(_("You have reached today's limit of %(cap)d lookups. A supervisor was "
                            "told.", cap=cap))
    citizen = session.scalar(select(Citizen).where(Citizen.open_with_nik(nik)))
    if citizen is None:
        audit.append("helpdesk_lookup", actor=_actor(member), session=session, case=case.reference,
                     reason=_scrub(reason), found=False)
        raise CaseRefused(_("No SatuID account has this NIK."))
    if citizen.nik == member.nik:
        audit.append("helpdesk_lookup_refused", actor=_actor(member), session=session,
                     case=case.reference, reason="own_nik")
    _own(member, citizen)
    case.citizen_id = citizen.id
    event(session, case, _actor(member), "lookup", reason=_scrub(reason), count=count)
    return citizen


def _alert_supervisors(session: Session, member: StaffMember, count: int, cap: int, day: str) -> None:
    """Once a day per officer: every active supervisor gets an email."""
    if not state.staff_lookup_alerts.put_if_absent(state.Stamp(at=int(clock.time())),
                                                   str(member.id), day):
        return
    supervisors = session.scalars(select(StaffMember).where(
        StaffMember.role == "supervisor", StaffMember.disabled_at.is_(None),
        StaffMember.enrolled_at.is_not(None)))
    for supervisor in supervisors:
        outbox.send(session, channel="email", recipient=supervisor.email,
                    subject="SatuID helpdesk: lookup limit reached",
                    body=f"{member.name} ({member.email}) tried more than {cap} NIK lookups "
                         f"on {day} ({count} so far). Please review their cases.")
    audit.append("helpdesk_lookup_cap_alert", actor="system", session=session,
                 staff_id=str(member.id), count=count, cap=cap)


def _same_place(a: str, b: str) -> bool:
    return normalise_name(a) == normalise_name(b)


def check_evidence(session: Session, member: StaffMember, case: HelpdeskCase, stated: dict[str, str],
                   ktp_el: bool) -> dict[str, bool]:
    """Compare what the person states with the registry; keep which facts matched (never the
    registry's values, which the officer does not need to see)."""
    _workable(member, case)
    citizen = citizen_of(session, case)
    if citizen is None:
        raise CaseRefused(_("Look up the citizen first."))
    _own(member, citizen)
    checks = session.scalar(select(func.count()).select_from(CaseEvent).where(
        CaseEvent.case_id == case.id, CaseEvent.kind == "evidence_checked")) or 0
    if checks >= MAX_EVIDENCE_CHECKS:
        raise CaseRefused(_("The evidence was checked %(n)d times in this case: open a new case if "
                            "the citizen comes back.", n=checks))
    record = get_registry().lookup(citizen.nik)
    if record is None:
        raise CaseRefused(_("The registry has no record for this NIK."))
    try:
        birth_date = dt.date.fromisoformat(stated.get("birth_date", ""))
    except ValueError:
        birth_date = None
    matched = {
        "name": bool(stated.get("name")) and same_name(stated["name"], record.full_name),
        "birth_date": birth_date == record.birth_date,
        "birth_place": bool(stated.get("birth_place", "").strip() and record.birth_place.strip())
        and _same_place(stated["birth_place"], record.birth_place),
        "family_card": bool(record.family_card_number)
        and stated.get("family_card", "").strip() == record.family_card_number,
    }
    if case.channel == "counter":
        matched["ktp_el"] = ktp_el
    case.evidence = matched
    case.evidence_checked_at = utcnow()
    event(session, case, _actor(member), "evidence_checked", matched=matched)
    return matched


def identity_established(case: HelpdeskCase) -> bool:
    """Every fact matched, and at a counter the KTP-el was presented."""
    if not case.evidence_checked_at or not all(case.evidence.get(f) for f in FACTS):
        return False
    return case.channel != "counter" or bool(case.evidence.get("ktp_el"))


# ---- actions ---------------------------------------------------------------------------------------

def propose(session: Session, member: StaffMember, case: HelpdeskCase, kind: str,
            value: str = "") -> CaseAction:
    """An action in the case: done at once when one officer may do it, otherwise waiting for a
    supervisor who is not the proposer."""
    _workable(member, case)
    spec = ACTIONS.get(kind)
    if spec is None:
        raise CaseRefused(_("Choose an action."))
    citizen = citizen_of(session, case)
    if citizen is None:
        raise CaseRefused(_("Look up the citizen first."))
    _own(member, citizen)
    if spec.counter_only and case.channel != "counter":
        raise CaseRefused(_("This action needs the citizen at a counter with their KTP-el."))
    if spec.four_eyes and not identity_established(case):
        raise CaseRefused(_("Check the evidence first: every fact must match."))
    params: dict[str, Any] = {}
    if spec.param == "email":
        try:
            params["email"] = contacts.normalise_email(value)
        except contacts.InvalidContact:
            raise CaseRefused(_("This is not a valid email address.")) from None
    elif spec.param == "phone":
        try:
            params["phone"] = contacts.normalise_phone(value)
        except contacts.InvalidContact:
            raise CaseRefused(_("Enter an Indonesian mobile number, for example 0812 3456 7890.")) \
                from None
    if kind == "reset_link" and not (citizen.email_verified or citizen.phone_verified):
        raise CaseRefused(_("The citizen has no verified channel to send the link to."))
    action = CaseAction(case_id=case.id, kind=kind, params=params, status="proposed",
                        proposed_by=member.id)
    session.add(action)
    session.flush()
    event(session, case, _actor(member), "action_proposed", action=kind, action_id=str(action.id))
    if not spec.four_eyes:
        _move(session, action, ("proposed",), "applying")
        _apply(session, case, action, citizen)
    else:
        _tell(session, citizen, _l("SatuID: a helpdesk change was requested"),
              _l("The SatuID helpdesk (case %(case)s) was asked to make a change to your account: "
                 "%(action)s. A supervisor must approve it, and you will be told when it takes "
                 "effect. If you did not ask for this, open your SatuID account and cancel it, or "
                 "call the helpdesk."), case=case.reference, action=spec.label)
    return action


def approve(session: Session, member: StaffMember, action: CaseAction) -> None:
    """The second pair of eyes: a supervisor who did not propose it. Over the phone the change
    waits out the cooling-off; at a counter (the KTP-el checked) it is done at once."""
    case = session.get(HelpdeskCase, action.case_id)
    assert case is not None
    if member.role != "supervisor":
        raise CaseRefused(_("Only a supervisor may approve."))
    if member.id == action.proposed_by:
        raise CaseRefused(_("You proposed this action: another supervisor must approve it."))
    proposer = session.get(StaffMember, action.proposed_by)
    if proposer is not None and proposer.nik == member.nik:
        raise CaseRefused(_("You proposed this action: another supervisor must approve it."))
    if case.status != "open" or action.status != "proposed" or not ACTIONS[action.kind].four_eyes:
        raise CaseRefused(_("This action is no longer waiting for approval."))
    citizen = citizen_of(session, case)
    if citizen is None:
        raise CaseRefused(_("Look up the citizen first."))
    _own(member, citizen)
    if case.channel == "counter":
        if not _move(session, action, ("proposed",), "applying", approved_by=member.id,
                     decided_at=utcnow()):
            raise CaseRefused(_("This action is no longer waiting for approval."))
        event(session, case, _actor(member), "action_approved", action=action.kind,
              action_id=str(action.id))
        _apply(session, case, action, citizen)
        return
    token = secrets.token_urlsafe(32)
    effective_at = clock.now() + dt.timedelta(seconds=_settings().helpdesk_cooling_off_seconds)
    if not _move(session, action, ("proposed",), "waiting", approved_by=member.id,
                 decided_at=utcnow(), cancel_hash=secret_digest(token), effective_at=effective_at):
        raise CaseRefused(_("This action is no longer waiting for approval."))
    event(session, case, _actor(member), "action_approved", action=action.kind,
          action_id=str(action.id))
    assert action.effective_at is not None
    link = _settings().issuer + url_for("cases.cancel", token=token)
    _tell(session, citizen, _l("SatuID: a change to your account in 24 hours"),
          _l("The SatuID helpdesk approved a change to your account (case %(case)s): %(action)s. "
             "It takes effect on %(when)s. If you did not ask for it, cancel it with this link: "
             "%(link)s"), case=case.reference, action=ACTIONS[action.kind].label,
          when=i18n.Moment(action.effective_at, zones.of_citizen(citizen)), link=link)


def reject(session: Session, member: StaffMember, action: CaseAction) -> None:
    case = session.get(HelpdeskCase, action.case_id)
    assert case is not None
    if member.role != "supervisor" or case.status != "open" or not _move(
            session, action, ("proposed",), "rejected", approved_by=member.id, decided_at=utcnow()):
        raise CaseRefused(_("This action is no longer waiting for approval."))
    event(session, case, _actor(member), "action_rejected", action=action.kind,
          action_id=str(action.id))


def cancel(session: Session, action: CaseAction, citizen: Citizen) -> bool:
    """The citizen stops a change that has not taken effect (from /account or the notice's link)."""
    case = session.get(HelpdeskCase, action.case_id)
    if case is None or case.citizen_id != citizen.id or not _move(
            session, action, ("proposed", "waiting"), "cancelled", cancel_hash=None,
            done_at=utcnow()):
        return False
    event(session, case, f"citizen:{citizen.id}", "action_cancelled", action=action.kind,
          action_id=str(action.id))
    _tell(session, citizen, _l("SatuID: the helpdesk change was cancelled"),
          _l("You cancelled the change to your account requested in helpdesk case %(case)s. "
             "Nothing was changed."), case=case.reference)
    return True


def by_cancel_token(session: Session, token: str) -> CaseAction | None:
    if not token or len(token) > 100:
        return None
    return session.scalar(select(CaseAction).where(CaseAction.cancel_hash == secret_digest(token)))


def apply_due(session: Session) -> int:
    """Carry out the changes whose cooling-off has ended (``flask helpdesk apply-due`` runs this
    every few minutes; the case and account pages run it too). Each change is claimed first, so two
    runs at once carry it out once; one that cannot be done is marked failed, never retried."""
    due = session.scalars(select(CaseAction).where(
        CaseAction.status == "waiting", CaseAction.effective_at <= clock.now())).all()
    applied = 0
    for action in due:
        if not _move(session, action, ("waiting",), "applying"):
            continue  # cancelled or claimed meanwhile
        case = session.get(HelpdeskCase, action.case_id)
        citizen = citizen_of(session, case) if case else None
        try:
            # _apply refuses before it writes anything (a reset link with no channel left).
            if case is None or citizen is None:
                raise CaseRefused("the citizen's account no longer exists")
            _apply(session, case, action, citizen)
            applied += 1
        except CaseRefused as e:
            _move(session, action, ("applying",), "failed", done_at=utcnow(), cancel_hash=None)
            audit.append("helpdesk_action_failed", actor="system", session=session,
                         action_id=str(action.id), reason=str(e))
    return applied


def _apply(session: Session, case: HelpdeskCase, action: CaseAction, citizen: Citizen) -> None:
    if citizen.closed_at is not None:
        raise CaseRefused(_("The account is closed."))
    kind = action.kind
    if kind == "reset_link":
        if not reset.send_reset_link(session, citizen):
            raise CaseRefused(_("The citizen has no verified channel to send the link to."))
    elif kind == "unlock":
        lockout.unlock(citizen.nik)
        # The second factors' lock guards against guessing codes with a known password: only an
        # established identity lifts it, or a caller with the password could reset it at will.
        if identity_established(case):
            lockout.unlock_second_factors(str(citizen.id))
    elif kind == "remove_factors":
        for model in (TotpAuthenticator, Passkey, RecoveryCode):
            session.query(model).filter(model.citizen_id == citizen.id).delete()
        session.execute(update(FactorWaiting).where(
            FactorWaiting.citizen_id == citizen.id, FactorWaiting.cancelled_at.is_(None))
            .values(cancelled_at=utcnow()))
        # The cooling-off (or the counter) already stood in for a new authenticator's waiting
        # period: the next one the citizen adds counts at once.
        waiting.allow_next_at_once(session, citizen.id, case.id)
        sso.end_all(str(citizen.id), reason="helpdesk_factors_removed")
    elif kind in ("replace_email", "replace_phone"):
        _replace_contact(session, case, citizen, action)
        sso.end_all(str(citizen.id), reason="helpdesk_contact_replaced")
        revocation.revoke_grants(citizen.id, None, reason="helpdesk_contact_replaced")
    elif kind == "verify_in_person":
        verification.record_in_person(session, citizen, case.reference)
    elif kind == "clear_waiting":
        waiting.clear_at_counter(session, citizen.id, case.id)
    action.status = "applied"
    action.done_at = utcnow()
    action.cancel_hash = None
    event(session, case, "system", "action_applied", action=kind, action_id=str(action.id))
    _tell(session, citizen, _l("SatuID: a helpdesk change was made to your account"),
          _l("The SatuID helpdesk made this change to your account (case %(case)s): %(action)s. "
             "If you did not ask for it, call the helpdesk at once."),
          case=case.reference, action=ACTIONS[kind].label)


def _replace_contact(session: Session, case: HelpdeskCase, citizen: Citizen,
                     action: CaseAction) -> None:
    """The old address hears of it too (it is told before the change, like every channel)."""
    _tell(session, citizen, _l("SatuID: your contact details were replaced"),
          _l("In helpdesk case %(case)s your SatuID account's %(what)s was replaced. If you did "
             "not ask for it, call the helpdesk at once."), case=case.reference,
          what=_("email address") if "email" in action.params else _("phone number"))
    if "email" in action.params:
        citizen.email, citizen.email_verified = action.params["email"], True
    if "phone" in action.params:
        citizen.phone, citizen.phone_verified = action.params["phone"], True


def close(session: Session, member: StaffMember, case: HelpdeskCase, outcome: str) -> None:
    _workable(member, case)
    waiting_actions = session.scalar(select(CaseAction.id).where(
        CaseAction.case_id == case.id, CaseAction.status.in_(("proposed", "waiting"))).limit(1))
    if waiting_actions is not None:
        raise CaseRefused(_("An action of this case is still pending."))
    case.status = "closed"
    case.outcome = outcome.strip()[:2000]
    case.closed_at = utcnow()
    event(session, case, _actor(member), "case_closed")


# ---- the citizen's "not me" ------------------------------------------------------------------------

REPORT_KINDS = ("release", "consent", "session")  # from the account pages; "contact" from a link


def report_not_me(session: Session, citizen: Citizen, kind: str, entry: dict[str, str],
                  client_id: str | None, end_grants: bool, end_sessions: bool,
                  current_sid: str | None) -> HelpdeskCase:
    """The citizen does not recognise an entry: a case in the queue, and at their choice that
    portal's grants and every other session end at once."""
    case = HelpdeskCase(reference=_reference(), channel="not_me", citizen_id=citizen.id,
                        summary="", report={"kind": kind, **entry})
    session.add(case)
    session.flush()
    actor = f"citizen:{citizen.id}"
    event(session, case, actor, "not_me_reported", entry=kind, client=client_id)
    if end_grants and client_id:
        revoked = revocation.revoke_grants(citizen.id, client_id, reason="not_me")
        event(session, case, actor, "grants_ended", client=client_id, count=revoked)
    if end_sessions:
        ended = 0
        for other in sso.sessions_of(str(citizen.id)):
            if other.sid != current_sid:
                sso.end(other, reason="not_me")
                ended += 1
        event(session, case, actor, "sessions_ended", count=ended)
    _tell(session, citizen, _l("SatuID: your report reached the helpdesk"),
          _l("You reported something you do not recognise on your SatuID account. The helpdesk "
             "opened case %(case)s and will look into it."), case=case.reference)
    return case


def tell_reporter(session: Session, citizen: Citizen, case: HelpdeskCase, channel: str,
                  recipient: str) -> None:
    """Answer a report made from a replaced contact at that contact: the citizen's current ones
    may be the intruder's."""
    with force_locale(citizen.locale):
        outbox.send(session, channel=channel, recipient=recipient, citizen_id=citizen.id,
                    subject=_("SatuID: your report reached the helpdesk"),
                    body=_("You reported a change to your SatuID account that you did not make. "
                           "Every device was logged out and services lost access. The helpdesk "
                           "opened case %(case)s and will contact you here.", case=case.reference))


def cases_of(session: Session, citizen_id: uuid.UUID) -> list[tuple[HelpdeskCase, list[CaseAction]]]:
    cases = session.scalars(select(HelpdeskCase).where(HelpdeskCase.citizen_id == citizen_id)
                            .order_by(HelpdeskCase.created_at.desc())).all()
    return [(c, actions_of(session, c)) for c in cases]


def actions_of(session: Session, case: HelpdeskCase) -> list[CaseAction]:
    return list(session.scalars(select(CaseAction).where(CaseAction.case_id == case.id)
                                .order_by(CaseAction.created_at)))


def timeline(session: Session, case: HelpdeskCase) -> list[CaseEvent]:
    return list(session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id)
                                .order_by(CaseEvent.id)))
