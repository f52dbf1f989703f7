"""Registration: a resident of the population registry opens their SatuID account.

Three steps: (1) NIK, full name and birth date, matched against the registry;
(2) an email address or mobile number, proved with a 6-digit code sent through the outbox;
(3) a password. Then, with the account made, an offer to secure it: the phone (for an account made
with an email address) or an authenticator app, added through the login security pages, where in
this first session they count at once (``waiting.mark_new_account``).

The wizard's state lives server-side in the store, referenced from the signed Flask session; the
browser never carries the verified NIK or contact. One NIK, one account: the unique constraint on
``citizen.nik`` decides. A NIK that already has an account walks the same pages; the message that
would carry the code says so instead, so only the contact's owner learns it.
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from idp import audit, codes, outbox, state
from idp import interaction as interactions
from idp.auth import lockout
from idp.auth import session as sso
from idp.auth.current import current_citizen
from idp.auth.mfa import waiting
from idp.db import get_session
from idp.identity import contact as contacts
from idp.identity import nik as nikmod
from idp.identity import passwords, verification
from idp.identity.problems import NIK_PROBLEMS, PASSWORD_PROBLEMS
from idp.identity.registry import get_registry, same_name
from idp.models import Citizen
from idp.registration.forms import CodeForm, ContactForm, IdentityForm, PasswordForm
from idp.state import Registration, Stamp

bp = Blueprint("registration", __name__)

MATCH_FAILURES = 5           # identity mismatches per NIK per hour before a pause


# ---- wizard state ------------------------------------------------------------------------------

def _current() -> tuple[str, Registration] | tuple[None, None]:
    token = session.get("register")
    if not isinstance(token, str) or len(token) > 64:
        return None, None
    wizard = state.registrations.get(token)
    return (token, wizard) if wizard is not None else (None, None)


def _save(token: str, wizard: Registration) -> None:
    state.registrations.put(wizard, token)


def _restart() -> Response:
    session.pop("register", None)
    flash(_("Your registration has expired. Please start again."), "error")
    return redirect(url_for("registration.register"))


# ---- step 1: who you are -----------------------------------------------------------------------

@bp.route("/register", methods=["GET", "POST"])
def register() -> Any:
    interaction = interactions.use(request.args.get("interaction"))
    form = IdentityForm()

    def page(status: int = 200, error: str | None = None) -> tuple[str, int]:
        return render_template("registration/register_identity.html", form=form,
                               interaction=interaction, error=error), status

    if request.method == "GET":
        return page()
    if not lockout.ip_allowed("register"):
        audit.append("registration_rate_limited", actor="anonymous")
        return page(429, _("Too many attempts from your network. Please wait a minute and try "
                           "again."))
    if not form.validate_on_submit():
        return page(400)
    try:
        nik = nikmod.parse(form.nik.data or "")
    except nikmod.InvalidNik as e:
        form.nik.errors = [NIK_PROBLEMS[e.reason]]
        return page(400)
    born = form.birth_date.data
    assert born is not None
    if not nikmod.matches_registry(nik, born, nik.sex):
        # The NIK itself encodes the birth date: say so, it reveals nothing the NIK does not.
        form.birth_date.errors = [_("This date of birth is not the one in your NIK (digits 7 to 12).")]
        return page(400)

    account = state.digest(nik.value)
    if state.registration_locks.remaining(account):
        return page(429, _("Too many attempts with this NIK. For your safety, registration with it "
                           "is paused for an hour."))

    resident = get_registry().lookup(nik.value)
    if resident is None or not same_name(form.full_name.data or "", resident.full_name) \
            or resident.birth_date != born:
        # One answer for every mismatch, so the page cannot be used to learn registry contents.
        if state.registration_failures.incr(account) >= MATCH_FAILURES:
            state.registration_locks.put(Stamp(at=int(time.time())), account)
            state.registration_failures.delete(account)
        audit.append("registration_refused", actor="anonymous", reason="registry_mismatch")
        return page(400, _("We could not find a resident with this NIK, full name and date of "
                           "birth in the population registry. Check them against your KTP and "
                           "try again."))
    if not nikmod.matches_registry(nik, resident.birth_date, resident.sex):
        audit.append("registration_refused", actor="anonymous", reason="registry_disagrees_with_nik")
        return page(400, _("Your record in the population registry does not agree with your NIK. "
                           "Please visit your Dukcapil office to have it corrected."))
    # A NIK that already has an account goes on exactly like a new one: the answer only reaches
    # whoever controls the contact given next (and the account's owner is told), so the page
    # cannot be used to learn who has a SatuID account.
    existing = get_session().scalar(select(Citizen.id).where(Citizen.open_with_nik(nik.value)))

    token = secrets.token_urlsafe(24)
    _save(token, Registration(nik=nik.value, full_name=resident.full_name,
                              interaction=interaction.uid if interaction else "",
                              existing=str(existing) if existing is not None else ""))
    session["register"] = token
    return redirect(url_for("registration.register_contact"))


# ---- step 2: a verified email address or mobile number -----------------------------------------

@bp.route("/register/contact", methods=["GET", "POST"])
def register_contact() -> Any:
    token, wizard = _current()
    if token is None or wizard is None:
        return _restart()
    interactions.use(wizard.interaction)
    form = ContactForm()

    def page(status: int = 200, error: str | None = None) -> tuple[str, int]:
        return render_template("registration/register_contact.html", form=form, state=wizard,
                               error=error), status

    if request.method == "GET":
        return page()
    if not form.validate_on_submit():
        return page(400)
    email, phone = (form.email.data or "").strip(), (form.phone.data or "").strip()
    if bool(email) == bool(phone):
        return page(400, _("Enter either an email address or a mobile phone number."))
    try:
        if email:
            channel, contact = "email", contacts.normalise_email(email)
        else:
            channel, contact = "sms", contacts.normalise_phone(phone)
    except contacts.InvalidContact as e:
        field = form.email if e.reason == "email" else form.phone
        field.errors = [_("This is not a valid email address.") if e.reason == "email" else
                        _("Enter an Indonesian mobile number, for example 0812 3456 7890.")]
        return page(400)
    wizard.channel, wizard.contact, wizard.verified = channel, contact, False
    _save(token, wizard)
    error = _send_code(token, wizard)
    if error:
        return page(429, error)
    return redirect(url_for("registration.register_verify"))


def _send_code(token: str, wizard: Registration) -> str | None:
    """Send a fresh code (replacing any earlier one); return why not when a limit is reached."""
    try:
        code = codes.issue(codes.REGISTRATION, token, wizard.contact)
    except codes.SendRefused:
        return str(_("Too many codes were sent. Please wait an hour, or use another email address "
                     "or phone number."))
    if wizard.existing:
        _tell_already_registered(wizard)
        audit.append("registration_refused", actor="anonymous", reason="already_registered",
                     citizen_id=uuid.UUID(wizard.existing), channel=wizard.channel)
    else:
        outbox.send(
            get_session(), channel=wizard.channel, recipient=wizard.contact,
            subject=_("SatuID: your verification code"),
            body=_("Your SatuID verification code is %(code)s. It is valid for 10 minutes. Never "
                   "share it: SatuID staff will never ask you for it.", code=code),
        )
        audit.append("registration_code_sent", actor="anonymous", channel=wizard.channel)
    return None


def _tell_already_registered(wizard: Registration) -> None:
    """Instead of a code: tell the contact the NIK has an account, and tell the account's owner
    (once a day at most) that someone tried to register it again. The code stays unknown to anyone.

    Whoever controls the contact learns that the NIK has an account; to get this far they must
    already know the NIK, full name and birth date that match the registry, and the sends are
    rate-limited per registration and per recipient."""
    db = get_session()
    # At most one notice to the owner a day: new attempts must not become a way to flood them.
    notify_owner = state.registration_again_notices.put_if_absent(Stamp(at=int(time.time())),
                                                                  wizard.existing)
    outbox.send(
        db, channel=wizard.channel, recipient=wizard.contact,
        subject=_("SatuID: this NIK already has an account"),
        body=_("Someone, perhaps you, tried to register a SatuID account for NIK %(nik)s. That NIK "
               "already has an account: one NIK, one account. Log in with it, or use \"Forgot your "
               "password?\" on the login page. If this was not you, you can ignore this message.",
               nik=nikmod.mask(wizard.nik)),
    )
    citizen = db.get(Citizen, uuid.UUID(wizard.existing))
    if citizen is not None and notify_owner:
        with force_locale(citizen.locale):
            outbox.notify_citizen(
                db, citizen, _("SatuID: someone tried to register your NIK"),
                _("Someone just tried to open a new SatuID account with your NIK. Your account is "
                  "unchanged. If this was not you, contact the SatuID helpdesk."),
            )


@bp.route("/register/verify", methods=["GET", "POST"])
def register_verify() -> Any:
    token, wizard = _current()
    if token is None or wizard is None:
        return _restart()
    if not wizard.contact:
        return redirect(url_for("registration.register_contact"))
    interactions.use(wizard.interaction)
    form = CodeForm()

    def page(status: int = 200, error: str | None = None) -> tuple[str, int]:
        return render_template("registration/register_verify.html", form=form, state=wizard,
                               error=error), status

    if request.method == "GET":
        return page()
    if not form.validate_on_submit():
        return page(400)
    if request.form.get("action") == "resend":
        error = _send_code(token, wizard)
        if error:
            return page(429, error)
        flash(_("We sent you a new code. Earlier codes no longer work."), "success")
        return redirect(url_for("registration.register_verify"))

    typed = codes.digits(form.code.data or "")
    if len(typed) != codes.CODE_DIGITS or len(form.code.data or "") > 16:
        form.code.errors = [_("Enter the 6 digits of the code we sent you.")]
        return page(400)
    checked = codes.check(codes.REGISTRATION, token, typed, recipient=wizard.contact)
    if not checked.accepted:
        if not checked.wrong:
            form.code.errors = [_("This code has expired or was already used. Ask for a new code.")]
            return page(400)
        if checked.attempts_left > 0:
            form.code.errors = [_("This code is not correct. You have %(left)d attempts left.",
                                  left=checked.attempts_left)]
        else:
            form.code.errors = [_("Too many wrong codes. Ask for a new code.")]
        audit.append("registration_code_failed", actor="anonymous", channel=wizard.channel)
        return page(400)
    wizard.verified = True
    _save(token, wizard)
    return redirect(url_for("registration.register_password"))


# ---- step 3: a password, then the account ------------------------------------------------------

@bp.route("/register/password", methods=["GET", "POST"])
def register_password() -> Any:
    token, wizard = _current()
    if token is None or wizard is None:
        return _restart()
    if not wizard.verified:
        return redirect(url_for("registration.register_verify" if wizard.contact
                                else "registration.register_contact"))
    interaction = interactions.use(wizard.interaction)
    form = PasswordForm()

    def page(status: int = 200, error: str | None = None) -> tuple[str, int]:
        return render_template("registration/register_password.html", form=form, state=wizard,
                               error=error), status

    if request.method == "GET":
        return page()
    if not form.validate_on_submit():
        return page(400)
    password = form.password.data or ""
    problem = passwords.password_problem(password, nik=wizard.nik, name=wizard.full_name)
    if problem:
        form.password.errors = [PASSWORD_PROBLEMS[problem]]
        return page(400)
    # Hash first: a busy answer (no argon2 slot in time) leaves the wizard to submit again.
    password_hash = passwords.hash_password(password)
    # Take the state now: a double submission creates one account at most.
    if state.registrations.take(token) is None:
        return _restart()
    session.pop("register", None)
    by_email = wizard.channel == "email"
    citizen = Citizen(
        nik=wizard.nik, full_name=wizard.full_name,
        email=wizard.contact if by_email else None, email_verified=by_email,
        phone=None if by_email else wizard.contact, phone_verified=not by_email,
        password_hash=password_hash, locale=str(get_locale() or "id"),
    )
    db = get_session()
    db.add(citizen)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        audit.append("registration_refused", actor="anonymous", reason="already_registered")
        return render_template("registration/register_exists.html", interaction=interaction), 409
    verification.record_registry_match(db, citizen.id)
    outbox.notify_citizen(
        db, citizen, _("Welcome to SatuID"),
        _("Your SatuID account is ready. You can now log in to government services with your "
          "NIK and your password. If you did not register, contact the SatuID helpdesk at once."),
    )
    audit.append("registered", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 channel=wizard.channel,
                 client_id=interaction.client_id if interaction else None)
    started = sso.start(str(citizen.id), amr=["pwd"], acr=1)
    waiting.mark_new_account(started.sid)
    session[_FINISH] = interaction.uid if interaction is not None else ""
    flash(_("Welcome to SatuID! Your account is ready."), "success")
    return redirect(url_for("registration.register_secure"))


# ---- then: secure the account, or not now ----------------------------------------------------------

_FINISH = "register_finish"  # UI cookie: the interaction the registration interrupted ("" if none)


@bp.get("/register/secure")
def register_secure() -> Any:
    """An offer, not a step: a phone for SMS codes or an authenticator app, or carry on."""
    citizen = current_citizen()
    if citizen is None or _FINISH not in session:
        return redirect(url_for("account.home"))
    done = url_for("registration.register_done")
    return render_template("registration/register_secure.html", citizen=citizen,
                           phone_url=url_for("security.phone_add", next=done),
                           totp_url=url_for("security.totp_enrol", next=done), done_url=done)


@bp.get("/register/done")
def register_done() -> Any:
    """Where the citizen was going before registering: the portal's authorization, or the account."""
    uid = session.pop(_FINISH, None)
    citizen = current_citizen()
    interaction = interactions.use(uid) if uid else None
    if citizen is not None and interaction is not None:
        return redirect(interactions.finish(interaction, citizen_id=str(citizen.id)))
    return redirect(url_for("account.home"))
