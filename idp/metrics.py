"""Prometheus metrics: every counter and histogram SatuID keeps, and what a scrape of them returns.

Under gunicorn each process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
(``gunicorn.conf.py`` prepares the directory when the server starts) and a scrape, whichever worker
answers it, adds up the files of every process, those of workers that have exited included, so a
counter never goes back when a worker is replaced. Without that variable (the Flask test client,
``flask`` commands) the values live in the process itself. prometheus_client chooses between the
two when it is first imported, so the variable must be set before that (gunicorn's ``on_starting``).

A label value is a time series kept for ever: labels take fixed lists, names from our own code
(endpoints, audit events) or registered portals, never a value a request carried.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal, get_args

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: This process's metrics; a scrape under gunicorn reads every process's files instead.
REGISTRY = CollectorRegistry()

LoginFailure = Literal["bad_password", "unknown_account", "throttled", "rate_limited", "invalid"]
Factor = Literal["password", "second_factor", "enrolment", "staff"]
AuthorizationOutcome = Literal["code", "interaction", "error", "unavailable"]
GrantType = Literal["authorization_code", "refresh_token"]
HashOperation = Literal["hash", "verify"]
LogoutResult = Literal["delivered", "retry", "failed"]
SendResult = Literal["sent", "retrying", "failed", "late"]
CHANNELS = ("email", "sms")

LOGINS = Counter("satuid_logins", "Password logins that started or renewed an SSO session.",
                 registry=REGISTRY)
LOGIN_FAILURES = Counter(
    "satuid_login_failures",
    "Login attempts refused: wrong password, no open account with that NIK, attempts paused (a "
    "delay or a lockout), network over its rate limit, malformed form.", ["reason"],
    registry=REGISTRY)
LOCKOUTS = Counter("satuid_lockouts", "Locks set after too many failed checks, by the secret guessed.",
                   ["factor"], registry=REGISTRY)
AUTHORIZATIONS = Counter(
    "satuid_authorizations",
    "Answers of /authorize and its resumption: a code issued, a page for the citizen (login, "
    "step-up, consent, in-person check), an error, or unavailable (PostgreSQL or Redis down).",
    ["outcome"], registry=REGISTRY)
TOKENS_ISSUED = Counter("satuid_tokens_issued", "Token responses of the token endpoint, by grant type.",
                        ["grant_type"], registry=REGISTRY)
BACKCHANNEL_LOGOUTS = Counter(
    "satuid_backchannel_logouts",
    "Back-channel logout deliveries: delivered, to be retried, or given up on.", ["result"],
    registry=REGISTRY)
OUTBOX_SENDS = Counter(
    "satuid_outbox_sends",
    "Outbox messages handed to the mail server or SMS gateway, by outcome (late: the lease ran out "
    "before the outcome was written).", ["channel", "result"], registry=REGISTRY)
AUDIT_EVENTS = Counter("satuid_audit_events", "Audit events written, by event.", ["event"],
                       registry=REGISTRY)
PASSWORD_HASHING = Counter(
    "satuid_password_hashing_cpu_seconds",
    "CPU seconds spent in argon2id: hashing new passwords, and verifying (the dummy verify that "
    "answers an unknown NIK in the same time included). Measured on the calling thread, which runs "
    "all of it with IDP_ARGON2_PARALLELISM=1 (the default); with more lanes argon2 runs them on "
    "threads of its own, which this does not see. Beside the process CPU it tells how much of a "
    "login's cost is the hash.", ["operation"], registry=REGISTRY)
SERVICE_RATINGS = Histogram(
    "satuid_service_rating_score",
    "Citizens' ratings of a portal (1 to 5): _count ratings, _sum / _count their average.",
    ["client_id"], buckets=(1, 2, 3, 4, 5), registry=REGISTRY)
REQUEST_SECONDS = Histogram(
    "satuid_http_request_duration_seconds",
    "Time from the start of a request to its response, commit included, by Flask endpoint and "
    "status class.", ["endpoint", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY)


def _from_zero(counter: Counter, *label_values: tuple[str, ...]) -> None:
    """Make every series of a fixed label set exist at 0, so that rate() sees its first event."""
    for labels in itertools.product(*label_values):
        counter.labels(*labels)


_from_zero(LOGIN_FAILURES, get_args(LoginFailure))
_from_zero(LOCKOUTS, get_args(Factor))
_from_zero(AUTHORIZATIONS, get_args(AuthorizationOutcome))
_from_zero(TOKENS_ISSUED, get_args(GrantType))
_from_zero(PASSWORD_HASHING, get_args(HashOperation))
_from_zero(BACKCHANNEL_LOGOUTS, get_args(LogoutResult))
_from_zero(OUTBOX_SENDS, CHANNELS, get_args(SendResult))


def login_failed(reason: LoginFailure) -> None:
    LOGIN_FAILURES.labels(reason).inc()


def locked_out(factor: Factor) -> None:
    LOCKOUTS.labels(factor).inc()


def authorization(outcome: AuthorizationOutcome) -> None:
    AUTHORIZATIONS.labels(outcome).inc()


def token_issued(grant_type: GrantType) -> None:
    TOKENS_ISSUED.labels(grant_type).inc()


@contextmanager
def password_hashing(operation: HashOperation) -> Iterator[None]:
    """Count the CPU of this thread inside the block as argon2id work."""
    started = time.thread_time()
    try:
        yield
    finally:
        PASSWORD_HASHING.labels(operation).inc(time.thread_time() - started)


def backchannel_logout(result: str) -> None:
    """``result``: the delivery's new status (delivered, retry, failed)."""
    BACKCHANNEL_LOGOUTS.labels(result).inc()


def outbox_sent(channel: str, result: str) -> None:
    """``channel``: email or sms; ``result``: the send's outcome (``SendResult``)."""
    OUTBOX_SENDS.labels(channel, result).inc()


def audit_events(n: int, event: str) -> None:
    """``n`` audit rows of ``event`` were written (called by the audit log as it writes them)."""
    AUDIT_EVENTS.labels(event).inc(n)


def service_rated(client_id: str, score: int) -> None:
    """A rating was stored; ``client_id`` is a registered portal the citizen used."""
    SERVICE_RATINGS.labels(client_id).observe(score)


# ---- request latency -----------------------------------------------------------------------------

def init_app(app: Flask) -> None:
    """Time every request. Call it before the unit of work registers its hooks: Flask runs
    ``after_request`` functions in reverse order, so the time then includes the commit."""
    app.before_request(_start)
    app.after_request(_observe)


def _start() -> None:
    g.metrics_started = time.perf_counter()


def _observe(response: Response) -> Response:
    started: float | None = g.pop("metrics_started", None)
    if started is not None:  # once, even when an error answer runs the hooks again
        # No endpoint: an unknown path or method, one series for all of them.
        endpoint = request.endpoint or "unmatched"
        REQUEST_SECONDS.labels(endpoint, f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started)
    return response


# ---- exposition ----------------------------------------------------------------------------------

CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class AuditLogState:
    """Where the audit log stands, for the alerts that watch its checkpointer and partitions."""

    checkpoint_size: int | None = None  # events in the newest signed checkpoint; None before one
    checkpoint_at: float | None = None  # its time (Unix seconds)
    partitions_end: float | None = None  # where the last monthly partition ends (PostgreSQL)
    default_partition_rows: float | None = None  # events in audit_event_default (PostgreSQL)


class DatabaseGauges:
    """Gauges read from the database at scrape time (the caller reads them through an index, the
    catalog or PostgreSQL's statistics, never by scanning a large table), and whether it could."""

    def __init__(self, outbox: Mapping[str, int], logouts: Mapping[str, int],
                 citizens_estimate: float | None, audit_log: AuditLogState = AuditLogState(),
                 reachable: bool = True) -> None:
        self.outbox = outbox
        self.logouts = logouts
        self.citizens_estimate = citizens_estimate
        self.audit_log = audit_log
        self.reachable = reachable

    @classmethod
    def unreachable(cls) -> DatabaseGauges:
        return cls({}, {}, None, reachable=False)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "satuid_database_up",
            "1 when this scrape could read the database's gauges, 0 when the database was "
            "unreachable or its pool exhausted (the gauges read from it are missing then).",
            value=1 if self.reachable else 0)
        if not self.reachable:
            return
        outbox = GaugeMetricFamily(
            "satuid_outbox_messages",
            "Outbox messages waiting (pending), being sent (sending) or given up on (failed); "
            "sent ones are counted by satuid_outbox_sends_total.", labels=["status"])
        for status, count in self.outbox.items():
            outbox.add_metric([status], count)
        yield outbox
        logouts = GaugeMetricFamily(
            "satuid_backchannel_logouts_waiting",
            "Back-channel logout tokens waiting for a first attempt (pending) or a retry (retry), "
            "or given up on (failed); delivered ones are counted by "
            "satuid_backchannel_logouts_total.", labels=["status"])
        for status, count in self.logouts.items():
            logouts.add_metric([status], count)
        yield logouts
        if self.citizens_estimate is not None:
            yield GaugeMetricFamily(
                "satuid_citizens_estimate",
                "Citizen accounts as PostgreSQL's statistics estimate them (pg_class.reltuples, "
                "refreshed by autovacuum and ANALYZE).", value=self.citizens_estimate)
        log = self.audit_log
        if log.checkpoint_size is not None and log.checkpoint_at is not None:
            yield GaugeMetricFamily(
                "satuid_audit_checkpoint_tree_size",
                "Audit events in the newest signed checkpoint.", value=log.checkpoint_size)
            yield GaugeMetricFamily(
                "satuid_audit_checkpoint_timestamp_seconds",
                "When the newest checkpoint was signed. The checkpointer signs one whenever new "
                "events wait, so while satuid_audit_events_total grows this stays recent.",
                value=log.checkpoint_at)
        if log.partitions_end is not None:
            yield GaugeMetricFamily(
                "satuid_audit_partitions_end_timestamp_seconds",
                "Where the last monthly partition of audit_event ends: events from then on land in "
                "audit_event_default (flask audit partitions makes the months ahead).",
                value=log.partitions_end)
        if log.default_partition_rows is not None:
            yield GaugeMetricFamily(
                "satuid_audit_default_partition_rows",
                "Audit events in audit_event_default, as PostgreSQL's statistics count them (the "
                "larger of n_live_tup and reltuples): above 0, a month's partition was missing "
                "when they were written.",
                value=log.default_partition_rows)


class StoreGauge:
    """Whether this scrape reached the short-lived store (Redis, or every master of a Redis
    Cluster, ready), read with one PING a scrape (a cluster-info per master on a cluster)."""

    def __init__(self, up: bool) -> None:
        self.up = up

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "satuid_store_up",
            "1 when this scrape reached Redis (on a cluster: every master, with the cluster whole), "
            "0 when it did not: SSO sessions, codes and logins fail meanwhile. Only with Redis "
            "configured; the embedded default's store is the database.", value=1 if self.up else 0)


def multiprocess_dir() -> str | None:
    """The directory the processes of this server share their values in (under gunicorn)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def exposition(*collectors: Collector) -> bytes:
    """The text a scrape returns: every process's metrics under gunicorn (this process's
    otherwise), then ``collectors``, read now."""
    registry = CollectorRegistry()
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # untyped __init__
    else:
        registry.register(REGISTRY)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
