"""The password policy (NIST SP 800-63B §5.1.1.2) and argon2id hashing."""

from __future__ import annotations

import pytest
from flask import Flask

from idp.identity import passwords
from idp.identity.passwords import common_passwords, is_common, password_problem


def test_common_list_is_a_real_list_with_indonesian_passwords() -> None:
    common = common_passwords()
    assert len(common) > 3000
    assert sum(len(p) >= 12 for p in common) > 1000  # the ones the length rule lets through
    for word in ("sayang", "bismillah", "indonesia", "rahasia", "katasandi"):
        assert word in common and f"{word}123" in common
    assert not any(p.startswith("#") for p in common)


@pytest.mark.parametrize("password", [
    "bismillah123456", "Indonesia2024", "RAHASIA123456", "katasandi12345",
    "sayang12345678", "qwertyuiop123", "123456789012", "passwordpassword",
    "Bismillah2024!!!", "  indonesiaraya1945  ", "aaaaaaaaaaaaaaa", "abababababab",
])
def test_common_passwords_are_refused_however_they_are_padded(password: str) -> None:
    assert is_common(password)
    assert password_problem(password) == "too_common"


@pytest.mark.parametrize("password", [
    "gunung rinjani berkabut pagi", "Kopi-Tubruk-Pagi-Hari-17", "tj8#Qm2!vZr9Lp",
    "sayang kucing oranye di atap",  # a listed word inside a longer phrase is fine
])
def test_uncommon_long_passwords_are_accepted(password: str) -> None:
    assert password_problem(password) is None


def test_length_limits() -> None:
    assert password_problem("short pass") == "too_short"      # 10 characters
    assert password_problem("x7!" * 43) == "too_long"         # 129 characters
    assert password_problem("jalan-jalan ke kota") is None


def test_password_may_not_contain_the_nik_or_the_name() -> None:
    nik = "3171065708900001"
    assert password_problem(f"saya {nik} ok", nik=nik) == "contains_nik"
    assert password_problem("SitiRahayu pergi ke pasar", name="Siti Rahayu") == "contains_name"


def test_hash_is_argon2id_and_verifies(app: Flask) -> None:
    with app.app_context():
        stored = passwords.hash_password("gunung rinjani berkabut pagi")
        assert stored.startswith("$argon2id$")
        assert passwords.verify_password(stored, "gunung rinjani berkabut pagi")
        assert not passwords.verify_password(stored, "gunung rinjani berkabut sore")
        assert not passwords.verify_password("not a hash", "x")
        assert not passwords.needs_rehash(stored)
