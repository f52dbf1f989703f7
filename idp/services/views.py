"""``/`` and ``/layanan``: the services home; ``/layanan/<portal>/masuk`` starts a portal's sign-in;
``/layanan/<portal>/nilai`` rates it.

Signing in starts at the portal, not here (OpenID Connect Core §4, third-party initiated login):
SatuID sends the browser to the portal's registered ``initiate_login_uri`` with ``iss``, and the
portal makes an ordinary authorization request with its own state, nonce and PKCE. A citizen with a
SatuID session then passes through without typing anything.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from werkzeug.wrappers import Response

from idp import audit
from idp.auth.current import current_citizen, login_required
from idp.db import get_session
from idp.models import Client
from idp.services import catalogue, ratings
from idp.services.forms import RatingForm

bp = Blueprint("services", __name__)


def _portal(client_id: str) -> Client:
    client = get_session().get(Client, client_id) if len(client_id) <= 100 else None
    if client is None or not client.active or not client.life_events:
        abort(404)
    return client


@bp.get("/")
@bp.get("/layanan", endpoint="home")
def home() -> str:
    query = request.args.get("q", "")[:200].replace("\x00", "")
    citizen = current_citizen()
    db = get_session()
    used = ratings.used(db, citizen.id) if citizen else set()
    rated = ratings.rated_this_month(db, citizen.id) if citizen else set()
    return render_template("services/home.html", groups=catalogue.groups(db, query), query=query,
                           citizen=citizen, used=used, rated=rated)


@bp.get("/layanan/<client_id>/masuk")
def sign_in(client_id: str) -> Response:
    """Third-party initiated login (OIDC Core §4): to the portal's ``initiate_login_uri`` with ``iss``."""
    client = _portal(client_id)
    if not client.initiate_login_uri:
        abort(404)
    separator = "&" if "?" in client.initiate_login_uri else "?"
    issuer = current_app.config["IDP"].issuer
    return redirect(f"{client.initiate_login_uri}{separator}{urlencode({'iss': issuer})}", 303)


@bp.route("/layanan/<client_id>/nilai", methods=["GET", "POST"])
@login_required
def rate(client_id: str) -> Any:
    """Rate a service the citizen used: 1 to 5 and an optional comment, once a month."""
    client = _portal(client_id)
    citizen = current_citizen()
    assert citizen is not None
    db = get_session()
    if not ratings.has_used(db, citizen.id, client.client_id):
        flash(_("You can rate a service after you have used it with SatuID."), "info")
        return redirect(url_for("services.home"))
    if client.client_id in ratings.rated_this_month(db, citizen.id):
        flash(_("You already rated %(service)s this month. Thank you!", service=client.name), "info")
        return redirect(url_for("services.home"))
    form = RatingForm()
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                ratings.rate(db, citizen.id, client.client_id, int(form.score.data),
                             form.comment.data or "")
            except ratings.AlreadyRated:
                flash(_("You already rated %(service)s this month. Thank you!", service=client.name),
                      "info")
                return redirect(url_for("services.home"))
            audit.append("service_rated", actor=f"citizen:{citizen.id}", citizen_id=citizen.id,
                         client_id=client.client_id, score=int(form.score.data))
            flash(_("Thank you for rating %(service)s.", service=client.name), "success")
            return redirect(url_for("services.home"))
        return render_template("services/rate.html", client=client, form=form), 400
    return render_template("services/rate.html", client=client, form=form)
