"""Notifications to citizens through a database outbox.

A message is a row queued in the unit of work that caused it, so a change that is rolled back sends
nothing. ``flask outbox deliver`` (``delivery.py``) sends the rows by email and SMS. In development
the page ``/dev/outbox`` shows them, so the demo and the tests can read a verification code the way a
citizen would read their phone.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, abort, current_app, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp.db import get_session
from idp.models import Citizen, OutboxMessage

bp = Blueprint("outbox", __name__)


def send(
    session: Session,
    *,
    channel: str,
    recipient: str,
    subject: str,
    body: str,
    citizen_id: uuid.UUID | None = None,
) -> OutboxMessage:
    """Queue a message in the caller's transaction (it is sent only if the change commits)."""
    msg = OutboxMessage(channel=channel, recipient=recipient, subject=subject, body=body,
                        citizen_id=citizen_id)
    session.add(msg)
    return msg


def notify_citizen(session: Session, citizen: Citizen, subject: str, body: str) -> None:
    """Tell the citizen about a security event on every verified channel they have."""
    if citizen.email and citizen.email_verified:
        send(session, channel="email", recipient=citizen.email, subject=subject, body=body,
             citizen_id=citizen.id)
    if citizen.phone and citizen.phone_verified:
        send(session, channel="sms", recipient=citizen.phone, subject=subject, body=body,
             citizen_id=citizen.id)


@bp.get("/dev/outbox")
def dev_outbox() -> str:
    """Development only: the messages a citizen would have received, newest first."""
    if not current_app.config["IDP"].dev_outbox:
        abort(404)
    stmt = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(50)
    if to := request.args.get("to"):
        stmt = stmt.where(OutboxMessage.recipient == to)
    messages = get_session().scalars(stmt).all()
    return render_template("dev_outbox.html", messages=messages)
