"""Where a request's time goes: silent SSO flows (or refresh grants, or logins) under cProfile, with
the SQL statements and Redis commands each step sends.

Runs the app in this process (Flask's test client, no HTTP server) on a fresh PostgreSQL database and
Redis with production settings, logs a citizen in through the pages, then prints per step the SQL
statements, Redis commands and round trips, and wall time; then the top functions of ``--flows``
profiled units by cumulative and by own time (per unit, in ms), and writes the profile to ``--out``
for ``python -m pstats`` or snakeviz. The test client's own work shows up too (``werkzeug.test``).

    .venv/bin/python bench/profile.py [--what sso|refresh|login] [--flows 200] [--out sso.prof]
"""

from __future__ import annotations

import sys
from pathlib import Path

# The script's folder would come first on the path, and this file would then be the standard
# library's ``profile``, which cProfile imports.
ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import parse_qs, urlsplit  # noqa: E402

import redis  # noqa: E402
from flask import Flask  # noqa: E402
from sqlalchemy import event  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from tests.conftest import (  # noqa: E402
    REDIS_URL,
    Factory,
    create_pg_database,
    csrf_token,
    drop_pg_database,
    redis_prefix,
    run_id,
)
from tests.oidc_rp import Portal, register_portal  # noqa: E402

SCOPES = "openid profile email offline_access"
PASSWORD = "bench mark kopi susu pagi"


@dataclass
class Traffic:
    """SQL statements, Redis commands and Redis round trips sent so far by this process."""

    sql: int = 0
    redis: int = 0
    redis_trips: int = 0
    show: bool = False  # print each statement and command as it is sent
    width: int = 160  # of each statement printed

    def __sub__(self, other: Traffic) -> Traffic:
        return Traffic(self.sql - other.sql, self.redis - other.redis, self.redis_trips - other.redis_trips)

    def copy(self) -> Traffic:
        return Traffic(self.sql, self.redis, self.redis_trips)


def count_traffic() -> Traffic:
    """Count every statement of every engine, and every Redis command (a pipeline is one round trip
    holding its queued commands, plus MULTI and EXEC when it is a transaction)."""
    traffic = Traffic()

    def statement(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        traffic.sql += 1
        if traffic.show:
            print(f"    SQL    {' '.join(sql.split())[:traffic.width]}")

    event.listen(Engine, "before_cursor_execute", statement)
    command: Callable[..., Any] = redis.Redis.execute_command
    execute: Callable[..., list[Any]] = redis.client.Pipeline.execute

    def counted_command(self: redis.Redis, *args: Any, **options: Any) -> Any:
        traffic.redis += 1
        traffic.redis_trips += 1
        if traffic.show:
            print(f"    Redis  {args[0]}")
        return command(self, *args, **options)

    def counted_execute(self: redis.client.Pipeline, raise_on_error: bool = True) -> list[Any]:
        # The instance's flag (MULTI/EXEC around the batch), not the class's method of that name.
        traffic.redis += len(self.command_stack) + (2 if self.__dict__.get("transaction") else 0)
        traffic.redis_trips += 1
        if traffic.show:
            print(f"    Redis  pipeline: {' '.join(str(c[0][0]) for c in self.command_stack)}")
        return execute(self, raise_on_error)

    redis.Redis.execute_command = counted_command  # type: ignore[method-assign]
    redis.client.Pipeline.execute = counted_execute  # type: ignore[method-assign]
    return traffic


@contextmanager
def bench_app() -> Iterator[Flask]:
    """The app on a fresh PostgreSQL database and its own Redis prefix, production settings."""
    from idp import create_app
    from idp.config import load_settings

    url = create_pg_database(f"satuid_profile_{run_id()}")
    try:
        with tempfile.TemporaryDirectory(prefix="satuid-profile-") as tmp:
            settings = load_settings({
                "IDP_INSTANCE_PATH": tmp, "IDP_DATABASE_URL": url, "IDP_REDIS_URL": REDIS_URL,
                "IDP_REDIS_PREFIX": redis_prefix(), "IDP_ISSUER": "http://localhost",
                "IDP_ENV": "development", "IDP_IP_RATE_LIMIT": "1000000000"})
            app = create_app({"IDP": settings})
            try:
                yield app
            finally:
                app.extensions["idp.engine"].dispose()
    finally:
        drop_pg_database(url)


def code_of(location: str) -> str:
    query = parse_qs(urlsplit(location).query)
    if "code" not in query:
        raise RuntimeError(f"no code: {location}")
    return query["code"][0]


Step = tuple[str, Callable[[], Any]]


def sso_steps(portal: Portal) -> list[Step]:
    """authorize(prompt=none) → token → userinfo, as steps that pass their results along."""
    found: dict[str, Any] = {}

    def authorize() -> None:
        response = portal.browser.get(portal.authorize_url(SCOPES, prompt="none"))
        found["code"] = code_of(response.headers["Location"])

    def token() -> None:
        response = portal.token(found["code"])
        assert response.status_code == 200, response.get_data(True)
        found["access"] = response.get_json()["access_token"]

    def userinfo() -> None:
        response = portal.browser.get("/userinfo", headers={"Authorization": f"Bearer {found['access']}"})
        assert response.status_code == 200, response.get_data(True)

    return [("authorize", authorize), ("token", token), ("userinfo", userinfo)]


def refresh_steps(portal: Portal, refresh_token: str) -> list[Step]:
    current = {"token": refresh_token}

    def refresh() -> None:
        response = portal.refresh(current["token"])
        assert response.status_code == 200, response.get_data(True)
        current["token"] = response.get_json()["refresh_token"]

    return [("refresh grant", refresh)]


def login_steps(app: Flask, nik: str) -> Callable[[], list[Step]]:
    """Each login from a fresh browser whose login page was fetched beforehand (not profiled)."""
    def prepare() -> list[Step]:
        browser = app.test_client()
        token = csrf_token(browser.get("/login").get_data(as_text=True))

        def login() -> None:
            response = browser.post("/login", data={"csrf_token": token, "nik": nik, "password": PASSWORD})
            assert response.status_code == 302 and "/login" not in response.headers["Location"], \
                response.status_code

        return [("login POST", login)]

    return prepare


@dataclass
class Run:
    """One step's run: wall and CPU seconds in this process, and what it sent."""

    wall: float
    cpu: float
    traffic: Traffic


def run_units(units: int, prepare: Callable[[], list[Step]], traffic: Traffic,
              profiler: cProfile.Profile | None = None) -> dict[str, list[Run]]:
    """Run ``units`` units of steps; the runs of each step."""
    seen: dict[str, list[Run]] = {}
    for _ in range(units):
        for name, step in prepare():
            before = traffic.copy()
            started, cpu = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            step()
            if profiler is not None:
                profiler.disable()
            seen.setdefault(name, []).append(
                Run(time.perf_counter() - started, time.process_time() - cpu, traffic - before))
    return seen


def print_steps(seen: dict[str, list[Run]]) -> None:
    """Means of the traffic, medians of the times (CPU includes the test client's share)."""
    print(f"{'step':<16}{'SQL':>8}{'Redis cmds':>12}{'Redis trips':>13}{'wall p50':>12}{'CPU p50':>12}")
    totals = [0.0] * 5
    for name, runs in seen.items():
        figures = [*(sum(getattr(r.traffic, kind) for r in runs) / len(runs)
                     for kind in ("sql", "redis", "redis_trips")),
                   statistics.median(r.wall for r in runs) * 1000,
                   statistics.median(r.cpu for r in runs) * 1000]
        totals = [a + b for a, b in zip(totals, figures, strict=True)]
        print(f"{name:<16}{figures[0]:>8.1f}{figures[1]:>12.1f}{figures[2]:>13.1f}"
              f"{figures[3]:>9.1f} ms{figures[4]:>9.1f} ms")
    if len(seen) > 1:
        print(f"{'per unit':<16}{totals[0]:>8.1f}{totals[1]:>12.1f}{totals[2]:>13.1f}"
              f"{totals[3]:>9.1f} ms{totals[4]:>9.1f} ms")


def where(func: tuple[str, int, str]) -> str:
    """``file:line(function)`` with the path cut to what tells the module."""
    path, line, name = func
    for marker in ("site-packages/", str(ROOT) + "/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{line}({name})" if line else name


def print_top(stats: pstats.Stats, units: int, key: str, count: int = 30, within: str = "") -> None:
    """The top ``count`` functions by ``key`` (cumulative or own time), per unit, leaving out those
    under 0.5 % of the total (not worth a look) and the profiler's own frames; with ``within``, only
    functions whose file is under that folder of the checkout."""
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = stats.total_tt  # type: ignore[attr-defined]
    index = 3 if key == "cumulative" else 2  # (calls, primitive calls, own time, cumulative, callers)
    rows = sorted(entries.items(), key=lambda item: item[1][index], reverse=True)
    rows = [(f, v) for f, v in rows if v[index] >= total * 0.005 and Path(f[0]).name != "profile.py"
            and "_lsprof" not in f[2] and (not within or f[0].startswith(f"{ROOT / within}/"))]
    print(f"\ntop {count} by {'cumulative' if index == 3 else 'own'} time"
          f"{f' in {within}' if within else ''}, per unit "
          f"(of {total / units * 1000:.2f} ms profiled per unit):")
    print(f"{'calls':>8}{'own ms':>9}{'cum ms':>9}  function")
    for func, (_, calls, own, cumulative, _) in rows[:count]:
        print(f"{calls / units:>8.1f}{own / units * 1000:>9.3f}{cumulative / units * 1000:>9.3f}  "
              f"{where(func)}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--what", choices=["sso", "refresh", "login"], default="sso")
    parser.add_argument("--flows", type=int, default=200, help="units profiled")
    parser.add_argument("--out", type=Path, default=None, help="default: <what>.prof in a temp folder")
    parser.add_argument("--show", action="store_true",
                        help="print one unit's SQL statements and Redis commands, step by step")
    parser.add_argument("--width", type=int, default=160, help="characters of each statement shown")
    parser.add_argument("--cpu", action="store_true",
                        help="profile CPU time (time.process_time) instead of wall time, so waits on "
                             "PostgreSQL and Redis drop out")
    args = parser.parse_args()
    out = args.out or Path(tempfile.gettempdir()) / f"satuid-{args.what}.prof"

    traffic = count_traffic()
    with bench_app() as app:
        portal_info = register_portal(app, client_id="bench", redirect_uris=["https://bench.example.id/cb"])
        citizen = Factory(app).citizen(password=PASSWORD)
        portal = Portal(app.test_client(), "bench", portal_info["secret"], portal_info["redirect_uri"])
        first = portal.sign_in(citizen.nik, PASSWORD, scope=SCOPES)
        refresh_token = portal.token(first["code"]).get_json()["refresh_token"]

        prepare: Callable[[], list[Step]]
        if args.what == "sso":
            prepare = lambda: sso_steps(portal)  # noqa: E731
        elif args.what == "refresh":
            steps = refresh_steps(portal, refresh_token)
            prepare = lambda: steps  # noqa: E731
        else:
            prepare = login_steps(app, citizen.nik)

        run_units(5, prepare, traffic)  # warm caches, connections and lazy imports
        if args.show:
            traffic.show, traffic.width = True, args.width
            for name, step in prepare():
                print(f"  {name}:")
                step()
            traffic.show = False
        seen = run_units(min(args.flows, 50), prepare, traffic)
        print(f"\n{args.what}: SQL statements and Redis commands per step (mean), wall time unprofiled")
        print_steps(seen)

        profiler = cProfile.Profile(time.process_time) if args.cpu else cProfile.Profile()
        run_units(args.flows, prepare, traffic, profiler)
        profiler.dump_stats(out)
        stats = pstats.Stats(profiler)
        print_top(stats, args.flows, "cumulative")
        print_top(stats, args.flows, "tottime")
        print_top(stats, args.flows, "cumulative", 20, within="idp/")
        print(f"\nprofile written to {out} (python -m pstats {out}, or snakeviz {out})")


if __name__ == "__main__":
    main()
