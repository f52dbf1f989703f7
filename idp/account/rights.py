"""``/account/data``: the citizen's rights over their data (UU PDP): download everything, or close
the account after a wait that a link on every channel can cancel. Both need the current password
and, when the citizen has a second factor, one proved minutes before: the download holds the very
facts a helpdesk checks identity against."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm

from idp import audit, errors
from idp.account import closing
from idp.account.export import export
from idp.account.forms import PasswordConfirmForm
from idp.auth.current import current_citizen, login_required
from idp.auth.mfa.security import fresh_or_step_up
from idp.auth.reauth import check_password
from idp.db import get_session
from idp.models import Citizen
from idp.models.base import utcnow


def _citizen() -> Citizen:
    citizen = current_citizen()
    assert citizen is not None  # every page here but the cancel link is login_required
    return citizen


def page() -> Any:
    if (step_up := fresh_or_step_up(_citizen(), url_for("account.data"))) is not None:
        return step_up
    return _render()


def _refused(prefix: str) -> Any | None:
    """Both rights need the current password (and a fresh second factor when the citizen has one):
    None when given, else the answer (step-up, or the page again with the error)."""
    citizen = _citizen()
    if (step_up := fresh_or_step_up(citizen, url_for("account.data"))) is not None:
        return step_up
    form = PasswordConfirmForm(prefix=prefix)
    if form.validate_on_submit():
        if (error := check_password(citizen, form.current.data or "")) is None:
            return None
        form.current.errors = [error]
    return _render(**{f"{prefix}_form": form}), 400


def download() -> Any:
    """Everything SatuID holds about the citizen, as one JSON file."""
    if (refused := _refused("export")) is not None:
        return refused
    citizen = _citizen()
    audit.append("data_exported", actor=f"citizen:{citizen.id}", citizen_id=citizen.id)
    body = json.dumps(export(get_session(), citizen), ensure_ascii=False, indent=2)
    name = f"satuid-{utcnow():%Y%m%d}.json"
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


def request_closure() -> Any:
    if (refused := _refused("close")) is not None:
        return refused
    closing.request_closure(get_session(), _citizen())
    flash(_("Your account will be closed in 7 days. We told you on every channel, with a link to "
            "cancel. You can also cancel here."), "info")
    return redirect(url_for("account.data"))


def cancel_closure() -> Any:
    citizen = _citizen()
    if not FlaskForm().validate_on_submit():
        abort(400)
    row = closing.pending(get_session(), citizen.id)
    if row is not None and closing.cancel(get_session(), row, actor=f"citizen:{citizen.id}"):
        flash(_("Your account stays open."), "success")
    return redirect(url_for("account.data"))


def cancel_closure_link(token: str) -> Any:
    """The link sent to every channel: no login needed (a thief may have changed the password).
    GET shows what it cancels; the POST (with its CSRF token) cancels."""
    db = get_session()
    row = closing.by_cancel_token(db, token)
    if row is None:
        return errors.page(404, _("This link no longer works"),
                               _("The closing was already cancelled, or the account is "
                                         "closed. Call the SatuID helpdesk if you need help."))
    form = FlaskForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        closing.cancel(db, row, actor="citizen:link")
        return render_template("account/closure_cancelled.html")
    return render_template("account/closure_cancel.html", form=form, closure=row)


def _render(**forms: Any) -> str:
    """The page, with ``forms`` (a submitted one and its errors) in place of fresh ones."""
    citizen = _citizen()
    context: dict[str, Any] = {"export_form": PasswordConfirmForm(prefix="export", formdata=None),
                               "close_form": PasswordConfirmForm(prefix="close", formdata=None),
                               "cancel_form": FlaskForm(),
                               "closure": closing.pending(get_session(), citizen.id)}
    context.update(forms)
    return render_template("account/data.html", **context)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/data", "data", login_required(page))
    bp.add_url_rule("/data/export", "export", login_required(download), methods=["POST"])
    bp.add_url_rule("/close", "close", login_required(request_closure), methods=["POST"])
    bp.add_url_rule("/close/cancel", "cancel_closure", login_required(cancel_closure), methods=["POST"])
    bp.add_url_rule("/close/cancel/<token>", "cancel_closure_link", cancel_closure_link,
                    methods=["GET", "POST"])
