"""The audit log is a hash chain: any change to a row is detected by `flask audit verify`."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import select, update

from idp import audit
from idp.db import unit_of_work
from idp.models import AuditEvent


def write_events(app: Flask, n: int) -> None:
    with app.app_context(), unit_of_work():
        for i in range(n):
            audit.append("login", actor="citizen:x", citizen_id=None, attempt=i)


def test_verify_reports_ok_for_an_untouched_chain(app: Flask) -> None:
    write_events(app, 5)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["audit", "verify"])
    assert result.exit_code == 0
    assert result.output.startswith("ok (5 rows)")


def test_verify_finds_a_modified_row(app: Flask) -> None:
    write_events(app, 5)
    engine = app.extensions["idp.engine"]
    with engine.begin() as conn:
        third = conn.execute(select(AuditEvent.id).order_by(AuditEvent.id).offset(2).limit(1)).scalar_one()
        conn.execute(update(AuditEvent).where(AuditEvent.id == third).values(event="logout"))
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert f"broken at row {third}" in result.output


def test_verify_finds_a_deleted_row(app: Flask) -> None:
    write_events(app, 4)
    engine = app.extensions["idp.engine"]
    with engine.begin() as conn:
        second = conn.execute(select(AuditEvent.id).order_by(AuditEvent.id).offset(1).limit(1)).scalar_one()
        conn.execute(AuditEvent.__table__.delete().where(AuditEvent.id == second))
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 1
    assert "does not link" in result.output


def test_concurrent_appends_keep_one_unbroken_chain(app: Flask) -> None:
    import threading

    def writer() -> None:
        for _ in range(10):  # ten units of work, each linking to the tail at its commit
            write_events(app, 1)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = audit.verify(app.extensions["idp.engine"])
    assert result.ok and result.checked == 40


def test_secrets_are_refused_in_audit_details(app: Flask) -> None:
    with app.app_context(), pytest.raises(ValueError):
        audit.append("login", password="hunter2hunter2")
