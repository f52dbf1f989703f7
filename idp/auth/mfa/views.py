"""Step-up (``/login/step-up``) and the account security pages (``/account/security``).

``/authorize`` sends a citizen here through an Interaction (prompt ``mfa``) when the portal needs a
higher level of assurance than the session has; SatuID's own pages send ``?next=`` instead. The
password was already checked, so the page asks only for the missing factor, strongest first.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import (
    Blueprint,
    Flask,
    abort,
    flash,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import force_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from idp import audit, outbox
from idp import interaction as interactions
from idp.auth import lockout
from idp.auth import session as sso
from idp.auth.mfa import codes, factors, passkeys, recovery, totp
from idp.auth.mfa.forms import CodeForm, ConfirmForm, PasskeyNameForm, SendCodeForm, TotpConfirmForm
from idp.auth.mfa.portals import portals_requiring_second_factor
from idp.auth.views import current_citizen, finish_login, login_required, notify_lockout
from idp.db import get_session
from idp.models import Citizen

bp = Blueprint("mfa", __name__)

ABORT = "unmet_authentication_requirements"  # OIDC Core 1.0 §3.1.2.6 (via the OIDC side)
FACTOR_LABELS = {
    "passkey": _l("Passkey"),
    "totp": _l("Authenticator app"),
    "sms": _l("Code by SMS"),
    "email": _l("Code by email"),
    "recovery": _l("Recovery code"),
}


def init_app(app: Flask) -> None:
    from idp.account.views import SECTIONS

    if not any(endpoint == "mfa.security" for endpoint, _label in SECTIONS):
        SECTIONS.append(("mfa.security",
                         _l("Login security: authenticator app, passkeys, recovery codes")))
    app.extensions["idp.after_password"] = after_password
    from idp.auth.mfa.cli import seed_demo_totp
    from idp.identity.cli import SEEDERS

    if seed_demo_totp not in SEEDERS:
        SEEDERS.append(seed_demo_totp)
    app.jinja_env.globals.setdefault("factor_labels", FACTOR_LABELS)


def after_password(citizen: Citizen, interaction: interactions.Interaction | None,
                   next_path: str | None) -> Response:
    """Password accepted. A citizen who enrolled an authenticator is asked for it straight away on a
    direct login, so the SSO session is ready for portals that need level 2; changing factors on
    SatuID's own pages always needs a fresh second factor. For a portal, ``/authorize`` decides
    from the level it needs."""
    response = finish_login(citizen, interaction, next_path)
    if interaction is None and factors.enrolment(get_session(), citizen).has_authenticator:
        return redirect(url_for("mfa.step_up", next=response.location))
    return response


# ---- step-up -------------------------------------------------------------------------------------

class StepUp:
    """What this step-up is for: required level, allowed factors, and where to go afterwards."""

    def __init__(self, interaction: interactions.Interaction | None, next_path: str | None) -> None:
        self.interaction = interaction
        self.next = interactions.safe_next(next_path) if interaction is None else None
        self.required = max(2, interaction.required_acr) if interaction else 2
        self.allowed = list(interaction.allowed_factors) if interaction else []

    @classmethod
    def from_request(cls) -> StepUp:
        interaction = interactions.load(request.values.get("interaction"))
        if interaction is not None and interaction.ui_locales:
            g.ui_locales = interaction.ui_locales
        return cls(interaction, request.values.get("next"))

    @property
    def params(self) -> dict[str, str]:
        if self.interaction is not None:
            return {"interaction": self.interaction.uid}
        return {"next": self.next} if self.next else {}

    def url(self, **extra: str) -> str:
        return url_for("mfa.step_up", **self.params, **extra)

    def done(self) -> str:
        if self.interaction is not None:
            return self.interaction.resume
        return self.next or url_for("account.home")

    def aborted(self) -> str:
        if self.interaction is not None:
            sep = "&" if "?" in self.interaction.resume else "?"
            return self.interaction.resume + sep + urlencode({"abort": ABORT})
        return self.next or url_for("account.home")


def _citizen_or_login(ctx: StepUp) -> Citizen | Response:
    citizen = current_citizen()
    if citizen is None:
        if ctx.interaction is not None:
            return redirect(url_for("auth.login", interaction=ctx.interaction.uid))
        return redirect(url_for("auth.login", next=ctx.url()))
    return citizen


def _render_step_up(ctx: StepUp, citizen: Citizen, factor: str | None = None,
                    error: str | None = None, status: int = 200) -> tuple[str, int]:
    usable = factors.usable(get_session(), citizen, ctx.required, ctx.allowed)
    if not usable:
        return render_template("mfa/no_factor.html", ctx=ctx, form=ConfirmForm(),
                               security_url=url_for("mfa.security", next=ctx.url())), status
    chosen = factor if factor in usable else usable[0]
    form = CodeForm(formdata=None, factor=chosen, **ctx.params)
    send_form = SendCodeForm(formdata=None, factor=chosen, **ctx.params)
    sent = chosen in codes.CHANNELS and request.args.get("sent") == "1"
    return render_template(
        "mfa/step_up.html", ctx=ctx, citizen=citizen, factor=chosen, others=[f for f in usable
                                                                              if f != chosen],
        form=form, send_form=send_form, cancel_form=ConfirmForm(), error=error, sent=sent,
        destination=_masked(codes.recipient(citizen, chosen)) if chosen in codes.CHANNELS else None,
    ), status


def _masked(address: str | None) -> str:
    if not address:
        return ""
    if "@" in address:
        name, domain = address.split("@", 1)
        return name[:2] + "***@" + domain
    return "*" * max(0, len(address) - 3) + address[-3:]


@bp.get("/login/step-up")
def step_up() -> Any:
    ctx = StepUp.from_request()
    citizen = _citizen_or_login(ctx)
    if isinstance(citizen, Response):
        return citizen
    return _render_step_up(ctx, citizen, request.args.get("factor"))


def _locked_response(ctx: StepUp, citizen: Citizen, throttle: lockout.Throttle) -> tuple[str, int]:
    if throttle.locked_for:
        minutes = max(1, (throttle.locked_for + 59) // 60)
        message = _("Too many wrong codes. For your safety, logging in to this account is paused "
                    "for %(minutes)d minutes.", minutes=minutes)
        return render_template("mfa/locked.html", message=message), 429
    return _render_step_up(ctx, citizen, request.values.get("factor"), status=429,
                           error=_("Please wait %(seconds)d seconds before trying again.",
                                   seconds=throttle.wait_for))


def _failure(ctx: StepUp, citizen: Citizen, factor: str, attempt: lockout.Attempt) -> lockout.Throttle:
    """Count a wrong second factor toward the account lockout; on lockout the session ends too,
    so guessing codes never leads to a session (a password alone does not get to keep trying)."""
    throttle = attempt.failed()
    audit.append("mfa_failed", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 client_id=ctx.interaction.client_id if ctx.interaction else None, factor=factor)
    if throttle.locked_for:
        audit.append("lockout", citizen_id=citizen.id, seconds=throttle.locked_for, factor=factor)
        notify_lockout(citizen)
        get_session().commit()
        if g.sso is not None:
            sso.end(g.sso, reason="lockout")
    return throttle


def _success(ctx: StepUp, citizen: Citizen, factor: str, attempt: lockout.Attempt,
             device_type: str = "single_device", user_verified: bool = False) -> str:
    level = factors.level_for(citizen, factor, user_verified)
    amr = factors.amr_for(factor, device_type)
    for method in amr:
        sso.add_factor(g.sso, method, level)
    attempt.succeeded()
    audit.append("mfa_step_up", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 client_id=ctx.interaction.client_id if ctx.interaction else None,
                 factor=factor, amr=amr, acr=g.sso.acr)
    return ctx.done()


@bp.post("/login/step-up")
def step_up_verify() -> Any:
    ctx = StepUp.from_request()
    citizen = _citizen_or_login(ctx)
    if isinstance(citizen, Response):
        return citizen
    form = CodeForm()
    factor = form.factor.data or ""
    if not form.validate_on_submit() or factor not in factors.usable(
            get_session(), citizen, ctx.required, ctx.allowed) or factor == "passkey":
        return _render_step_up(ctx, citizen, factor, error=_("Enter the code."), status=400)
    attempt = lockout.begin(citizen.nik)
    if attempt.blocked:
        return _locked_response(ctx, citizen, attempt.throttle)
    db = get_session()
    code = form.code.data or ""
    if factor == "totp":
        ok = totp.verify(db, citizen, code)
    elif factor in codes.CHANNELS:
        ok = codes.verify(citizen, factor, code)
    else:
        ok = recovery.use(db, citizen, code)
    # End the database transaction before the store is written: on SQLite both share one file.
    if not ok:
        db.rollback()
        throttle = _failure(ctx, citizen, factor, attempt)
        if throttle.blocked:
            return _locked_response(ctx, citizen, throttle)
        return _render_step_up(ctx, citizen, factor, status=401,
                               error=_("That code is not correct or was already used."))
    db.commit()
    target = _success(ctx, citizen, factor, attempt)
    if factor == "recovery":
        left = factors.enrolment(db, citizen).recovery_codes_left
        audit.append("recovery_code_used", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                     remaining=left)
        _notify(citizen, _l("SatuID: a recovery code was used"),
                _l("A recovery code was just used to log in to your SatuID account. "
                   "%(left)d recovery codes are left. If this was not you, contact the SatuID "
                   "helpdesk at once.", left=left))
    db.commit()
    return redirect(target)


@bp.post("/login/step-up/send")
def step_up_send() -> Any:
    ctx = StepUp.from_request()
    citizen = _citizen_or_login(ctx)
    if isinstance(citizen, Response):
        return citizen
    form = SendCodeForm()
    factor = form.factor.data or ""
    if not form.validate_on_submit() or factor not in codes.CHANNELS or factor not in factors.usable(
            get_session(), citizen, ctx.required, ctx.allowed):
        abort(400)
    throttle = lockout.check(citizen.nik)
    if throttle.locked_for:
        return _locked_response(ctx, citizen, throttle)
    try:
        codes.send(get_session(), citizen, factor)
    except codes.SendRefused:
        return _render_step_up(ctx, citizen, factor, status=429,
                               error=_("Too many codes were sent. Please wait a while, or choose "
                                       "another way to confirm."))
    get_session().commit()
    audit.append("mfa_code_sent", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 channel=factor)
    return redirect(ctx.url(factor=factor, sent="1"))


@bp.post("/login/step-up/cancel")
def step_up_cancel() -> Any:
    ctx = StepUp.from_request()
    ConfirmForm()  # CSRF is checked globally; the form only documents the post
    citizen = current_citizen()
    audit.append("mfa_step_up_cancelled", actor=f"citizen:{citizen.id}" if citizen else "anonymous",
                 citizen_id=citizen.id if citizen else None,
                 client_id=ctx.interaction.client_id if ctx.interaction else None)
    return redirect(ctx.aborted())


@bp.post("/login/step-up/passkey/options")
def step_up_passkey_options() -> Any:
    ctx = StepUp.from_request()
    citizen = current_citizen()
    if citizen is None or "passkey" not in factors.usable(get_session(), citizen, ctx.required,
                                                          ctx.allowed):
        return jsonify(error="passkey_not_available"), 400
    if lockout.check(citizen.nik).blocked:
        return jsonify(error="locked"), 429
    options = passkeys.authentication_options(get_session(), citizen, g.sso.sid)
    return Response(options, mimetype="application/json")


@bp.post("/login/step-up/passkey/verify")
def step_up_passkey_verify() -> Any:
    ctx = StepUp.from_request()
    citizen = current_citizen()
    if citizen is None:
        return jsonify(error="login_required"), 401
    attempt = lockout.begin(citizen.nik)
    if attempt.blocked:
        return jsonify(error="locked", redirect=ctx.url()), 429
    db = get_session()
    try:
        passkey = passkeys.authenticate(db, citizen, g.sso.sid, passkeys.parse_json(request.get_data()))
    except passkeys.PasskeyRejected:
        db.rollback()
        throttle = _failure(ctx, citizen, "passkey", attempt)
        return jsonify(error="passkey_rejected",
                       message=_("The passkey could not be verified. Try again or choose another "
                                 "way."), redirect=ctx.url() if throttle.locked_for else None), 401
    device_type = passkey.device_type
    db.commit()
    target = _success(ctx, citizen, "passkey", attempt, device_type, user_verified=True)
    return jsonify(redirect=target)


# ---- account security ----------------------------------------------------------------------------

def _notify(citizen: Citizen, subject: Any, body: Any) -> None:
    """Queue a security notice (lazy strings, rendered in the citizen's own language)."""
    with force_locale(citizen.locale):
        outbox.notify_citizen(get_session(), citizen, str(subject), str(body))


def _fresh_or_step_up(citizen: Citizen, back: str) -> Response | None:
    """Changing factors needs a second factor proved in the last few minutes (when one exists)."""
    usable = factors.usable(get_session(), citizen)
    if not usable or factors.second_factor_fresh(g.sso.factor_times):
        return None
    flash(_("To change how you log in, first confirm it is you with a second factor."), "info")
    return redirect(url_for("mfa.step_up", next=back))


def _needs_fresh_for_adding(citizen: Citizen) -> bool:
    """Adding a factor (or recovery codes) needs a second factor proved in the last few minutes,
    the first authenticator included: a code to the verified email or phone counts. Otherwise a
    stolen password alone could add the thief's authenticator and reach level 2 or 3 at portals.
    Every addition is also notified on the verified channels."""
    return bool(factors.usable(get_session(), citizen)) and not factors.second_factor_fresh(
        g.sso.factor_times)


def _changed(citizen: Citizen, event: str, subject: Any, body: Any, **details: Any) -> None:
    _notify(citizen, subject, body)
    get_session().commit()
    audit.append(event, actor=f"citizen:{citizen.id}", citizen_id=citizen.id, **details)


@bp.get("/account/security")
@login_required
def security() -> str:
    citizen = current_citizen()
    assert citizen is not None
    db = get_session()
    return render_template(
        "mfa/security.html", citizen=citizen, enrolment=factors.enrolment(db, citizen),
        passkeys=passkeys.passkeys_of(db, citizen), form=ConfirmForm(), name_form=PasskeyNameForm(),
        back=interactions.safe_next(request.args.get("next")),
        fresh=factors.second_factor_fresh(g.sso.factor_times),
    )


@bp.route("/account/security/totp", methods=["GET", "POST"])
@login_required
def totp_enrol() -> Any:
    citizen = current_citizen()
    assert citizen is not None
    db = get_session()
    back = url_for("mfa.totp_enrol", next=request.args.get("next") or None)
    existing = totp.authenticator_of(db, citizen)
    if existing is not None and existing.confirmed:
        flash(_("An authenticator app is already set up. Remove it first to set up another."), "info")
        return redirect(url_for("mfa.security"))
    if _needs_fresh_for_adding(citizen):
        return _fresh_or_step_up(citizen, back) or redirect(url_for("mfa.security"))
    form = TotpConfirmForm()
    error = None
    if request.method == "POST" and existing is not None:
        if form.validate_on_submit():
            attempt = lockout.begin(citizen.nik)
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
                return redirect(url_for("mfa.security", next=target) if target
                                else url_for("mfa.security"))
            else:
                attempt.failed()
                error = _("That code is not correct. Check the time on your phone and try the "
                          "newest code.")
        secret = totp.secret_of(existing)
    else:
        secret = totp.begin_enrolment(db, citizen)
        db.commit()
    uri = totp.provisioning_uri(secret, citizen)
    grouped = " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
    return render_template("mfa/totp_enrol.html", form=form, qr=totp.qr_svg_data_uri(uri),
                           secret=grouped, uri=uri, error=error), 400 if error else 200


@bp.post("/account/security/totp/remove")
@login_required
def totp_remove() -> Any:
    citizen = current_citizen()
    assert citizen is not None
    if (r := _fresh_or_step_up(citizen, url_for("mfa.security"))) is not None:
        return r
    if (r := _warn_if_last(citizen, removing="totp")) is not None:
        return r
    if totp.remove(get_session(), citizen):
        _changed(citizen, "mfa_totp_removed", _l("SatuID: an authenticator app was removed"),
                 _l("The authenticator app was removed from your SatuID account. If this was not "
                    "you, contact the SatuID helpdesk at once."))
        flash(_("The authenticator app was removed."), "success")
    return redirect(url_for("mfa.security"))


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
                       redirect=url_for("mfa.step_up", next=url_for("mfa.security"))), 403
    return Response(passkeys.registration_options(get_session(), citizen, g.sso.sid),
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
        passkey = passkeys.register(db, citizen, g.sso.sid, credential, str(body.get("name") or ""))
    except passkeys.PasskeyRejected:
        return jsonify(error="passkey_rejected",
                       message=_("The passkey could not be registered. Please try again.")), 400
    _changed(citizen, "mfa_passkey_added", _l("SatuID: a passkey was added"),
             _l("A passkey was added to your SatuID account. If this was not you, contact the "
                "SatuID helpdesk at once."), passkey_id=str(passkey.id))
    flash(_("Your passkey is registered."), "success")
    return jsonify(redirect=url_for("mfa.security"))


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
        return redirect(url_for("mfa.security"))
    passkey.name = (form.name.data or "").strip()[:64]
    get_session().commit()
    audit.append("mfa_passkey_renamed", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 passkey_id=str(passkey.id))
    return redirect(url_for("mfa.security"))


@bp.post("/account/security/passkeys/<passkey_id>/remove")
@login_required
def passkey_remove(passkey_id: str) -> Any:
    citizen = current_citizen()
    assert citizen is not None
    db = get_session()
    passkey = passkeys.find(db, citizen, passkey_id)
    if passkey is None:
        abort(404)
    if (r := _fresh_or_step_up(citizen, url_for("mfa.security"))) is not None:
        return r
    if (r := _warn_if_last(citizen, removing="passkey")) is not None:
        return r
    db.delete(passkey)
    _changed(citizen, "mfa_passkey_removed", _l("SatuID: a passkey was removed"),
             _l("A passkey was removed from your SatuID account. If this was not you, contact the "
                "SatuID helpdesk at once."), passkey_id=passkey_id)
    flash(_("The passkey was removed."), "success")
    return redirect(url_for("mfa.security"))


@bp.post("/account/security/recovery-codes")
@login_required
def recovery_codes() -> Any:
    citizen = current_citizen()
    assert citizen is not None
    if _needs_fresh_for_adding(citizen):
        return _fresh_or_step_up(citizen, url_for("mfa.security")) or redirect(url_for("mfa.security"))
    new_codes = recovery.regenerate(get_session(), citizen)
    _changed(citizen, "mfa_recovery_codes_generated",
             _l("SatuID: new recovery codes"),
             _l("New recovery codes were made for your SatuID account; the old ones no longer work. "
                "If this was not you, contact the SatuID helpdesk at once."), count=len(new_codes))
    return render_template("mfa/recovery_codes.html", codes=new_codes)
