"""``flask staff ...`` (officers' accounts) and ``flask helpdesk apply-due`` (changes whose
cooling-off has ended; run it from cron every few minutes)."""

from __future__ import annotations

import click
from flask import current_app, url_for
from flask.cli import AppGroup
from sqlalchemy import select

from idp import audit
from idp.db import get_session, unit_of_work
from idp.helpdesk import cases, staff
from idp.models import StaffMember
from idp.models.helpdesk import ROLES

staff_cli = AppGroup("staff", help="Helpdesk officers' accounts.")
helpdesk_cli = AppGroup("helpdesk", help="The helpdesk's scheduled work.")


def _enrolment_link(token: str) -> str:
    with current_app.test_request_context():
        return str(current_app.config["IDP"].issuer) + url_for("helpdesk.enrol", token=token)


@staff_cli.command("create")
@click.option("--name", required=True)
@click.option("--email", required=True)
@click.option("--nik", required=True, help="The officer's own NIK: cases about it are not theirs.")
@click.option("--role", required=True, type=click.Choice(ROLES))
def create(name: str, email: str, nik: str, role: str) -> None:
    """Create an officer and print their one-time enrolment link (valid 3 days)."""
    try:
        with unit_of_work():
            member, token = staff.create(get_session(), name=name, email=email, nik=nik, role=role)
            audit.append("staff_created", actor="operator", staff_id=str(member.id), role=role)
    except staff.StaffError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"created {role} {member.email}")
    click.echo(f"enrolment link (once, within {staff.ENROLMENT_DAYS} days): {_enrolment_link(token)}")


@staff_cli.command("list")
def list_staff() -> None:
    """Every officer, with their role and state."""
    with unit_of_work():
        for member in get_session().scalars(select(StaffMember).order_by(StaffMember.email)):
            status = ("disabled" if member.disabled_at else "active" if member.enrolled_at
                      else "not enrolled")
            click.echo(f"{member.email}\t{member.role}\t{status}\t{member.name}")


@staff_cli.command("disable")
@click.argument("email")
def disable(email: str) -> None:
    """Stop an officer signing in; their open session ends at its next request."""
    with unit_of_work():
        member = staff.find(get_session(), email)
        if member is None:
            raise click.ClickException("no officer has this email address")
        staff.disable(get_session(), member)
        audit.append("staff_disabled", actor="operator", staff_id=str(member.id))
    click.echo(f"disabled {member.email}")


@helpdesk_cli.command("apply-due")
def apply_due() -> None:
    """Carry out the approved changes whose cooling-off has ended."""
    with current_app.test_request_context(), unit_of_work():
        applied = cases.apply_due(get_session())
    click.echo(f"applied {applied}")
