"""``flask clients ratings``: what citizens think of each portal (added to the ``clients`` group by
the composition root)."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from flask.cli import with_appcontext

from idp.db import get_session
from idp.services.ratings import summary


@click.command("ratings")
@with_appcontext
@click.option("--json", "as_json", is_flag=True, help="One JSON object per portal.")
def ratings(as_json: bool) -> None:
    """Citizens' ratings per portal: count and average, in all and this month."""
    rows = [asdict(row) for row in summary(get_session())]
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo("client_id\tratings\taverage\tthis_month\taverage_this_month\tname")
    for row in rows:
        month_avg = "-" if row["average_this_month"] is None else f"{row['average_this_month']:.2f}"
        click.echo(f"{row['client_id']}\t{row['count']}\t{row['average']:.2f}\t"
                   f"{row['count_this_month']}\t{month_avg}\t{row['name']}")
