"""Login throughput and latency for a given argon2id cost, on this machine.

Starts gunicorn (``wsgi:app``) on the embedded default (or on PostgreSQL + Redis with ``--services``),
creates a citizen, and has ``--users`` concurrent clients post the login form for ``--seconds``.
Prints logins per second and latency percentiles, and the cost of one argon2id hash at several
parameter sets, so the chosen parameters can be weighed against the hardware.

    python bench/login.py                       # today's defaults (t=3, m=64 MiB, p=1)
    python bench/login.py --time-cost 2 --memory-mib 19 --services
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench mark kopi susu pagi"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def argon2_table() -> None:
    from argon2 import PasswordHasher

    print("argon2id cost of one hash on this machine (median of 5):")
    for t, m_mib, p in [(2, 19, 1), (3, 64, 1), (4, 64, 1), (3, 128, 1), (2, 256, 2)]:
        ph = PasswordHasher(time_cost=t, memory_cost=m_mib * 1024, parallelism=p)
        h = ph.hash("x")
        runs = []
        for _ in range(5):
            start = time.perf_counter()
            ph.verify(h, "x")
            runs.append(time.perf_counter() - start)
        print(f"  t={t} m={m_mib:>3} MiB p={p}: {statistics.median(runs) * 1000:7.1f} ms")


def prepare(env: dict[str, str]) -> str:
    """Migrate, and create one citizen from a synthetic registry row; return its NIK."""
    code = f"""
import datetime as dt
from idp import create_app
from idp.db import get_session
from idp.identity import nik as nikmod
from idp.identity.passwords import hash_password
from idp.models import Citizen, Resident
from sqlalchemy import select
app = create_app()
with app.app_context():
    s = get_session()
    nik = nikmod.build("317404", dt.date(1985, 3, 9), "M", 9999)
    if s.get(Resident, nik) is None:
        s.add(Resident(nik=nik, full_name="Budi Bench", birth_place="Jakarta",
                       birth_date=dt.date(1985, 3, 9), sex="M", street_address="Jl. Uji 1",
                       village="Menteng", district="Menteng", regency="Jakarta Pusat",
                       province="DKI Jakarta", postal_code="10310", family_card_number="3174040101090009"))
    c = s.scalar(select(Citizen).where(Citizen.open_with_nik(nik)))
    if c is None:
        s.add(Citizen(nik=nik, full_name="Budi Bench", password_hash=hash_password({PASSWORD!r})))
    else:
        c.password_hash = hash_password({PASSWORD!r})
    s.commit()
    print(nik)
"""
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT,
                   env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def run(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="satuid-bench-"))
    port = free_port()
    env = {
        **os.environ,
        "IDP_INSTANCE_PATH": str(workdir),
        "IDP_ISSUER": f"http://127.0.0.1:{port}",
        "IDP_ARGON2_TIME_COST": str(args.time_cost),
        "IDP_ARGON2_MEMORY_COST": str(args.memory_mib * 1024),
        "IDP_ARGON2_PARALLELISM": str(args.parallelism),
        "IDP_IP_RATE_LIMIT": "1000000",
        "IDP_LOGIN_MAX_FAILURES": "1000000",
    }
    if args.services:
        env["IDP_DATABASE_URL"] = args.database_url
        env["IDP_REDIS_URL"] = args.redis_url
    else:
        env.pop("IDP_DATABASE_URL", None)
        env.pop("IDP_REDIS_URL", None)
    nik = prepare(env)
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(args.workers), "--bind",
         f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        latencies: list[float] = []
        errors = 0
        lock = threading.Lock()
        deadline = time.monotonic() + args.seconds

        def user() -> None:
            nonlocal errors
            s = requests.Session()
            token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"',
                              s.get(base + "/login").text).group(1)  # type: ignore[union-attr]
            while time.monotonic() < deadline:
                start = time.perf_counter()
                r = s.post(base + "/login", data={"csrf_token": token, "nik": nik,
                                                  "password": PASSWORD}, allow_redirects=False)
                took = time.perf_counter() - start
                with lock:
                    if r.status_code == 302:
                        latencies.append(took)
                    else:
                        errors += 1

        threads = [threading.Thread(target=user) for _ in range(args.users)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
    finally:
        server.terminate()
        server.wait(10)

    backend = "PostgreSQL + Redis" if args.services else "embedded (SQLite)"
    print(f"\nlogin benchmark: {os.cpu_count()} cores, gunicorn {args.workers} workers, {backend}, "
          f"{args.users} concurrent users, {args.seconds}s")
    print(f"argon2id t={args.time_cost} m={args.memory_mib} MiB p={args.parallelism}")
    if not latencies:
        print(f"no successful logins ({errors} errors)")
        return
    q = statistics.quantiles(latencies, n=100)
    print(f"logins/s: {len(latencies) / elapsed:.1f}   ok: {len(latencies)}   errors: {errors}")
    print(f"latency ms: p50 {q[49] * 1000:.0f}   p90 {q[89] * 1000:.0f}   p99 {q[98] * 1000:.0f}   "
          f"max {max(latencies) * 1000:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-cost", type=int, default=3)
    parser.add_argument("--memory-mib", type=int, default=64)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--services", action="store_true", help="PostgreSQL + Redis instead of SQLite")
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--no-table", action="store_true", help="skip the argon2 cost table")
    args = parser.parse_args()
    if not args.no_table:
        argon2_table()
    run(args)


if __name__ == "__main__":
    main()
