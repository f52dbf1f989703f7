"""Registration: a resident of the population registry opens their SatuID account.

Three steps, as the issue asks: (1) NIK, full name and birth date, matched against the registry;
(2) an email address or mobile number, proved with a 6-digit code sent through the outbox;
(3) a password. The wizard's state lives server-side in the store, referenced from the signed Flask
session; the browser never carries the verified NIK or contact. One NIK, one account: the unique
constraint on ``citizen.nik`` decides. A NIK that already has an account walks the same pages; the
message that would carry the code says so instead, so only the contact's owner learns it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from typing import Any

from flask import (
    Blueprint,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import force_locale, get_locale
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from werkzeug.wrappers import Response

from idp import audit, outbox
from idp import interaction as interactions
from idp.auth import lockout
from idp.auth import session as sso
from idp.auth.forms import NIK_PROBLEMS, PASSWORD_PROBLEMS
from idp.db import get_session
from idp.identity import contact as contacts
from idp.identity import nik as nikmod
from idp.identity import passwords
from idp.identity.forms import CodeForm, ContactForm, IdentityForm, PasswordForm
from idp.identity.registry import get_registry, same_name
from idp.models import Citizen
from idp.store import get_store

bp = Blueprint("identity", __name__)

STATE_TTL = 30 * 60          # the whole wizard
CODE_TTL = 10 * 60           # a verification code
CODE_ATTEMPTS = 5            # wrong codes before the code is void
SENDS_PER_REGISTRATION = 4   # the first code and three resends
SENDS_PER_RECIPIENT = 5      # per hour, whoever asks: no flooding someone else's phone
MATCH_FAILURES = 5           # identity mismatches per NIK per hour before a pause
FAILURE_WINDOW = 3600


# ---- wizard state ------------------------------------------------------------------------------

def _state_key(token: str) -> str:
    return f"register:{token}"


def _current() -> tuple[str, dict[str, Any]] | tuple[None, None]:
    token = session.get("register")
    if not isinstance(token, str) or len(token) > 64:
        return None, None
    state = get_store().get(_state_key(token))
    return (token, state) if state is not None else (None, None)


def _save(token: str, state: dict[str, Any]) -> None:
    get_store().put(_state_key(token), state, STATE_TTL)


def _restart() -> Response:
    session.pop("register", None)
    flash(_("Your registration has expired. Please start again."), "error")
    return redirect(url_for("identity.register"))


def _hashed(value: str) -> str:
    # Store keys never hold a NIK or an address in clear.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _use_interaction(uid: str | None) -> interactions.Interaction | None:
    interaction = interactions.load(uid)
    if interaction is not None and interaction.ui_locales:
        g.ui_locales = interaction.ui_locales
    return interaction


# ---- step 1: who you are -----------------------------------------------------------------------

@bp.route("/register", methods=["GET", "POST"])
def register() -> Any:
    interaction = _use_interaction(request.args.get("interaction"))
    form = IdentityForm()

    def page(status: int = 200, error: str | None = None) -> tuple[str, int]:
        return render_template("identity/register_identity.html", form=form,
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

    store = get_store()
    account = _hashed(nik.value)
    if store.ttl(f"register-lock:{account}"):
        return page(429, _("Too many attempts with this NIK. For your safety, registration with it "
                           "is paused for an hour."))

    resident = get_registry().lookup(nik.value)
    if resident is None or not same_name(form.full_name.data or "", resident.full_name) \
            or resident.birth_date != born:
        # One answer for every mismatch, so the page cannot be used to learn registry contents.
        if store.incr(f"register-fail:{account}", FAILURE_WINDOW) >= MATCH_FAILURES:
            store.put(f"register-lock:{account}", {"at": int(time.time())}, FAILURE_WINDOW)
            store.delete(f"register-fail:{account}")
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
    existing = get_session().scalar(select(Citizen.id).where(Citizen.nik == nik.value))

    token = secrets.token_urlsafe(24)
    _save(token, {"nik": nik.value, "full_name": resident.full_name,
                  "interaction": interaction.uid if interaction else "",
                  "channel": "", "contact": "", "verified": False, "sends": 0,
                  "existing": str(existing) if existing is not None else ""})
    session["register"] = token
    return redirect(url_for("identity.register_contact"))


# ---- step 2: a verified email address or mobile number -----------------------------------------

@bp.route("/register/contact", methods=["GET", "POST"])
def register_contact() -> Any:
    token, state = _current()
    if token is None or state is None:
        return _restart()
    _use_interaction(state["interaction"])
    form = ContactForm()

    def page(status: int = 200, error: str | None = None) -> tuple[str, int]:
        return render_template("identity/register_contact.html", form=form, state=state,
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
    state.update(channel=channel, contact=contact, verified=False)
    error = _send_code(token, state)
    _save(token, state)
    if error:
        return page(429, error)
    return redirect(url_for("identity.register_verify"))


def _digest(token: str, code: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{token}:{code}".encode(), hashlib.sha256).hexdigest()


def _send_code(token: str, state: dict[str, Any]) -> str | None:
    """Send a fresh code (replacing any earlier one); return why not when a limit is reached."""
    store = get_store()
    if state["sends"] >= SENDS_PER_REGISTRATION or store.incr(
            f"register-send:{_hashed(state['contact'])}", 3600) > SENDS_PER_RECIPIENT:
        return _("Too many codes were sent. Please wait an hour, or use another email address "
                 "or phone number.")
    code = f"{secrets.randbelow(10**6):06d}"
    store.put(f"register-code:{token}", {"digest": _digest(token, code), "attempts": 0,
                                         "contact": state["contact"],
                                         "expires_at": time.time() + CODE_TTL}, CODE_TTL)
    db = get_session()
    if state.get("existing"):
        _tell_already_registered(state)
    else:
        outbox.send(
            db, channel=state["channel"], recipient=state["contact"],
            subject=_("SatuID: your verification code"),
            body=_("Your SatuID verification code is %(code)s. It is valid for 10 minutes. Never "
                   "share it: SatuID staff will never ask you for it.", code=code),
        )
    db.commit()
    state["sends"] += 1
    if state.get("existing"):
        audit.append("registration_refused", actor="anonymous", reason="already_registered",
                     citizen_id=uuid.UUID(state["existing"]), channel=state["channel"])
    else:
        audit.append("registration_code_sent", actor="anonymous", channel=state["channel"])
    return None


def _tell_already_registered(state: dict[str, Any]) -> None:
    """Instead of a code: tell the contact the NIK has an account, and tell the account's owner
    (once a day at most) that someone tried to register it again. The code stays unknown to anyone.

    Whoever controls the contact learns that the NIK has an account; to get this far they must
    already know the NIK, full name and birth date that match the registry, and the sends are
    rate-limited per registration and per recipient."""
    db = get_session()
    # At most one notice to the owner a day: new attempts must not become a way to flood them.
    # (Asked of the store before any database write: on SQLite both share one file.)
    notify_owner = get_store().put_if_absent(f"register-again-notice:{state['existing']}", {},
                                             24 * 3600)
    masked = "•" * 12 + state["nik"][-4:]
    outbox.send(
        db, channel=state["channel"], recipient=state["contact"],
        subject=_("SatuID: this NIK already has an account"),
        body=_("Someone, perhaps you, tried to register a SatuID account for NIK %(nik)s. That NIK "
               "already has an account: one NIK, one account. Log in with it, or use \"Forgot your "
               "password?\" on the login page. If this was not you, you can ignore this message.",
               nik=masked),
    )
    citizen = db.get(Citizen, uuid.UUID(state["existing"]))
    if citizen is not None and notify_owner:
        with force_locale(citizen.locale):
            outbox.notify_citizen(
                db, citizen, _("SatuID: someone tried to register your NIK"),
                _("Someone just tried to open a new SatuID account with your NIK. Your account is "
                  "unchanged. If this was not you, contact the SatuID helpdesk."),
            )


@bp.route("/register/verify", methods=["GET", "POST"])
def register_verify() -> Any:
    token, state = _current()
    if token is None or state is None:
        return _restart()
    if not state["contact"]:
        return redirect(url_for("identity.register_contact"))
    _use_interaction(state["interaction"])
    form = CodeForm()

    def page(status: int = 200, error: str | None = None) -> tuple[str, int]:
        return render_template("identity/register_verify.html", form=form, state=state,
                               error=error), status

    if request.method == "GET":
        return page()
    if not form.validate_on_submit():
        return page(400)
    if request.form.get("action") == "resend":
        error = _send_code(token, state)
        _save(token, state)
        if error:
            return page(429, error)
        flash(_("We sent you a new code. Earlier codes no longer work."), "success")
        return redirect(url_for("identity.register_verify"))

    typed = "".join((form.code.data or "").split())
    if not (typed.isascii() and typed.isdigit() and len(typed) == 6):
        form.code.errors = [_("Enter the 6 digits of the code we sent you.")]
        return page(400)
    store = get_store()
    # Taken, not read: a code is good for one successful use, and two racing guesses get one look.
    pending = store.take(f"register-code:{token}")
    if pending is None or pending["contact"] != state["contact"]:
        form.code.errors = [_("This code has expired or was already used. Ask for a new code.")]
        return page(400)
    if not hmac.compare_digest(pending["digest"], _digest(token, typed)):
        pending["attempts"] += 1
        left = CODE_ATTEMPTS - pending["attempts"]
        remaining = int(pending["expires_at"] - time.time())
        if left > 0 and remaining > 0:
            store.put(f"register-code:{token}", pending, remaining)
            form.code.errors = [_("This code is not correct. You have %(left)d attempts left.",
                                  left=left)]
        else:
            form.code.errors = [_("Too many wrong codes. Ask for a new code.")]
        audit.append("registration_code_failed", actor="anonymous", channel=state["channel"])
        return page(400)
    state["verified"] = True
    _save(token, state)
    return redirect(url_for("identity.register_password"))


# ---- step 3: a password, then the account ------------------------------------------------------

@bp.route("/register/password", methods=["GET", "POST"])
def register_password() -> Any:
    token, state = _current()
    if token is None or state is None:
        return _restart()
    if not state["verified"]:
        return redirect(url_for("identity.register_verify" if state["contact"]
                                else "identity.register_contact"))
    interaction = _use_interaction(state["interaction"])
    form = PasswordForm()

    def page(status: int = 200, error: str | None = None) -> tuple[str, int]:
        return render_template("identity/register_password.html", form=form, state=state,
                               error=error), status

    if request.method == "GET":
        return page()
    if not form.validate_on_submit():
        return page(400)
    password = form.password.data or ""
    problem = passwords.password_problem(password, nik=state["nik"], name=state["full_name"])
    if problem:
        form.password.errors = [PASSWORD_PROBLEMS[problem]]
        return page(400)
    # Take the state now: a double submission creates one account at most.
    if get_store().take(_state_key(token)) is None:
        return _restart()
    session.pop("register", None)
    by_email = state["channel"] == "email"
    citizen = Citizen(
        nik=state["nik"], full_name=state["full_name"],
        email=state["contact"] if by_email else None, email_verified=by_email,
        phone=None if by_email else state["contact"], phone_verified=not by_email,
        password_hash=passwords.hash_password(password), locale=str(get_locale() or "id"),
    )
    db = get_session()
    db.add(citizen)
    try:
        db.flush()
    except IntegrityError:
        db.rollback()
        audit.append("registration_refused", actor="anonymous", reason="already_registered")
        return render_template("identity/register_exists.html", interaction=interaction), 409
    outbox.notify_citizen(
        db, citizen, _("Welcome to SatuID"),
        _("Your SatuID account is ready. You can now log in to government services with your "
          "NIK and your password. If you did not register, contact the SatuID helpdesk at once."),
    )
    db.commit()
    audit.append("registered", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 channel=state["channel"],
                 client_id=interaction.client_id if interaction else None)
    sso.start(str(citizen.id), amr=["pwd"], acr=1)
    flash(_("Welcome to SatuID! Your account is ready."), "success")
    if interaction is not None:
        return redirect(interaction.resume)
    return redirect(url_for("account.home"))
