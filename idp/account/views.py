"""``/account``: the citizen's home page."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template

from idp.auth import session as sso
from idp.auth.views import current_citizen, login_required

bp = Blueprint("account", __name__, url_prefix="/account")

#: Sections other areas add to the home page: (endpoint, label). Kept here so the page lists them.
SECTIONS: list[tuple[str, Any]] = []


@bp.get("")
@login_required
def home() -> str:
    citizen = current_citizen()
    assert citizen is not None
    masked = citizen.nik[:6] + "******" + citizen.nik[-4:]
    return render_template("account/home.html", citizen=citizen, masked_nik=masked,
                           sessions=sso.sessions_of(str(citizen.id)), sections=SECTIONS)
