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
import http.client
import json
import os
import random
import re
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from http.cookies import SimpleCookie
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


class Browser:
    """A logged-in citizen's browser for the measured flows: its cookies on one keep-alive
    connection of ``http.client``. ``requests`` costs the load generator several times the CPU per
    call, on the very cores the server is measured on, and its threads' turns at the GIL land in
    the latencies it records."""

    def __init__(self, url: str, cookies: dict[str, str] | None = None) -> None:
        where = urlsplit(url)
        self.host, self.port = where.hostname or "127.0.0.1", where.port or 80
        self.cookies = dict(cookies or {})
        self.connection: http.client.HTTPConnection | None = None

    @classmethod
    def of(cls, url: str, session: requests.Session) -> Browser:
        return cls(url, {c.name: c.value or "" for c in session.cookies})

    def request(self, method: str, path: str, body: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, http.client.HTTPResponse, bytes]:
        """(status, response, body); one retry on a connection the server closed while idle."""
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urlencode(body)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
            try:
                self.connection.request(method, path, data, sent)
                response = self.connection.getresponse()
                content = response.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2:
                    raise
        for header in response.headers.get_all("Set-Cookie") or []:
            for name, morsel in SimpleCookie(header).items():
                if morsel["max-age"] == "0" or morsel["expires"].startswith("Thu, 01 Jan 1970"):
                    self.cookies.pop(name, None)  # the server cleared it
                else:
                    self.cookies[name] = morsel.value
        return response.status, response, content

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


class Portal:
    """A confidential relying party driving citizens' browsers through SatuID."""

    def __init__(self, server: IdpServer, client_id: str, secret: str) -> None:
        self.server = server
        self.client_id = client_id
        self.basic = "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()

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

    def flow(self, browser: Browser) -> tuple[float, str]:
        """One silent flow; returns its seconds and the refresh token it got."""
        started = time.perf_counter()
        verifier, challenge = pkce()
        url = self.authorize_url(challenge, prompt="none")
        status, response, _ = browser.request("GET", url[len(self.server.url):])
        query = parse_qs(urlsplit(response.headers.get("Location", "")).query)
        if "code" not in query:
            raise RuntimeError(f"prompt=none got no code: {status} {query}")
        status, _, body = browser.request("POST", "/token", {
            "grant_type": "authorization_code", "code": query["code"][0], "redirect_uri": REDIRECT,
            "code_verifier": verifier}, {"Authorization": self.basic})
        if status != 200:
            raise RuntimeError(f"token: {status} {body[:200]!r}")
        tokens = json.loads(body)
        status, _, body = browser.request("GET", "/userinfo",
                                          headers={"Authorization": f"Bearer {tokens['access_token']}"})
        if status != 200:
            raise RuntimeError(f"userinfo: {status} {body[:200]!r}")
        return time.perf_counter() - started, str(tokens["refresh_token"])

    def refresh_chain(self, refresh_token: str, count: int) -> list[float]:
        """``count`` refresh grants, each with the token the previous one rotated in."""
        backend = Browser(self.server.url)  # the portal's back end: no cookies
        times = []
        try:
            for _ in range(count):
                started = time.perf_counter()
                status, _, body = backend.request("POST", "/token", {
                    "grant_type": "refresh_token", "refresh_token": refresh_token},
                    {"Authorization": self.basic})
                times.append(time.perf_counter() - started)
                if status != 200:
                    raise RuntimeError(f"refresh: {status} {body[:200]!r}")
                refresh_token = json.loads(body)["refresh_token"]
        finally:
            backend.close()
        return times


def log_in_browsers(portal: Portal, niks: Sequence[str], concurrency: int) -> list[Browser]:
    """One browser per NIK, logged in (password ``PASSWORD``) and consented, with one flow done to
    warm every worker's connections and caches."""
    def one(nik: str) -> Browser:
        with portal.log_in(nik, PASSWORD) as session:
            browser = Browser.of(portal.server.url, session)
        portal.flow(browser)
        return browser

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, niks))


def sso_phase(portal: Portal, browsers: Sequence[Browser], flows: int,
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


def refresh_phase(portal: Portal, browsers: Sequence[Browser], grants: int,
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
