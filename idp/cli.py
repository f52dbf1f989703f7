"""Operator commands for the infrastructure: schema migrations, the audit log, short-lived state.

The parts' own commands (``seed-demo``, ``clients``, ``keys``, ``sessions``...) live next to what they
operate on; the composition root lists them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import click
from alembic import command
from alembic.config import Config
from flask import Flask, current_app
from flask.cli import AppGroup

from idp.audit import verify
from idp.db import get_engine, unit_of_work
from idp.store import DatabaseStore, get_store

db_cli = AppGroup("db", help="Database schema (Alembic migrations).")
audit_cli = AppGroup("audit", help="The hash-chained audit log.")
store_cli = AppGroup("store", help="Short-lived state.")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    command.upgrade(alembic_config(current_app.config["IDP"].database_url), revision)
    click.echo(f"database at {revision}")


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
@click.option("--autogenerate/--empty", default=True)
def db_revision(message: str, autogenerate: bool) -> None:
    """Write a new migration (developers)."""
    command.revision(
        alembic_config(current_app.config["IDP"].database_url), message=message,
        autogenerate=autogenerate,
    )


@audit_cli.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; print "ok" or the first broken row."""
    result = verify(get_engine())
    if result.ok:
        click.echo(f"ok ({result.checked} rows)")
        return
    click.echo(f"broken at row {result.broken_id}: {result.reason}", err=True)
    raise SystemExit(1)


@store_cli.command("purge")
def store_purge() -> None:
    """Delete expired short-lived state (database backend; Redis expires keys itself)."""
    store = get_store()
    if isinstance(store, DatabaseStore):
        with unit_of_work():
            purged = store.purge()
        click.echo(f"purged {purged} rows")
    else:
        click.echo("redis expires keys itself")


def init_app(app: Flask, commands: Sequence[click.Command]) -> None:
    """Register the infrastructure's command groups and the parts' ``commands``."""
    for group in (db_cli, audit_cli, store_cli, *commands):
        app.cli.add_command(group)
