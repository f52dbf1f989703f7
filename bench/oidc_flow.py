"""Benchmark: OIDC flows per second and latency percentiles against a real gunicorn server.

With a live SSO session (and consent already given), each flow is authorize(prompt=none) → token →
userinfo, as a portal does on every visit of a citizen who is already logged in. The token endpoint
is also measured alone (refresh-token grants, each rotating the previous one). Runs SatuID itself on
the embedded default (SQLite) and on PostgreSQL + Redis, and prints the figures with the core count.

    .venv/bin/python bench/oidc_flow.py [--backend sqlite|postgres|both] [--flows 400] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import IdpServer

REDIRECT = "https://bench.example.id/cb"


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Bench:
    def __init__(self, server: IdpServer, client_id: str, secret: str) -> None:
        self.server = server
        self.auth = (client_id, secret)
        self.client_id = client_id

    def authorize_url(self, challenge: str, **extra: str) -> str:
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT,
                  "scope": "openid profile email offline_access", "state": secrets.token_urlsafe(8),
                  "nonce": secrets.token_urlsafe(8), "code_challenge": challenge,
                  "code_challenge_method": "S256", **extra}
        return self.server.url + "/authorize?" + urlencode(params)

    def log_in(self, citizen: dict[str, str]) -> requests.Session:
        """Log in and consent once through the pages; returns the browser with its SSO cookie."""
        browser = requests.Session()
        _, challenge = _pkce()
        response = browser.get(self.authorize_url(challenge), allow_redirects=False)
        for _ in range(10):
            location = response.headers["Location"]
            if location.startswith(REDIRECT):
                return browser
            url = location if location.startswith("http") else self.server.url + location
            uid = parse_qs(urlsplit(url).query).get("interaction", [""])[0]
            if urlsplit(url).path == "/login":
                page = browser.get(url)
                response = browser.post(self.server.url + "/login", allow_redirects=False, data={
                    "csrf_token": _csrf(page.text), "nik": citizen["nik"],
                    "password": citizen["password"], "interaction": uid, "next": ""})
            elif urlsplit(url).path == "/consent":
                page = browser.get(url)
                response = browser.post(self.server.url + "/consent", allow_redirects=False, data={
                    "csrf_token": _csrf(page.text), "interaction": uid, "decision": "approve"})
            else:
                response = browser.get(url, allow_redirects=False)
        raise RuntimeError("could not log in")

    def flow(self, browser: requests.Session) -> tuple[float, float]:
        """One silent flow; returns (total seconds, token endpoint seconds)."""
        started = time.perf_counter()
        verifier, challenge = _pkce()
        response = browser.get(self.authorize_url(challenge, prompt="none"), allow_redirects=False)
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert "code" in query, query
        token_started = time.perf_counter()
        token = browser.post(self.server.url + "/token", auth=self.auth, data={
            "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT,
            "code_verifier": verifier})
        token_time = time.perf_counter() - token_started
        token.raise_for_status()
        info = browser.get(self.server.url + "/userinfo",
                           headers={"Authorization": f"Bearer {token.json()['access_token']}"})
        info.raise_for_status()
        self.last_refresh = token.json()["refresh_token"]
        return time.perf_counter() - started, token_time

    def refresh_chain(self, refresh_token: str, count: int) -> list[float]:
        session = requests.Session()
        times = []
        for _ in range(count):
            started = time.perf_counter()
            response = session.post(self.server.url + "/token", auth=self.auth, data={
                "grant_type": "refresh_token", "refresh_token": refresh_token})
            times.append(time.perf_counter() - started)
            response.raise_for_status()
            refresh_token = response.json()["refresh_token"]
        return times


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:.1f} ms  p90 {q[89]:.1f} ms  p99 {q[98]:.1f} ms  max {ms[-1]:.1f} ms"


def run(backend: str, flows: int, concurrency: int, workers: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, IdpServer(Path(tmp), backend=backend, workers=workers,
                                                         name="bench") as server:
        out = json.loads(server.flask("clients", "create", "--name", "Bench", "--client-id", "bench",
                                      "--redirect-uri", REDIRECT, "--scope",
                                      "openid profile email offline_access"))
        citizen = next(line for line in map(json.loads, server.seed_output.splitlines())
                       if "password" in line)
        bench = Bench(server, "bench", out["client_secret"])
        browsers = [bench.log_in(citizen) for _ in range(concurrency)]
        for b in browsers:
            bench.flow(b)  # warm up every worker's connections and caches

        def one(i: int) -> tuple[float, float]:
            return bench.flow(browsers[i % concurrency])

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, range(flows)))
        elapsed = time.perf_counter() - started
        total = [r[0] for r in results]
        token = [r[1] for r in results]

        per_thread = max(1, flows // concurrency)
        refresh_tokens = []
        for b in browsers:
            bench.flow(b)
            refresh_tokens.append(bench.last_refresh)
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            chains = list(pool.map(lambda rt: bench.refresh_chain(rt, per_thread), refresh_tokens))
        refresh_elapsed = time.perf_counter() - started
        refresh = [t for chain in chains for t in chain]

        label = "PostgreSQL + Redis" if backend == "postgres" else "embedded (SQLite)"
        print(f"\n== {label}: gunicorn {workers} workers x 4 threads, {concurrency} concurrent clients")
        print(f"authorize(prompt=none) -> token -> userinfo: {flows} flows in {elapsed:.2f} s = "
              f"{flows / elapsed:.1f} flows/s")
        print(f"  flow latency:            {percentiles(total)}")
        print(f"  token (code) latency:    {percentiles(token)}")
        print(f"token endpoint alone (refresh grant, rotating): {len(refresh)} requests in "
              f"{refresh_elapsed:.2f} s = {len(refresh) / refresh_elapsed:.1f} req/s")
        print(f"  latency:                 {percentiles(refresh)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--flows", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2))
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        run(backend, args.flows, args.concurrency, args.workers)


if __name__ == "__main__":
    main()
