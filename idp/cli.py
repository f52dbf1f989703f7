"""Operator commands (``flask --app wsgi ...``), gathered from the modules they operate on."""

from __future__ import annotations

from pathlib import Path

import click
from flask import Flask, current_app
from flask.cli import AppGroup

db_cli = AppGroup("db", help="Database schema (Alembic migrations).")
audit_cli = AppGroup("audit", help="The hash-chained audit log.")
store_cli = AppGroup("store", help="Short-lived state.")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


@db_cli.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (default: head)."""
    from alembic import command

    command.upgrade(alembic_config(current_app.config["IDP"].database_url), revision)
    click.echo(f"database at {revision}")


@db_cli.command("revision")
@click.option("-m", "--message", required=True)
@click.option("--autogenerate/--empty", default=True)
def db_revision(message: str, autogenerate: bool) -> None:
    """Write a new migration (developers)."""
    from alembic import command

    command.revision(
        alembic_config(current_app.config["IDP"].database_url), message=message,
        autogenerate=autogenerate,
    )


@audit_cli.command("verify")
def audit_verify() -> None:
    """Check the audit log's hash chain; print "ok" or the first broken row."""
    from idp.audit import verify

    result = verify(current_app.extensions["idp.engine"])
    if result.ok:
        click.echo(f"ok ({result.checked} rows)")
        return
    click.echo(f"broken at row {result.broken_id}: {result.reason}", err=True)
    raise SystemExit(1)


@store_cli.command("purge")
def store_purge() -> None:
    """Delete expired short-lived state (database backend; Redis expires keys itself)."""
    from idp.store import DatabaseStore

    store = current_app.extensions["idp.store"]
    if isinstance(store, DatabaseStore):
        click.echo(f"purged {store.purge()} rows")
    else:
        click.echo("redis expires keys itself")


COMMAND_MODULES = [
    "idp.identity.cli",  # seed-demo
    "idp.auth.cli",      # sessions end
    "idp.oidc.cli",      # clients, keys, logout deliver
]


def init_app(app: Flask) -> None:
    from importlib import import_module

    for group in (db_cli, audit_cli, store_cli):
        app.cli.add_command(group)
    for name in COMMAND_MODULES:
        module = import_module(name)
        for command in module.COMMANDS:
            app.cli.add_command(command)
