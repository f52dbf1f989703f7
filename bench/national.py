"""The national-scale figures, each beside its target: this checkout alone, or beside another one.

    .venv/bin/python bench/national.py                              # this checkout
    .venv/bin/python bench/national.py --compare /tmp/prev          # and another checkout beside it
    .venv/bin/python bench/national.py --scale --compare /tmp/prev  # also at 10 M residents

Setting: PostgreSQL + Redis, gunicorn with 2 workers (4 threads each), 8 concurrent users, production
settings (argon2id cost from the checkout's own defaults, or ``IDP_ARGON2_*`` from the environment).
Each checkout's server runs its own code (``git worktree add /tmp/prev <rev>`` makes one to compare
with; it runs with this checkout's virtualenv) on a fresh database of ``--residents`` synthetic
residents, ``--accounts`` of whom have an account. Per round each server in turn serves silent SSO
flows (authorize prompt=none → token → userinfo), refresh-token grants and password logins, so that
the machine's noise falls on all of them alike, in an order that turns round every round (the first
in a round measured more); the figures pool the rounds. Use an even ``--rounds`` when comparing.

A login's CPU beyond argon2id is set against the argon2id CPU the server itself counted during the
logins (``satuid_password_hashing_cpu_seconds_total``, read from ``/metrics`` before and after), not
against a verify timed in this process, which ran apart from the server's load and swung the figure
by ten points from run to run. Those figures are printed too; a checkout without the metric has only
them.

``--scale`` adds a server per checkout on a kept database of 10 M residents and 1 M accounts
(``--scale-db``; seeding it takes a long while once, later runs reuse it), and compares its p99 with
the small database's. Logins and flows there pick accounts at random among all of them.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import requests
from harness import (
    ROOT,
    Argon2,
    Checkout,
    IdpServer,
    Measured,
    Row,
    Target,
    alternate,
    check_code,
    checkout_server,
    cpu_between,
    ensure_database,
    hashing_cpu,
    nik_of,
    register_client,
    seed_population,
    server_cpu,
    table,
    worker_rss,
)
from login import login_phase
from oidc_flow import Browser, Portal, log_in_browsers, refresh_phase, sso_phase


@dataclass
class Deployment:
    """One checkout's server on a population of a given size, and what its rounds measured."""

    checkout: Checkout
    size: str
    server: IdpServer
    argon2: Argon2
    portal: Portal
    browsers: list[Browser]
    logins: list[str]  # NIKs not yet used, in the order the rounds log them in
    sso: Measured = field(default_factory=Measured)
    refresh: Measured = field(default_factory=Measured)
    login: Measured = field(default_factory=Measured)
    rss: float = 0.0  # the largest worker's after a round's load, MiB
    verify: list[float] = field(default_factory=list)  # CPU seconds of one verify alone
    verify_at_once: list[float] = field(default_factory=list)  # ... with --concurrency at once
    # CPU seconds the server itself spent in argon2id in each round's logins, by its own metric:
    # the verify as it ran there, under that load (empty for a checkout without the metric)
    hashing: list[float] = field(default_factory=list)
    hashed_logins: int = 0

    def __str__(self) -> str:
        return f"{self.checkout.label}, {self.size}"

    def run_round(self, args: argparse.Namespace) -> None:
        self.sso += sso_phase(self.portal, self.browsers, args.flows, args.concurrency)
        self.refresh += refresh_phase(self.portal, self.browsers, args.refreshes, args.concurrency)
        niks, self.logins = self.logins[:args.logins], self.logins[args.logins:]
        hashed = hashing_cpu(self.server)
        self.login += login_phase(self.server, niks, args.concurrency)
        if hashed is not None:
            after = hashing_cpu(self.server)
            if after is None:
                raise RuntimeError(f"{self}: the argon2id metric vanished during the logins")
            self.hashing.append(after - hashed)
            self.hashed_logins += len(niks)
        assert self.server.process is not None
        self.rss = max(self.rss, worker_rss(self.server.process.pid))
        self.verify += self.argon2.verify_cpu(3)
        self.verify_at_once.append(self.argon2.verify_cpu_at_once(args.concurrency,
                                                                  2 * args.concurrency))

    @property
    def verify_ms(self) -> float:
        return statistics.median(self.verify) * 1000

    @property
    def verify_at_once_ms(self) -> float:
        return statistics.median(self.verify_at_once) * 1000

    @property
    def beyond_ms(self) -> float:
        """Server CPU per login beyond one argon2id verify measured alone, in another process."""
        return self.login.cpu_ms - self.verify_ms

    @property
    def hashing_ms(self) -> float | None:
        """The server's own argon2id CPU per login (None: the checkout does not count it, or
        argon2 runs lanes on threads of its own, which the metric does not see)."""
        if not self.hashed_logins or self.argon2.parallelism > 1:
            return None
        return sum(self.hashing) / self.hashed_logins * 1000

    @property
    def beyond_hashing_ms(self) -> float | None:
        """Server CPU per login beyond the argon2id work the server itself counted."""
        hashing = self.hashing_ms
        return None if hashing is None else self.login.cpu_ms - hashing


def deploy(stack: ExitStack, name: str, checkout: Checkout, size: str, residents: int, accounts: int,
           database: str | None, args: argparse.Namespace) -> Deployment:
    """Start the checkout's server on a seeded population, log citizens in and warm every path."""
    server = stack.enter_context(checkout_server(checkout, name, args.workers,
                                                 ensure_database(database) if database else None))
    argon2 = check_code(server)
    seed_population(server, residents, accounts)
    portal = Portal(server, *register_client(server))
    # The same citizens on both checkouts (the generator is seeded by the size), each used once as
    # long as there are enough of them.
    wanted = args.sessions + args.concurrency + args.rounds * args.logins
    rng = random.Random(size)
    order = rng.sample(range(accounts), min(wanted, accounts))
    order += [rng.randrange(accounts) for _ in range(wanted - len(order))]
    niks = [nik_of(i) for i in order]
    print(f"{checkout.label}, {size}: logging {args.sessions} citizens in", file=sys.stderr, flush=True)
    browsers = log_in_browsers(portal, niks[:args.sessions], args.concurrency)
    logins = niks[args.sessions:]
    refresh_phase(portal, browsers, args.concurrency, args.concurrency)  # warm the other paths
    login_phase(server, logins[:args.concurrency], args.concurrency)
    return Deployment(checkout, size, server, argon2, portal, browsers, logins[args.concurrency:])


def rows(small: list[Deployment], large: list[Deployment], concurrency: int) -> list[Row]:
    """The figures of each checkout (``small`` and ``large`` hold one deployment per checkout)."""
    def row(figure: str, unit: str, of: list[Deployment], value: Callable[[Deployment], float],
            target: Target | None = None) -> Row:
        return Row(figure, unit, [value(d) for d in of], target)

    argon2 = small[0].argon2
    rss = Target(150, "≤ 150 MiB")
    figures = [
        row("server CPU per SSO flow", "ms", small, lambda d: d.sso.cpu_ms, Target(4, "≤ 4 ms")),
        # On the same two cores, and what sets the latency: every flow's CPU, whoever spends it.
        row("  load generator CPU per SSO flow", "ms", small, lambda d: d.sso.per_unit_ms(d.sso.client)),
        row("  PostgreSQL CPU per SSO flow", "ms", small, lambda d: d.sso.per_unit_ms(d.sso.postgres)),
        row("  Redis CPU per SSO flow", "ms", small, lambda d: d.sso.per_unit_ms(d.sso.redis)),
        row("  the machine's CPU per SSO flow, all four", "ms", small, lambda d: d.sso.machine_ms),
        row("server CPU per refresh-token grant", "ms", small, lambda d: d.refresh.cpu_ms,
            Target(2, "≤ 2 ms")),
        row("server CPU per password login", "ms", small, lambda d: d.login.cpu_ms),
        row("argon2id CPU in the server, per login", "ms", small, lambda d: d.hashing_ms),
        row("login CPU beyond argon2id", "ms", small, lambda d: d.beyond_hashing_ms),
        row("login CPU beyond argon2id, % of it", "%", small,
            lambda d: percent(d.beyond_hashing_ms, d.hashing_ms), Target(10, "≤ 10 %")),
        row(f"one argon2id verify ({argon2}) alone, CPU here", "ms", small, lambda d: d.verify_ms),
        row("login CPU beyond that verify, % of it", "%", small,
            lambda d: d.beyond_ms / d.verify_ms * 100),
        row(f"one verify, CPU with {concurrency} at once", "ms", small, lambda d: d.verify_at_once_ms),
        row("login CPU beyond that verify, % of it", "%", small,
            lambda d: (d.login.cpu_ms - d.verify_at_once_ms) / d.verify_at_once_ms * 100),
        row("SSO flow p50", "ms", small, lambda d: d.sso.p(50)),
        row("SSO flow p99", "ms", small, lambda d: d.sso.p(99), Target(50, "≤ 50 ms")),
        row("refresh grant p99", "ms", small, lambda d: d.refresh.p(99)),
        row("login p99", "ms", small, lambda d: d.login.p(99)),
        row("SSO flows per second", "/s", small, lambda d: d.sso.rate),
        row("RSS per worker after the load (max)", "MiB", small, lambda d: d.rss, rss),
        row("RSS per worker during SSO flows (max)", "MiB", small,
            lambda d: max(d.sso.rss, d.refresh.rss), rss),
        row("RSS per worker during logins (max)", "MiB", small, lambda d: d.login.rss, rss),
    ]
    if large:
        pairs = list(zip(small, large, strict=True))
        figures += [
            row(f"SSO flow p99 at {large[0].size}", "ms", large, lambda d: d.sso.p(99)),
            row(f"login p99 at {large[0].size}", "ms", large, lambda d: d.login.p(99)),
            row(f"server CPU per SSO flow at {large[0].size}", "ms", large, lambda d: d.sso.cpu_ms),
            row(f"server CPU per login at {large[0].size}", "ms", large, lambda d: d.login.cpu_ms),
            Row("SSO flow p99, large ÷ small", "×", [b.sso.p(99) / a.sso.p(99) for a, b in pairs],
                Target(1.10, "≤ 1.10×")),
            Row("login p99, large ÷ small", "×", [b.login.p(99) / a.login.p(99) for a, b in pairs],
                Target(1.10, "≤ 1.10×")),
        ]
    return figures


def percent(part: float | None, whole: float | None) -> float | None:
    return None if part is None or not whole else part / whole * 100


def size_label(residents: int, accounts: int) -> str:
    def short(n: int) -> str:
        for unit, scale in (("M", 1_000_000), ("k", 1_000)):
            if n >= scale and n % scale == 0:
                return f"{n // scale} {unit}"
        return str(n)

    return f"{short(residents)} residents, {short(accounts)} accounts"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", type=Path, metavar="PATH", help="another checkout to set beside")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--flows", type=int, default=400, help="SSO flows per server and round")
    parser.add_argument("--refreshes", type=int, default=None, help="default: as many as --flows")
    parser.add_argument("--logins", type=int, default=100, help="password logins per server and round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=32,
                        help="citizens logged in for the SSO flows, one browser each")
    parser.add_argument("--residents", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=1_000)
    parser.add_argument("--scale", action="store_true", help="also on a kept 10 M-resident database")
    parser.add_argument("--scale-residents", type=int, default=10_000_000)
    parser.add_argument("--scale-accounts", type=int, default=1_000_000)
    parser.add_argument("--scale-db", default="satuid_bench_scale",
                        help="kept database of this checkout (the other's gets a suffix _other)")
    args = parser.parse_args()
    args.refreshes = args.refreshes or args.flows
    if args.compare and not (args.compare / "idp" / "__init__.py").is_file():
        parser.error(f"{args.compare} is not a checkout of this repository")

    checkouts = [Checkout(ROOT, "this")]
    if args.compare:
        checkouts.append(Checkout(args.compare.resolve(), "other"))
    small_size = size_label(args.residents, args.accounts)
    large_size = size_label(args.scale_residents, args.scale_accounts)
    with ExitStack() as stack:
        small: list[Deployment] = []
        large: list[Deployment] = []
        for checkout in checkouts:
            checkout.prepare()
            small.append(deploy(stack, f"bench_{checkout.label}", checkout, small_size,
                                args.residents, args.accounts, None, args))
        if args.scale:
            for checkout, suffix in zip(checkouts, ["", "_other"], strict=False):
                large.append(deploy(stack, f"bench_{checkout.label}_scale", checkout, large_size,
                                    args.scale_residents, args.scale_accounts, args.scale_db + suffix,
                                    args))
        alternate(args.rounds, small + large, lambda d: d.run_round(args))

    print(f"\nmachine: {os.cpu_count()} cores; PostgreSQL + Redis, gunicorn {args.workers} workers x "
          f"4 threads, {args.concurrency} concurrent users; {args.rounds} rounds of {args.flows} SSO "
          f"flows, {args.refreshes} refresh grants and {args.logins} logins per server; "
          f"{small_size}" + (f", and {large_size}" if large else ""))
    for checkout in checkouts:
        print(f"{checkout.label}: {checkout.root}")
    for d in small + large:
        print(f"\n{d}\n  SSO flows:      {d.sso.summary()}\n  refresh grants: {d.refresh.summary()}"
              f"\n  logins:         {d.login.summary()}")
    print()
    print(table(rows(small, large, args.concurrency), [c.label for c in checkouts]))
    floor = framework_floor(args.workers, args.concurrency) * 1000
    print(f"\nfloor: a Flask view that returns \"ok\", on the same gunicorn and clients: {floor:.2f} ms "
          f"of server CPU per request, {3 * floor:.2f} ms for the three requests of an SSO flow")


FLOOR_APP = """from flask import Flask
app = Flask(__name__)
@app.get("/")
def hello():
    return "ok"
"""


def framework_floor(workers: int, concurrency: int, requests_each: int = 400) -> float:
    """Server CPU per request of a Flask app that answers "ok", on the same gunicorn setting and
    from as many keep-alive clients: what any request costs before SatuID does anything."""
    with tempfile.TemporaryDirectory(prefix="satuid-floor-") as tmp, socket.socket() as probe:
        Path(tmp, "floor.py").write_text(FLOOR_APP)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--bind", f"127.0.0.1:{port}",
             "--workers", str(workers), "--threads", "4", "floor:app"],
            cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/"
            for _ in range(100):
                try:
                    requests.get(url, timeout=1)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)

            def client(_: int) -> None:
                browser = Browser(url)
                try:
                    for _ in range(requests_each):
                        status, _response, _body = browser.request("GET", "/")
                        if status != 200:
                            raise RuntimeError(f"the floor's view answered {status}")
                finally:
                    browser.close()

            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(client, range(concurrency)))  # warm up
            before = server_cpu(server.pid)
            with ThreadPoolExecutor(concurrency) as pool:
                list(pool.map(client, range(concurrency)))
            return cpu_between(before, server_cpu(server.pid)) / (concurrency * requests_each)
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
