"""Failed-attempt throttling: per-account progressive delay and lockout, per-IP rate limit.

Counters are keyed on the NIK as typed, registered or not, so the answers never reveal whether a
NIK has an account. Failed second-factor attempts count against the same account counter.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from flask import current_app, request

from idp.store import get_store

WINDOW = 3600  # failures are counted over an hour
FREE_ATTEMPTS = 2  # failures before delays start


def _account(nik: str) -> str:
    # Hash so the store never lists NIKs in clear.
    return hashlib.sha256(nik.encode()).hexdigest()[:32]


@dataclass
class Throttle:
    locked_for: int = 0   # seconds until the account may try again (lockout)
    wait_for: int = 0     # seconds of progressive delay still to wait

    @property
    def blocked(self) -> bool:
        return self.locked_for > 0 or self.wait_for > 0


def check(nik: str) -> Throttle:
    store = get_store()
    acct = _account(nik)
    return Throttle(locked_for=store.ttl(f"lock:{acct}"), wait_for=store.ttl(f"wait:{acct}"))


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
        s = current_app.config["IDP"]
        store = get_store()
        acct = _account(self.nik)
        if self.number >= s.login_max_failures:
            store.put(f"lock:{acct}", {"at": int(time.time())}, s.login_lockout_seconds)
            store.delete(f"fail:{acct}")
            return Throttle(locked_for=s.login_lockout_seconds)
        if self.number > FREE_ATTEMPTS:
            delay = _delay(self.number)
            store.put(f"wait:{acct}", {}, delay)
            return Throttle(wait_for=delay)
        return Throttle()

    def succeeded(self) -> None:
        record_success(self.nik)


def _delay(failures: int) -> int:
    return min(2 ** (failures - FREE_ATTEMPTS), 30)


def begin(nik: str) -> Attempt:
    """Reserve an attempt for ``nik`` before its password or code is checked."""
    throttle = check(nik)
    if throttle.blocked:
        return Attempt(nik, 0, throttle)
    s = current_app.config["IDP"]
    store = get_store()
    acct = _account(nik)
    number = store.incr(f"fail:{acct}", WINDOW)
    if number > s.login_max_failures:
        # Every attempt allowed is taken by requests in flight or lost ones (a worker killed
        # mid-check never reports): lock now rather than leave the account waiting on them.
        if store.put_if_absent(f"lock:{acct}", {"at": int(time.time())}, s.login_lockout_seconds):
            store.delete(f"fail:{acct}")
        return Attempt(nik, number, Throttle(locked_for=max(1, store.ttl(f"lock:{acct}"))))
    return Attempt(nik, number, Throttle())


def record_success(nik: str) -> None:
    store = get_store()
    acct = _account(nik)
    store.delete(f"fail:{acct}")
    store.delete(f"wait:{acct}")


def unlock(nik: str) -> None:
    record_success(nik)
    get_store().delete(f"lock:{_account(nik)}")


def ip_allowed(bucket: str = "login") -> bool:
    """Fixed one-minute window per client address; the limit is IDP_IP_RATE_LIMIT."""
    limit = current_app.config["IDP"].ip_rate_limit
    window = int(time.time() // 60)
    count = get_store().incr(f"ip:{bucket}:{request.remote_addr}:{window}", 61)
    return count <= limit
