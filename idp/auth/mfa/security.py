"""``/account/security``: the citizen's authenticator app, passkeys and recovery codes.

Adding or removing a factor needs a second factor proved in the last few minutes (when the citizen
has one), and every change is told on the citizen's verified channels.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from idp import audit
from idp import interaction as interactions
from idp.auth import lockout
from idp.auth import session as sso
from idp.auth.current import current_citizen, login_required
from idp.auth.mfa import factors, passkeys, recovery, totp
from idp.auth.mfa.forms import ConfirmForm, PasskeyNameForm, TotpConfirmForm
from idp.auth.mfa.portals import portals_requiring_second_factor
from idp.auth.mfa.step_up import notify
from idp.db import get_session
from idp.models import Citizen
from idp.state import SsoSession

bp = Blueprint("security", __name__)


def _session() -> SsoSession:
    current = sso.current()
    assert current is not None  # every page here is login_required
    return current


def _fresh_or_step_up(citizen: Citizen, back: str) -> Response | None:
    """Changing factors needs a second factor proved in the last few minutes (when one exists)."""
    usable = factors.usable(get_session(), citizen)
    if not usable or factors.second_factor_fresh(_session().factor_times):
        return None
    flash(_("To change how you log in, first confirm it is you with a second factor."), "info")
    return redirect(url_for("mfa.step_up", next=back))


def _needs_fresh_for_adding(citizen: Citizen) -> bool:
    """Adding a factor (or recovery codes) needs a second factor proved in the last few minutes,
    the first authenticator included: a code to the verified email or phone counts. Otherwise a
    stolen password alone could add the thief's authenticator and reach level 2 or 3 at portals.
    Every addition is also notified on the verified channels."""
    return bool(factors.usable(get_session(), citizen)) and not factors.second_factor_fresh(
        _session().factor_times)


def _changed(citizen: Citizen, event: str, subject: Any, body: Any, **details: Any) -> None:
    notify(citizen, subject, body)
    audit.append(event, actor=f"citizen:{citizen.id}", citizen_id=citizen.id, **details)


@bp.get("/account/security")
@login_required
def page() -> str:
    citizen = current_citizen()
    assert citizen is not None
    db = get_session()
    return render_template(
        "mfa/security.html", citizen=citizen, enrolment=factors.enrolment(db, citizen),
        passkeys=passkeys.passkeys_of(db, citizen), form=ConfirmForm(), name_form=PasskeyNameForm(),
        back=interactions.safe_next(request.args.get("next")),
        fresh=factors.second_factor_fresh(_session().factor_times),
    )


@bp.route("/account/security/totp", methods=["GET", "POST"])
@login_required
def totp_enrol() -> Any:
    citizen = current_citizen()
    assert citizen is not None
    db = get_session()
    back = url_for("security.totp_enrol", next=request.args.get("next") or None)
    existing = totp.authenticator_of(db, citizen)
    if existing is not None and existing.confirmed:
        flash(_("An authenticator app is already set up. Remove it first to set up another."), "info")
        return redirect(url_for("security.page"))
    if _needs_fresh_for_adding(citizen):
        return _fresh_or_step_up(citizen, back) or redirect(url_for("security.page"))
    form = TotpConfirmForm()
    error = None
    if request.method == "POST" and existing is not None:
        if form.validate_on_submit():
            attempt = lockout.begin_enrolment(str(citizen.id))
            if attempt.blocked:
                error = _("Please wait %(seconds)d seconds before trying again.",
                          seconds=max(attempt.throttle.wait_for, attempt.throttle.locked_for))
            elif totp.confirm(db, existing, form.code.data or ""):
                _changed(citizen, "mfa_totp_added",
                         _l("SatuID: an authenticator app was added"),
                         _l("An authenticator app was added to your SatuID account. If this was "
                            "not you, contact the SatuID helpdesk at once."))
                attempt.succeeded()
                flash(_("Your authenticator app is set up."), "success")
                target = interactions.safe_next(request.args.get("next"))
                return redirect(url_for("security.page", next=target) if target
                                else url_for("security.page"))
            else:
                attempt.failed()
                error = _("That code is not correct. Check the time on your phone and try the "
                          "newest code.")
        secret = totp.secret_of(existing)
    else:
        secret = totp.begin_enrolment(db, citizen)
    uri = totp.provisioning_uri(secret, citizen)
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render_template("mfa/totp_enrol.html", form=form, qr=totp.qr_svg_data_uri(uri),
                           secret=grouped, uri=uri, error=error), 400 if error else 200


@bp.post("/account/security/totp/remove")
@login_required
def totp_remove() -> Any:
    citizen = current_citizen()
    assert citizen is not None
    if (step_up := _fresh_or_step_up(citizen, url_for("security.page"))) is not None:
        return step_up
    if (warning := _warn_if_last(citizen, removing="totp")) is not None:
        return warning
    if totp.remove(get_session(), citizen):
        _changed(citizen, "mfa_totp_removed", _l("SatuID: an authenticator app was removed"),
                 _l("The authenticator app was removed from your SatuID account. If this was not "
                    "you, contact the SatuID helpdesk at once."))
        flash(_("The authenticator app was removed."), "success")
    return redirect(url_for("security.page"))


def _warn_if_last(citizen: Citizen, removing: str) -> tuple[str, int] | None:
    """Before the last authenticator goes, show which portals will then refuse the citizen."""
    if request.form.get("confirm") == "1":
        return None
    e = factors.enrolment(get_session(), citizen)
    remaining = (1 if e.totp else 0) + e.passkeys - 1
    if remaining > 0:
        return None
    portals = portals_requiring_second_factor(get_session(), citizen)
    if not portals:
        return None
    return render_template("mfa/confirm_remove.html", portals=portals, form=ConfirmForm(),
                           action=request.path, removing=removing), 409


@bp.post("/account/security/passkeys/options")
@login_required
def passkey_options() -> Any:
    citizen = current_citizen()
    assert citizen is not None
    if _needs_fresh_for_adding(citizen):
        return jsonify(error="step_up_required",
                       redirect=url_for("mfa.step_up", next=url_for("security.page"))), 403
    return Response(passkeys.registration_options(get_session(), citizen, _session().sid),
                    mimetype="application/json")


@bp.post("/account/security/passkeys")
@login_required
def passkey_register() -> Any:
    citizen = current_citizen()
    assert citizen is not None
    if _needs_fresh_for_adding(citizen):
        return jsonify(error="step_up_required"), 403
    db = get_session()
    body = passkeys.parse_json(request.get_data())
    credential = body.get("credential")
    if not isinstance(credential, dict):
        return jsonify(error="invalid_request"), 400
    try:
        passkey = passkeys.register(db, citizen, _session().sid, credential,
                                    str(body.get("name") or ""))
    except passkeys.PasskeyRejected:
        return jsonify(error="passkey_rejected",
                       message=_("The passkey could not be registered. Please try again.")), 400
    _changed(citizen, "mfa_passkey_added", _l("SatuID: a passkey was added"),
             _l("A passkey was added to your SatuID account. If this was not you, contact the "
                "SatuID helpdesk at once."), passkey_id=str(passkey.id))
    flash(_("Your passkey is registered."), "success")
    return jsonify(redirect=url_for("security.page"))


@bp.post("/account/security/passkeys/<passkey_id>/rename")
@login_required
def passkey_rename(passkey_id: str) -> Any:
    citizen = current_citizen()
    assert citizen is not None
    passkey = passkeys.find(get_session(), citizen, passkey_id)
    if passkey is None:
        abort(404)
    form = PasskeyNameForm()
    if not form.validate_on_submit():
        flash(_("Give the passkey a name of at most 64 characters."), "error")
        return redirect(url_for("security.page"))
    passkey.name = (form.name.data or "").strip()[:64]
    audit.append("mfa_passkey_renamed", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 passkey_id=str(passkey.id))
    return redirect(url_for("security.page"))


@bp.post("/account/security/passkeys/<passkey_id>/remove")
@login_required
def passkey_remove(passkey_id: str) -> Any:
    citizen = current_citizen()
    assert citizen is not None
    db = get_session()
    passkey = passkeys.find(db, citizen, passkey_id)
    if passkey is None:
        abort(404)
    if (step_up := _fresh_or_step_up(citizen, url_for("security.page"))) is not None:
        return step_up
    if (warning := _warn_if_last(citizen, removing="passkey")) is not None:
        return warning
    db.delete(passkey)
    _changed(citizen, "mfa_passkey_removed", _l("SatuID: a passkey was removed"),
             _l("A passkey was removed from your SatuID account. If this was not you, contact the "
                "SatuID helpdesk at once."), passkey_id=passkey_id)
    flash(_("The passkey was removed."), "success")
    return redirect(url_for("security.page"))


@bp.post("/account/security/recovery-codes")
@login_required
def recovery_codes() -> Any:
    citizen = current_citizen()
    assert citizen is not None
    if _needs_fresh_for_adding(citizen):
        return _fresh_or_step_up(citizen, url_for("security.page")) or redirect(url_for("security.page"))
    new_codes = recovery.regenerate(get_session(), citizen)
    _changed(citizen, "mfa_recovery_codes_generated",
             _l("SatuID: new recovery codes"),
             _l("New recovery codes were made for your SatuID account; the old ones no longer work. "
                "If this was not you, contact the SatuID helpdesk at once."), count=len(new_codes))
    return render_template("mfa/recovery_codes.html", codes=new_codes)
