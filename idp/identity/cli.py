"""``flask seed-demo``: a demo population registry, demo citizens, and bulk residents for benchmarks.

Deterministic and idempotent: the same people every time, and only what is missing is inserted, so
``make demo`` can run it on every start. Standard output carries one JSON object a line (the demo
citizens with their passwords, then the registry residents free to register, then whatever the
other parts' seeders print); progress goes to standard error. The composition root builds the command
with the seeders of every part (``make_seed_command``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

from idp import audit
from idp.db import get_engine, unit_of_work
from idp.identity import synthetic, verification
from idp.identity.passwords import hash_password
from idp.models import Citizen, Resident

#: A part's demo data (portals' OIDC clients, a citizen with TOTP, ...). A seeder runs after the
#: registry and the demo citizens exist, must be idempotent, and returns the JSON lines to print.
Seeder = Callable[[Session], list[dict[str, Any]]]

_COLUMNS = [c.name for c in Resident.__table__.columns]


def insert_residents(conn: Connection, rows: Iterable[dict[str, Any]]) -> int:
    """Insert registry rows whose NIK is not there yet, on ``conn``; returns how many were new."""
    rows = list(rows)
    if not rows:
        return 0
    if conn.dialect.name == "postgresql":
        return _copy_residents(conn, rows)
    result = conn.execute(sqlite.insert(Resident).on_conflict_do_nothing(), rows)
    return int(result.rowcount)


def _copy_residents(conn: Any, rows: list[dict[str, Any]]) -> int:
    """PostgreSQL: COPY into a temporary table, then one INSERT ... ON CONFLICT DO NOTHING."""
    columns = ", ".join(_COLUMNS)
    conn.execute(text("CREATE TEMPORARY TABLE IF NOT EXISTS registry_resident_load "
                      "(LIKE registry_resident INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"))
    with conn.connection.driver_connection.cursor() as cursor, \
            cursor.copy(f"COPY registry_resident_load ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in _COLUMNS])
    result = conn.execute(text(
        f"INSERT INTO registry_resident ({columns}) SELECT {columns} FROM registry_resident_load "
        "ON CONFLICT (nik) DO NOTHING"))
    return int(result.rowcount)


def count_residents(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Resident)).scalar_one())


def seed_bulk_residents(engine: Engine, count: int, *, progress: bool = True) -> None:
    """The first ``count`` synthetic residents, inserted block by block where missing."""
    started = time.monotonic()
    done = added = 0
    for block in synthetic.residents(count):
        with engine.begin() as conn:
            added += insert_residents(conn, block)
        done += len(block)
        if progress and (done % 100_000 == 0 or done == count):
            click.echo(f"registry: {done}/{count} synthetic residents, {added} new "
                       f"({time.monotonic() - started:.1f} s)", err=True)


def ensure_demo_citizen(session: Session, person: synthetic.DemoPerson) -> Citizen:
    """The demo person's account, created (with a verified email) the first time only."""
    assert person.email and person.password
    citizen = session.scalar(select(Citizen).where(Citizen.open_with_nik(person.nik)))
    if citizen is None:
        citizen = Citizen(nik=person.nik, full_name=person.full_name, email=person.email,
                          email_verified=True, password_hash=hash_password(person.password))
        session.add(citizen)
        session.flush()
        verification.record_registry_match(session, citizen.id)
        audit.append("citizen_created", actor="operator:seed-demo", citizen_id=citizen.id,
                     source="demo")
    return citizen


def seed_demo_people(session: Session) -> list[dict[str, Any]]:
    """The named demo residents, and accounts for the demo citizens; their JSON lines."""
    people = synthetic.DEMO_CITIZENS + synthetic.DEMO_REGISTRANTS
    insert_residents(session.connection(), [p.resident_row() for p in people])

    lines: list[dict[str, Any]] = []
    for person in synthetic.DEMO_CITIZENS:
        ensure_demo_citizen(session, person)
        lines.append({"nik": person.nik, "name": person.full_name, "password": person.password,
                      "email": person.email, "birth_date": person.birth_date.isoformat()})
    for person in synthetic.DEMO_REGISTRANTS:
        lines.append({"register": {"nik": person.nik, "name": person.full_name,
                                   "birth_date": person.birth_date.isoformat()}})
    return lines


def make_seed_command(seeders: Sequence[Seeder]) -> click.Command:
    """``flask seed-demo``: the registry's bulk rows, then ``seeders`` in order (the composition root
    lists the registry's demo people first)."""

    @click.command("seed-demo")
    @with_appcontext
    @click.option("--residents", "resident_count", type=click.IntRange(min=0), default=0,
                  help="Also make the first N synthetic registry residents (benchmarks).")
    def seed_demo(resident_count: int) -> None:
        """Fill the population registry with demo residents and create the demo citizens
        (idempotent)."""
        if resident_count:
            seed_bulk_residents(get_engine(), resident_count)
        with unit_of_work() as session:
            lines: list[dict[str, Any]] = []
            for seeder in seeders:
                lines.extend(seeder(session))
        for line in lines:
            click.echo(json.dumps(line, ensure_ascii=False))

    return seed_demo
