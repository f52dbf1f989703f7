"""The outbox's delivery worker: email through SMTP, SMS through an HTTP gateway.

Each message is claimed before it is sent, with a conditional UPDATE (pending and due → sending, with
a lease) committed on its own, so any number of workers, threads or processes, on PostgreSQL or on
SQLite, can run side by side and only one of them sends a given message. The outcome is written once
the peer answered: sent; or, on a failure, pending again after an exponential backoff, until
``outbox_max_attempts`` tries have failed.

No two workers ever send one message. A message still "sending" after its lease ran out belonged to
a worker that stopped mid-send: the peer may already have it, so it is marked failed and never sent
again; a second copy of a one-time code or of a security notice confuses a citizen more than a
missing one, which the citizen can ask for again and the operator can see (``flask outbox failed``)
and retry. The one case of a second copy is a peer that took the message but timed out before it
answered: that is retried like any failure, since a code lost for good is worse than a duplicate.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import logging
import smtplib
import socket
import ssl
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from urllib.parse import quote_plus

import requests
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from idp import metrics
from idp.config import Settings
from idp.db import rowcount
from idp.models import OutboxMessage
from idp.models.base import utcnow

log = logging.getLogger(__name__)

STATUSES = ("pending", "sending", "sent", "failed")
CHANNELS = ("email", "sms")
#: Longer than any one send can take (each network step times out well before it), so only a worker
#: that died leaves a lease to run out.
LEASE_SECONDS = 300
MAX_RETRY_DELAY = 3600
SMTP_TIMEOUT = 10.0
SMS_TIMEOUT = 5.0
STOPPED_WHILE_SENDING = "worker stopped while sending"


class DeliveryError(Exception):
    """A send that failed in a known way; the text is short and safe to store and log (it never
    carries the recipient or the body)."""


class PeerUnreachable(DeliveryError):
    """The server itself cannot be reached: the rest of its channel waits for the next pass."""


class Undeliverable(DeliveryError):
    """No attempt could ever succeed (an address that cannot go in a header): failed at once."""


@dataclass(frozen=True)
class Claim:
    """A message this worker holds until ``lease_until``; the lease is also its claim ticket."""

    id: int
    channel: str
    recipient: str
    subject: str
    body: str
    attempts: int
    lease_until: dt.datetime


# ---- settings ------------------------------------------------------------------------------------

def channel_problems(settings: Settings) -> dict[str, str]:
    """Channels that cannot send with these settings, and why (an operator's sentence)."""
    problems: dict[str, str] = {}
    if not settings.smtp_host:
        problems["email"] = "IDP_SMTP_HOST is not set"
    if not settings.sms_gateway_url:
        problems["sms"] = "IDP_SMS_GATEWAY_URL is not set"
    elif not settings.sms_gateway_url.startswith(("https://", "http://")):
        problems["sms"] = "IDP_SMS_GATEWAY_URL must be an http(s) URL"
    elif settings.sms_gateway_auth_header is not None and not _auth_header(settings):
        problems["sms"] = 'IDP_SMS_GATEWAY_AUTH_HEADER must look like "Name: value"'
    else:
        try:
            string.Template(settings.sms_gateway_body).substitute(to="", text="")
        except (KeyError, ValueError):
            problems["sms"] = "IDP_SMS_GATEWAY_BODY may use only $to and $text"
    return problems


def _auth_header(settings: Settings) -> tuple[str, str] | None:
    name, colon, value = (settings.sms_gateway_auth_header or "").partition(":")
    if not colon or not name.strip() or any(c.isspace() for c in name.strip()):
        return None
    return name.strip(), value.strip()


# ---- email ---------------------------------------------------------------------------------------

class Mailer:
    """One SMTP connection, opened on the first message of a pass and reused for the rest."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._smtp: smtplib.SMTP | None = None

    def send(self, claim: Claim) -> None:
        try:
            message = email_message(self.settings, claim)
        except Exception:  # a line break or a malformed address: refused rather than injected
            raise Undeliverable("address or subject cannot be put in a header") from None
        if self._smtp is None:
            self._smtp = self._connect()
        try:
            # The envelope names the stored address and nothing else: never what the To header
            # might be parsed into.
            self._smtp.send_message(message, to_addrs=[claim.recipient])
        except (smtplib.SMTPException, OSError) as e:
            self.close()  # the session's state is unknown: the next message starts a new one
            raise DeliveryError(_smtp_error(e)) from None

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        assert s.smtp_host is not None
        try:
            smtp = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=SMTP_TIMEOUT)
        except (smtplib.SMTPException, OSError) as e:
            raise PeerUnreachable(_smtp_error(e)) from None
        try:
            smtp.ehlo()
            if s.smtp_starttls:
                # Never fall back to plain text: a server without STARTTLS is a failure.
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if s.smtp_username:
                smtp.login(s.smtp_username, s.smtp_password or "")
        except (smtplib.SMTPException, OSError) as e:
            smtp.close()
            raise PeerUnreachable(_smtp_error(e)) from None
        return smtp

    def close(self) -> None:
        if self._smtp is None:
            return
        try:
            self._smtp.quit()
        except (smtplib.SMTPException, OSError):
            self._smtp.close()
        self._smtp = None


def email_message(settings: Settings, claim: Claim) -> EmailMessage:
    """The message as sent. Its Message-ID is the outbox row's, so a retry carries the same one."""
    domain = email.utils.parseaddr(settings.mail_from)[1].rpartition("@")[2] or "localhost"
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = claim.recipient
    message["Subject"] = claim.subject
    message["Date"] = email.utils.format_datetime(utcnow())
    message["Message-ID"] = f"<outbox.{claim.id}@{domain}>"
    message.set_content(claim.body, charset="utf-8", cte="quoted-printable")
    return message


def _smtp_error(e: BaseException) -> str:
    """What went wrong, without the server's text (it often echoes the recipient's address)."""
    if isinstance(e, smtplib.SMTPRecipientsRefused):
        codes = sorted({code for code, _ in e.recipients.values()})
        return "SMTP recipient refused " + ",".join(str(c) for c in codes)
    if isinstance(e, smtplib.SMTPResponseException):
        return f"SMTP {e.smtp_code}"
    if isinstance(e, smtplib.SMTPNotSupportedError):
        return "SMTP server does not support a required extension (STARTTLS or SMTPUTF8)"
    if isinstance(e, smtplib.SMTPServerDisconnected):
        return "SMTP connection closed"
    if isinstance(e, smtplib.SMTPException):
        return f"SMTP {type(e).__name__}"
    return _network_error(e)


def _network_error(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return "timeout"
    if isinstance(e, ssl.SSLCertVerificationError):
        return "TLS certificate not trusted"
    if isinstance(e, ssl.SSLError):
        return "TLS error"
    if isinstance(e, socket.gaierror):
        return "host not found"
    return f"network error ({type(e).__name__})"


# ---- SMS -----------------------------------------------------------------------------------------

def sms_request_body(settings: Settings, recipient: str, text: str) -> str:
    """The gateway's body: ``sms_gateway_body`` with $to and $text escaped for its content type, so a
    quote or a newline in a message cannot break (or inject into) the request."""
    content_type = settings.sms_gateway_content_type.lower()

    def escape(value: str) -> str:
        if "json" in content_type:
            return json.dumps(value, ensure_ascii=False)[1:-1]  # the inside of a JSON string
        if "x-www-form-urlencoded" in content_type:
            return quote_plus(value)
        return value

    return string.Template(settings.sms_gateway_body).substitute(to=escape(recipient), text=escape(text))


def send_sms(settings: Settings, claim: Claim) -> None:
    assert settings.sms_gateway_url is not None
    headers = {"Content-Type": settings.sms_gateway_content_type}
    if auth := _auth_header(settings):
        headers[auth[0]] = auth[1]
    body = sms_request_body(settings, claim.recipient, claim.body).encode("utf-8")
    try:
        response = requests.post(settings.sms_gateway_url, data=body, headers=headers,
                                 timeout=SMS_TIMEOUT, allow_redirects=False)
    except requests.ConnectionError as e:  # includes ConnectTimeout: nothing reached the gateway
        reason = "timeout" if isinstance(e, requests.ConnectTimeout) else "connection failed"
        raise PeerUnreachable(f"SMS gateway {reason}") from None
    except requests.Timeout:
        raise DeliveryError("SMS gateway timeout") from None
    except requests.RequestException as e:
        raise DeliveryError(f"SMS gateway {type(e).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"SMS gateway HTTP {response.status_code}")


# ---- the pass ------------------------------------------------------------------------------------

def deliver_due(app: Flask, limit: int = 100, *,
                stopping: Callable[[], bool] = lambda: False) -> dict[str, int]:
    """One pass: fail what a stopped worker left, then send up to ``limit`` due messages, or fewer
    when ``stopping()`` turns true (checked between messages, so a stop never cuts a send short).

    Returns counts by outcome: ``sent``, ``retrying``, ``failed``, ``abandoned`` (a stopped worker's),
    ``deferred`` (left for the next pass, their server unreachable), ``late`` (an outcome that came
    after the lease ran out), ``<channel>_not_configured`` (due, waiting for their settings).
    """
    settings: Settings = app.config["IDP"]
    maker = _sessions(app)
    counts: dict[str, int] = {}

    def count(key: str, n: int = 1) -> None:
        if n:
            counts[key] = counts.get(key, 0) + n

    count("abandoned", fail_abandoned(maker))
    problems = channel_problems(settings)
    usable = [c for c in CHANNELS if c not in problems]
    now = utcnow()
    with maker() as session:
        for channel, waiting in session.execute(
                select(OutboxMessage.channel, func.count())
                .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                       OutboxMessage.channel.in_(list(problems)))
                .group_by(OutboxMessage.channel)):
            count(f"{channel}_not_configured", waiting)
        due = session.execute(
            select(OutboxMessage.id, OutboxMessage.channel)
            .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= now,
                   OutboxMessage.channel.in_(usable))
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id).limit(limit)).all()
    unreachable: set[str] = set()
    with _mailer(settings) as mailer:
        for message_id, channel in due:
            if stopping():
                break
            if channel in unreachable:
                count("deferred")
                continue
            claim = _claim(maker, message_id)
            if claim is None:
                continue  # another worker has it
            error, permanent = None, False
            try:
                if channel == "email":
                    mailer.send(claim)
                else:
                    send_sms(settings, claim)
            except PeerUnreachable as e:
                unreachable.add(channel)
                error = str(e)
            except DeliveryError as e:
                error, permanent = str(e), isinstance(e, Undeliverable)
            except Exception:  # a bug must not stop the worker or strand the message in "sending"
                log.exception("outbox message %s: unexpected error", message_id)
                error, permanent = "unexpected error", True
            count(_record(maker, settings, claim, error, permanent=permanent))
    if counts:
        log.info("outbox pass: %s", ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    return counts


def fail_abandoned(maker: sessionmaker[Session]) -> int:
    """Mark failed what is still "sending" after its lease: its worker stopped mid-send, and the
    citizen may have the message already (at most once)."""
    with maker() as session:
        ids = session.scalars(
            update(OutboxMessage)
            .where(OutboxMessage.status == "sending", OutboxMessage.lease_until < utcnow())
            .values(status="failed", lease_until=None, last_error=STOPPED_WHILE_SENDING)
            .returning(OutboxMessage.id)).all()
        session.commit()
    if ids:
        log.warning("outbox messages %s failed: %s", ", ".join(map(str, ids)), STOPPED_WHILE_SENDING)
    return len(ids)


def _claim(maker: sessionmaker[Session], message_id: int) -> Claim | None:
    """Take one due message for this worker, committed before anything is sent."""
    now = utcnow()
    lease_until = now + dt.timedelta(seconds=LEASE_SECONDS)
    with maker() as session:
        row = session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == message_id, OutboxMessage.status == "pending",
                   OutboxMessage.next_attempt_at <= now)
            .values(status="sending", lease_until=lease_until, attempts=OutboxMessage.attempts + 1)
            .returning(OutboxMessage.channel, OutboxMessage.recipient, OutboxMessage.subject,
                       OutboxMessage.body, OutboxMessage.attempts)).one_or_none()
        session.commit()
    if row is None:
        return None
    channel, recipient, subject, body, attempts = row
    return Claim(message_id, channel, recipient, subject, body, attempts, lease_until)


def _record(maker: sessionmaker[Session], settings: Settings, claim: Claim, error: str | None, *,
            permanent: bool = False) -> str:
    """Write a send's outcome, if this worker still holds the message; returns the outcome."""
    now = utcnow()
    if error is None:
        outcome = "sent"
        values: dict[str, object] = {"status": "sent", "sent_at": now, "last_error": None}
    elif permanent or claim.attempts >= settings.outbox_max_attempts:
        outcome = "failed"
        values = {"status": "failed", "last_error": error}
    else:
        outcome = "retrying"
        delay = min(settings.outbox_retry_seconds * 2 ** min(claim.attempts - 1, 30), MAX_RETRY_DELAY)
        values = {"status": "pending", "last_error": error,
                  "next_attempt_at": now + dt.timedelta(seconds=delay)}
    with maker() as session:
        held = rowcount(session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == claim.id, OutboxMessage.status == "sending",
                   OutboxMessage.lease_until == claim.lease_until)
            .values(lease_until=None, **values)))
        session.commit()
    if not held:
        log.warning("outbox message %s: lease ran out before the outcome (%s) was written",
                    claim.id, outcome)
        outcome = "late"
    elif error is not None:
        log.warning("outbox message %s (%s, attempt %s): %s; %s", claim.id, claim.channel,
                    claim.attempts, error, outcome)
    metrics.outbox_sent(claim.channel, outcome)
    return outcome


@contextmanager
def _mailer(settings: Settings) -> Iterator[Mailer]:
    mailer = Mailer(settings)
    try:
        yield mailer
    finally:
        mailer.close()


def _sessions(app: Flask) -> sessionmaker[Session]:
    maker: sessionmaker[Session] = app.extensions["idp.sessionmaker"]
    return maker
