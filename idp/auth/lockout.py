"""Failed-attempt throttling: per-account progressive delay and lockout, per-IP rate limit.

Counters are keyed on the NIK as typed, registered or not, so the answers never reveal whether a
NIK has an account. Failed second-factor attempts count against the same account counter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from flask import current_app, request

from idp import state
from idp.config import Settings
from idp.state import Stamp

FREE_ATTEMPTS = 2  # failures before delays start


def _account(nik: str) -> str:
    return state.digest(nik)  # the store never lists NIKs in clear


def _settings() -> Settings:
    settings: Settings = current_app.config["IDP"]
    return settings


@dataclass
class Throttle:
    locked_for: int = 0   # seconds until the account may try again (lockout)
    wait_for: int = 0     # seconds of progressive delay still to wait

    @property
    def blocked(self) -> bool:
        return self.locked_for > 0 or self.wait_for > 0


def check(nik: str) -> Throttle:
    acct = _account(nik)
    return Throttle(locked_for=state.login_locks.remaining(acct),
                    wait_for=state.login_waits.remaining(acct))


@dataclass
class Attempt:
    """One password or code check, counted as a failure before it runs and forgiven on success.

    Counting first closes the race in which many requests sent at once all pass ``check`` before
    any failure is recorded: each takes a number, and only the first ``login_max_failures`` in a
    window get their password or code checked at all.
    """

    nik: str
    number: int                       # this attempt's place among the window's failures
    throttle: Throttle                # blocked: refuse without checking anything

    @property
    def blocked(self) -> bool:
        return self.throttle.blocked

    def failed(self) -> Throttle:
        """The check failed: after a few failures make the next wait (2, 4, 8... s), then lock."""
        s = _settings()
        acct = _account(self.nik)
        if self.number >= s.login_max_failures:
            state.login_locks.put(Stamp(at=int(time.time())), acct)
            state.login_failures.delete(acct)
            return Throttle(locked_for=s.login_lockout_seconds)
        if self.number > FREE_ATTEMPTS:
            delay = _delay(self.number)
            state.login_waits.put(Stamp(at=int(time.time())), acct, ttl=delay)
            return Throttle(wait_for=delay)
        return Throttle()

    def succeeded(self) -> None:
        record_success(self.nik)


def _delay(failures: int) -> int:
    return min(1 << max(0, failures - FREE_ATTEMPTS), 30)


def begin(nik: str) -> Attempt:
    """Reserve an attempt for ``nik`` before its password or code is checked."""
    throttle = check(nik)
    if throttle.blocked:
        return Attempt(nik, 0, throttle)
    s = _settings()
    acct = _account(nik)
    number = state.login_failures.incr(acct)
    if number > s.login_max_failures:
        # Every attempt allowed is taken by requests in flight or lost ones (a worker killed
        # mid-check never reports): lock now rather than leave the account waiting on them.
        if state.login_locks.put_if_absent(Stamp(at=int(time.time())), acct):
            state.login_failures.delete(acct)
        return Attempt(nik, number, Throttle(locked_for=max(1, state.login_locks.remaining(acct))))
    return Attempt(nik, number, Throttle())


def record_success(nik: str) -> None:
    acct = _account(nik)
    state.login_failures.delete(acct)
    state.login_waits.delete(acct)


def unlock(nik: str) -> None:
    record_success(nik)
    state.login_locks.delete(_account(nik))


def ip_allowed(bucket: str = "login") -> bool:
    """Fixed one-minute window per client address; the limit is IDP_IP_RATE_LIMIT."""
    window = int(time.time() // 60)
    count = state.network_attempts.incr(bucket, request.remote_addr or "", str(window))
    return count <= _settings().ip_rate_limit
