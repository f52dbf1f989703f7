"""How fast the checkpointer folds events into the Merkle tree, against the rate Indonesia makes.

Fills a fresh PostgreSQL database with ``--events`` audit events shaped like a sign-on's (a token
issued, claims released, a grant), then runs checkpoint passes of ``--batch`` events, as
``flask audit checkpoint --forever`` does after a backlog, and prints per pass and overall: events
per second, the checkpointer's own CPU per event, and the CPU of the PostgreSQL backend serving it
(read from ``/proc``, the server being on this machine). The peak the sizing plans for is about
12,250 events a second (3,500 sign-ons a second, three events each and a login event for half).

    .venv/bin/python bench/checkpoint.py [--events 200000] [--batch 50000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench.harness import cpu_seconds  # noqa: E402
from tests.conftest import create_pg_database, drop_pg_database, run_id  # noqa: E402

PEAK = 12_250  # events/s at 3,500 sign-ons a second: three a flow, a fourth for the half that log in


def fill(engine: sa.Engine, events: int) -> None:
    """``events`` rows shaped as the request path writes them, three per SSO flow, one transaction
    per 10,000 (COPY, so filling is not what takes the time; the release records are left out, as
    the checkpointer never reads them)."""
    from idp.models import AuditEvent

    columns = ("at", "event", "actor", "citizen_id", "client_id", "ip", "details", "salt")
    table = AuditEvent.__tablename__
    now = dt.datetime.now(dt.UTC)
    # An SSO flow's three: the code issued, the ID token's release, the userinfo release.
    kinds = (("authorization_code_issued", '{"scopes": ["openid", "profile", "email"], "acr": 2}'),
             ("claims_released", '{"channel": "id_token", "claims": ["name", "email"]}'),
             ("claims_released", '{"channel": "userinfo", "claims": ["name", "email", "nik"]}'))
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        done = 0
        while done < events:
            n = min(10_000, events - done)
            with raw.cursor() as cur, cur.copy(
                    f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for i in range(n):
                    citizen = str(uuid.uuid4())
                    event, details = kinds[(done + i) % 3]
                    copy.write_row((now, event, f"citizen:{citizen}", citizen, "portal-pajak",
                                    "203.0.113.7", details, secrets.token_bytes(16)))
            raw.commit()
            done += n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=50_000)
    args = parser.parse_args()

    from idp import audit
    from idp.signed_note import load_or_create

    url = create_pg_database(f"satuid_checkpoint_{run_id()}")
    try:
        engine = sa.create_engine(url)
        started = time.perf_counter()
        fill(engine, args.events)
        print(f"{args.events} events written in {time.perf_counter() - started:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            signer = load_or_create(f"{tmp}/key.pem", "bench.satuid.example/audit", create=True)
        checkpointer = audit.Checkpointer(signer, args.batch)
        last: tuple[int, bytes] | None = None
        total_wall = total_own = total_pg = 0.0
        folded_all = 0
        with engine.connect() as conn:
            backend = int(conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one())
            conn.commit()
            from sqlalchemy.orm import Session

            while True:
                wall, own, pg = time.perf_counter(), time.process_time(), cpu_seconds(backend)
                with Session(bind=conn) as session:
                    folded = checkpointer.fold(session, last=last)
                    session.commit()
                wall, own = time.perf_counter() - wall, time.process_time() - own
                pg = cpu_seconds(backend) - pg
                if folded is None or not folded.added:
                    break
                last = (folded.size, folded.root)
                folded_all += folded.added
                total_wall, total_own, total_pg = total_wall + wall, total_own + own, total_pg + pg
                print(f"pass: +{folded.added} to {folded.size} in {wall:.2f} s = "
                      f"{folded.added / wall:,.0f} events/s; checkpointer CPU "
                      f"{own / folded.added * 1e6:.1f} µs, PostgreSQL CPU {pg / folded.added * 1e6:.1f} µs "
                      "an event")
        engine.dispose()
        rate = folded_all / total_wall
        print(f"\ncheckpointer: {folded_all} events in {total_wall:.1f} s = {rate:,.0f} events/s "
              f"({rate / PEAK:.2f}× the peak of {PEAK:,}/s); CPU an event: checkpointer "
              f"{total_own / folded_all * 1e6:.1f} µs, PostgreSQL {total_pg / folded_all * 1e6:.1f} µs")
    finally:
        drop_pg_database(url)


if __name__ == "__main__":
    main()
