"""The helpdesk's "Verify the log": the button queues a verification (one at a time) in the audit log
itself, the checkpointer's verifier (or ``flask audit verify --queued``) runs it in the background,
and the audit page shows how it went: queued, running, passed, failed with what failed, stopped."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, update

from idp import audit
from idp.db import get_session, unit_of_work
from idp.models import AuditEvent, StaffMember
from tests.helpdesk_support import Officer, make_officer

ROOT = Path(__file__).resolve().parent.parent


def _page(officer: Officer) -> str:
    response = officer.client.get("/helpdesk/audit")
    assert response.status_code == 200
    return str(response.get_data(as_text=True))


def _state(page: str) -> str:
    found = re.search(r'id="verification-state">([^<]*)<', page)
    assert found, page
    return found.group(1)


def _press(officer: Officer) -> str:
    """Press "Verify the log" and follow the redirect back to the audit page."""
    response = officer.post("/helpdesk/audit/verify", {}, page="/helpdesk/audit")
    assert response.status_code == 302 and response.location.endswith("/helpdesk/audit")
    return _page(officer)


def _events(app: Flask, name: str) -> list[AuditEvent]:
    with app.app_context():
        return list(get_session().scalars(select(AuditEvent).where(AuditEvent.event == name)
                                          .order_by(AuditEvent.id)))


def _staff_id(app: Flask, officer: Officer) -> str:
    with app.app_context():
        return str(get_session().scalar(select(StaffMember.id).where(StaffMember.email == officer.email)))


def _fold(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["audit", "checkpoint"])
    assert result.exit_code == 0, result.output


def _run_queued(app: Flask) -> Any:
    return app.test_cli_runner().invoke(args=["audit", "verify", "--queued"])


def test_the_button_queues_one_verification_and_the_page_shows_its_outcome(app: Flask) -> None:
    auditor, supervisor = make_officer(app, "auditor"), make_officer(app, "supervisor")
    agent = make_officer(app, "agent")
    _fold(app)
    assert "No verification has been requested yet." in _page(auditor)

    page = _press(auditor)
    # The request runs nothing: it waits for the verifier, and says who asked and when.
    assert "Verification requested" in page and _state(page) == "queued"
    assert "Petugas auditor" in page and "Requested at" in page
    assert "The log is intact" not in page and "Finished at" not in page
    # Pressing again while it waits, whoever presses, adds nothing.
    again = _press(supervisor)
    assert "already queued" in again and _state(again) == "queued" and "Petugas auditor" in again
    assert agent.post("/helpdesk/audit/verify", {}).status_code == 403
    requests = _events(app, audit.VERIFY_REQUESTED)
    assert [e.actor for e in requests] == [f"staff:{_staff_id(app, auditor)}"]

    ran = _run_queued(app)
    assert ran.exit_code == 0 and ran.output.startswith(f"verification {requests[0].id}: ok ("), \
        ran.output
    page = _page(auditor)
    assert _state(page) == "passed" and "The log is intact" in page and "Finished at" in page
    assert _run_queued(app).output.strip() == "verification: none queued"
    started, = _events(app, audit.VERIFY_STARTED)
    verified = [e for e in _events(app, audit.VERIFIED) if e.details.get("request") == requests[0].id]
    assert started.details == {"request": requests[0].id}
    assert len(verified) == 1 and verified[0].details["ok"] is True and verified[0].actor == "system"

    # Once it has run, the next press queues a new one.
    page = _press(supervisor)
    assert _state(page) == "queued" and "Petugas supervisor" in page
    assert len(_events(app, audit.VERIFY_REQUESTED)) == 2


def test_a_broken_log_is_reported_with_what_failed(app: Flask) -> None:
    auditor = make_officer(app, "auditor")
    _fold(app)
    with app.app_context():
        third = get_session().scalars(select(AuditEvent.id).where(AuditEvent.leaf_index.is_not(None))
                                      .order_by(AuditEvent.leaf_index)).all()[2]
    with app.extensions["idp.engine"].begin() as conn:
        conn.execute(update(AuditEvent).where(AuditEvent.id == third).values(actor="staff:someone"))
    _press(auditor)
    ran = _run_queued(app)
    assert ran.exit_code == 1 and f"broken at row {third}" in ran.output
    page = _page(auditor)
    assert _state(page) == "failed"
    assert f"The log is broken at event {third}" in page and "does not match its leaf hash" in page


def test_a_verification_stopped_or_cut_off_says_so_and_another_can_be_requested(
        app: Flask, backend: dict[str, str]) -> None:
    from idp.cli import verify_queued

    auditor = make_officer(app, "auditor")
    _fold(app)
    _press(auditor)
    with app.app_context(), pytest.raises(audit.VerificationStopped):
        verify_queued(stopping=lambda: True)  # the checkpointer is being stopped
    page = _page(auditor)
    assert _state(page) == "stopped" and "its process was told to stop" in page

    # A verifier that claimed a request and was then killed: the page shows it running.
    _press(auditor)
    with app.app_context(), unit_of_work() as session:
        cut_off = audit.claim_verification(session)
    page = _page(auditor)
    assert _state(page) == "running" and "Started at" in page
    # One running does not stop another from being queued, and run.
    assert _state(_press(auditor)) == "queued"
    assert _run_queued(app).exit_code == 0
    assert _state(_page(auditor)) == "passed"
    stops = {e.details["request"]: e.details["reason"] for e in _events(app, audit.VERIFY_STOPPED)}
    # The verifier's lock was free, so the cut-off verification's process was gone.
    assert stops[cut_off] == "interrupted"
    assert "stopped" in stops.values()

    # Ended by an error: the page names it inside a sentence the officer can read.
    _press(auditor)
    with app.app_context(), unit_of_work() as session:
        failed = audit.claim_verification(session)
        assert failed is not None
        audit.verification_stopped(session, failed, "OperationalError")
    page = _page(auditor)
    assert _state(page) == "stopped" and "an unexpected error (OperationalError)" in page


def test_one_verification_runs_at_a_time(app: Flask, backend: dict[str, str]) -> None:
    """While another process's verifier holds the lock, a queued verification waits for it; a
    verification that ends leaves the lock free (not kept by a pooled connection)."""
    import sqlalchemy as sa

    from idp.cli import verify_queued

    auditor = make_officer(app, "auditor")
    _fold(app)
    _press(auditor)
    other = sa.create_engine(backend["IDP_DATABASE_URL"])  # another process's connections
    with audit.verifier_lock(other) as lock:
        assert lock.held
        with app.app_context():
            assert verify_queued() == "another verification is running"
        assert _state(_page(auditor)) == "queued"
    assert _run_queued(app).exit_code == 0
    assert _state(_page(auditor)) == "passed"
    with audit.verifier_lock(other) as lock:
        assert lock.held
    other.dispose()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_verifier_whose_lock_connection_drops_stops_and_says_so(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle timeout or a failover drops the lock with its connection, and another verifier
    could start: this one stops rather than run beside it."""
    import sqlalchemy as sa

    from idp.cli import verify_queued

    auditor = make_officer(app, "auditor")
    _fold(app)
    _press(auditor)
    monkeypatch.setattr(audit.VerifierLock, "CHECK_EVERY_SECONDS", 0.0)
    engine = app.extensions["idp.engine"]

    def drop_the_lock() -> bool:
        with engine.connect() as conn:  # as an idle timeout would
            conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND objid = :k"), {"k": audit._VERIFIER_LOCK})
        return False

    with app.app_context(), pytest.raises(audit.VerificationStopped):
        verify_queued(stopping=drop_the_lock)
    page = _page(auditor)
    assert _state(page) == "stopped" and "its connection to the database dropped" in page


def test_officers_pressing_at_once_queue_one_verification(app: Flask) -> None:
    officers = [make_officer(app, "auditor") for _ in range(4)]
    tokens = [o.token("/helpdesk/audit") for o in officers]
    start = threading.Barrier(len(officers))
    statuses: list[int] = []

    def press(officer: Officer, token: str) -> None:
        start.wait()
        statuses.append(officer.client.post("/helpdesk/audit/verify",
                                            data={"csrf_token": token}).status_code)

    threads = [threading.Thread(target=press, args=pair) for pair in zip(officers, tokens, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [302] * len(officers)
    assert len(_events(app, audit.VERIFY_REQUESTED)) == 1


def test_the_checkpointer_runs_a_queued_verification_while_it_keeps_folding(
        app: Flask, backend: dict[str, str]) -> None:
    auditor = make_officer(app, "auditor")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "audit", "checkpoint",
         "--forever", "--interval", "0.1"],
        cwd=ROOT, env={**os.environ, **backend}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        _press(auditor)
        deadline = time.monotonic() + 40
        page = _page(auditor)
        while _state(page) != "passed" and time.monotonic() < deadline:
            time.sleep(0.2)
            page = _page(auditor)
        assert _state(page) == "passed", page
        assert "The log is intact" in page
        while not _folded(app, audit.VERIFIED) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _folded(app, audit.VERIFIED)  # folding went on: the outcome is in the tree too
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert re.search(r"verification \d+: ok \(", out), out


def _folded(app: Flask, name: str) -> bool:
    with app.app_context():
        return get_session().scalar(select(AuditEvent.id).where(
            AuditEvent.event == name, AuditEvent.leaf_index.is_not(None)).limit(1)) is not None


def _copy_log(source_url: str, target_url: str) -> None:
    """The audit tables of one database copied into another (standing in for a streaming replica,
    which this test cannot start: it tells the reads' source apart by what each holds)."""
    import sqlalchemy as sa

    from idp.models import AuditCheckpoint, AuditNode

    source, target = sa.create_engine(source_url), sa.create_engine(target_url)
    with source.connect() as read, target.begin() as write:
        for table in (AuditEvent.__table__, AuditNode.__table__, AuditCheckpoint.__table__):
            rows = [dict(r._mapping) for r in read.execute(table.select())]
            if rows:  # a small log has no stored subtrees
                write.execute(table.insert(), rows)
    source.dispose()
    target.dispose()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_verifications_read_the_replica_and_record_their_outcome_on_the_primary(
        backend: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """With IDP_AUDIT_VERIFY_DATABASE_URL the whole-log read goes to the replica; the request,
    the start and the outcome stay in the primary's log. A replica that differs is caught."""
    import sqlalchemy as sa

    from idp.cli import ReplicaBehind, verify_queued
    from tests.conftest import create_pg_database, drop_pg_database, make_app, run_id

    replica = create_pg_database(f"satuid_replica_{run_id()}")
    try:
        primary = make_app(backend)
        auditor = make_officer(primary, "auditor")
        _fold(primary)
        _copy_log(backend["IDP_DATABASE_URL"], replica)
        with sa.create_engine(replica).begin() as conn:
            second = conn.execute(select(AuditEvent.id).where(AuditEvent.leaf_index == 1)).scalar()
            conn.execute(update(AuditEvent).where(AuditEvent.id == second).values(actor="staff:x"))
        app = make_app({**backend, "IDP_AUDIT_VERIFY_DATABASE_URL": replica})
        _press(auditor)
        ran = _run_queued(app)
        assert ran.exit_code == 1 and f"broken at row {second}" in ran.output
        assert _state(_page(auditor)) == "failed"
        with sa.create_engine(replica).connect() as conn:  # nothing was written to the replica
            assert conn.execute(select(sa.func.count()).select_from(AuditEvent).where(
                AuditEvent.event.in_((audit.VERIFY_STARTED, audit.VERIFIED)))).scalar() == 0
        # Read from the primary, the same log is intact.
        direct = primary.test_cli_runner().invoke(args=["audit", "verify"])
        assert direct.exit_code == 0 and direct.output.startswith("ok"), direct.output
        via_replica = app.test_cli_runner().invoke(args=["audit", "verify"])
        assert via_replica.exit_code == 1 and f"broken at row {second}" in via_replica.output

        # A replica that stopped replaying: the primary's newest checkpoint never reaches it.
        with primary.app_context(), unit_of_work():
            audit.append("login", actor="citizen:x")
        _fold(primary)
        monkeypatch.setattr("idp.cli.REPLICA_WAIT_SECONDS", 0.5)
        _press(auditor)
        with app.app_context(), pytest.raises(ReplicaBehind):
            verify_queued()
        page = _page(auditor)
        assert _state(page) == "stopped" and "had not caught up with the log" in page
        behind = app.test_cli_runner().invoke(args=["audit", "verify"])
        assert behind.exit_code == 1 and "has not reached checkpoint" in behind.output
        for each in (primary, app):
            each.extensions["idp.engine"].dispose()
    finally:
        drop_pg_database(replica)


def test_a_verification_replica_must_be_postgresql(backend: dict[str, str]) -> None:
    from idp.config import ConfigError
    from tests.conftest import make_app

    with pytest.raises(ConfigError, match="IDP_AUDIT_VERIFY_DATABASE_URL"):
        make_app({**backend, "IDP_AUDIT_VERIFY_DATABASE_URL": "sqlite:///elsewhere.db"})


def test_the_checkpointers_verifier_goes_on_after_a_verification_that_could_not_finish(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lagging replica or a dropped lock stops one verification, not the verifier: only the
    checkpointer's own stop ends its thread."""
    from idp import cli

    stop = threading.Event()
    calls: list[str] = []

    def one_verification(stopping: Any = None) -> str:
        calls.append("ran")
        if len(calls) == 1:
            raise cli.ReplicaBehind("the replica has not reached checkpoint 3")
        stop.set()
        return "none queued"

    monkeypatch.setattr(cli, "verify_queued", one_verification)
    monkeypatch.setattr(cli, "VERIFY_POLL_SECONDS", 0.01)
    verifier = threading.Thread(target=cli._verify_queued_until, args=(app, stop))
    verifier.start()
    verifier.join(10)
    assert not verifier.is_alive() and calls == ["ran", "ran"]
