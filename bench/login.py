"""Password logins: throughput, latency and server CPU for a given argon2id cost, on this machine.

Starts gunicorn (``wsgi:app``) on the embedded default (or on PostgreSQL + Redis with ``--services``)
with a synthetic population, and has ``--users`` concurrent clients post the login form, each login a
different citizen from a fresh browser (so no lockout, device cookie or SSO session plays a part).
Prints logins per second, latency percentiles and the server CPU per login beside the CPU of one
argon2id verify, which is most of it; and the cost of one argon2id verify at several parameter sets,
so the chosen parameters can be weighed against the hardware.

    .venv/bin/python bench/login.py                       # today's defaults (t=3, m=64 MiB, p=1)
    .venv/bin/python bench/login.py --time-cost 2 --memory-mib 19 --services
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from harness import (
    BENCH_ENV,
    PASSWORD,
    Argon2,
    IdpServer,
    Measured,
    check_code,
    measure,
    nik_of,
    seed_population,
)
from oidc_flow import csrf_token


def argon2_table() -> None:
    print("argon2id CPU of one verify on this machine (median of 5):")
    for t, m_mib, p in [(2, 19, 1), (3, 64, 1), (4, 64, 1), (3, 128, 1), (2, 256, 2)]:
        cpu = statistics.median(Argon2(t, m_mib * 1024, p).verify_cpu())
        print(f"  t={t} m={m_mib:>3} MiB p={p}: {cpu * 1000:7.1f} ms")


def login_phase(server: IdpServer, niks: Sequence[str], concurrency: int) -> Measured:
    """One password login for each NIK, from a fresh browser whose login page was fetched before the
    measured phase: only the form POST is counted, without interaction or what it redirects to."""
    assert server.process is not None

    def page(_: object) -> tuple[requests.Session, str]:
        browser = requests.Session()
        token = csrf_token(browser.get(server.url + "/login").text)
        browser.close()  # the server drops idle connections (gunicorn's keepalive is 2 s)
        return browser, token

    with ThreadPoolExecutor(concurrency) as pool:
        forms = list(pool.map(page, niks))

    def login(nik: str, form: tuple[requests.Session, str]) -> float:
        browser, token = form
        started = time.perf_counter()
        response = browser.post(server.url + "/login", allow_redirects=False, data={
            "csrf_token": token, "nik": nik, "password": PASSWORD})
        took = time.perf_counter() - started
        if response.status_code != 302 or "/login" in response.headers.get("Location", "/login"):
            raise RuntimeError(f"login of {nik} answered {response.status_code}")
        return took

    def work() -> list[float]:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(login, niks, forms))

    return measure(server.process.pid, work)


def run(args: argparse.Namespace) -> None:
    costs = {"IDP_ARGON2_TIME_COST": str(args.time_cost), "IDP_ARGON2_MEMORY_COST":
             str(args.memory_mib * 1024), "IDP_ARGON2_PARALLELISM": str(args.parallelism)}
    backend = "postgres" if args.services else "sqlite"
    accounts = max(1000, args.logins)
    with tempfile.TemporaryDirectory() as tmp, IdpServer(
            Path(tmp), backend=backend, workers=args.workers, name="bench_login",
            extra_env={**BENCH_ENV, **costs}, test_settings=False) as server:
        argon2 = check_code(server)
        seed_population(server, 10 * accounts, accounts)
        login_phase(server, [nik_of(i) for i in range(args.users)], args.users)  # warm up
        logins = login_phase(server, [nik_of(i) for i in random.sample(range(args.users, accounts),
                                                                      args.logins)], args.users)
    verify = statistics.median(argon2.verify_cpu(7)) * 1000
    at_once = argon2.verify_cpu_at_once(args.users, 4 * args.users) * 1000
    label = "PostgreSQL + Redis" if args.services else "embedded (SQLite)"
    print(f"\nlogin benchmark: {os.cpu_count()} cores, gunicorn {args.workers} workers, {label}, "
          f"{args.users} concurrent users, argon2id {argon2}")
    print(f"logins: {logins.summary()}")
    print(f"server CPU per login {logins.cpu_ms:.1f} ms; one argon2id verify here {verify:.1f} ms; "
          f"beyond the verify {logins.cpu_ms - verify:.1f} ms "
          f"({(logins.cpu_ms - verify) / verify * 100:.1f} % of it)")
    print(f"one verify with {args.users} at once {at_once:.1f} ms; beyond that "
          f"{logins.cpu_ms - at_once:.1f} ms; largest worker RSS during the logins {logins.rss:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-cost", type=int, default=3)
    parser.add_argument("--memory-mib", type=int, default=64)
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--users", type=int, default=4)
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--services", action="store_true", help="PostgreSQL + Redis instead of SQLite")
    parser.add_argument("--no-table", action="store_true", help="skip the argon2 cost table")
    args = parser.parse_args()
    if not args.no_table:
        argon2_table()
    run(args)


if __name__ == "__main__":
    main()
