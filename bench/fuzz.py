"""Fuzz: hostile and random requests to every protocol endpoint and form; counts the 5xx answers.

Runs SatuID in-process (Flask's test client, the real database and store) on PostgreSQL + Redis by
default, sends at least ``--cases`` requests drawn by hypothesis from ``tests/hostile.py``, prints how
many it sent, how many got a 5xx and a few of those, then checks that ``/healthz`` still answers.

    .venv/bin/python bench/fuzz.py [--cases 10000] [--backend postgres|sqlite] [--seed N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from werkzeug.datastructures import MultiDict

from tests.conftest import (
    PG_URL,
    REDIS_URL,
    TEST_SETTINGS,
    Factory,
    create_pg_database,
    drop_pg_database,
    make_app,
)
from tests.hostile import (
    CLIENT_ID,
    ENDPOINTS,
    REDIRECT_URI,
    SIGNED_IN_ENDPOINTS,
    HostileRequest,
    hostile_requests,
)
from tests.oidc_rp import register_portal


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--backend", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()

    instance = Path(tempfile.mkdtemp(prefix="satuid-fuzz-"))
    env = {"IDP_INSTANCE_PATH": str(instance), **TEST_SETTINGS}
    database = None
    if args.backend == "postgres":
        database = create_pg_database(f"satuid_fuzz_{os.getpid()}")
        env.update(IDP_DATABASE_URL=database, IDP_REDIS_URL=REDIS_URL,
                   IDP_REDIS_PREFIX=f"satuid-fuzz:{uuid.uuid4().hex}:")
    else:
        from tests.conftest import migrate

        env.update(IDP_DATABASE_URL=f"sqlite:///{instance / 'satuid.db'}", IDP_REDIS_URL="")
        migrate(env["IDP_DATABASE_URL"])
    app = make_app(env, WTF_CSRF_ENABLED=False)
    register_portal(app, client_id=CLIENT_ID, redirect_uris=[REDIRECT_URI], secret="fuzz-secret")
    client = app.test_client()
    citizen = Factory(app).citizen()
    signed_in = app.test_client()
    signed_in_paths = {path for _method, path, _base in SIGNED_IN_ENDPOINTS}
    statuses: Counter[int] = Counter()
    failures: list[tuple[HostileRequest, int]] = []

    @seed(args.seed)
    @settings(max_examples=args.cases, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(request=st.one_of(hostile_requests(ENDPOINTS), hostile_requests(SIGNED_IN_ENDPOINTS)))
    def run(request: HostileRequest) -> None:
        browser = client
        if request.path in signed_in_paths:  # the forms behind a login get a signed-in browser
            browser = signed_in
            if browser.get("/account").status_code != 200:
                browser.post("/login", data={"nik": citizen.nik, "password": citizen.password})
        if request.method == "GET":
            response = browser.get(request.path, query_string=MultiDict(request.params))
        else:
            response = browser.post(request.path, data=MultiDict(request.params))
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append((request, response.status_code))

    started = time.monotonic()
    run()
    elapsed = time.monotonic() - started
    health = client.get("/healthz")
    sent = sum(statuses.values())
    print(f"backend: {args.backend} (PostgreSQL at {PG_URL}, Redis at {REDIS_URL})" if database
          else f"backend: {args.backend}")
    print(f"seed: {args.seed}")
    print(f"sent: {sent} requests in {elapsed:.1f} s")
    print(f"failed (5xx): {len(failures)}")
    print("statuses: " + ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items())))
    for request, status in failures[:10]:
        print(f"  {status} {request.method} {request.path} {request.params!r}"[:400])
    print(f"still serving: /healthz {health.status_code} {health.get_json()}")
    app.extensions["idp.engine"].dispose()
    if database:
        drop_pg_database(database)
    return 1 if failures or health.status_code != 200 else 0


if __name__ == "__main__":
    raise SystemExit(main())
