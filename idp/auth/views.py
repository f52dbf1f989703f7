"""Login, logout and forgotten password (the pages; protocol code sends people here)."""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from sqlalchemy import select
from werkzeug.wrappers import Response

from idp import audit, codes, metrics, outbox, state
from idp import interaction as interactions
from idp.auth import devices, lockout, reset
from idp.auth import session as sso
from idp.auth.forms import ForgotPasswordForm, LoginForm, NewPasswordForm
from idp.auth.mfa import factors
from idp.db import get_session
from idp.identity import nik as nikmod
from idp.identity import passwords
from idp.identity.problems import NIK_PROBLEMS, PASSWORD_PROBLEMS
from idp.models import Citizen

bp = Blueprint("auth", __name__)


def after_login_target(interaction: interactions.Interaction | None, next_path: str | None) -> str:
    if interaction is not None:
        return interaction.resume
    return interactions.safe_next(next_path) or url_for("account.home")


def finish_login(citizen: Citizen, interaction: interactions.Interaction | None,
                 next_path: str | None) -> Response:
    """Password accepted: start (or renew) the SSO session and continue where the citizen was going;
    a pending authorization learns who logged in through its interaction."""
    sso.start(str(citizen.id), amr=["pwd"], acr=1)
    metrics.LOGINS.inc()
    audit.append("login", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 client_id=interaction.client_id if interaction else None, amr=["pwd"])
    if interaction is not None:
        return redirect(interactions.finish(interaction, citizen_id=str(citizen.id)))
    return redirect(after_login_target(None, next_path))


def continue_after_password(citizen: Citizen, interaction: interactions.Interaction | None,
                            next_path: str | None) -> Response:
    """The session starts now. A citizen who enrolled an authenticator is asked for it straight away
    on a direct login, so the SSO session is ready for portals that need level 2; for a portal,
    ``/authorize`` decides from the level it needs."""
    response = finish_login(citizen, interaction, next_path)
    if interaction is None and factors.enrolment(get_session(), citizen).has_authenticator:
        return redirect(url_for("mfa.step_up", next=response.location))
    return response


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    interaction = interactions.use(request.values.get("interaction"))
    form = LoginForm()
    if request.method == "GET":
        if sso.current() is not None and interaction is None:
            return redirect(interactions.safe_next(request.args.get("next"))
                            or url_for("account.home"))
        form.interaction.data = interaction.uid if interaction else ""
        form.next.data = request.args.get("next", "")
        if interaction and interaction.login_hint:
            with contextlib.suppress(nikmod.InvalidNik):
                form.nik.data = nikmod.parse(interaction.login_hint).value
        return render_template("auth/login.html", form=form, interaction=interaction)

    if not lockout.ip_allowed():
        audit.append("login_rate_limited", actor="anonymous")
        metrics.login_failed("rate_limited")
        return render_template("auth/login.html", form=form, interaction=interaction,
                               error=_("Too many attempts from your network. Please wait a minute "
                                       "and try again.")), 429
    if not form.validate_on_submit():
        metrics.login_failed("invalid")
        return render_template("auth/login.html", form=form, interaction=interaction), 400
    try:
        nik = nikmod.parse(form.nik.data or "")
    except nikmod.InvalidNik as e:
        form.nik.errors = [NIK_PROBLEMS[e.reason]]
        metrics.login_failed("invalid")
        return render_template("auth/login.html", form=form, interaction=interaction), 400

    with passwords.slot_held():  # busy: a 503 before the attempt is counted
        attempt = lockout.begin(nik.value, devices.known_device(nik.value))
        if attempt.blocked:
            metrics.login_failed("throttled")
            return _throttled(form, interaction, attempt.throttle)

        citizen = get_session().scalar(select(Citizen).where(Citizen.open_with_nik(nik.value)))
        password = form.password.data or ""
        if citizen is None:
            passwords.burn_time()  # same cost as a real check: timing must not reveal registration
            ok = False
        else:
            ok = passwords.verify_password(citizen.password_hash, password)
        # A new hash with today's parameters, on the slot already held (not a second wait for one).
        rehashed = (passwords.hash_password(password) if ok and citizen is not None
                    and passwords.needs_rehash(citizen.password_hash) else None)
    if not ok:
        # A wrong password is an answer, not an error: the failure's audit row, the lockout notice
        # and the counter commit with this 401 (only an error answer discards the unit of work).
        throttle = attempt.failed()
        metrics.login_failed("bad_password" if citizen is not None else "unknown_account")
        audit.append("login_failed", actor="anonymous",
                     citizen_id=citizen.id if citizen else None, reason="password")
        if throttle.locked_for and citizen is not None:
            audit.append("lockout", citizen_id=citizen.id, seconds=throttle.locked_for,
                         known_device=attempt.key != state.digest(nik.value))
            notify_lockout(citizen)
        if throttle.locked_for:
            return _throttled(form, interaction, throttle)
        return render_template("auth/login.html", form=form, interaction=interaction,
                               error=_("The NIK or the password is not correct.")), 401

    assert citizen is not None
    attempt.succeeded()
    # Wrong second factors lock logging in too, except on a browser the citizen logged in from
    # before: the password alone, proved again elsewhere, must not reopen the guessing, while the
    # owner keeps a level-1 session on their own device (checked only after the password, so the
    # answer reveals nothing to whoever does not have it).
    factors_locked = lockout.check_second_factor(str(citizen.id))
    if factors_locked.locked_for and devices.known_device(citizen.nik) is None:
        metrics.login_failed("throttled")
        return _throttled(form, interaction, factors_locked)
    if rehashed is not None:
        citizen.password_hash = rehashed
    response = continue_after_password(citizen, interaction, form.next.data)
    devices.remember(response, citizen.nik)
    return response


def _throttled(form: LoginForm, interaction: interactions.Interaction | None,
               throttle: lockout.Throttle) -> tuple[str, int]:
    if throttle.locked_for:
        minutes = max(1, (throttle.locked_for + 59) // 60)
        error = _("Too many failed attempts for this NIK. For your safety, logging in is paused "
                  "for %(minutes)d minutes. You can reset your password meanwhile.",
                  minutes=minutes)
    else:
        error = _("Please wait %(seconds)d seconds before trying again.",
                  seconds=throttle.wait_for)
    return render_template("auth/login.html", form=form, interaction=interaction,
                           error=error), 429


def notify_lockout(citizen: Citizen) -> None:
    with force_locale(citizen.locale):
        outbox.notify_citizen(
            get_session(), citizen, _("SatuID: logging in is paused"),
            _("There were several failed attempts to log in to your SatuID account, so logging in "
              "is paused for a while on devices you have not used with SatuID before; on your own "
              "phone or computer you can still log in. If this was not you, reset your password and "
              "contact the SatuID helpdesk."),
        )


@bp.route("/logout", methods=["GET", "POST"])
def logout() -> Any:
    current = sso.current()
    if request.method == "GET":
        if current is None:
            return redirect(url_for("auth.login"))
        return render_template("auth/logout.html", form=FlaskForm())
    if not FlaskForm().validate_on_submit():  # the CSRF token, as on every form
        abort(400)
    if current is not None:
        citizen_id = current.citizen_id
        sso.end(current, reason="logout")
        audit.append("logout", actor=f"citizen:{citizen_id}", citizen_id=citizen_id)
    flash(_("You have logged out of SatuID."), "success")
    return redirect(url_for("auth.login"))


@bp.route("/password/forgot", methods=["GET", "POST"])
def forgot_password() -> Any:
    form = ForgotPasswordForm()
    if request.method == "GET":
        return render_template("auth/forgot.html", form=form)
    if not lockout.ip_allowed("forgot"):
        return render_template("auth/forgot.html", form=form,
                               error=_("Too many attempts from your network. Please wait a minute "
                                       "and try again.")), 429
    if not form.validate_on_submit():
        return render_template("auth/forgot.html", form=form), 400
    try:
        nik = nikmod.parse(form.nik.data or "")
    except nikmod.InvalidNik as e:
        form.nik.errors = [NIK_PROBLEMS[e.reason]]
        return render_template("auth/forgot.html", form=form), 400
    db = get_session()
    citizen = db.scalar(select(Citizen).where(Citizen.open_with_nik(nik.value)))
    if citizen is not None and reset.send_reset_link(db, citizen):
        audit.append("password_reset_requested", citizen_id=citizen.id, actor="anonymous")
    else:
        # The same work as for an account, so the time taken does not tell whether the NIK has
        # one: a link nobody can use (no citizen has an empty id) and an audit row, one commit.
        codes.issue_link(codes.PASSWORD_RESET, "")
        audit.append("password_reset_requested", actor="anonymous", known=False)
    # The same answer whether or not the NIK has an account.
    return render_template("auth/forgot_sent.html")


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> Any:
    if len(token) > codes.MAX_TOKEN_LENGTH:
        abort(404)
    subject = codes.link_subject(codes.PASSWORD_RESET, token)
    if not subject:
        return render_template("auth/reset_invalid.html"), 400
    db = get_session()
    citizen = db.get(Citizen, uuid.UUID(subject))
    if citizen is None or citizen.closed_at is not None:
        return render_template("auth/reset_invalid.html"), 400
    form = NewPasswordForm()
    if request.method == "GET" or not form.validate_on_submit():
        return render_template("auth/reset.html", form=form), 200 if request.method == "GET" else 400
    problem = passwords.password_problem(form.password.data or "", nik=citizen.nik,
                                         name=citizen.full_name)
    if problem:
        form.password.errors = [PASSWORD_PROBLEMS[problem]]
        return render_template("auth/reset.html", form=form), 400
    # Hash first: a busy answer (no argon2 slot free) leaves the link usable for another try.
    new_hash = passwords.hash_password(form.password.data or "")
    # Take the token only now, atomically: a second submission of the same link fails.
    if codes.redeem_link(codes.PASSWORD_RESET, token) != subject:
        return render_template("auth/reset_invalid.html"), 400
    citizen.password_hash = new_hash
    citizen.touch_password()
    with force_locale(citizen.locale):
        outbox.notify_citizen(
            db, citizen, _("SatuID: your password was changed"),
            _("The password of your SatuID account was just changed and every session was "
              "logged out. If this was not you, contact the SatuID helpdesk at once."),
        )
    ended = sso.revoke_all_access(str(citizen.id), reason="password_reset")
    lockout.unlock(citizen.nik)
    audit.append("password_reset", citizen_id=citizen.id, actor=f"citizen:{citizen.id}",
                 sessions_ended=ended)
    flash(_("Your password has been changed. Log in with your new password."), "success")
    return redirect(url_for("auth.login"))
