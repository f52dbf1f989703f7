"""``flask outbox``: run the delivery worker, list the messages that failed, send one again.

What is printed names a message by its id and a masked recipient, never its body: a body may hold a
one-time code, and the operator's terminal and the worker's log are not the citizen's phone.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select, update
from sqlalchemy.exc import InterfaceError, OperationalError

from idp import audit
from idp.db import get_session, rowcount, unit_of_work
from idp.models import OutboxMessage
from idp.models.base import utcnow
from idp.outbox.delivery import channel_problems, deliver_due

outbox_cli = AppGroup("outbox", help="Messages to citizens: delivery by email and SMS.")

def masked(recipient: str) -> str:
    """Enough of an address to tell two apart in a list: ``ci****@example.id``, ``+62812****90``."""
    if "@" in recipient:
        name, _, domain = recipient.rpartition("@")
        return f"{name[:2]}****@{domain}"
    if len(recipient) <= 8:
        return "****" + recipient[-2:]
    return f"{recipient[:6]}****{recipient[-2:]}"


def _summary(counts: dict[str, int]) -> str:
    always = [f"{key} {counts.get(key, 0)}" for key in ("sent", "retrying", "failed")]
    rare = [f"{key} {counts[key]}" for key in ("abandoned", "deferred", "late") if key in counts]
    return ", ".join(always + rare)


def _echo_unconfigured(counts: dict[str, int] | None) -> None:
    """Say which channel cannot send and why (with ``counts``, only those with messages waiting);
    its messages stay pending until it is configured."""
    for channel, reason in channel_problems(current_app.config["IDP"]).items():
        if counts is None:
            click.echo(f"{channel} is not configured ({reason}): its messages stay pending", err=True)
        elif waiting := counts.get(f"{channel}_not_configured", 0):
            click.echo(f"{channel} is not configured ({reason}): {waiting} due message(s) stay pending",
                       err=True)


@outbox_cli.command("deliver")
@click.option("--forever", is_flag=True, help="Keep delivering until SIGTERM or Ctrl-C.")
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(0.1),
              help="Seconds between passes with --forever.")
@click.option("--limit", default=500, show_default=True, type=click.IntRange(1),
              help="Messages per pass.")
def deliver(forever: bool, interval: float, limit: int) -> None:
    """Send the due messages: one pass, or passes until stopped with --forever.

    Any number of workers may run at once: each message is sent by one of them, at most once.
    """
    if not forever:
        counts = deliver_due(current_app, limit=limit)
        click.echo(_summary(counts))
        _echo_unconfigured(counts)
        return
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()  # the message being sent is finished and recorded first

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    _echo_unconfigured(None)
    try:
        while not stop.is_set():
            try:
                counts = deliver_due(current_app, limit=limit, stopping=stop.is_set)
            except (OperationalError, InterfaceError) as e:
                click.echo(f"database unavailable ({type(e).__name__}); trying again", err=True)
                counts = {}
            if any(counts.get(key) for key in ("sent", "retrying", "failed", "abandoned", "late")):
                click.echo(_summary(counts))
            sent_or_tried = sum(counts.get(key, 0) for key in ("sent", "retrying", "failed", "late"))
            if sent_or_tried < limit:  # a full pass goes straight on to the next
                stop.wait(interval)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("stopped")


@outbox_cli.command("failed")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1))
def failed(limit: int) -> None:
    """List the messages given up on, newest first (never their text: it may hold a code)."""
    rows = get_session().execute(
        select(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.recipient, OutboxMessage.attempts,
               OutboxMessage.last_error, OutboxMessage.created_at)
        .where(OutboxMessage.status == "failed")
        .order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc()).limit(limit)).all()
    if not rows:
        click.echo("no failed messages")
        return
    click.echo(f"{'id':>8}  {'channel':7}  {'recipient':28}  {'tries':>5}  {'created (UTC)':19}  last error")
    for message_id, channel, recipient, attempts, last_error, created_at in rows:
        click.echo(f"{message_id:>8}  {channel:7}  {masked(recipient):28}  {attempts:>5}  "
                   f"{created_at:%Y-%m-%d %H:%M:%S}  {last_error or ''}")


@outbox_cli.command("retry")
@click.argument("message_id", type=int)
def retry(message_id: int) -> None:
    """Put a failed message back in the queue, with a fresh set of attempts.

    A message failed because its worker stopped mid-send may have reached the citizen already;
    retrying it is the operator's decision (the citizen may get it twice).
    """
    with unit_of_work() as session:
        changed = rowcount(session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.status == "failed")
            .values(status="pending", attempts=0, next_attempt_at=utcnow(), lease_until=None,
                    last_error=None)))
        if not changed:
            raise click.ClickException(f"no failed message {message_id}")
        audit.append("outbox_retried", actor="operator", message_id=message_id)
    click.echo(f"message {message_id} is pending again")
