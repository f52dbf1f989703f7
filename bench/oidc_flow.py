"""Benchmark: OIDC flows per second, latency percentiles and server CPU against a real gunicorn server.

With a live SSO session (and consent already given), each flow is authorize(prompt=none) → token →
userinfo, as a portal does on every visit of a citizen who is already logged in. The token endpoint
is also measured alone (refresh-token grants, each rotating the previous one). Runs SatuID itself on
the embedded default (SQLite) and on PostgreSQL + Redis, with production settings, and prints the
figures with the core count. ``bench/national.py`` uses the same flows for its table.

    .venv/bin/python bench/oidc_flow.py [--backend sqlite|postgres|both] [--flows 400] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from harness import (
    BENCH_ENV,
    PASSWORD,
    REDIRECT,
    SCOPES,
    IdpServer,
    Measured,
    measure,
    nik_of,
    register_client,
    seed_population,
    worker_rss,
)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    if match is None:
        raise RuntimeError("no CSRF token on the page")
    return match.group(1)


def pkce() -> tuple[str, str]:
    """(verifier, S256 challenge), RFC 7636 §4.1-4.2."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class Portal:
    """A confidential relying party driving citizens' browsers through SatuID."""

    def __init__(self, server: IdpServer, client_id: str, secret: str) -> None:
        self.server = server
        self.auth = (client_id, secret)
        self.client_id = client_id

    def authorize_url(self, challenge: str, **extra: str) -> str:
        params = {"response_type": "code", "client_id": self.client_id, "redirect_uri": REDIRECT,
                  "scope": SCOPES, "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
                  "code_challenge": challenge, "code_challenge_method": "S256", **extra}
        return self.server.url + "/authorize?" + urlencode(params)

    def log_in(self, nik: str, password: str) -> requests.Session:
        """Log in and consent once through the pages; returns the browser with its SSO cookie."""
        browser = requests.Session()
        _, challenge = pkce()
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
                    "csrf_token": csrf_token(page.text), "nik": nik, "password": password,
                    "interaction": uid, "next": ""})
            elif urlsplit(url).path == "/consent":
                page = browser.get(url)
                response = browser.post(self.server.url + "/consent", allow_redirects=False, data={
                    "csrf_token": csrf_token(page.text), "interaction": uid, "decision": "approve"})
            else:
                response = browser.get(url, allow_redirects=False)
        raise RuntimeError(f"could not log in {nik}")

    def flow(self, browser: requests.Session) -> tuple[float, str]:
        """One silent flow; returns its seconds and the refresh token it got."""
        started = time.perf_counter()
        verifier, challenge = pkce()
        response = browser.get(self.authorize_url(challenge, prompt="none"), allow_redirects=False)
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        if "code" not in query:
            raise RuntimeError(f"prompt=none got no code: {query}")
        token = browser.post(self.server.url + "/token", auth=self.auth, data={
            "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT,
            "code_verifier": verifier})
        token.raise_for_status()
        tokens = token.json()
        info = browser.get(self.server.url + "/userinfo",
                           headers={"Authorization": f"Bearer {tokens['access_token']}"})
        info.raise_for_status()
        return time.perf_counter() - started, str(tokens["refresh_token"])

    def refresh_chain(self, refresh_token: str, count: int) -> list[float]:
        """``count`` refresh grants, each with the token the previous one rotated in."""
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


def log_in_browsers(portal: Portal, niks: Sequence[str], concurrency: int) -> list[requests.Session]:
    """One browser per NIK, logged in (password ``PASSWORD``) and consented, with one flow done to
    warm every worker's connections and caches."""
    def one(nik: str) -> requests.Session:
        browser = portal.log_in(nik, PASSWORD)
        portal.flow(browser)
        return browser

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, niks))


def sso_phase(portal: Portal, browsers: Sequence[requests.Session], flows: int,
              concurrency: int) -> Measured:
    """``flows`` silent flows from ``concurrency`` users, each going round its own browsers."""
    assert portal.server.process is not None
    for browser in browsers:
        browser.close()  # no connection idle since an earlier phase: the server has dropped them
    mine = [browsers[i::concurrency] for i in range(concurrency)]

    def user(i: int) -> list[float]:
        own = mine[i % concurrency]
        return [portal.flow(own[n % len(own)])[0] for n in range(flows // concurrency
                                                                 + (i < flows % concurrency))]

    def work() -> list[float]:
        with ThreadPoolExecutor(concurrency) as pool:
            return [t for times in pool.map(user, range(concurrency)) for t in times]

    return measure(portal.server.process.pid, work)


def refresh_phase(portal: Portal, browsers: Sequence[requests.Session], grants: int,
                  concurrency: int) -> Measured:
    """``grants`` refresh-token grants: ``concurrency`` rotating chains, each from a fresh flow."""
    assert portal.server.process is not None
    starts = [portal.flow(browsers[i % len(browsers)])[1] for i in range(concurrency)]
    counts = [grants // concurrency + (i < grants % concurrency) for i in range(concurrency)]

    def work() -> list[float]:
        with ThreadPoolExecutor(concurrency) as pool:
            chains = pool.map(portal.refresh_chain, starts, counts)
            return [t for chain in chains for t in chain]

    return measure(portal.server.process.pid, work)


def run(backend: str, flows: int, concurrency: int, workers: int, sessions: int) -> None:
    with tempfile.TemporaryDirectory() as tmp, IdpServer(
            Path(tmp), backend=backend, workers=workers, name="bench", extra_env=BENCH_ENV,
            test_settings=False) as server:
        accounts = max(sessions, 1000)
        seed_population(server, 10 * accounts, accounts)
        portal = Portal(server, *register_client(server))
        niks = [nik_of(i) for i in random.sample(range(accounts), sessions)]
        browsers = log_in_browsers(portal, niks, concurrency)
        sso = sso_phase(portal, browsers, flows, concurrency)
        refresh = refresh_phase(portal, browsers, flows, concurrency)
        assert server.process is not None
        rss = worker_rss(server.process.pid)

    label = "PostgreSQL + Redis" if backend == "postgres" else "embedded (SQLite)"
    print(f"\n== {label}: gunicorn {workers} workers x 4 threads, {concurrency} concurrent users, "
          f"{sessions} citizens")
    print(f"authorize(prompt=none) -> token -> userinfo: {sso.summary()}")
    print(f"refresh grant (rotating): {refresh.summary()}")
    print(f"largest worker RSS: {max(sso.rss, refresh.rss):.0f} MiB during the load, {rss:.0f} MiB after")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--flows", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=max(2, os.cpu_count() or 2))
    parser.add_argument("--sessions", type=int, default=32, help="citizens logged in, one browser each")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    for backend in (["sqlite", "postgres"] if args.backend == "both" else [args.backend]):
        run(backend, args.flows, args.concurrency, args.workers, args.sessions)


if __name__ == "__main__":
    main()
