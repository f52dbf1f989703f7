"""Failed-attempt throttling: progressive delay and lockout per account, rate limit per network.

Passwords and second factors are counted apart (NIST SP 800-63B §5.2.2): a correct password must
not wipe the count of wrong codes, or whoever holds the password could guess codes for ever by
logging in again between guesses.

- Password failures are keyed on the NIK as typed, registered or not, so the answers never reveal
  whether a NIK has an account. A correct password clears them; a lockout starts a fresh count.
- Second-factor failures are keyed on the citizen and kept for a day. Only a correct second factor
  clears them. Past the limit each attempt gets one check when a lock ends, and a failure locks again
  twice as long (up to a day), so guessing never gets more than a few tries an hour while the owner,
  typing the right code after a lock, gets in.
- Adding an authenticator app counts its wrong first codes apart (a phone with a wrong clock must
  not lock the citizen's login).
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from flask import current_app, request

from idp import metrics, state
from idp.config import Settings
from idp.state import Counter, Record, Stamp

FREE_ATTEMPTS = 2  # failures before delays start
MAX_LOCK_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Guard:
    """Where one kind of secret keeps its failures, delays and locks."""

    factor: metrics.Factor  # what the lockouts metric calls this secret
    failures: Counter
    waits: Record[Stamp]
    locks: Record[Stamp]
    escalating: bool  # keep counting across lockouts (second factors) or start afresh (passwords)


PASSWORDS = Guard("password", state.login_failures, state.login_waits, state.login_locks, escalating=False)
SECOND_FACTORS = Guard("second_factor", state.factor_failures, state.factor_waits, state.factor_locks,
                       escalating=True)
ENROLMENTS = Guard("enrolment", state.enrolment_failures, state.enrolment_waits, state.enrolment_locks,
                   escalating=False)


#: Helpdesk officers: password then authenticator code, counted together per officer.
STAFF = Guard("staff", state.staff_failures, state.staff_waits, state.staff_locks, escalating=True)


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


def _check(guard: Guard, key: str) -> Throttle:
    locked_for, wait_for = state.remaining_together((guard.locks, guard.waits), key)
    return Throttle(locked_for=locked_for, wait_for=wait_for)


def check(nik: str) -> Throttle:
    return _check(PASSWORDS, state.digest(nik))


def check_second_factor(citizen_id: str) -> Throttle:
    return _check(SECOND_FACTORS, citizen_id)


@dataclass
class Attempt:
    """One password or code check, counted as a failure before it runs and forgiven on success.

    Counting first closes the race in which many requests sent at once all pass ``check`` before
    any failure is recorded: each takes a number, and only the first ``login_max_failures`` in a
    window get their password or code checked at all.
    """

    guard: Guard
    key: str
    number: int                       # this attempt's place among the window's failures
    throttle: Throttle                # blocked: refuse without checking anything

    @property
    def blocked(self) -> bool:
        return self.throttle.blocked

    def failed(self) -> Throttle:
        """The check failed: after a few failures make the next wait (2, 4, 8... s), then lock."""
        limit = _settings().login_max_failures
        if self.number >= limit:
            seconds = _lock_seconds(self.guard, self.number - limit)
            self.guard.locks.put(Stamp(at=int(time.time())), self.key, ttl=seconds)
            metrics.locked_out(self.guard.factor)
            if not self.guard.escalating:
                self.guard.failures.delete(self.key)
            return Throttle(locked_for=seconds)
        if self.number > FREE_ATTEMPTS:
            delay = _delay(self.number)
            self.guard.waits.put(Stamp(at=int(time.time())), self.key, ttl=delay)
            return Throttle(wait_for=delay)
        return Throttle()

    def succeeded(self) -> None:
        guard = self.guard
        # With escalation, the lock set for this very check goes too.
        state.delete_together((guard.failures, guard.waits, guard.locks) if guard.escalating
                              else (guard.failures, guard.waits), self.key)


def _delay(failures: int) -> int:
    return min(1 << max(0, failures - FREE_ATTEMPTS), 30)


def _lock_seconds(guard: Guard, beyond: int) -> int:
    base = _settings().login_lockout_seconds
    if not guard.escalating:
        return base
    return min(base << min(beyond, 16), MAX_LOCK_SECONDS)


def _begin(guard: Guard, key: str) -> Attempt:
    throttle = _check(guard, key)
    if throttle.blocked:
        return Attempt(guard, key, 0, throttle)
    number = guard.failures.incr(key)
    limit = _settings().login_max_failures
    if number > limit and guard.escalating:
        # Past the limit, the lock a failure would bring is set before the check: of the attempts
        # after a lock ends, only the one that sets it gets its code checked.
        if guard.locks.put_if_absent(Stamp(at=int(time.time())), key,
                                     ttl=_lock_seconds(guard, number - limit)):
            return Attempt(guard, key, number, Throttle())
        return Attempt(guard, key, number, Throttle(locked_for=max(1, guard.locks.remaining(key))))
    if number > limit:
        # Every attempt allowed is taken by requests in flight or lost ones (a worker killed
        # mid-check never reports): lock now rather than leave the account waiting on them.
        if guard.locks.put_if_absent(Stamp(at=int(time.time())), key,
                                     ttl=_lock_seconds(guard, number - limit)) \
                and not guard.escalating:
            guard.failures.delete(key)
        return Attempt(guard, key, number, Throttle(locked_for=max(1, guard.locks.remaining(key))))
    return Attempt(guard, key, number, Throttle())


def begin(nik: str, device: str | None = None) -> Attempt:
    """Reserve a password attempt for ``nik`` before the password is checked. A browser the citizen
    logged in from before (``device``, from its device cookie) has a count and a lock of its own."""
    key = state.digest(nik)
    return _begin(PASSWORDS, f"{key}:{device}" if device else key)


def begin_second_factor(citizen_id: str) -> Attempt:
    """Reserve a second-factor attempt for the citizen before the code or passkey is checked."""
    return _begin(SECOND_FACTORS, citizen_id)


def begin_enrolment(citizen_id: str) -> Attempt:
    """Reserve an attempt at confirming a new authenticator app with its first code."""
    return _begin(ENROLMENTS, citizen_id)


def begin_staff(email: str) -> Attempt:
    """Reserve a helpdesk sign-in attempt (password or code) for this officer's address."""
    return _begin(STAFF, state.digest(email.strip().lower()))


def unlock(nik: str) -> None:
    """A password reset: the password's failures and lock are over (second factors' are not)."""
    state.delete_together((PASSWORDS.failures, PASSWORDS.waits, PASSWORDS.locks), state.digest(nik))


def unlock_second_factors(citizen_id: str) -> None:
    """A helpdesk unlock: the second factors' failures and lock are over too."""
    for guard in (SECOND_FACTORS, ENROLMENTS):
        state.delete_together((guard.failures, guard.waits, guard.locks), citizen_id)


def ip_allowed(bucket: str = "login", limit: int | None = None) -> bool:
    """Fixed one-minute window per client network and bucket; the limit is ``limit``, or
    IDP_IP_RATE_LIMIT. An IPv6 client is counted by its /64, the least one subscriber is given:
    counted by address, it could take a new one for every attempt."""
    window = int(time.time() // 60)
    count = state.network_attempts.incr(bucket, state.digest(network_of(request.remote_addr)),
                                        str(window))
    return count <= (limit if limit is not None else _settings().ip_rate_limit)


def network_of(address: str | None) -> str:
    """The address itself for IPv4, its /64 for IPv6."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or ""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:  # an IPv4 client on a dual-stack socket
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)
