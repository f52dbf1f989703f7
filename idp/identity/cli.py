"""``flask seed-demo``: a demo population registry, demo citizens, and bulk data for benchmarks.

Deterministic and idempotent: the same people every time, and only what is missing is inserted, so
``make demo`` can run it on every start. Standard output carries one JSON object a line (the demo
citizens with their passwords, then the registry residents free to register, then whatever the
other parts' seeders print); progress goes to standard error. The composition root builds the command
with the seeders of every part (``make_seed_command``).

Benchmarks need the registry at national scale (tens of millions of residents) and up to millions of
accounts, so those are loaded with PostgreSQL's COPY, straight into the table where nothing can
conflict, and resume where an earlier run stopped. SQLite takes the same data row by row.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import psycopg
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import (
    Column,
    ColumnElement,
    MetaData,
    String,
    Table,
    Uuid,
    exists,
    func,
    insert,
    literal,
    select,
    text,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp import audit
from idp.db import get_engine, unit_of_work
from idp.identity import synthetic, verification
from idp.identity.passwords import hash_password
from idp.models import Citizen, IdentityVerification, Resident
from idp.models.base import utcnow

#: A part's demo data (portals' OIDC clients, a citizen with TOTP, ...). A seeder runs after the
#: registry and the demo citizens exist, must be idempotent, and returns the JSON lines to print.
Seeder = Callable[[Session], list[dict[str, Any]]]

BENCH_PASSWORD = "bench mark kopi susu pagi"
RESIDENT_BLOCK = 200_000  # residents per transaction when adding to a filled registry
ACCOUNT_BLOCK = 50_000  # accounts per transaction
PROGRESS_EVERY = 1_000_000

_COLUMNS = [c.name for c in Resident.__table__.columns]
# Bench accounts' ids: a fixed prefix and the resident's index (a version 8 UUID, RFC 9562 §5.8), so
# a rerun finds them by primary key and they go into the index in order.
_BENCH_ID_PREFIX = "5a7e1d00-be0c-8000-8000-"


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
    _create_resident_load(conn)
    with conn.connection.driver_connection.cursor() as cursor, \
            cursor.copy(f"COPY registry_resident_load ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in _COLUMNS])
    return _insert_loaded_residents(conn)


def _create_resident_load(conn: Connection) -> None:
    conn.execute(text("CREATE TEMPORARY TABLE IF NOT EXISTS registry_resident_load "
                      "(LIKE registry_resident INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"))


def _insert_loaded_residents(conn: Connection) -> int:
    columns = ", ".join(_COLUMNS)
    result = conn.execute(text(
        f"INSERT INTO registry_resident ({columns}) SELECT {columns} FROM registry_resident_load "
        "ON CONFLICT (nik) DO NOTHING"))
    return int(result.rowcount)


def count_residents(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Resident)).scalar_one())


def loaded_prefix(conn: Connection, present: Callable[[int], ColumnElement[bool]],
                  total: ColumnElement[int]) -> int:
    """How many synthetic rows, from index 0 on, a table holds: where a load resumes.

    The loaders add rows in index order and commit block by block, so a table they alone filled
    holds a prefix, found with a few dozen primary-key probes (``present``). It counts only when the
    table's synthetic-looking rows (``total``) are that prefix and nothing else; otherwise (rows
    added some other way) the answer is 0, and the load goes over every index, skipping what is
    there.
    """
    high = 1  # the first index not known to be there, doubled until it is past the prefix
    while high < synthetic.MAX_RESIDENTS and conn.execute(select(present(high - 1))).scalar_one():
        high = min(2 * high, synthetic.MAX_RESIDENTS)
    low = 0  # every index below ``low`` is there
    while low < high:
        middle = (low + high) // 2
        if conn.execute(select(present(middle))).scalar_one():
            low = middle + 1
        else:
            high = middle
    return low if conn.execute(select(total)).scalar_one() == low else 0


def _resident_present(index: int) -> ColumnElement[bool]:
    return exists().where(Resident.nik == synthetic.nik_of(index))


#: How many residents look synthetic: a region of ``synthetic.REGIONS`` and a serial from
#: ``FIRST_SYNTHETIC_SERIAL`` (the named demo residents have small serials).
_SYNTHETIC_RESIDENTS = (
    select(func.count()).select_from(Resident)
    .where(func.substr(Resident.nik, 1, 6).in_([r.code for r in synthetic.REGIONS]),
           func.substr(Resident.nik, 13, 4) >= str(synthetic.FIRST_SYNTHETIC_SERIAL))
    .scalar_subquery())


class _Progress:
    """Lines on standard error: every ``PROGRESS_EVERY`` rows, and at the end."""

    def __init__(self, what: str, first: int, count: int) -> None:
        self.what, self.first, self.count = what, first, count
        self.started = time.monotonic()
        self.next = first + PROGRESS_EVERY - first % PROGRESS_EVERY

    def reached(self, done: int, added: int) -> None:
        if done < self.next and done < self.count:
            return
        self.next = done + PROGRESS_EVERY - done % PROGRESS_EVERY
        seconds = time.monotonic() - self.started
        rate = (done - self.first) / seconds if seconds else 0.0
        click.echo(f"{self.what}: {done}/{self.count}, {added} new ({seconds:.1f} s, "
                   f"{rate:,.0f}/s)", err=True)


def seed_bulk_residents(engine: Engine, count: int, *, progress: bool = True) -> int:
    """The first ``count`` synthetic residents, where missing; returns how many were added."""
    with engine.connect() as conn:
        first = min(loaded_prefix(conn, _resident_present, _SYNTHETIC_RESIDENTS), count)
    if first == count:
        if progress:
            click.echo(f"registry: the first {count} synthetic residents are there", err=True)
        return 0
    report = _Progress("registry", first, count) if progress else None
    if engine.dialect.name == "postgresql":
        added = _copy_bulk_residents(engine, first, count, report)
    else:
        added = _insert_bulk_residents(engine, first, count, report)
    with engine.begin() as conn:
        conn.execute(text("ANALYZE registry_resident"))  # the planner's figures were for the old size
    return added


def _insert_bulk_residents(engine: Engine, first: int, count: int, report: _Progress | None) -> int:
    """SQLite: INSERT ... ON CONFLICT DO NOTHING, a block of ``synthetic.BATCH`` a transaction."""
    added = 0
    for start in range(first, count, synthetic.BATCH):
        stop = min(start + synthetic.BATCH, count)
        with engine.begin() as conn:
            added += insert_residents(conn, _typed(synthetic.resident_rows(start, stop)))
        if report:
            report.reached(stop, added)
    return added


def _typed(rows: Iterator[dict[str, str]]) -> Iterator[dict[str, Any]]:
    for row in rows:
        yield {**row, "birth_date": dt.date.fromisoformat(row["birth_date"])}


def _copy_bulk_residents(engine: Engine, first: int, count: int, report: _Progress | None) -> int:
    """PostgreSQL: COPY the residents ``first`` to ``count - 1`` into the registry.

    Into a registry smaller than what is coming, in one transaction with its indexes dropped and
    built again at the end (one sort beats millions of scattered index inserts). Otherwise block by
    block, straight into the table; a block that meets a NIK already there goes again through a
    temporary table and ON CONFLICT DO NOTHING.
    """
    missing = count - first
    with engine.connect() as conn:
        sample = select(Resident.nik).limit(missing).subquery()
        present = conn.execute(select(func.count()).select_from(sample)).scalar_one()
    if present < missing:
        try:
            with engine.begin() as conn, _indexes_dropped(conn, "registry_resident"):
                _copy_into(conn, "registry_resident", first, count, report)
            if report:
                click.echo(f"registry: indexes built ({time.monotonic() - report.started:.1f} s)",
                           err=True)
            return missing
        except (IntegrityError, psycopg.errors.UniqueViolation):
            click.echo("registry: some NIKs were there already; adding block by block", err=True)
    added = 0
    for start in range(first, count, RESIDENT_BLOCK):
        stop = min(start + RESIDENT_BLOCK, count)
        try:
            with engine.begin() as conn:
                _copy_into(conn, "registry_resident", start, stop, None)
            added += stop - start
        except (IntegrityError, psycopg.errors.UniqueViolation):
            with engine.begin() as conn:
                _create_resident_load(conn)
                _copy_into(conn, "registry_resident_load", start, stop, None)
                added += _insert_loaded_residents(conn)
        if report:
            report.reached(stop, added)
    return added


def _copy_into(conn: Connection, table: str, start: int, stop: int, report: _Progress | None) -> None:
    """One COPY of synthetic residents ``start`` to ``stop - 1`` into ``table`` (text format)."""
    columns = ", ".join(synthetic.COPY_COLUMNS)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    done = start
    with cursor, cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
        for chunk in synthetic.copy_text(start, stop):
            copy.write(chunk)
            done = min(done - done % synthetic.BATCH + synthetic.BATCH, stop)
            if report:
                report.reached(done, done - report.first)


@contextmanager
def _indexes_dropped(conn: Connection, table: str) -> Iterator[None]:
    """Drop ``table``'s indexes (and the constraints they back) and make them again at the end,
    inside the caller's transaction: a failure leaves them as they were."""
    found = conn.execute(text(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), c.conname, "
        "pg_get_constraintdef(c.oid) FROM pg_index i LEFT JOIN pg_constraint c "
        "ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid "
        "WHERE i.indrelid = CAST(:table AS regclass)"), {"table": table}).all()
    for index, _, constraint, _ in found:
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"' if constraint
                          else f"DROP INDEX {index}"))  # regclass text: quoted where needed
    yield
    # Enough memory to sort ten million keys in one go; for this transaction only.
    conn.execute(text("SET LOCAL maintenance_work_mem = '1GB'"))
    for _, index_definition, constraint, constraint_definition in found:
        conn.execute(text(f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" {constraint_definition}'
                          if constraint else index_definition))


# ---- bench accounts ------------------------------------------------------------------------------

def bench_citizen_id(index: int) -> uuid.UUID:
    """The account id of synthetic resident ``index``'s bench account."""
    return uuid.UUID(f"{_BENCH_ID_PREFIX}{index:012x}")


def _account_present(index: int) -> ColumnElement[bool]:
    return exists().where(Citizen.id == bench_citizen_id(index))


_BENCH_ACCOUNTS = (select(func.count()).select_from(Citizen)
                   .where(Citizen.id.between(bench_citizen_id(0), bench_citizen_id(16**12 - 1)))
                   .scalar_subquery())


_load_metadata = MetaData()
#: The block of bench accounts being made: id, NIK and email; the rest is the same for all of them.
_account_load = Table("bench_account_load", _load_metadata,
                      Column("id", Uuid), Column("nik", String(16)),
                      Column("email", String(255)), prefixes=["TEMPORARY"])


def seed_bench_accounts(engine: Engine, count: int, password: str, *, progress: bool = True) -> int:
    """Registered accounts for synthetic residents 0 to ``count - 1``, made from their registry rows
    where missing (a resident not in the registry gets none); returns how many were made.

    Each is what registration makes: the resident's name, a verified email address
    (``synthetic.bench_email``), the password, and the registry match as the identity's
    verification. One argon2id hash serves them all, hashed once: bench data only.
    """
    with engine.connect() as conn:
        first = min(loaded_prefix(conn, _account_present, _BENCH_ACCOUNTS), count)
        if first == count:
            if progress:
                click.echo(f"accounts: the first {count} bench accounts are there", err=True)
            return 0
        report = _Progress("accounts", first, count) if progress else None
        now = utcnow()
        shared = {"password_hash": hash_password(password), "now": now}
        _account_load.create(conn)
        conn.commit()
        made = 0
        try:
            for start in range(first, count, ACCOUNT_BLOCK):
                stop = min(start + ACCOUNT_BLOCK, count)
                with conn.begin():
                    _load_accounts(conn, start, stop)
                    made += _make_accounts(conn, shared)
                if report:
                    report.reached(stop, made)
        finally:
            _account_load.drop(conn)
            conn.commit()
    with engine.begin() as conn:
        for table in ("citizen", "identity_verification"):
            conn.execute(text(f"ANALYZE {table}"))
    return made


def _load_accounts(conn: Connection, start: int, stop: int) -> None:
    conn.execute(_account_load.delete())
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor, cursor.copy("COPY bench_account_load (id, nik, email) FROM STDIN") as copy:
            copy.write("".join(f"{bench_citizen_id(i)}\t{synthetic.nik_of(i)}\t"
                               f"{synthetic.bench_email(i)}\n" for i in range(start, stop)))
        # Statistics for the join below: a block is a small part of the registry.
        conn.execute(text("ANALYZE bench_account_load"))
    else:
        conn.execute(_account_load.insert(), [
            {"id": bench_citizen_id(i), "nik": synthetic.nik_of(i), "email": synthetic.bench_email(i)}
            for i in range(start, stop)])


def _make_accounts(conn: Connection, shared: dict[str, Any]) -> int:
    """The loaded block's accounts, each with the registry match registration records; an account
    already there (or another open account of the NIK) is left alone."""
    load = _account_load.c
    made_from = (select(load.id, load.nik, Resident.full_name, load.email, true(), literal(False),
                        literal(shared["password_hash"]),
                        literal(shared["now"], Citizen.password_changed_at.type), literal("id"),
                        literal(shared["now"], Citizen.created_at.type))
                 .join(Resident, Resident.nik == load.nik)
                 # SQLite would read ON CONFLICT after a bare SELECT as part of a join: WHERE ends it.
                 .where(true()))
    new = postgresql.insert(Citizen) if conn.dialect.name == "postgresql" else sqlite.insert(Citizen)
    accounts = new.from_select(["id", "nik", "full_name", "email", "email_verified", "phone_verified",
                                "password_hash", "password_changed_at", "locale", "created_at"],
                               made_from).on_conflict_do_nothing()
    conn.execute(accounts)
    # As verification.record_registry_match, for the accounts just made (the others have theirs).
    verified = insert(IdentityVerification).from_select(
        ["citizen_id", "method", "trust_framework", "verified_at", "evidence"],
        select(Citizen.id, literal("registry_record"), literal(verification.TRUST_FRAMEWORK),
               literal(shared["now"], IdentityVerification.verified_at.type),
               literal(verification.registry_evidence(), IdentityVerification.evidence.type))
        .join(_account_load, load.id == Citizen.id)
        .where(~exists().where(IdentityVerification.citizen_id == Citizen.id)))
    # SQLAlchemy keeps an INSERT's row count only when asked to.
    return int(conn.execute(verified.execution_options(preserve_rowcount=True)).rowcount)


# ---- demo people ---------------------------------------------------------------------------------

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
    """``flask seed-demo``: the registry's bulk rows and bench accounts, then ``seeders`` in order
    (the composition root lists the registry's demo people first)."""

    @click.command("seed-demo")
    @with_appcontext
    @click.option("--residents", "resident_count",
                  type=click.IntRange(min=0, max=synthetic.MAX_RESIDENTS), default=0, metavar="N",
                  help="Also make the first N synthetic registry residents (benchmarks).")
    @click.option("--accounts", "account_count",
                  type=click.IntRange(min=0, max=synthetic.MAX_RESIDENTS), default=0, metavar="M",
                  help="Also register accounts for synthetic residents 0 to M-1 (making those "
                       "residents if missing), with verified emails warga<i>@"
                       f"{synthetic.BENCH_EMAIL_DOMAIN} and one shared password. Bench data "
                       "only: refused when IDP_ENV=production.")
    @click.option("--accounts-password", default=BENCH_PASSWORD, show_default=True, metavar="PW",
                  help="The bench accounts' password (hashed once, shared by all of them).")
    def seed_demo(resident_count: int, account_count: int, accounts_password: str) -> None:
        """Fill the population registry with demo residents and create the demo citizens
        (idempotent)."""
        if account_count and current_app.config["IDP"].environment == "production":
            raise click.ClickException("--accounts makes accounts with a published password: "
                                       "bench data, refused when IDP_ENV=production")
        engine = get_engine()
        if resident_count or account_count:
            seed_bulk_residents(engine, max(resident_count, account_count))
        made = seed_bench_accounts(engine, account_count, accounts_password) if account_count else 0
        with unit_of_work() as session:
            if made:
                # One row for the load, not one per account: bench data, not citizens' events.
                audit.append("bench_accounts_created", actor="operator:seed-demo", count=made,
                             session=session)
            lines: list[dict[str, Any]] = []
            for seeder in seeders:
                lines.extend(seeder(session))
        if account_count:
            lines.append({"bench_accounts": {
                "count": account_count, "email": f"warga<i>@{synthetic.BENCH_EMAIL_DOMAIN}",
                "password": accounts_password}})
        for line in lines:
            click.echo(json.dumps(line, ensure_ascii=False))

    return seed_demo
