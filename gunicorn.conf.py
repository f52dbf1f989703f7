"""gunicorn settings read from the working directory: redacted access logs, sane timeouts, and the
directory the workers share their metrics in (prometheus_client's multiprocess mode)."""

import contextlib
import glob
import os
import shutil
import sys
import tempfile
from typing import Any

logger_class = "idp.logs.RedactingLogger"
bind = os.environ.get("IDP_BIND", "127.0.0.1:5000")
workers = int(os.environ.get("IDP_WORKERS", str((os.cpu_count() or 1) * 2)))
# Threads let a worker wait on PostgreSQL, Redis and the argon2 turns of its own process without
# idling; the benchmarks and the sizing are measured with 4.
threads = int(os.environ.get("IDP_THREADS", "4"))
timeout = 30
graceful_timeout = 20
forwarded_allow_ips = os.environ.get("IDP_FORWARDED_ALLOW_IPS", "127.0.0.1")

METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def on_starting(server: Any) -> None:
    """Before any worker exists (and so before any imports prometheus_client): a metrics directory
    that starts empty. The operator's ``PROMETHEUS_MULTIPROC_DIR`` is kept but emptied of the
    files of processes no longer running (a previous run's), so an outbox worker of this host
    sharing it keeps its counts; without one, the server makes a private directory and removes it
    when it stops."""
    path = os.environ.get(METRICS_DIR)
    if not path and "prometheus_client" in sys.modules:  # preload_app: it chose one process's values
        raise RuntimeError(f"with preload_app, set {METRICS_DIR} before gunicorn starts")
    if not path:
        # Kept on the arbiter, which outlives a reload (SIGHUP reads this file again).
        server.satuid_metrics_dir = os.environ[METRICS_DIR] = tempfile.mkdtemp(prefix="satuid-metrics-")
        return
    os.makedirs(path, exist_ok=True)
    for file in glob.glob(os.path.join(path, "*.db")):  # e.g. counter_1234.db
        if not _running(os.path.basename(file)[:-3].rpartition("_")[2]):
            with contextlib.suppress(FileNotFoundError):
                os.remove(file)


def _running(pid: str) -> bool:
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def child_exit(server: Any, worker: Any) -> None:
    """A worker's counters stay counted after it exits; only its live gauges are dropped."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    own = getattr(server, "satuid_metrics_dir", None)
    if own is not None:
        shutil.rmtree(own, ignore_errors=True)
