"""``/account``: the citizen's home page and their SSO sessions; with ``changes`` (password, email,
preferences) and ``rights`` (download, closure) the whole of the citizen's account.

The home page links to the account sections other parts provide (security, consents...); the list is
given to ``create_blueprint`` by the composition root, so this module needs to know none of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import LazyString
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response

from idp import audit
from idp.account import changes, closing, rights
from idp.auth import session as sso
from idp.auth.current import current_citizen, login_required
from idp.db import get_session
from idp.identity import nik as nikmod
from idp.useragents import device_name


@dataclass(frozen=True)
class AccountSection:
    """A link on the account home page: the endpoint of a part's page, and its label."""

    endpoint: str
    label: LazyString


def home(sections: Sequence[AccountSection]) -> str:
    citizen = current_citizen()
    current = sso.current()
    assert citizen is not None and current is not None
    sessions = sorted(sso.sessions_of(str(citizen.id)), key=lambda s: -s.last_seen)
    return render_template("account/home.html", citizen=citizen, masked_nik=nikmod.mask(citizen.nik),
                           sessions=sessions, current_sid=current.sid, device_name=device_name,
                           closure=closing.pending(get_session(), citizen.id),
                           sections=[(s.endpoint, s.label) for s in sections], form=FlaskForm())


def end_session() -> Response:
    """Log out one session (another device), or every other session with ``sid=others``."""
    if not FlaskForm().validate_on_submit():
        abort(400)
    current = sso.current()
    assert current is not None
    citizen_id = current.citizen_id
    target = request.form.get("sid", "")
    ended = 0
    for other in sso.sessions_of(citizen_id):
        if other.sid != current.sid and target in (other.sid, "others"):
            sso.end(other, reason="ended_by_citizen")
            ended += 1
    audit.append("sessions_ended", actor=f"citizen:{citizen_id}", citizen_id=citizen_id, count=ended,
                 reason="ended_by_citizen")
    flash(_("%(count)d other session(s) logged out.", count=ended), "success")
    return redirect(url_for("account.home"))


def create_blueprint(sections: Sequence[AccountSection]) -> Blueprint:
    """The account pages, linking to ``sections`` from the home page."""
    bp = Blueprint("account", __name__, url_prefix="/account")
    shown = tuple(sections)

    @bp.get("", endpoint="home")
    @login_required
    def account_home() -> str:
        return home(shown)

    bp.add_url_rule("/sessions/end", "end_session", login_required(end_session), methods=["POST"])
    changes.register(bp)
    rights.register(bp)
    return bp
