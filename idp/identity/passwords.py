"""Password hashing (argon2id) and the password policy (NIST SP 800-63B §5.1.1.2).

Each hash or verify fills ``IDP_ARGON2_MEMORY_COST`` of memory while it runs, so a process runs at
most ``IDP_ARGON2_CONCURRENCY`` of them at once: a burst of logins queues for the slots instead of
growing every worker by a block per thread. Whoever waits longer than ``IDP_ARGON2_WAIT_SECONDS``
gets ``errors.Busy`` (a 503 page), not an answer about the password.
"""

from __future__ import annotations

import contextlib
import os
import string
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app

from idp import metrics
from idp.config import Settings
from idp.errors import Busy

MIN_LENGTH = 12
MAX_LENGTH = 128


@cache
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def _settings() -> Settings:
    settings: Settings = current_app.config["IDP"]
    return settings


def _current_hasher() -> PasswordHasher:
    s = _settings()
    return _hasher(s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism)


#: The slots of each process, made on first use there: keyed by process id, so a process forked
#: from one that had hashed (a preloaded app) never shares its parent's count.
_slots: dict[tuple[int, int], threading.BoundedSemaphore] = {}


def _slots_of_this_process(size: int) -> threading.BoundedSemaphore:
    key = (os.getpid(), size)
    slots = _slots.get(key)
    if slots is None:
        # setdefault is atomic: threads racing here all get the one semaphore stored first.
        slots = _slots.setdefault(key, threading.BoundedSemaphore(size))
    return slots


#: The hasher of the slot this thread holds through ``slot_held``, if any.
_held = threading.local()


@contextlib.contextmanager
def _slot() -> Iterator[PasswordHasher]:
    """Hold one of this process's argon2 slots while hashing with today's parameters (the one this
    thread holds already, inside ``slot_held``)."""
    held: PasswordHasher | None = getattr(_held, "hasher", None)
    if held is not None:
        yield held
        return
    s = _settings()
    slots = _slots_of_this_process(s.argon2_concurrency)
    if not slots.acquire(timeout=s.argon2_wait_seconds):
        raise Busy(f"no argon2 slot free within {s.argon2_wait_seconds} s")
    try:
        yield _current_hasher()
    finally:
        slots.release()


@contextlib.contextmanager
def slot_held() -> Iterator[None]:
    """Take a slot for the whole block, before the attempt is counted (``lockout.begin``): a busy
    answer (``Busy``) then comes before anything is counted, and costs the citizen no attempt.
    The checks inside the block use this slot."""
    with _slot() as hasher:
        _held.hasher = hasher
        try:
            yield
        finally:
            _held.hasher = None


def hash_password(password: str) -> str:
    with _slot() as hasher, metrics.password_hashing("hash"):
        return hasher.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        with _slot() as hasher, metrics.password_hashing("verify"):
            return hasher.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than today's (rehash on next login)."""
    return _current_hasher().check_needs_rehash(stored_hash)


# A dummy hash to verify against when the NIK is unknown, so timing does not reveal registration.
@cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash("satuid-timing-equaliser")


def burn_time() -> None:
    """The cost of a real check, queued for the same slots: neither the time taken nor a busy
    answer tells an unknown NIK from a registered one."""
    with _slot() as hasher:
        dummy = _dummy_hash(hasher)  # made once per process: not a verify
        with metrics.password_hashing("verify"), contextlib.suppress(VerifyMismatchError):
            hasher.verify(dummy, "not-the-password")


@cache
def common_passwords() -> frozenset[str]:
    """The refused list (``common_passwords.txt``, one a line, ``#`` starts a comment line)."""
    path = Path(__file__).with_name("common_passwords.txt")
    lines = (line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


_PADDING = string.digits + string.punctuation + " "


def is_common(password: str) -> bool:
    """A listed password, or one padded with digits and symbols ("Bismillah2024!!!")."""
    lowered = password.lower()
    common = common_passwords()
    return (lowered in common or lowered.rstrip(_PADDING) in common
            or lowered.strip(_PADDING) in common or len(set(lowered)) < 4)


def password_problem(password: str, *, nik: str | None = None, name: str | None = None) -> str | None:
    """Return why a new password is refused (a message id for the form), or None when acceptable."""
    if len(password) < MIN_LENGTH:
        return "too_short"
    if len(password) > MAX_LENGTH:
        return "too_long"
    lowered = password.lower()
    if is_common(password):
        return "too_common"
    if nik and nik in password:
        return "contains_nik"
    if name and len(name) >= 4 and name.lower().replace(" ", "") in lowered.replace(" ", ""):
        return "contains_name"
    return None
