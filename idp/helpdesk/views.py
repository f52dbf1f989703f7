"""``/helpdesk``: the officers' pages (sign-in, enrolment, the queue, cases, the audit log).

Every page needs a signed-in officer (``staff.staff_required``); agents and supervisors work cases,
supervisors approve, auditors read cases and the audit log and change nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response
from wtforms.fields.choices import SelectChoice

from idp import audit
from idp import interaction as interactions
from idp.auth import lockout
from idp.auth.mfa import factors, totp
from idp.db import get_session
from idp.helpdesk import cases, staff
from idp.helpdesk.forms import (
    ActionForm,
    CloseForm,
    EnrolmentForm,
    EvidenceForm,
    LookupForm,
    OpenCaseForm,
    StaffCodeForm,
    StaffLoginForm,
)
from idp.helpdesk.staff import staff_required
from idp.identity import contact as contacts
from idp.identity import nik as nikmod
from idp.identity import passwords
from idp.models import AuditEvent, CaseAction, HelpdeskCase, StaffMember

bp = Blueprint("helpdesk", __name__, url_prefix="/helpdesk")
PAGE = 50


@bp.after_request
def _cookie(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return staff.write_cookie(response)


@bp.context_processor
def _context() -> dict[str, Any]:
    return {"officer": staff.current(), "channel_labels": cases.CHANNEL_LABELS,
            "action_kinds": cases.ACTIONS, "status_labels": cases.STATUS_LABELS}


def _me() -> StaffMember:
    member = staff.current()
    assert member is not None  # staff_required saw it
    return member


# ---- sign-in and enrolment -----------------------------------------------------------------------

@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    form = StaffLoginForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("helpdesk/login.html", form=form), 400 if request.method == "POST" else 200
    if not lockout.ip_allowed("helpdesk"):
        return render_template("helpdesk/login.html", form=form,
                               error=_("Too many attempts. Please wait a minute.")), 429
    email = staff.canonical_email(form.email.data or "")
    with passwords.slot_held():  # busy: a 503 before the attempt is counted
        attempt = lockout.begin_staff(email)
        if attempt.blocked:
            return render_template("helpdesk/login.html", form=form,
                                   error=_("Too many attempts. Please wait and try again later.")), 429
        member = staff.find(get_session(), email)
        right = staff.check_password(member, form.password.data or "")
    if not right:
        attempt.failed()
        audit.append("staff_login_failed", actor="anonymous")
        return render_template("helpdesk/login.html", form=form,
                               error=_("Wrong email address or password.")), 401
    assert member is not None
    staff.start(member, verified=False)
    return redirect(url_for("helpdesk.login_code", next=interactions.safe_next(
        request.args.get("next")) or None))


@bp.route("/login/code", methods=["GET", "POST"])
def login_code() -> Any:
    member = staff.pending()
    if member is None:
        return redirect(url_for("helpdesk.login"))
    form = StaffCodeForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("helpdesk/code.html", form=form), 400 if request.method == "POST" else 200
    attempt = lockout.begin_staff(member.email)
    if attempt.blocked:
        staff.end()
        return render_template("helpdesk/login.html", form=StaffLoginForm(formdata=None),
                               error=_("Too many attempts. Please wait and try again later.")), 429
    if not staff.check_code(member, form.code.data or ""):
        attempt.failed()
        audit.append("staff_code_failed", actor=f"staff:{member.id}")
        return render_template("helpdesk/code.html", form=form,
                               error=_("That code is not correct or was already used.")), 401
    attempt.succeeded()
    staff.verified(member)
    audit.append("staff_login", actor=f"staff:{member.id}", role=member.role, acr=2)
    return redirect(interactions.safe_next(request.args.get("next")) or url_for("helpdesk.queue"))


@bp.post("/logout")
def logout() -> Response:
    member = staff.current()
    if member is not None:
        audit.append("staff_logout", actor=f"staff:{member.id}")
    staff.end()
    return redirect(url_for("helpdesk.login"))


@bp.route("/enrol/<token>", methods=["GET", "POST"])
def enrol(token: str) -> Any:
    db = get_session()
    member = staff.by_enrolment_token(db, token)
    if member is None:
        return render_template("error.html", title=_("This link is not valid"),
                               message=_("Ask your operator for a new enrolment link.")), 404
    form = EnrolmentForm()
    uri = staff.provisioning_uri(member)
    error = None
    if request.method == "POST" and form.validate_on_submit():
        password = form.password.data or ""
        problem = passwords.password_problem(password, nik=member.nik, name=member.name)
        if problem or len(password) < 12:
            error = _("Choose a longer, less common password (at least 12 characters).")
        elif not staff.check_code(member, form.code.data or ""):
            error = _("That code is not correct. Check the time on your phone and try the newest code.")
        else:
            staff.finish_enrolment(member, password)
            audit.append("staff_enrolled", actor=f"staff:{member.id}", role=member.role)
            flash(_("You are enrolled. Sign in with your password and a code from your app."),
                  "success")
            return redirect(url_for("helpdesk.login"))
    elif request.method == "POST":
        error = _("Fill in both fields.")
    secret = staff.enrolment_secret(member)
    return render_template("helpdesk/enrol.html", form=form, member=member, error=error,
                           qr=totp.qr_svg_data_uri(uri),
                           secret=" ".join(secret[i:i + 4] for i in range(0, len(secret), 4))), \
        400 if error else 200


# ---- the queue and cases -------------------------------------------------------------------------

@bp.get("")
@staff_required()
def queue() -> str:
    me = _me()
    db = get_session()
    open_cases = db.scalars(select(HelpdeskCase).where(HelpdeskCase.status == "open")
                            .order_by(HelpdeskCase.created_at.desc()).limit(PAGE)).all()
    to_approve = db.execute(select(CaseAction, HelpdeskCase)
                            .join(HelpdeskCase, HelpdeskCase.id == CaseAction.case_id)
                            .where(CaseAction.status == "proposed")
                            .order_by(CaseAction.created_at)).all()
    cases.apply_due(db)
    return render_template("helpdesk/queue.html", me=me, open_cases=open_cases,
                           to_approve=to_approve)


@bp.route("/cases/new", methods=["GET", "POST"])
@staff_required("agent", "supervisor")
def new_case() -> Any:
    form = OpenCaseForm()
    if request.method == "POST" and form.validate_on_submit():
        case = cases.open_case(get_session(), _me(), form.channel.data or "", form.summary.data or "")
        return redirect(url_for("helpdesk.case", reference=case.reference))
    return render_template("helpdesk/new_case.html", form=form), 400 if request.method == "POST" else 200


def _case(reference: str) -> HelpdeskCase:
    found = get_session().scalar(select(HelpdeskCase).where(HelpdeskCase.reference == reference))
    if found is None:
        abort(404)
    return found


@bp.get("/cases/<reference>")
@staff_required()
def case(reference: str) -> Any:
    return _case_page(_case(reference))


def _case_page(found: HelpdeskCase, status: int = 200, error: str | None = None,
               lookup_form: LookupForm | None = None, evidence_form: EvidenceForm | None = None,
               action_form: ActionForm | None = None) -> Any:
    db = get_session()
    cases.apply_due(db)
    citizen = cases.citizen_of(db, found)
    summary = None
    if citizen is not None:
        summary = {"name": citizen.full_name, "nik": nikmod.mask(citizen.nik),
                   "email": contacts.mask(citizen.email) if citizen.email_verified else "—",
                   "phone": contacts.mask(citizen.phone) if citizen.phone_verified else "—",
                   "enrolment": factors.enrolment(db, citizen),
                   "locked": lockout.check(citizen.nik).locked_for > 0
                   or lockout.check_second_factor(str(citizen.id)).locked_for > 0,
                   "in_person": citizen.in_person_verified_at}
    action_form = action_form or ActionForm(formdata=None)
    action_form.kind.choices = [SelectChoice(k, str(spec.label)) for k, spec in cases.ACTIONS.items()
                                if not spec.counter_only or found.channel == "counter"]
    staff_names = {m.id: m.name for m in db.scalars(select(StaffMember))}
    return render_template(
        "helpdesk/case.html", case=found, citizen=summary, actions=cases.actions_of(db, found),
        timeline=cases.timeline(db, found), staff_names=staff_names, error=error,
        lookup_form=lookup_form or LookupForm(formdata=None),
        evidence_form=evidence_form or EvidenceForm(formdata=None), action_form=action_form,
        close_form=CloseForm(formdata=None), established=cases.identity_established(found),
        facts=list(cases.FACTS)), status


def _refused(found: HelpdeskCase, e: cases.CaseRefused, **forms: Any) -> Any:
    return _case_page(found, 409, str(e), **forms)


@bp.post("/cases/<reference>/lookup")
@staff_required("agent", "supervisor")
def lookup(reference: str) -> Any:
    found = _case(reference)
    form = LookupForm()
    if not form.validate_on_submit():
        return _case_page(found, 400, _("Give the NIK and the reason for the lookup."), lookup_form=form)
    try:
        nik = nikmod.normalise(form.nik.data or "")
        cases.lookup(get_session(), _me(), found, nik, form.reason.data or "")
    except cases.CaseRefused as e:
        return _refused(found, e, lookup_form=form)
    return redirect(url_for("helpdesk.case", reference=reference))


@bp.post("/cases/<reference>/evidence")
@staff_required("agent", "supervisor")
def evidence(reference: str) -> Any:
    found = _case(reference)
    form = EvidenceForm()
    if not form.validate_on_submit():
        return _case_page(found, 400, _("Check the fields."), evidence_form=form)
    stated = {"name": form.name.data or "", "birth_place": form.birth_place.data or "",
              "family_card": form.family_card.data or "",
              "birth_date": form.birth_date.data.isoformat() if form.birth_date.data else ""}
    try:
        cases.check_evidence(get_session(), _me(), found, stated, bool(form.ktp_el.data))
    except cases.CaseRefused as e:
        return _refused(found, e, evidence_form=form)
    return redirect(url_for("helpdesk.case", reference=reference))


@bp.post("/cases/<reference>/actions")
@staff_required("agent", "supervisor")
def propose(reference: str) -> Any:
    found = _case(reference)
    form = ActionForm()
    form.kind.choices = [SelectChoice(k) for k in cases.ACTIONS]
    if not form.validate_on_submit():
        return _case_page(found, 400, _("Choose an action."), action_form=form)
    try:
        cases.propose(get_session(), _me(), found, form.kind.data or "", form.value.data or "")
    except cases.CaseRefused as e:
        return _refused(found, e)
    return redirect(url_for("helpdesk.case", reference=reference))


def _action(action_id: str) -> tuple[CaseAction, HelpdeskCase]:
    try:
        action = get_session().get(CaseAction, uuid.UUID(action_id))
    except ValueError:
        abort(404)
    if action is None:
        abort(404)
    found = get_session().get(HelpdeskCase, action.case_id)
    assert found is not None
    return action, found


@bp.post("/actions/<action_id>/approve")
@staff_required("supervisor")
def approve(action_id: str) -> Any:
    return _decide(action_id, cases.approve)


@bp.post("/actions/<action_id>/reject")
@staff_required("supervisor")
def reject(action_id: str) -> Any:
    return _decide(action_id, cases.reject)


def _decide(action_id: str, decision: Callable[[Session, StaffMember, CaseAction], None]) -> Any:
    action, found = _action(action_id)
    try:
        decision(get_session(), _me(), action)
    except cases.CaseRefused as e:
        return _refused(found, e)
    return redirect(url_for("helpdesk.case", reference=found.reference))


@bp.post("/cases/<reference>/close")
@staff_required("agent", "supervisor")
def close(reference: str) -> Any:
    found = _case(reference)
    form = CloseForm()
    if not form.validate_on_submit():
        return _case_page(found, 400, _("Write the outcome."))
    try:
        cases.close(get_session(), _me(), found, form.outcome.data or "")
    except cases.CaseRefused as e:
        return _refused(found, e)
    return redirect(url_for("helpdesk.queue"))


# ---- the audit log (auditors, supervisors) ---------------------------------------------------------

@bp.get("/audit")
@staff_required("auditor", "supervisor")
def audit_log() -> str:
    before = request.args.get("before", type=int)
    return _audit_page(before if before and 0 < before < 2**62 else None)


@bp.post("/audit/verify")
@staff_required("auditor", "supervisor")
def audit_verify() -> Response:
    """Queue a verification of the whole log: it reads every event, far longer than a request may
    take, so the checkpointer runs it and the audit page shows how it went."""
    if audit.request_verification(get_session(), f"staff:{_me().id}"):
        flash(_("Verification requested. It runs in the background; this page shows its outcome."),
              "success")
    else:
        flash(_("A verification is already queued; this page shows its outcome."), "info")
    return redirect(url_for("helpdesk.audit_log"))


def _audit_page(before: int | None) -> str:
    db = get_session()
    stmt = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(PAGE)
    if before:
        stmt = stmt.where(AuditEvent.id < before)
    verification = audit.latest_verification(db)
    requested_by = None
    if verification is not None:
        kind, _sep, staff_id = verification.requested_by.partition(":")
        try:
            member = db.get(StaffMember, uuid.UUID(staff_id)) if kind == "staff" else None
        except ValueError:
            member = None
        requested_by = member.name if member else _("a former officer")
    stop_reasons = {"stopped": _("its process was told to stop"),
                    "interrupted": _("its process ended before it could finish"),
                    "lost_lock": _("its connection to the database dropped, so another "
                                   "verification could have started"),
                    "replica_behind": _("the replica it reads had not caught up with the log "
                                        "within a minute")}
    reason = verification.outcome.get("reason", "") if verification else ""
    # Any other reason is the name of the error that ended it (``cli.verify_queued``).
    stop_reason = stop_reasons.get(reason) or _("an unexpected error (%(name)s)", name=reason)
    return render_template("helpdesk/audit.html", rows=db.scalars(stmt).all(),
                           verification=verification, requested_by=requested_by,
                           stop_reason=stop_reason)
