"""Step-up (``/login/step-up``): the second factor a portal or SatuID's own pages need.

``/authorize`` sends a citizen here through an interaction (prompt ``mfa``) when the portal needs a
higher level of assurance than the session has; SatuID's own pages send ``?next=`` instead. The
password was already checked, so the page asks only for the missing factor, strongest first, and
finishes the interaction (``interaction.finish``) when the factor is proved or the citizen cancels.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.wrappers import Response

from idp import audit
from idp import interaction as interactions
from idp.auth import loa, lockout
from idp.auth import session as sso
from idp.auth.current import current_citizen
from idp.auth.mfa import factors, passkeys, recovery, sent_codes, totp
from idp.auth.mfa.forms import CodeForm, ConfirmForm, SendCodeForm
from idp.auth.mfa.notices import notify
from idp.auth.views import notify_lockout
from idp.db import get_session
from idp.identity import contact as contacts
from idp.models import Citizen

bp = Blueprint("mfa", __name__)

ABORT = "unmet_authentication_requirements"  # OIDC Core 1.0 §3.1.2.6 (via the OIDC side)
FACTOR_LABELS = {
    "passkey": _l("Passkey"),
    "totp": _l("Authenticator app"),
    "sms": _l("Code by SMS"),
    "recovery": _l("Recovery code"),
}


@bp.context_processor
def _labels() -> dict[str, Any]:
    return {"factor_labels": FACTOR_LABELS}


class StepUp:
    """What this step-up is for: required level, allowed factors, and where to go afterwards."""

    def __init__(self, interaction: interactions.Interaction | None, next_path: str | None) -> None:
        self.interaction = interaction
        self.next = interactions.safe_next(next_path) if interaction is None else None
        self.required = max(2, interaction.required_acr) if interaction else 2
        self.allowed = list(interaction.allowed_factors) if interaction else []

    @classmethod
    def from_request(cls) -> StepUp:
        return cls(interactions.use(request.values.get("interaction")), request.values.get("next"))

    @property
    def params(self) -> dict[str, str]:
        if self.interaction is not None:
            return {"interaction": self.interaction.uid}
        return {"next": self.next} if self.next else {}

    def url(self, **extra: str) -> str:
        values: dict[str, Any] = {**self.params, **extra}
        return url_for("mfa.step_up", **values)

    def done(self, citizen: Citizen) -> str:
        if self.interaction is not None:
            return interactions.finish(self.interaction, citizen_id=str(citizen.id))
        return self.next or url_for("account.home")

    def aborted(self) -> str:
        if self.interaction is not None:
            return interactions.finish(self.interaction, error=ABORT)
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
        waits = factors.enrolment(get_session(), citizen).waiting
        return render_template("mfa/no_factor.html", ctx=ctx, form=ConfirmForm(),
                               waiting=min(waits.values()) if waits else None,
                               security_url=url_for("security.page", next=ctx.url())), status
    chosen = factor if factor in usable else usable[0]
    form = CodeForm(formdata=None, factor=chosen, **ctx.params)
    send_form = SendCodeForm(formdata=None, factor=chosen, **ctx.params)
    sent = chosen in sent_codes.CHANNELS and request.args.get("sent") == "1"
    return render_template(
        "mfa/step_up.html", ctx=ctx, citizen=citizen, factor=chosen, others=[f for f in usable
                                                                              if f != chosen],
        form=form, send_form=send_form, cancel_form=ConfirmForm(), error=error, sent=sent,
        destination=contacts.mask(sent_codes.recipient(citizen, chosen))
        if chosen in sent_codes.CHANNELS else None,
    ), status


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
        current = sso.current()
        if current is not None:
            sso.end(current, reason="lockout")
    return throttle


def _success(ctx: StepUp, citizen: Citizen, factor: str, attempt: lockout.Attempt,
             device_type: str = "single_device", user_verified: bool = False) -> str:
    current = sso.current()
    assert current is not None  # _citizen_or_login saw it
    level = loa.level_for(factor, user_verified)
    amr = factors.amr_for(factor, device_type)
    for method in amr:
        sso.add_factor(current, method, level)
    attempt.succeeded()
    audit.append("mfa_step_up", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                 client_id=ctx.interaction.client_id if ctx.interaction else None,
                 factor=factor, amr=amr, acr=current.acr)
    return ctx.done(citizen)


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
    attempt = lockout.begin_second_factor(str(citizen.id))
    if attempt.blocked:
        return _locked_response(ctx, citizen, attempt.throttle)
    db = get_session()
    code = form.code.data or ""
    if factor == "totp":
        ok = totp.verify(db, citizen, code)
    elif factor in sent_codes.CHANNELS:
        ok = sent_codes.verify(citizen, factor, code)
    else:
        ok = recovery.use(db, citizen, code)
        if ok:
            # The one place a request commits before its end: a recovery code must be spent for
            # good before the SSO session (in Redis, outside this unit of work) gains from it, or a
            # failed commit would leave the code usable again.
            db.commit()
    if not ok:
        throttle = _failure(ctx, citizen, factor, attempt)
        if throttle.blocked:
            return _locked_response(ctx, citizen, throttle)
        return _render_step_up(ctx, citizen, factor, status=401,
                               error=_("That code is not correct or was already used."))
    target = _success(ctx, citizen, factor, attempt)
    if factor == "recovery":
        left = factors.enrolment(db, citizen).recovery_codes_left
        audit.append("recovery_code_used", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                     remaining=left)
        notify(citizen, _l("SatuID: a recovery code was used"),
                _l("A recovery code was just used to log in to your SatuID account. "
                   "%(left)d recovery codes are left. If this was not you, contact the SatuID "
                   "helpdesk at once.", left=left))
    return redirect(target)


@bp.post("/login/step-up/send")
def step_up_send() -> Any:
    ctx = StepUp.from_request()
    citizen = _citizen_or_login(ctx)
    if isinstance(citizen, Response):
        return citizen
    form = SendCodeForm()
    factor = form.factor.data or ""
    if not form.validate_on_submit() or factor not in sent_codes.CHANNELS or factor not in factors.usable(
            get_session(), citizen, ctx.required, ctx.allowed):
        abort(400)
    throttle = lockout.check_second_factor(str(citizen.id))
    if throttle.locked_for:
        return _locked_response(ctx, citizen, throttle)
    try:
        sent_codes.send(get_session(), citizen, factor)
    except sent_codes.SendRefused:
        return _render_step_up(ctx, citizen, factor, status=429,
                               error=_("Too many codes were sent. Please wait a while, or choose "
                                       "another way to confirm."))
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
    current = sso.current()
    if current is None:
        return jsonify(error="login_required"), 401
    if lockout.check_second_factor(str(citizen.id)).blocked:
        return jsonify(error="locked"), 429
    options = passkeys.authentication_options(get_session(), citizen, current.sid,
                                              factors.usable_passkeys(get_session(), citizen))
    return Response(options, mimetype="application/json")


@bp.post("/login/step-up/passkey/verify")
def step_up_passkey_verify() -> Any:
    ctx = StepUp.from_request()
    citizen, current = current_citizen(), sso.current()
    if citizen is None or current is None:
        return jsonify(error="login_required"), 401
    attempt = lockout.begin_second_factor(str(citizen.id))
    if attempt.blocked:
        return jsonify(error="locked", redirect=ctx.url()), 429
    db = get_session()
    try:
        passkey = passkeys.authenticate(db, citizen, current.sid,
                                        passkeys.parse_json(request.get_data()))
        if passkey not in factors.usable_passkeys(db, citizen):  # still in its waiting period
            raise passkeys.PasskeyRejected("waiting")
    except passkeys.PasskeyRejected:
        throttle = _failure(ctx, citizen, "passkey", attempt)
        return jsonify(error="passkey_rejected",
                       message=_("The passkey could not be verified. Try again or choose another "
                                 "way."), redirect=ctx.url() if throttle.locked_for else None), 401
    target = _success(ctx, citizen, "passkey", attempt, passkey.device_type, user_verified=True)
    return jsonify(redirect=target)


