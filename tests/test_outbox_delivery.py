"""The outbox's delivery worker against real peers: an SMTP server (aiosmtpd) and an HTTP SMS gateway.

Every test runs on both backends. Time moves with ``idp.clock``; the concurrency test starts two real
``flask outbox deliver`` processes on the test's own database.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import json
import logging
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from flask import Flask
from sqlalchemy import select

from idp import clock, outbox
from idp.db import get_session
from idp.models import AuditEvent, OutboxMessage
from idp.models.base import utcnow
from idp.outbox.cli import masked
from idp.outbox.delivery import LEASE_SECONDS, _claim, deliver_due
from tests.conftest import make_app
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
MAIL_FROM = "SatuID <no-reply@satuid.example.id>"
EMAIL = "citra.lestari@example.id"
PHONE = "+6281234567890"
TRICKY_TEXT = 'Kode SatuID: 482913\n"Jangan" bagikan & = \\ — terima kasih ✓ </script>'


# ---- peers ---------------------------------------------------------------------------------------

@dataclass
class Mail:
    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage
    connection: int  # one number per SMTP session


@dataclass
class MailServer:
    """An SMTP server that keeps what it is given (optionally behind STARTTLS and a login).

    With ``hold_until_sessions`` it answers no message until that many SMTP sessions have sent
    one, so that several workers are surely in the middle of a pass at the same time.
    """

    tls: ssl.SSLContext | None = None
    login: tuple[str, str] | None = None
    hold_until_sessions: int = 0
    received: list[Mail] = field(default_factory=list)
    port: int = 0
    _sessions: set[int] = field(default_factory=set)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self._sessions.add(id(session))
        deadline = time.monotonic() + 8
        while len(self._sessions) < self.hold_until_sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), message, id(session)))
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and self.login == (data.login.decode(), data.password.decode())
        return AuthResult(success=ok)

    @property
    def settings(self) -> dict[str, str]:
        values = {"IDP_SMTP_HOST": "127.0.0.1", "IDP_SMTP_PORT": str(self.port),
                  "IDP_SMTP_STARTTLS": "1" if self.tls else "0", "IDP_MAIL_FROM": MAIL_FROM}
        if self.login:
            values.update(IDP_SMTP_USERNAME=self.login[0], IDP_SMTP_PASSWORD=self.login[1])
        return values

    def __enter__(self) -> MailServer:
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if self.tls:
            kwargs.update(tls_context=self.tls, require_starttls=True)
        if self.login:
            kwargs.update(authenticator=self.authenticate, auth_required=True)
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()


@dataclass
class GatewayRequest:
    path: str
    headers: dict[str, str]
    body: bytes


class SmsGateway:
    """An HTTP SMS gateway that records each request and answers ``status``."""

    def __init__(self) -> None:
        self.requests: list[GatewayRequest] = []
        self.status = 200
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                gateway.requests.append(GatewayRequest(self.path, dict(self.headers.items()), body))
                self.send_response(gateway.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"

    def __enter__(self) -> SmsGateway:
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(autouse=True)
def clock_at_rest() -> Iterator[None]:
    clock.reset()
    yield
    clock.reset()


@pytest.fixture
def mail() -> Iterator[MailServer]:
    with MailServer() as server:
        yield server


@pytest.fixture
def gateway() -> Iterator[SmsGateway]:
    with SmsGateway() as server:
        yield server


@pytest.fixture
def worker(backend: dict[str, str]) -> Iterator[Callable[..., Flask]]:
    """Apps on the test's database with the delivery settings a test gives."""
    apps: list[Flask] = []

    def build(**settings: str) -> Flask:
        app = make_app({**backend, **settings})
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["idp.engine"].dispose()


def queue(app: Flask, channel: str, recipient: str, body: str, subject: str = "Kode verifikasi") -> int:
    with app.app_context():
        session = get_session()
        message = outbox.send(session, channel=channel, recipient=recipient, subject=subject, body=body)
        session.commit()
        return message.id


def stored(app: Flask, message_id: int) -> OutboxMessage:
    with app.app_context():
        message = get_session().get(OutboxMessage, message_id)
        assert message is not None
        return message


def email_sends(app: Flask) -> dict[str, float]:
    """``satuid_outbox_sends_total`` of the email channel, by result (this process's counters)."""
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {result: float(n) for result, n in re.findall(
        r'^satuid_outbox_sends_total\{channel="email",result="(\w+)"\} (\S+)$', text, flags=re.MULTILINE)}


def metric_lines(app: Flask) -> set[str]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {line for line in text.splitlines() if line.startswith("satuid_outbox_messages")}


# ---- email and SMS -------------------------------------------------------------------------------

def test_an_email_arrives_once_with_its_sender_recipient_subject_and_text(
        worker: Callable[..., Flask], mail: MailServer) -> None:
    app = worker(**mail.settings)
    body = "Kode verifikasi Anda: 482913.\nBerlaku 10 menit — jangan bagikan."
    first = queue(app, "email", EMAIL, body, subject="Kode verifikasi SatuID — é")
    queue(app, "email", "budi@example.id", "Kata sandi Anda diubah.")

    assert deliver_due(app) == {"sent": 2}
    assert deliver_due(app) == {}

    assert len(mail.received) == 2
    assert len({m.connection for m in mail.received}) == 1  # one SMTP session for the pass
    sent = mail.received[0]
    assert sent.envelope_from == "no-reply@satuid.example.id" and sent.envelope_to == [EMAIL]
    message = sent.message
    assert message["From"] == MAIL_FROM and message["To"] == EMAIL
    assert message["Subject"] == "Kode verifikasi SatuID — é"
    assert message.get_content().replace("\r\n", "\n").rstrip("\n") == body
    assert message["Message-ID"] == f"<outbox.{first}@satuid.example.id>" and message["Date"]
    row = stored(app, first)
    assert row.status == "sent" and row.attempts == 1 and row.sent_at is not None
    assert row.lease_until is None and row.last_error is None


def test_email_goes_over_starttls_with_a_login_when_configured(
        worker: Callable[..., Flask], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certificate, key = self_signed_certificate(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certificate, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))  # the worker trusts this test's CA only
    with MailServer(tls=tls, login=("satuid", "rahasia-smtp")) as server:
        app = worker(**server.settings)
        queue(app, "email", EMAIL, "Halo")
        assert deliver_due(app) == {"sent": 1}
        assert [m.envelope_to for m in server.received] == [[EMAIL]]


def test_sms_reaches_the_gateway_as_templated_json_with_the_auth_header(
        worker: Callable[..., Flask], gateway: SmsGateway) -> None:
    app = worker(IDP_SMS_GATEWAY_URL=gateway.url, IDP_SMS_GATEWAY_AUTH_HEADER="X-Api-Key: k3y-123",
                 IDP_SMS_GATEWAY_BODY='{"to": "$to", "text": "$text", "sender": "SatuID"}')
    message_id = queue(app, "sms", PHONE, TRICKY_TEXT)

    assert deliver_due(app) == {"sent": 1}

    [request] = gateway.requests
    assert request.path == "/send"
    assert request.headers["X-Api-Key"] == "k3y-123"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"to": PHONE, "text": TRICKY_TEXT, "sender": "SatuID"}
    assert stored(app, message_id).status == "sent"


def test_sms_text_is_url_encoded_for_a_form_gateway(worker: Callable[..., Flask],
                                                    gateway: SmsGateway) -> None:
    app = worker(IDP_SMS_GATEWAY_URL=gateway.url, IDP_SMS_GATEWAY_BODY="to=$to&msg=$text&from=SatuID",
                 IDP_SMS_GATEWAY_CONTENT_TYPE="application/x-www-form-urlencoded")
    queue(app, "sms", PHONE, TRICKY_TEXT)

    assert deliver_due(app) == {"sent": 1}

    form = parse_qs(gateway.requests[0].body.decode("ascii"), strict_parsing=True)
    assert form == {"to": [PHONE], "msg": [TRICKY_TEXT], "from": ["SatuID"]}


def test_an_unconfigured_channel_leaves_its_messages_pending_and_says_so(
        worker: Callable[..., Flask], mail: MailServer) -> None:
    app = worker(**mail.settings)
    sms = queue(app, "sms", PHONE, "Kode: 111222")

    result = app.test_cli_runner().invoke(args=["outbox", "deliver"])

    assert result.exit_code == 0 and result.exception is None
    assert "sms is not configured (IDP_SMS_GATEWAY_URL is not set): 1 due message(s) stay pending" \
        in result.output
    row = stored(app, sms)
    assert row.status == "pending" and row.attempts == 0


# ---- failures ------------------------------------------------------------------------------------

def test_a_mail_server_that_is_down_gets_retries_with_backoff_then_the_message_fails(
        worker: Callable[..., Flask], caplog: pytest.LogCaptureFixture) -> None:
    down = {"IDP_SMTP_HOST": "127.0.0.1", "IDP_SMTP_PORT": str(free_port()), "IDP_SMTP_STARTTLS": "0",
            "IDP_OUTBOX_MAX_ATTEMPTS": "4", "IDP_OUTBOX_RETRY_SECONDS": "1500"}
    app = worker(**down)
    message_id = queue(app, "email", EMAIL, "Kode verifikasi Anda: 482913")
    sends_before = email_sends(app)

    with caplog.at_level(logging.INFO, logger="idp.outbox"):
        for attempt, delay in ((1, 1500), (2, 3000), (3, 3600)):  # doubled, capped at an hour
            before = utcnow()
            assert deliver_due(app) == {"retrying": 1}
            row = stored(app, message_id)
            assert (row.status, row.attempts, row.last_error) == ("pending", attempt, "connection refused")
            assert row.next_attempt_at is not None
            assert delay <= (row.next_attempt_at - before).total_seconds() < delay + 5
            clock.advance(delay - 10)
            assert deliver_due(app) == {}  # not due yet
            clock.advance(10)
        assert deliver_due(app) == {"failed": 1}
    row = stored(app, message_id)
    assert (row.status, row.attempts, row.last_error) == ("failed", 4, "connection refused")
    assert EMAIL not in caplog.text and "482913" not in caplog.text and f"message {message_id}" in caplog.text

    assert 'satuid_outbox_messages{status="failed"} 1.0' in metric_lines(app)
    sends = email_sends(app)
    assert {result: sends[result] - sends_before[result] for result in sends} == {
        "sent": 0, "retrying": 3, "failed": 1, "late": 0}
    listing = app.test_cli_runner().invoke(args=["outbox", "failed"]).output
    assert f"{message_id}" in listing and "ci****@example.id" in listing and "connection refused" in listing
    assert EMAIL not in listing and "482913" not in listing


def test_an_sms_gateway_answering_503_is_retried_until_it_accepts(
        worker: Callable[..., Flask], gateway: SmsGateway) -> None:
    app = worker(IDP_SMS_GATEWAY_URL=gateway.url, IDP_OUTBOX_RETRY_SECONDS="30")
    message_id = queue(app, "sms", PHONE, "Kode: 999000")
    gateway.status = 503

    assert deliver_due(app) == {"retrying": 1}
    assert stored(app, message_id).last_error == "SMS gateway HTTP 503"
    gateway.status = 200
    clock.advance(31)
    assert deliver_due(app) == {"sent": 1}

    assert len(gateway.requests) == 2
    row = stored(app, message_id)
    assert row.status == "sent" and row.attempts == 2


def test_a_message_left_sending_by_a_stopped_worker_is_failed_not_sent_again(
        worker: Callable[..., Flask], mail: MailServer) -> None:
    app = worker(**mail.settings)
    message_id = queue(app, "email", EMAIL, "Kode: 123123")
    assert _claim(app.extensions["idp.sessionmaker"], message_id) is not None  # then the worker died

    assert deliver_due(app) == {}  # its lease still holds
    clock.advance(LEASE_SECONDS + 1)
    assert deliver_due(app) == {"abandoned": 1}
    assert deliver_due(app) == {}

    assert mail.received == []
    row = stored(app, message_id)
    assert (row.status, row.last_error) == ("failed", "worker stopped while sending")
    assert metric_lines(app) == {f'satuid_outbox_messages{{status="{status}"}} {n}'
                                 for status, n in (("pending", 0.0), ("sending", 0.0), ("failed", 1.0))}


def test_retry_puts_a_failed_message_back_and_it_is_sent(worker: Callable[..., Flask],
                                                         mail: MailServer) -> None:
    app = worker(**mail.settings, IDP_OUTBOX_MAX_ATTEMPTS="1")
    message_id = queue(app, "email", EMAIL, "Kode: 555666")
    _claim(app.extensions["idp.sessionmaker"], message_id)
    clock.advance(LEASE_SECONDS + 1)
    deliver_due(app)
    runner = app.test_cli_runner()

    result = runner.invoke(args=["outbox", "retry", str(message_id)])
    assert result.exit_code == 0 and "pending again" in result.output
    again = runner.invoke(args=["outbox", "retry", str(message_id)])
    assert again.exit_code != 0 and f"no failed message {message_id}" in again.output

    assert deliver_due(app) == {"sent": 1}
    assert len(mail.received) == 1
    assert runner.invoke(args=["outbox", "failed"]).output.strip() == "no failed messages"
    with app.app_context():
        events = get_session().scalars(select(AuditEvent).where(AuditEvent.event == "outbox_retried")).all()
        assert [(e.actor, e.details) for e in events] == [("operator", {"message_id": message_id})]


def test_two_worker_processes_send_every_message_exactly_once(
        backend: dict[str, str], worker: Callable[..., Flask]) -> None:
    with MailServer(hold_until_sessions=2) as mail:
        sent_by_each = run_two_workers(backend, worker(**mail.settings), mail)
    assert min(sent_by_each) >= 1 and sum(sent_by_each) == 200  # both were sending at once


def run_two_workers(backend: dict[str, str], app: Flask, mail: MailServer) -> list[int]:
    """Queue 200 emails, run two ``flask outbox deliver`` processes at once; what each sent."""
    with app.app_context():
        session = get_session()
        for n in range(200):
            outbox.send(session, channel="email", recipient=f"warga{n}@example.id", subject="Pemberitahuan",
                        body=f"Pesan {n}")
        session.commit()
    workers = [flask_command({**backend, **mail.settings}, "outbox", "deliver") for _ in range(2)]
    outputs = [w.communicate(timeout=60) for w in workers]

    assert [w.returncode for w in workers] == [0, 0], outputs
    sent_by_each = [int(out.split(",")[0].removeprefix("sent ")) for out, _ in outputs]
    recipients = sorted(to for m in mail.received for to in m.envelope_to)
    assert recipients == sorted(f"warga{n}@example.id" for n in range(200))  # each once
    with app.app_context():
        statuses = get_session().scalars(select(OutboxMessage.status)).all()
        assert set(statuses) == {"sent"} and len(statuses) == 200
    return sent_by_each


def test_a_forever_worker_keeps_delivering_and_stops_cleanly_on_sigterm(
        backend: dict[str, str], worker: Callable[..., Flask], mail: MailServer) -> None:
    app = worker(**mail.settings)
    process = flask_command({**backend, **mail.settings},
                            "outbox", "deliver", "--forever", "--interval", "0.1")
    try:
        queue(app, "email", EMAIL, "Pesan pertama")
        deadline = time.monotonic() + 20
        while not mail.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(mail.received) == 1
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    assert process.returncode == 0, err
    assert "sent 1" in out and out.rstrip().endswith("stopped")
    assert "sms is not configured" in err


def test_recipients_are_masked_for_the_operator() -> None:
    assert masked("citra.lestari@example.id") == "ci****@example.id"
    assert masked("+6281234567890") == "+62812****90"
    assert masked("+62812") == "****12"


# ---- helpers -------------------------------------------------------------------------------------

def flask_command(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """``flask --app wsgi ARGS`` in a process of its own, on the test's database and settings."""
    return subprocess.Popen([str(Path(sys.executable).parent / "flask"), "--app", "wsgi", *args],
                            cwd=ROOT, env={**os.environ, **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "smtp.crt", directory / "smtp.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path
