"""Real servers for end-to-end tests and benchmarks: SatuID under gunicorn, and a back-channel receiver.

``IdpServer`` starts ``gunicorn wsgi:app`` on a free port with its own instance folder, on the embedded
default (SQLite, store in the database) or on PostgreSQL + Redis (a database of its own, or one given
that outlives it), migrates and seeds it with ``flask`` commands, waits for ``/healthz`` and stops it at
the end. It runs this checkout's code, or another checkout's (``root``) with this checkout's
virtualenv, so that benchmarks can set two revisions side by side. ``LogoutReceiver`` is a tiny HTTP
server that records the back-channel logout tokens POSTed to it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import requests

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class IdpServer:
    """One SatuID deployment for a test or a benchmark run."""

    instance: Path
    backend: str = "sqlite"  # "sqlite" or "postgres"
    workers: int = 2
    name: str = "e2e"
    extra_env: dict[str, str] = field(default_factory=dict)
    # The checkout whose code runs: the working directory and the head of PYTHONPATH of every
    # command, so that its ``idp`` wins over the editable install's.
    root: Path = ROOT
    # An existing PostgreSQL database to run on (kept afterwards: a benchmark's bulk data), instead
    # of a fresh one; still migrated and seeded, both of which leave what is there alone.
    database_url: str | None = None
    # The tests' cheap argon2 and zero refresh grace; benchmarks turn them off to run as production.
    test_settings: bool = True
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    seed_output: str = ""
    _backend_env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        from tests.conftest import TEST_SETTINGS

        # A kept database outlives the instance folder, and the next run must read the signing keys
        # and keep the pairwise subjects it holds: its secrets come from its URL (bench data only).
        kept = {f"IDP_{name}": f"satuid-kept:{self.database_url}:{name.lower()}"
                for name in ("SECRET_KEY", "KEY_ENCRYPTION_KEY", "PAIRWISE_SECRET")
                if self.database_url}
        env = {**os.environ, **(TEST_SETTINGS if self.test_settings else {}), **kept,
               "IDP_INSTANCE_PATH": str(self.instance), "IDP_ISSUER": self.url,
               "IDP_ENV": "development", **self.extra_env}
        env.pop("IDP_DATABASE_URL", None)
        env.pop("IDP_REDIS_URL", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(self.root), os.environ.get("PYTHONPATH")]))
        env.update(self._backend_env)
        return env

    def flask(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([str(BIN / "flask"), "--app", "wsgi", *args], cwd=self.root,
                                env=self.env(), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"flask {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def start(self) -> IdpServer:
        self.instance.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self._backend_env = self._prepare_backend()
        try:
            return self._serve()
        except BaseException:
            self.stop()  # a failed start leaves no server or database behind (no __exit__ follows)
            raise

    def _serve(self) -> IdpServer:
        self.flask("db", "upgrade")
        self.seed_output = self.flask("seed-demo")
        log = (self.instance / "gunicorn.log").open("w")
        self.process = subprocess.Popen(
            [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--workers", str(self.workers),
             "--threads", "4", "--timeout", "60", "wsgi:app"],
            cwd=self.root, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.instance / "gunicorn.log").read_text())
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not become healthy in time")

    def _prepare_backend(self) -> dict[str, str]:
        if self.backend == "sqlite":
            return {"IDP_DATABASE_URL": f"sqlite:///{self.instance / 'satuid.db'}", "IDP_REDIS_URL": ""}

        from tests.conftest import REDIS_URL, create_empty_pg_database, redis_prefix, run_id

        # Empty: ``db upgrade`` migrates it with the checkout's own revisions (another checkout's
        # history may differ from this one's).
        url = self.database_url or create_empty_pg_database(f"satuid_{self.name}_{run_id()}")
        return {"IDP_DATABASE_URL": url, "IDP_REDIS_URL": REDIS_URL, "IDP_REDIS_PREFIX": redis_prefix()}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        url = getattr(self, "_backend_env", {}).get("IDP_DATABASE_URL", "")
        if url.startswith("postgresql") and url != self.database_url:
            from tests.conftest import drop_pg_database

            drop_pg_database(url)
            self._backend_env = {}

    def __enter__(self) -> IdpServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class LogoutReceiver:
    """Records ``logout_token`` POSTs (OIDC Back-Channel Logout §2.5); answers ``status`` (200)."""

    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.status = 200
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(length).decode())
                status = receiver.status
                if status == 200:
                    with receiver._arrived:
                        receiver.tokens.extend(form.get("logout_token", []))
                        receiver._arrived.notify_all()
                self.send_response(status)
                self.send_header("Cache-Control", "no-store")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/backchannel-logout"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait_for(self, count: int = 1, timeout: float = 10) -> list[str]:
        with self._arrived:
            self._arrived.wait_for(lambda: len(self.tokens) >= count, timeout=timeout)
            return list(self.tokens)

    def __enter__(self) -> LogoutReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/nonexistent"))


@dataclass
class OwnPostgres:
    """A PostgreSQL server of the test's own on a spare port, which the test may stop and start.

    PostgreSQL will not run as root, so as root the server runs as the ``postgres`` user."""

    directory: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> OwnPostgres:
        self.port = self.port or free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            import shutil

            shutil.chown(self.directory, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.directory / "data"), "-A", "trust",
                  "-U", "postgres", "--no-sync", "-E", "UTF8")
        return self.start()

    def start(self) -> OwnPostgres:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-w", "-l",
                  str(self.directory / "log"), "-o",
                  f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off",
                  "start")
        return self

    def stop(self) -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w",
                  "stop")


@dataclass
class OwnRedis:
    """A Redis server of the test's own on a spare port. It keeps nothing on disk, unless given a
    folder (``keep_in``): then a stop saves its data there and the next start loads it, as a
    server cut off for a while and back with its data."""

    keep_in: Path | None = None
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> OwnRedis:
        self.port = self.port or free_port()
        disk = ["--save", "3600 1", "--dir", str(self.keep_in)] if self.keep_in else ["--save", ""]
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", *disk,
             "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
