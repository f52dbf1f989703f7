"""Operator commands for SSO sessions."""

from __future__ import annotations

import click
from flask.cli import AppGroup
from sqlalchemy import select

from idp import audit
from idp.auth import session as sso
from idp.db import get_session, unit_of_work
from idp.models import Citizen

sessions_cli = AppGroup("sessions", help="Citizens' SSO sessions.")


@sessions_cli.command("end")
@click.argument("nik")
@click.option("--reason", default="operator", show_default=True)
def end_sessions(nik: str, reason: str) -> None:
    """End every SSO session of the citizen with NIK and revoke every portal grant (refresh tokens
    included); back-channel logout reaches their portals."""
    citizen = get_session().scalar(select(Citizen).where(Citizen.open_with_nik(nik.strip())))
    if citizen is None:
        raise click.ClickException("no citizen with that NIK")
    with unit_of_work():
        ended = sso.revoke_all_access(str(citizen.id), reason=reason)
        audit.append("sessions_ended", actor="operator", citizen_id=citizen.id, count=ended,
                     reason=reason)
    click.echo(f"ended {ended} session(s)")
