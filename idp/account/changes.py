"""Account changes a citizen makes themselves: password, email address, language and time zone.

A change that would let someone keep the account (password, email) needs the current password and,
when the citizen has a second factor, one proved in the last few minutes. Every change is told on
the citizen's channels; a replaced email address is told with a "not me" link that opens a helpdesk
case (``identity.contact.tell_previous``). The phone number is changed on the security page, where
it also serves SMS codes.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from idp import audit, codes, outbox
from idp.account.forms import EmailChangeForm, EmailCodeForm, PasswordChangeForm, PreferencesForm
from idp.auth import session as sso
from idp.auth.current import current_citizen, login_required
from idp.auth.mfa.notices import notify
from idp.auth.mfa.security import check_contact_code, fresh_or_step_up
from idp.auth.reauth import check_password
from idp.db import get_session
from idp.i18n import LOCALES, ZONES
from idp.identity import contact as contacts
from idp.identity import passwords
from idp.identity.problems import PASSWORD_PROBLEMS
from idp.models import Citizen

#: How recent a login must be for the password page to carry the full NIK (see ``change_password``).
NIK_SHOWN_WITHIN_SECONDS = 10 * 60


def _citizen() -> Citizen:
    citizen = current_citizen()
    assert citizen is not None  # every page here is login_required
    return citizen


def change_password() -> Any:
    citizen = _citizen()
    if (step_up := fresh_or_step_up(citizen, url_for("account.password"))) is not None:
        return step_up
    form = PasswordChangeForm()

    # The hidden username tells a password manager which saved login to update. It is the full
    # NIK, which every other page masks: only for a citizen who proved who they are moments ago,
    # not for whoever holds an old session's cookie.
    current = sso.current()
    recent = current is not None and current.age <= NIK_SHOWN_WITHIN_SECONDS
    username = citizen.nik if recent else ""

    def again(status: int) -> tuple[str, int]:
        return render_template("account/password.html", form=form, username=username), status

    if request.method == "GET" or not form.validate_on_submit():
        return again(200 if request.method == "GET" else 400)
    if (error := check_password(citizen, form.current.data or "")) is not None:
        form.current.errors = [error]
        return again(400)
    new = form.password.data or ""
    problem = passwords.password_problem(new, nik=citizen.nik, name=citizen.full_name)
    if problem is None and new == form.current.data:
        form.password.errors = [_("Choose a password different from the current one.")]
        return again(400)
    if problem:
        form.password.errors = [PASSWORD_PROBLEMS[problem]]
        return again(400)
    citizen.password_hash = passwords.hash_password(new)
    citizen.touch_password()
    current = sso.current()
    ended = 0
    for other in sso.sessions_of(str(citizen.id)):
        if current is None or other.sid != current.sid:
            sso.end(other, reason="password_changed")
            ended += 1
    notify(citizen, _l("SatuID: your password was changed"),
           _l("The password of your SatuID account was changed, and every other device was logged "
              "out. If this was not you, reset your password at once and contact the SatuID helpdesk."))
    audit.append("password_changed", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 sessions_ended=ended)
    flash(_("Your password was changed. Every other device was logged out."), "success")
    return redirect(url_for("account.home"))


def change_email() -> Any:
    """Step 1: the new address and the current password; a code goes to the new address."""
    citizen = _citizen()
    if (step_up := fresh_or_step_up(citizen, url_for("account.email"))) is not None:
        return step_up
    form = EmailChangeForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("account/email.html", form=form, citizen=citizen), \
            200 if request.method == "GET" else 400
    try:
        email = contacts.normalise_email(form.email.data or "")
    except contacts.InvalidContact:
        form.email.errors = [_("Enter an email address such as nama@contoh.id.")]
        return render_template("account/email.html", form=form, citizen=citizen), 400
    if email == citizen.email and citizen.email_verified:
        form.email.errors = [_("This is already your email address.")]
        return render_template("account/email.html", form=form, citizen=citizen), 400
    if (error := check_password(citizen, form.current.data or "")) is not None:
        form.current.errors = [error]
        return render_template("account/email.html", form=form, citizen=citizen), 400
    try:
        code = codes.issue(codes.EMAIL_VERIFICATION, str(citizen.id), email)
    except codes.SendRefused:
        form.email.errors = [_("Too many codes were sent. Please wait an hour and try again.")]
        return render_template("account/email.html", form=form, citizen=citizen), 429
    with force_locale(citizen.locale):
        outbox.send(get_session(), channel="email", recipient=email, citizen_id=citizen.id,
                    subject=_("SatuID: your verification code"),
                    body=_("Your SatuID code to use this email address is %(code)s. It is valid for "
                           "10 minutes. Never share it: SatuID staff will never ask for it.", code=code))
    audit.append("email_code_sent", actor=f"citizen:{citizen.id}", citizen_id=citizen.id)
    return render_template("account/email_verify.html", email=email,
                           form=EmailCodeForm(formdata=None, email=email))


def verify_email() -> Any:
    """Step 2: the code proves the new address; the old one is told, with a "not me" link."""
    citizen = _citizen()
    if (step_up := fresh_or_step_up(citizen, url_for("account.email"))) is not None:
        return step_up
    form = EmailCodeForm()
    email = form.email.data or ""

    def again(error: str, status: int) -> tuple[str, int]:
        return render_template("account/email_verify.html", email=email, form=form, error=error), status

    if not form.validate_on_submit() or not email:
        return again(_("Enter the code."), 400)
    if (refused := check_contact_code(citizen, codes.EMAIL_VERIFICATION, form.code.data or "", email)):
        return again(*refused)
    previous = citizen.email if citizen.email_verified else None
    if citizen.phone and citizen.phone_verified:  # the phone hears of it too (the old address does below)
        with force_locale(citizen.locale):
            outbox.send(get_session(), channel="sms", recipient=citizen.phone, citizen_id=citizen.id,
                        subject=_("SatuID: your email address was changed"),
                        body=_("The email address of your SatuID account was changed to %(email)s. If "
                               "this was not you, contact the SatuID helpdesk at once.",
                               email=contacts.mask(email)))
    citizen.email, citizen.email_verified = email, True
    contacts.tell_previous(get_session(), citizen, "email", previous, email)
    with force_locale(citizen.locale):
        outbox.send(get_session(), channel="email", recipient=email, citizen_id=citizen.id,
                    subject=_("SatuID: this is now your email address"),
                    body=_("This address now receives the messages of your SatuID account: "
                           "security notices and password-reset links."))
    audit.append("email_changed", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 previous=contacts.mask(previous), new=contacts.mask(email))
    flash(_("Your email address is verified and saved."), "success")
    return redirect(url_for("account.home"))


def preferences() -> Any:
    """Language (of pages and messages) and time zone (of every time shown)."""
    citizen = _citizen()
    form = PreferencesForm(formdata=None if request.method == "GET" else request.form,
                           locale=citizen.locale, time_zone=citizen.time_zone or "")
    if request.method == "GET":
        return render_template("account/preferences.html", form=form)
    if not form.validate_on_submit() or form.locale.data not in LOCALES \
            or (form.time_zone.data and form.time_zone.data not in ZONES):
        return render_template("account/preferences.html", form=form), 400
    citizen.locale = form.locale.data
    citizen.time_zone = form.time_zone.data or None
    session["lang"] = citizen.locale  # the pages follow at once
    audit.append("preferences_changed", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 locale=citizen.locale, time_zone=citizen.time_zone)
    with force_locale(citizen.locale):
        flash(_("Your preferences were saved."), "success")
    return redirect(url_for("account.home"))


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/password", "password", login_required(change_password), methods=["GET", "POST"])
    bp.add_url_rule("/email", "email", login_required(change_email), methods=["GET", "POST"])
    bp.add_url_rule("/email/verify", "verify_email", login_required(verify_email), methods=["POST"])
    bp.add_url_rule("/preferences", "preferences", login_required(preferences), methods=["GET", "POST"])


