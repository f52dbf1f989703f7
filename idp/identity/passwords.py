"""Password hashing (argon2id) and the password policy (NIST SP 800-63B §5.1.1.2)."""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app

MIN_LENGTH = 12
MAX_LENGTH = 128


@cache
def _hasher(time_cost: int, memory_cost: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)


def hasher() -> PasswordHasher:
    s = current_app.config["IDP"]
    return _hasher(s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism)


def hash_password(password: str) -> str:
    return hasher().hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return hasher().verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with other parameters than today's (rehash on next login)."""
    return hasher().check_needs_rehash(stored_hash)


# A dummy hash to verify against when the NIK is unknown, so timing does not reveal registration.
@cache
def _dummy_hash(time_cost: int, memory_cost: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_cost, parallelism).hash("satuid-timing-equaliser")


def burn_time() -> None:
    s = current_app.config["IDP"]
    verify_password(_dummy_hash(s.argon2_time_cost, s.argon2_memory_cost, s.argon2_parallelism),
                    "not-the-password")


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
