"""The citizen's side of the helpdesk: the cases about them, cancelling a pending change, and
"Bukan saya / Not me" on the entries of their account they do not recognise, or from the link sent
to a contact that was replaced."""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from idp import codes, errors, revocation
from idp.auth import session as sso
from idp.auth.current import current_citizen, login_required
from idp.db import get_session
from idp.helpdesk import cases
from idp.helpdesk.forms import NotMeForm
from idp.identity.contact import Replaced, mask
from idp.models import CaseAction, Citizen, ClaimRelease, Client, ConsentRecord, HelpdeskCase

bp = Blueprint("cases", __name__)


@bp.context_processor
def _context() -> dict[str, Any]:
    return {"channel_labels": cases.CHANNEL_LABELS, "action_kinds": cases.ACTIONS,
            "status_labels": cases.STATUS_LABELS}


@bp.get("/account/cases")
@login_required
def mine() -> str:
    citizen = current_citizen()
    assert citizen is not None
    db = get_session()
    cases.apply_due(db)
    return render_template("helpdesk/mine.html", cases=cases.cases_of(db, citizen.id), form=FlaskForm())


@bp.post("/account/cases/actions/<action_id>/cancel")
@login_required
def cancel_mine(action_id: str) -> Response:
    citizen = current_citizen()
    assert citizen is not None
    if not FlaskForm().validate_on_submit():
        abort(400)
    try:
        action = get_session().get(CaseAction, uuid.UUID(action_id))
    except ValueError:
        abort(404)
    if action is None or not cases.cancel(get_session(), action, citizen):
        flash(_("This change can no longer be cancelled."), "error")
    else:
        flash(_("The change was cancelled. Nothing was changed on your account."), "success")
    return redirect(url_for("cases.mine"))


@bp.route("/helpdesk-change/cancel/<token>", methods=["GET", "POST"])
def cancel(token: str) -> Any:
    """The link in every notice of a pending change: works without logging in, since whoever
    took over the account may have changed the password; holding the link is the proof."""
    db = get_session()
    action = cases.by_cancel_token(db, token)
    citizen = None
    if action is not None and action.status == "waiting":
        case = db.get(HelpdeskCase, action.case_id)
        citizen = db.get(Citizen, case.citizen_id) if case and case.citizen_id else None
    if action is None or citizen is None:
        return errors.page(404, _("This link no longer works"),
                               _("The change was already cancelled, or it has taken "
                                         "effect. Call the SatuID helpdesk if you need help."))
    form = FlaskForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        cases.cancel(db, action, citizen)
        return render_template("helpdesk/cancelled.html")
    return render_template("helpdesk/cancel.html", form=form, action=action,
                           label=cases.ACTIONS[action.kind].label)


def _entry(citizen: Citizen, kind: str, ref: str) -> tuple[dict[str, str], str | None] | None:
    """What the citizen points at, checked to be theirs: (what the case keeps, the portal)."""
    db = get_session()
    numeric = ref.isascii() and ref.isdigit() and len(ref) <= 18
    if kind == "release" and numeric:
        release = db.get(ClaimRelease, int(ref))
        if release is None or release.citizen_id != citizen.id:
            return None
        return ({"release": ref, "client": release.client_id,
                 "at": release.released_at.isoformat()}, release.client_id)
    if kind == "consent" and numeric:
        record = db.get(ConsentRecord, int(ref))
        if record is None or record.citizen_id != citizen.id:
            return None
        return ({"consent": ref, "client": record.client_id, "action": record.action,
                 "at": record.created_at.isoformat()}, record.client_id)
    if kind == "session":
        other = sso.by_sid(ref)
        if other is None or other.citizen_id != str(citizen.id):
            return None
        return ({"session": ref, "user_agent": other.user_agent[:200]}, None)
    return None


@bp.route("/account/not-me/<kind>/<ref>", methods=["GET", "POST"])
@login_required
def not_me(kind: str, ref: str) -> Any:
    citizen = current_citizen()
    assert citizen is not None
    if kind not in cases.REPORT_KINDS or len(ref) > 64:
        abort(404)
    found = _entry(citizen, kind, ref)
    if found is None:
        abort(404)
    entry, client_id = found
    client = get_session().get(Client, client_id) if client_id else None
    form = NotMeForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        current = sso.current()
        if kind == "session" and not form.end_sessions.data and current is not None \
                and ref != current.sid:
            other = sso.by_sid(ref)
            if other is not None:
                sso.end(other, reason="not_me")
        case = cases.report_not_me(get_session(), citizen, kind, entry, client_id,
                                   end_grants=bool(form.end_grants.data),
                                   end_sessions=bool(form.end_sessions.data),
                                   current_sid=current.sid if current else None)
        flash(_("Thank you. The helpdesk opened case %(case)s and will look into it.",
                case=case.reference), "success")
        return redirect(url_for("cases.mine"))
    return render_template("helpdesk/not_me.html", form=form, kind=kind, entry=entry, client=client)


@bp.route("/account/not-me/contact/<token>", methods=["GET", "POST"])
def contact_not_me(token: str) -> Any:
    """The link sent to a replaced email address or phone number: no login needed, since whoever
    replaced it may hold the password. Reporting ends every session and every portal's access and
    opens a case that keeps the old contact, so the helpdesk can reach the owner there."""
    raw = codes.link_subject(codes.CONTACT_NOT_ME, token)
    replaced = Replaced.load(raw) if raw else None
    db = get_session()
    citizen = db.get(Citizen, uuid.UUID(replaced.citizen_id)) if replaced else None
    if replaced is None or citizen is None or citizen.closed_at is not None:
        return errors.page(404, _("This link no longer works"),
                               _("It was already used or is too old. Call the SatuID "
                                         "helpdesk if you need help."))
    form = FlaskForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        if codes.redeem_link(codes.CONTACT_NOT_ME, token) != raw:
            abort(404)
        entry = {"channel": replaced.channel, "previous": replaced.previous, "new": mask(replaced.new)}
        case = cases.report_not_me(db, citizen, "contact", entry, None, end_grants=False,
                                   end_sessions=True, current_sid=None)
        revocation.revoke_grants(citizen.id, None, reason="not_me")
        # Whoever made the change knows the password and holds the new contact: the password stops
        # working and the new contact stops receiving reset links, until the helpdesk has checked
        # who is who (its replace and reset actions). The old contact is not put back by itself:
        # people leave an address because it was lost or taken.
        citizen.password_hash = "!held-after-not-me-report"
        if replaced.channel == "email" and citizen.email == replaced.new:
            citizen.email_verified = False
        if replaced.channel == "sms" and citizen.phone == replaced.new:
            citizen.phone_verified = False
        cases.event(db, case, "citizen:link", "account_held", channel=replaced.channel)
        cases.tell_reporter(db, citizen, case, replaced.channel, replaced.previous)
        return render_template("helpdesk/contact_reported.html", case=case)
    return render_template("helpdesk/contact_not_me.html", form=form, replaced=replaced,
                           new=mask(replaced.new))
