"""``flask accounts``: the operator's side of account closure."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from idp.account import closing

accounts_cli = AppGroup("accounts", help="Citizens' accounts.")


@accounts_cli.command("close-due")
def close_due() -> None:
    """Close the accounts whose 7-day wait is over (run it every few minutes; safe with several)."""
    click.echo(f"closed {closing.close_due()}")
