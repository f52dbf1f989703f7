"""The password policy (NIST SP 800-63B §5.1.1.2) and argon2id hashing."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from argon2 import PasswordHasher
from flask import Flask

from idp.identity import passwords
from idp.identity.passwords import common_passwords, is_common, password_problem
from tests.conftest import AuthActions, Factory, make_app
from tests.test_login import reset_link

PHRASE = "gunung rinjani berkabut pagi"


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


# ---- how many hashes and verifies a process runs at once -----------------------------------------

@pytest.fixture
def app_with(backend: dict[str, str]) -> Iterator[Callable[..., Flask]]:
    """Apps on this backend with some ``IDP_*`` settings changed: ``app_with(ARGON2_CONCURRENCY=2)``."""
    made: list[Flask] = []

    def make(**settings: int) -> Flask:
        app = make_app({**backend, **{f"IDP_{name}": str(value) for name, value in settings.items()}})
        made.append(app)
        return app

    yield make
    for app in made:
        app.extensions["idp.engine"].dispose()


class HasherWatch:
    """Counts how many of argon2-cffi's ``hash`` and ``verify`` calls run at the same moment; each
    call lingers a little first, so that threads which could overlap do."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, linger: float = 0.05) -> None:
        self.calls = self.inside = self.most = 0
        self.linger = linger
        self._lock = threading.Lock()
        for name in ("hash", "verify"):
            monkeypatch.setattr(PasswordHasher, name, self._watched(getattr(PasswordHasher, name)))

    def _watched(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def watched(hasher: PasswordHasher, *args: Any) -> Any:
            with self._lock:
                self.calls += 1
                self.inside += 1
                self.most = max(self.most, self.inside)
            try:
                time.sleep(self.linger)
                return original(hasher, *args)
            finally:
                with self._lock:
                    self.inside -= 1

        return watched


def at_once(app: Flask, work: Sequence[Callable[[], object]]) -> list[object]:
    """Each piece of work in its own thread (as gunicorn's threads run requests), all let go together."""
    start = threading.Barrier(len(work))

    def run(piece: Callable[[], object]) -> object:
        with app.app_context():
            start.wait(timeout=10)
            return piece()

    with ThreadPoolExecutor(len(work)) as pool:
        return list(pool.map(run, work))


def test_a_process_hashes_one_password_at_a_time_by_default(
        app_with: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_with()
    assert app.config["IDP"].argon2_concurrency == 1
    with app.app_context():
        stored = passwords.hash_password(PHRASE)
    watch = HasherWatch(monkeypatch)
    # Logins with the right and a wrong password, an unknown NIK's dummy check, a new password.
    work: list[Callable[[], object]] = [
        lambda: passwords.verify_password(stored, PHRASE),
        lambda: passwords.verify_password(stored, "gunung rinjani berkabut sore"),
        passwords.burn_time,
        lambda: passwords.hash_password("sayang kucing oranye di atap"),
    ] * 2
    results = at_once(app, work)
    assert watch.calls >= len(work) and watch.most == 1
    assert results[0] is True and results[1] is False


def test_the_cap_follows_the_setting(app_with: Callable[..., Flask],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_with(ARGON2_CONCURRENCY=2)
    with app.app_context():
        stored = passwords.hash_password(PHRASE)
    watch = HasherWatch(monkeypatch, linger=0.2)
    results = at_once(app, [lambda: passwords.verify_password(stored, PHRASE)] * 6)
    assert results == [True] * 6
    assert watch.most == 2


def test_a_login_that_cannot_get_a_slot_in_time_gets_the_busy_page(
        app_with: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch) -> None:
    app = app_with(ARGON2_WAIT_SECONDS=0)
    factory = Factory(app)
    citizen, stranger = factory.citizen(), factory.resident()
    # Another thread of the worker is hashing a new password and holds the only slot.
    hashing, finish = threading.Event(), threading.Event()
    original = PasswordHasher.hash

    def slow_hash(hasher: PasswordHasher, password: str | bytes, **kwargs: Any) -> str:
        hashing.set()
        finish.wait(10)
        return original(hasher, password, **kwargs)

    monkeypatch.setattr(PasswordHasher, "hash", slow_hash)

    def change_password() -> None:
        with app.app_context():
            passwords.hash_password("sayang kucing oranye di atap")

    other = threading.Thread(target=change_password)
    other.start()
    auth = AuthActions(app.test_client())
    try:
        assert hashing.wait(10)
        # A registered NIK and an unknown one get the same answer, in either language.
        for nik, lang, title in ((citizen.nik, "id", "SatuID sedang sibuk"),
                                 (stranger.nik, "en", "SatuID is busy right now")):
            r = auth.login(nik, citizen.password, query_string={"lang": lang})
            assert r.status_code == 503 and r.mimetype == "text/html"
            assert r.headers["Retry-After"] == "5"
            assert title in r.get_data(as_text=True)
    finally:
        finish.set()
        other.join()
    assert auth.login(citizen.nik, citizen.password).status_code == 302


def test_a_busy_password_reset_keeps_its_link_and_never_logs_it(
        app_with: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    app = app_with(ARGON2_WAIT_SECONDS=0)
    citizen = Factory(app).citizen()
    anonymous = AuthActions(app.test_client())
    assert anonymous.form("/password/forgot", {"nik": citizen.nik}).status_code == 200
    path = reset_link(app, citizen.email)
    token = path.rsplit("/", 1)[1]
    new_password = "mangga muda di halaman"
    with app.app_context():
        slots = passwords._slots_of_this_process(app.config["IDP"].argon2_concurrency)
    assert slots.acquire(timeout=5)  # another thread of the worker holds the only slot
    try:
        with caplog.at_level(logging.WARNING):
            busy = anonymous.form(path, {"password": new_password, "confirm": new_password})
        assert busy.status_code == 503
    finally:
        slots.release()
    assert token not in caplog.text and "busy on POST /password/reset/<token>" in caplog.text
    # The link was not spent by the busy answer: the citizen's second try sets the password.
    assert anonymous.form(path, {"password": new_password, "confirm": new_password}).status_code == 302
    assert AuthActions(app.test_client()).login(citizen.nik, new_password).status_code == 302


def test_busy_answers_cost_the_citizen_no_attempt(app_with: Callable[..., Flask]) -> None:
    """The slot is taken before the attempt is counted: however many busy answers a citizen gets
    at a peak, the right password still logs them in afterwards, with no lock and no wait."""
    app = app_with(ARGON2_WAIT_SECONDS=0)
    citizen = Factory(app).citizen()
    limit = app.config["IDP"].login_max_failures
    with app.app_context():
        slots = passwords._slots_of_this_process(app.config["IDP"].argon2_concurrency)
    auth = AuthActions(app.test_client())
    assert slots.acquire(timeout=5)  # another thread of the worker holds the only slot
    try:
        assert [auth.login(citizen.nik, "salah kata sandi sekali").status_code
                for _ in range(limit + 2)] == [503] * (limit + 2)
    finally:
        slots.release()
    assert auth.login(citizen.nik, citizen.password).status_code == 302
