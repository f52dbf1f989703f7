"""What the benchmarks share: server CPU and memory read from ``/proc``, percentiles, a checkout's
server with a synthetic population, A/B alternation and the figures table.

Server CPU is what the gunicorn master and its workers spent (utime + stime), sampled right before and
after a phase: it moves far less than throughput or latency with the rest of the machine's load (only
through contended caches and memory), so it is the figure to compare between revisions on a shared,
noisy host. The client's own CPU, and
PostgreSQL's and Redis's, are left out.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
from argon2 import PasswordHasher
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The benchmarks take the server from here: this module puts the checkout on the path first.
from tests.servers import BIN  # noqa: E402
from tests.servers import IdpServer as IdpServer  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PASSWORD = "bench mark kopi susu pagi"  # seed-demo's --accounts-password default
REDIRECT = "https://bench.example.id/cb"
SCOPES = "openid profile email offline_access"
# No login rate limit or lockout may refuse a benchmark's logins (they are all from 127.0.0.1).
METRICS_TOKEN = "bench-metrics"
BENCH_ENV = {"IDP_IP_RATE_LIMIT": "1000000000", "IDP_METRICS_TOKEN": METRICS_TOKEN}


# ---- server CPU and memory ---------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """utime + stime of one process (``/proc/<pid>/stat`` fields 14 and 15), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # the command name may hold spaces and parentheses
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from every one of its threads' ``children`` lists."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def process_tree(master: int) -> list[int]:
    """The gunicorn master and all its workers."""
    return [master, *children(master)]


def server_cpu(master: int) -> dict[int, float]:
    """CPU seconds so far of each process of the server."""
    sample: dict[int, float] = {}
    for pid in process_tree(master):
        with suppress(FileNotFoundError):  # a worker that exited between listing and reading
            sample[pid] = cpu_seconds(pid)
    return sample


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU spent between two samples; a worker that died in between takes its share with it, so
    that is an error rather than a figure too low."""
    if lost := set(before) - set(after):
        raise RuntimeError(f"server processes {sorted(lost)} exited during a measured phase")
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def services_cpu() -> dict[str, dict[int, float]]:
    """CPU seconds so far of every PostgreSQL and Redis process on the machine, by service: the
    backends serving the server's pool, and the background processes its writes wake."""
    sample: dict[str, dict[int, float]] = {"postgres": {}, "redis": {}}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(FileNotFoundError, ProcessLookupError):  # exited while being read
            name = (entry / "comm").read_text().strip()
            service = ("postgres" if name.startswith("postgres")
                       else "redis" if name.startswith("redis-server") else None)
            if service is not None:
                sample[service][int(entry.name)] = cpu_seconds(int(entry.name))
    return sample


def services_between(before: dict[str, dict[int, float]],
                     after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU each service spent between two samples (a backend that exited in between takes its
    share with it: these figures are context, not targets)."""
    return {service: sum(seconds - before[service].get(pid, 0.0) for pid, seconds in now.items())
            for service, now in after.items()}


def _status_kib(pid: int, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    return int(match.group(1)) if match else 0


def worker_rss(master: int) -> float:
    """The largest resident set (VmRSS) of the server's workers now, in MiB."""
    return max((_status_kib(p, "VmRSS") for p in children(master)), default=0) / 1024


@contextmanager
def rss_watch(master: int, every: float = 0.05) -> Iterator[list[float]]:
    """Sample ``worker_rss`` while the block runs; the list holds the largest seen (a peak such as
    argon2's 64 MiB per hash lasts a tenth of a second, so it is sampled often)."""
    peak = [worker_rss(master)]
    done = threading.Event()

    def watch() -> None:
        while not done.wait(every):
            with suppress(FileNotFoundError):
                peak[0] = max(peak[0], worker_rss(master))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield peak
    finally:
        done.set()
        watcher.join()


# ---- measured phases ---------------------------------------------------------------------------

def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between the nearest ranks."""
    ordered = sorted(samples)
    if len(ordered) == 1:
        return ordered[0]
    return statistics.quantiles(ordered, n=1000, method="inclusive")[round(q * 10) - 1]


@dataclass
class Measured:
    """Units of work done in one or more phases: their latencies, wall time, server CPU, and the
    largest worker RSS seen meanwhile; and, as context, the CPU that the load generator (this
    process), PostgreSQL and Redis spent on the same machine meanwhile."""

    units: int = 0
    cpu: float = 0.0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    rss: float = 0.0  # MiB
    client: float = 0.0
    postgres: float = 0.0
    redis: float = 0.0

    def __iadd__(self, other: Measured) -> Measured:
        self.units += other.units
        self.cpu += other.cpu
        self.elapsed += other.elapsed
        self.latencies += other.latencies
        self.rss = max(self.rss, other.rss)
        self.client += other.client
        self.postgres += other.postgres
        self.redis += other.redis
        return self

    @property
    def cpu_ms(self) -> float:
        """Server CPU per unit, in milliseconds."""
        return self.cpu / self.units * 1000

    def per_unit_ms(self, seconds: float) -> float:
        return seconds / self.units * 1000

    @property
    def machine_ms(self) -> float:
        """All the machine's CPU per unit: server, load generator, PostgreSQL and Redis."""
        return self.per_unit_ms(self.cpu + self.client + self.postgres + self.redis)

    @property
    def rate(self) -> float:
        return self.units / self.elapsed

    def p(self, q: float) -> float:
        """Latency percentile in milliseconds."""
        return percentile(self.latencies, q) * 1000

    def summary(self) -> str:
        return (f"{self.units} in {self.elapsed:.2f} s = {self.rate:.1f}/s; server CPU "
                f"{self.cpu_ms:.2f} ms each; latency p50 {self.p(50):.1f} ms  p90 {self.p(90):.1f} ms  "
                f"p99 {self.p(99):.1f} ms  max {max(self.latencies) * 1000:.1f} ms; beside the server, "
                f"CPU each of load generator {self.per_unit_ms(self.client):.2f} ms, PostgreSQL "
                f"{self.per_unit_ms(self.postgres):.2f} ms, Redis {self.per_unit_ms(self.redis):.2f} ms")


def measure(master: int, work: Callable[[], list[float]]) -> Measured:
    """Run ``work`` (which returns one latency per unit) between two samples of the server's CPU."""
    with rss_watch(master) as rss:
        services = services_cpu()
        client = time.process_time()
        before = server_cpu(master)
        started = time.perf_counter()
        latencies = work()
        elapsed = time.perf_counter() - started
        cpu = cpu_between(before, server_cpu(master))
        client = time.process_time() - client
        spent = services_between(services, services_cpu())
    return Measured(len(latencies), cpu, elapsed, latencies, rss[0], client, spent["postgres"],
                    spent["redis"])


T = TypeVar("T")


def alternate(rounds: int, subjects: Sequence[T], run: Callable[[T], None]) -> None:
    """A, B, B, A, A, B, ...: each round runs every subject once, so drifting machine noise hits all
    alike, and the order turns round every round: whichever runs first in a round measured up to
    a fifth more CPU on this machine, whatever its code (two checkouts swapped places and swapped
    that difference)."""
    for number in range(1, rounds + 1):
        for subject in (subjects if number % 2 else list(reversed(subjects))):
            print(f"round {number}/{rounds}: {subject}", file=sys.stderr, flush=True)
            run(subject)


# ---- a checkout's server -----------------------------------------------------------------------

@dataclass(frozen=True)
class Checkout:
    """A working tree of the repository; runs with this checkout's virtualenv."""

    root: Path
    label: str

    def prepare(self) -> None:
        """Compile its translations when they are missing (``.mo`` files are not kept in git)."""
        catalogs = list((self.root / "idp").rglob("translations/*/LC_MESSAGES/*.po"))
        if any(not po.with_suffix(".mo").exists() for po in catalogs):
            env = {**os.environ, "PYTHONPATH": str(self.root)}
            subprocess.run([sys.executable, "-m", "idp.i18n", "compile"], cwd=self.root, env=env,
                           check=True, capture_output=True)

    def __str__(self) -> str:
        return f"{self.label} ({self.root})"


def python(server: IdpServer, code: str, *args: str, timeout: float = 3600) -> str:
    """Run ``code`` as the server's commands run: its checkout, its environment."""
    result = subprocess.run([str(BIN / "python"), "-c", code, *args], cwd=server.root, env=server.env(),
                            capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"python -c failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


_PROBE = """
import json, idp
from idp.config import load_settings
s = load_settings()
print(json.dumps({"idp": idp.__file__, "argon2": [s.argon2_time_cost, s.argon2_memory_cost,
                                                  s.argon2_parallelism]}))
"""


@dataclass(frozen=True)
class Argon2:
    time_cost: int
    memory_kib: int
    parallelism: int

    def __str__(self) -> str:
        return f"t={self.time_cost}, m={self.memory_kib // 1024} MiB, p={self.parallelism}"

    def _hasher(self) -> tuple[PasswordHasher, str]:
        hasher = PasswordHasher(time_cost=self.time_cost, memory_cost=self.memory_kib,
                                parallelism=self.parallelism)
        return hasher, hasher.hash(PASSWORD)

    def verify_cpu(self, runs: int = 5) -> list[float]:
        """CPU seconds of one verify with these parameters, here (``time.process_time``)."""
        hasher, stored = self._hasher()
        samples = []
        for _ in range(runs):
            started = time.process_time()
            hasher.verify(stored, PASSWORD)
            samples.append(time.process_time() - started)
        return samples

    def verify_cpu_at_once(self, concurrency: int, runs: int) -> float:
        """CPU seconds per verify when ``concurrency`` threads verify at once, as a loaded server's
        do: they contend for memory bandwidth and caches, so each costs more than one alone."""
        hasher, stored = self._hasher()
        started = time.process_time()
        with ThreadPoolExecutor(concurrency) as pool:  # argon2-cffi lets go of the GIL
            list(pool.map(lambda _: hasher.verify(stored, PASSWORD), range(runs)))
        return (time.process_time() - started) / runs


def check_code(server: IdpServer) -> Argon2:
    """Make sure the server runs its checkout's ``idp`` (not the editable install's), and return
    the argon2 parameters it hashes with."""
    probe = json.loads(python(server, _PROBE).splitlines()[-1])
    expected = server.root.resolve() / "idp" / "__init__.py"
    if Path(probe["idp"]).resolve() != expected:
        raise RuntimeError(f"{server.root}: commands import idp from {probe['idp']}, not {expected}")
    assert server.process is not None
    for worker in children(server.process.pid):
        cwd = Path(os.readlink(f"/proc/{worker}/cwd")).resolve()
        environ = Path(f"/proc/{worker}/environ").read_bytes().split(b"\0")
        path = next((e[len(b"PYTHONPATH="):].decode() for e in environ if e.startswith(b"PYTHONPATH=")), "")
        if cwd != server.root.resolve() or path.split(os.pathsep)[0] != str(server.root):
            raise RuntimeError(f"worker {worker} runs in {cwd} with PYTHONPATH={path!r}")
    return Argon2(*probe["argon2"])


@contextmanager
def checkout_server(checkout: Checkout, name: str, workers: int,
                    database_url: str | None = None) -> Iterator[IdpServer]:
    """The checkout's server on PostgreSQL + Redis with production settings (argon2 cost, refresh
    grace), a fresh database unless ``database_url`` names one to keep."""
    with tempfile.TemporaryDirectory(prefix=f"satuid-{name}-") as tmp, IdpServer(
            Path(tmp), backend="postgres", workers=workers, name=name, extra_env=BENCH_ENV,
            root=checkout.root, database_url=database_url, test_settings=False) as server:
        yield server


def register_client(server: IdpServer) -> tuple[str, str]:
    """A confidential portal for the benchmark; a new id each run, so a kept database takes it too."""
    client_id = f"bench-{secrets.token_hex(4)}"
    out = json.loads(server.flask("clients", "create", "--name", "Bench", "--client-id", client_id,
                                  "--redirect-uri", REDIRECT, "--scope", SCOPES))
    return client_id, str(out["client_secret"])


# ---- a synthetic population --------------------------------------------------------------------

def nik_of(index: int) -> str:
    """The NIK of synthetic resident ``index`` (who has an account when index < the accounts seeded)."""
    from idp.identity.synthetic import nik_of

    return nik_of(index)


# A checkout whose seed-demo cannot make accounts gets them this way: one hash for all (each its own
# would take hours at production cost), inserted block by block where missing.
_ACCOUNTS = """
import sys
from sqlalchemy import insert, select
from idp import create_app
from idp.db import get_engine
from idp.identity import synthetic
from idp.identity.passwords import hash_password
from idp.models import Citizen, Resident

count, password = int(sys.argv[1]), sys.argv[2]
if hasattr(synthetic, "nik_of"):
    niks = [synthetic.nik_of(i) for i in range(count)]
else:
    niks = [row["nik"] for block in synthetic.residents(count) for row in block]
with create_app().app_context():
    engine = get_engine()
    with engine.connect() as conn:
        existing = set(conn.scalars(select(Citizen.nik)))
    missing = [nik for nik in niks if nik not in existing]
    stored = hash_password(password)
    for start in range(0, len(missing), 10_000):
        block = missing[start:start + 10_000]
        with engine.begin() as conn:
            names = {nik: name for nik, name in conn.execute(
                select(Resident.nik, Resident.full_name).where(Resident.nik.in_(block)))}
            conn.execute(insert(Citizen), [{"nik": nik, "full_name": names[nik], "password_hash": stored}
                                           for nik in block])
"""


def population(server: IdpServer) -> tuple[int, int]:
    """(registry residents, open accounts) in the server's database."""
    engine = sa.create_engine(server.env()["IDP_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            residents = conn.execute(sa.text("SELECT count(*) FROM registry_resident")).scalar_one()
            accounts = conn.execute(
                sa.text("SELECT count(*) FROM citizen WHERE closed_at IS NULL")).scalar_one()
    finally:
        engine.dispose()
    return int(residents), int(accounts)


def seed_population(server: IdpServer, residents: int, accounts: int) -> None:
    """The first ``residents`` synthetic residents, the first ``accounts`` of them with an account
    (password ``PASSWORD``); what is there already is kept, so a seeded database starts at once."""
    have = population(server)
    if have[0] >= residents and have[1] >= accounts:
        return
    print(f"seeding {server.root}: {residents} residents, {accounts} accounts (have {have})",
          file=sys.stderr, flush=True)
    if "--accounts" in server.flask("seed-demo", "--help"):
        server.flask("seed-demo", "--residents", str(residents), "--accounts", str(accounts),
                     "--accounts-password", PASSWORD, timeout=6 * 3600)
        return
    server.flask("seed-demo", "--residents", str(residents), timeout=6 * 3600)
    python(server, _ACCOUNTS, str(accounts), PASSWORD, timeout=6 * 3600)


def ensure_database(name: str) -> str:
    """The URL of database ``name`` on the shared PostgreSQL, created empty if it is not there."""
    from tests.conftest import PG_URL

    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"),
                            {"n": name}).first() is None:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def hashing_cpu(server: IdpServer) -> float | None:
    """CPU seconds the server's processes have spent in argon2id so far, from its own metric
    (``satuid_password_hashing_cpu_seconds_total``); None for a checkout that does not count it."""
    request = urllib.request.Request(server.url + "/metrics",
                                     headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as e:
        if e.code == 404:  # a checkout from before /metrics
            return None
        raise
    found = [sample.value for family in text_string_to_metric_families(text)
             for sample in family.samples if sample.name == "satuid_password_hashing_cpu_seconds_total"]
    return sum(found) if found else None


# ---- the figures table -------------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    limit: float
    text: str  # as the table shows it, e.g. "≤ 4 ms"

    def met(self, value: float) -> bool:
        return value <= self.limit


@dataclass(frozen=True)
class Row:
    figure: str
    unit: str  # "ms", "MiB", "%", "×" or "/s"
    values: list[float | None]  # one per checkout
    target: Target | None = None


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "×":
        return f"{value:.2f}×"
    digits = 2 if abs(value) < 10 else 1
    return f"{value:.{digits}f} {unit}"


def table(rows: Sequence[Row], labels: Sequence[str]) -> str:
    """The figures, one column per checkout, then this/other, the target and whether it is met."""
    header = ["figure", *labels]
    if len(labels) == 2:
        header.append("this/other")
    header += ["target", "met?"]
    lines: list[list[str]] = []
    for row in rows:
        cells = [row.figure, *(_number(v, row.unit) for v in row.values)]
        if len(labels) == 2:
            this, other = row.values
            # A ratio of a figure that can be zero or below (CPU beyond the verify) means nothing.
            cells.append(f"{this / other:.2f}" if this and other and this > 0 and other > 0 else "-")
        mine = row.values[0]
        cells.append(row.target.text if row.target else "")
        cells.append("" if row.target is None or mine is None
                     else ("yes" if row.target.met(mine) else "NO"))
        lines.append(cells)
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]

    def render(cells: Sequence[str]) -> str:
        first, *rest = cells
        return "  ".join([first.ljust(widths[0]),
                          *(c.rjust(w) for c, w in zip(rest, widths[1:], strict=True))]).rstrip()

    rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([render(header), rule, *(render(cells) for cells in lines)])

