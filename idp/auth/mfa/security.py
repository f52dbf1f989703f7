"""``/account/security``: the citizen's authenticator app, phone, passkeys and recovery codes.

Adding or removing a factor needs a usable second factor proved in the last few minutes (when the
citizen has one), and every change is told on the citizen's verified channels. A citizen with none
adds the first one with the password alone, but it counts only after a waiting period
(``idp.auth.mfa.waiting``), cancellable through a link sent to every channel.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from idp import audit, codes, i18n, outbox
from idp import interaction as interactions
from idp.auth import lockout
from idp.auth import session as sso
from idp.auth.current import current_citizen, login_required
from idp.auth.mfa import factors, passkeys, recovery, totp, waiting
from idp.auth.mfa.forms import (
    ConfirmForm,
    PasskeyNameForm,
    PhoneCodeForm,
    PhoneForm,
    TotpConfirmForm,
)
from idp.auth.mfa.notices import notify
from idp.auth.mfa.portals import portals_requiring_second_factor
from idp.auth.reauth import check_password
from idp.db import get_session
from idp.identity import contact as contacts
from idp.models import Citizen
from idp.state import SsoSession

bp = Blueprint("security", __name__)


def _session() -> SsoSession:
    current = sso.current()
    assert current is not None  # every page here is login_required
    return current


def fresh_or_step_up(citizen: Citizen, back: str) -> Response | None:
    """Changing factors (or the password, or a contact) needs a second factor proved in the last
    few minutes, when the citizen has one: a redirect to step-up, or None to go on."""
    usable = factors.usable(get_session(), citizen)
    if not usable or factors.second_factor_fresh(_session().factor_times):
        return None
    flash(_("To change how you log in, first confirm it is you with a second factor."), "info")
    return redirect(url_for("mfa.step_up", next=back))


def _needs_fresh_for_adding(citizen: Citizen) -> bool:
    """Adding a factor (or recovery codes) needs a usable second factor proved in the last few
    minutes when the citizen has one: otherwise a stolen password could add the thief's factor.
    A citizen with none adds the first with the password alone, and it waits (``_waits``)."""
    return bool(factors.usable(get_session(), citizen)) and not factors.second_factor_fresh(
        _session().factor_times)


def _step_up_before_adding(citizen: Citizen, back: str) -> Response | None:
    """Where to send a citizen who must prove a second factor before adding one (None: go on)."""
    if not _needs_fresh_for_adding(citizen):
        return None
    return fresh_or_step_up(citizen, back) or redirect(url_for("security.page"))


def _waits(citizen: Citizen) -> bool:
    """Whether a factor added now must wait: nothing stronger than the password (and the mailbox
    that resets it) was proved for it. Asked before the factor is added. Not in the session that
    registered the account (``waiting.mark_new_account`` says why)."""
    if waiting.is_new_account(_session().sid):
        return False
    return not (factors.usable(get_session(), citizen)
                and factors.second_factor_fresh(_session().factor_times))


def _added(citizen: Citizen, waits: bool, factor: str, event: str, subject: Any, body: Any,
           factor_ref: str = "", **details: Any) -> None:
    """A factor was added: usable at once (and told), or from the end of its waiting period (told
    with the link that cancels it)."""
    if waits and waiting.use_allowance(get_session(), citizen.id):
        waits = False  # a helpdesk case stood in for the wait
    if waits:
        audit.append(event, actor=f"citizen:{citizen.id}", citizen_id=citizen.id, waiting=True,
                     **details)
        row = waiting.begin(get_session(), citizen, factor, factor_ref)
        flash(_("For your safety it can be used to log in from %(when)s. We told you on every "
                "channel, with a link that cancels it if this was not you.",
                when=i18n.localtime(row.usable_from)), "info")
    else:
        _changed(citizen, event, subject, body, **details)


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
        factor_names=waiting.FACTOR_NAMES,
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
    if (step_up := _step_up_before_adding(citizen, back)) is not None:
        return step_up
    form = TotpConfirmForm()
    error = None
    waits = _waits(citizen)  # before the app counts as set up
    if request.method == "POST" and existing is not None:
        if form.validate_on_submit():
            attempt = lockout.begin_enrolment(str(citizen.id))
            if attempt.blocked:
                error = _("Please wait %(seconds)d seconds before trying again.",
                          seconds=max(attempt.throttle.wait_for, attempt.throttle.locked_for))
            elif totp.confirm(db, existing, form.code.data or ""):
                _added(citizen, waits, "totp", "mfa_totp_added",
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
    if (step_up := fresh_or_step_up(citizen, url_for("security.page"))) is not None:
        return step_up
    if (warning := _warn_if_last(citizen, removing="totp")) is not None:
        return warning
    if totp.remove(get_session(), citizen):
        waiting.forget(get_session(), citizen.id, "totp")
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
    waits = _waits(citizen)
    try:
        passkey = passkeys.register(db, citizen, _session().sid, credential,
                                    str(body.get("name") or ""))
    except passkeys.PasskeyRejected:
        return jsonify(error="passkey_rejected",
                       message=_("The passkey could not be registered. Please try again.")), 400
    _added(citizen, waits, "passkey", "mfa_passkey_added", _l("SatuID: a passkey was added"),
           _l("A passkey was added to your SatuID account. If this was not you, contact the "
              "SatuID helpdesk at once."), factor_ref=str(passkey.id), passkey_id=str(passkey.id))
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
    if (step_up := fresh_or_step_up(citizen, url_for("security.page"))) is not None:
        return step_up
    if (warning := _warn_if_last(citizen, removing="passkey")) is not None:
        return warning
    db.delete(passkey)
    waiting.forget(db, citizen.id, "passkey", passkey_id)
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
    if (step_up := _step_up_before_adding(citizen, url_for("security.page"))) is not None:
        return step_up
    if not factors.usable(get_session(), citizen):
        # Recovery codes back up a factor; made with the password alone they would be one.
        flash(_("Recovery codes back up another way to log in. Add an authenticator app, a phone "
                "or a passkey first; codes can be made once it can be used."), "info")
        return redirect(url_for("security.page"))
    new_codes = recovery.regenerate(get_session(), citizen)
    _changed(citizen, "mfa_recovery_codes_generated",
             _l("SatuID: new recovery codes"),
             _l("New recovery codes were made for your SatuID account; the old ones no longer work. "
                "If this was not you, contact the SatuID helpdesk at once."), count=len(new_codes))
    return render_template("mfa/recovery_codes.html", codes=new_codes)


# ---- a phone for SMS codes ------------------------------------------------------------------------

@bp.route("/account/security/phone", methods=["GET", "POST"])
@login_required
def phone_add() -> Any:
    """Step 1: the number; a code goes to it. It replaces any number the citizen had."""
    citizen = current_citizen()
    assert citizen is not None
    back = interactions.safe_next(request.args.get("next"))
    if (step_up := _step_up_before_adding(citizen, url_for("security.phone_add", next=back))):
        return step_up
    form = PhoneForm()
    ask_password = not waiting.is_new_account(_session().sid)
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("mfa/phone_add.html", form=form, back=back, ask_password=ask_password), \
            200 if request.method == "GET" else 400
    try:
        phone = contacts.normalise_phone(form.phone.data or "")
    except contacts.InvalidContact:
        form.phone.errors = [_("Enter an Indonesian mobile number, for example 0812 3456 7890.")]
        return render_template("mfa/phone_add.html", form=form, back=back, ask_password=ask_password), 400
    # A phone receives password-reset links: a session alone (a shared computer left logged in, a
    # stolen cookie) must not be enough to add one.
    if ask_password and (error := check_password(citizen, form.current.data or "")) is not None:
        form.current.errors = [error]
        return render_template("mfa/phone_add.html", form=form, back=back, ask_password=ask_password), 400
    try:
        code = codes.issue(codes.PHONE_VERIFICATION, str(citizen.id), phone)
    except codes.SendRefused:
        form.phone.errors = [_("Too many codes were sent. Please wait an hour and try again.")]
        return render_template("mfa/phone_add.html", form=form, back=back, ask_password=ask_password), 429
    with force_locale(citizen.locale):
        outbox.send(get_session(), channel="sms", recipient=phone, citizen_id=citizen.id,
                    subject=_("SatuID: your verification code"),
                    body=_("Your SatuID code to add this phone is %(code)s. It is valid for 10 "
                           "minutes. Never share it: SatuID staff will never ask for it.",
                           code=code))
    audit.append("phone_code_sent", actor=f"citizen:{citizen.id}", citizen_id=citizen.id)
    return render_template("mfa/phone_verify.html", form=PhoneCodeForm(formdata=None, phone=phone),
                           phone=phone, back=back)


@bp.post("/account/security/phone/verify")
@login_required
def phone_verify() -> Any:
    """Step 2: the code proves the number; the phone then serves SMS codes (after the wait, if
    nothing stronger than the password stands behind it)."""
    citizen = current_citizen()
    assert citizen is not None
    back = interactions.safe_next(request.args.get("next"))
    if (step_up := _step_up_before_adding(citizen, url_for("security.phone_add", next=back))):
        return step_up
    form = PhoneCodeForm()
    phone = form.phone.data or ""

    def again(error: str, status: int) -> tuple[str, int]:
        return render_template("mfa/phone_verify.html", form=form, phone=phone, back=back,
                               error=error), status

    if not form.validate_on_submit() or len(phone) > 32:
        return again(_("Enter the code."), 400)
    if (refused := check_contact_code(citizen, codes.PHONE_VERIFICATION, form.code.data or "", phone)):
        return again(*refused)
    waits = _waits(citizen)
    waiting.forget(get_session(), citizen.id, "sms")  # a number that was waiting is replaced
    previous = citizen.phone if citizen.phone_verified else None
    citizen.phone, citizen.phone_verified = phone, True
    contacts.tell_previous(get_session(), citizen, "sms", previous, phone)
    _added(citizen, waits, "sms", "mfa_phone_added", _l("SatuID: a phone number was added"),
           _l("A phone number was added to your SatuID account for login codes by SMS. If this "
              "was not you, contact the SatuID helpdesk at once."))
    flash(_("Your phone number is verified."), "success")
    return redirect(url_for("security.page", next=back) if back else url_for("security.page"))


def check_contact_code(citizen: Citizen, purpose: codes.Purpose, typed: str,
                       recipient: str) -> tuple[str, int] | None:
    """The code sent to a new phone or address, counted on the citizen's enrolment lockout:
    None when right, else the message and the status to answer with."""
    attempt = lockout.begin_enrolment(str(citizen.id))
    if attempt.blocked:
        return _("Please wait %(seconds)d seconds before trying again.",
                 seconds=max(attempt.throttle.wait_for, attempt.throttle.locked_for)), 429
    checked = codes.check(purpose, str(citizen.id), typed, recipient=recipient)
    if not checked.accepted:
        attempt.failed()
        if checked.wrong and checked.attempts_left:
            return _("This code is not correct. You have %(left)d attempts left.",
                     left=checked.attempts_left), 400
        return _("This code has expired or was already used. Ask for a new code."), 400
    attempt.succeeded()
    return None


# ---- cancelling a factor in its waiting period ----------------------------------------------------

@bp.route("/account/security/waiting/<token>", methods=["GET", "POST"])
def waiting_cancel(token: str) -> Any:
    """The link sent to every channel: no login needed (whoever added the factor may hold the
    password). GET shows what would be cancelled; the POST (with its CSRF token) cancels it."""
    db = get_session()
    row = waiting.by_token(db, token)
    if row is None:
        return render_template("mfa/waiting_cancel.html", row=None), 404
    form = ConfirmForm()
    if request.method == "POST" and form.validate_on_submit():
        waiting.cancel(db, row, actor="citizen:link")
        return render_template("mfa/waiting_cancelled.html")
    return render_template("mfa/waiting_cancel.html", row=row, form=form,
                           factor=waiting.FACTOR_NAMES[row.factor])


@bp.post("/account/security/waiting/cancel")
@login_required
def waiting_cancel_here() -> Any:
    """The same cancellation from the security page (every session ends, this one too)."""
    citizen = current_citizen()
    assert citizen is not None
    db = get_session()
    key = request.form.get("factor", "")
    for row in waiting.active(db, citizen.id):
        if key in (row.factor, f"passkey:{row.factor_ref}"):
            waiting.cancel(db, row, actor=f"citizen:{citizen.id}")
            return render_template("mfa/waiting_cancelled.html")
    return redirect(url_for("security.page"))
