"""``/account``: the citizen's home page and their SSO sessions."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from idp import audit
from idp.auth import session as sso
from idp.auth.views import current_citizen, login_required

bp = Blueprint("account", __name__, url_prefix="/account")

#: Sections other areas add to the home page: (endpoint, label). Kept here so the page lists them.
SECTIONS: list[tuple[str, Any]] = []


def _masked(nik: str) -> str:
    return nik[:6] + "******" + nik[-4:]


@bp.app_template_filter("unixtime")
def _unixtime(value: int) -> str:
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


@bp.get("")
@login_required
def home() -> str:
    citizen = current_citizen()
    assert citizen is not None
    sessions = sorted(sso.sessions_of(str(citizen.id)), key=lambda s: -s.last_seen)
    return render_template("account/home.html", citizen=citizen, masked_nik=_masked(citizen.nik),
                           sessions=sessions, current_sid=g.sso.sid, sections=SECTIONS,
                           form=FlaskForm())


@bp.post("/sessions/end")
@login_required
def end_session() -> Response:
    """Log out one session (another device), or every other session with ``sid=others``."""
    FlaskForm().validate_on_submit() or _csrf_failed()
    citizen_id = g.sso.citizen_id
    target = request.form.get("sid", "")
    ended = 0
    for other in sso.sessions_of(citizen_id):
        if other.sid != g.sso.sid and target in (other.sid, "others"):
            sso.end(other, reason="ended_by_citizen")
            ended += 1
    audit.append("sessions_ended", actor=f"citizen:{citizen_id}", citizen_id=citizen_id, count=ended,
                 reason="ended_by_citizen")
    flash(_("%(count)d other session(s) logged out.", count=ended), "success")
    return redirect(url_for("account.home"))


def _csrf_failed() -> None:
    from flask_wtf.csrf import CSRFError

    raise CSRFError()
