"""The consent screen, and the citizen's consents and claim-release history under /account."""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from sqlalchemy import select

from idp import audit
from idp import interaction as interactions
from idp.auth.current import current_citizen, login_required
from idp.consent import records
from idp.db import get_session
from idp.models import ClaimRelease, Client

bp = Blueprint("consent", __name__)


def _labels(scopes: list[str], claims: list[str]) -> list[str]:
    labels = [records.SCOPE_LABELS["openid"]] if "openid" in scopes else []
    labels += [records.CLAIM_LABELS[c] for c in claims if c in records.CLAIM_LABELS]
    if "offline_access" in scopes:
        labels.append(records.SCOPE_LABELS["offline_access"])
    return [str(label) for label in labels]


@bp.route("/consent", methods=["GET", "POST"])
def consent() -> Any:
    """Ask the citizen to approve what a portal asks for; the decision resumes the authorization."""
    pending = interactions.use(request.values.get("interaction"))
    if pending is None or pending.prompt != "consent":
        return render_template("error.html", title=_("This request has expired"),
                               message=_("Go back to the service and start again.")), 400
    citizen = current_citizen()
    if citizen is None or str(citizen.id) != pending.details.get("citizen_id"):
        return redirect(url_for("auth.login", interaction=pending.uid))
    session = get_session()
    client = session.get(Client, pending.client_id)
    if client is None:
        abort(400)
    scopes, claims = pending.details["scopes"], pending.details["claims"]
    form = FlaskForm()
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        approved = request.form.get("decision") == "approve"
        if approved:
            records.give(session, citizen.id, client, scopes, claims)
        return redirect(interactions.finish(pending, citizen_id=str(citizen.id),
                                            consent="approved" if approved else "denied"))
    return render_template("consent/consent.html", form=form, client=client, pending=pending,
                           labels=_labels(scopes, claims))


@bp.get("/account/consents")
@login_required
def consents() -> str:
    citizen = current_citizen()
    assert citizen is not None
    session = get_session()
    history = records.history(session, citizen.id)
    clients = {c.client_id: c for c in session.scalars(select(Client))}
    in_force = []
    seen: set[str] = set()
    for record in history:  # newest first: the first record per portal is the one in force
        if record.client_id in seen:
            continue
        seen.add(record.client_id)
        if record.action != "withdrawn":
            in_force.append((clients[record.client_id], record, _labels(record.scopes, record.claims)))
    return render_template("consent/consents.html", in_force=in_force, history=history,
                           clients=clients, form=FlaskForm())


@bp.post("/account/consents/<client_id>/withdraw")
@login_required
def withdraw(client_id: str) -> Any:
    form = FlaskForm()
    if not form.validate_on_submit():
        abort(400)
    citizen = current_citizen()
    assert citizen is not None
    session = get_session()
    client = session.get(Client, client_id)
    if client is None:
        abort(404)
    if records.withdraw(session, citizen.id, client):
        flash(_("You withdrew your consent for %(portal)s. It can no longer get your data without "
                "asking you again.", portal=client.name), "success")
    return redirect(url_for("consent.consents"))


@bp.get("/account/activity")
@login_required
def activity() -> str:
    citizen = current_citizen()
    assert citizen is not None
    session = get_session()
    releases = session.scalars(select(ClaimRelease).where(ClaimRelease.citizen_id == citizen.id)
                               .order_by(ClaimRelease.id.desc()).limit(200)).all()
    clients = {c.client_id: c for c in session.scalars(select(Client))}
    rows = [(r, clients.get(r.client_id), [str(records.CLAIM_LABELS.get(c, c)) for c in r.claims])
            for r in releases]
    return render_template("consent/activity.html", rows=rows)


@bp.get("/account/activity/<int:release_id>/proof")
@login_required
def release_proof(release_id: int) -> Any:
    """A file proving this release is recorded in the signed audit log: the event, its place in
    the Merkle tree and the checkpoint it is under, which anyone can check against the published
    checkpoints (/audit/checkpoint) without trusting SatuID's database."""
    citizen = current_citizen()
    assert citizen is not None
    session = get_session()
    release = session.get(ClaimRelease, release_id)
    if release is None or release.citizen_id != citizen.id:
        abort(404)
    proof = (audit.inclusion_proof(session, release.audit_event_id, release.released_at)
             if release.audit_event_id else None)
    if proof is None:
        flash(_("The proof for this record is not ready yet. SatuID adds new records to its signed "
                "log every few seconds. Try again in a minute."), "info")
        return redirect(url_for("consent.activity"))
    event = json.loads(proof.leaf)  # what the log holds, not the activity table's copy
    body = json.dumps({"release": {"id": release.id, "client_id": event["client_id"],
                                   "channel": event["details"].get("channel"),
                                   "claims": event["details"].get("claims"), "at": event["at"]},
                       **proof.as_json()}, indent=2, ensure_ascii=False)
    return Response(body, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="satuid-proof-{release.id}.json"',
        "Cache-Control": "no-store"})
