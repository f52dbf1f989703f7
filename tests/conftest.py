"""Fixtures: the app on each backend (SQLite embedded default, PostgreSQL + Redis), a test client,
factories for residents and citizens, and helpers that read the outbox like a citizen would.

Every test that takes ``app`` runs once per backend. PostgreSQL and Redis are used when reachable;
with ``IDP_TEST_REQUIRE_SERVICES=1`` (CI) their absence is an error, not a skip.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from idp import create_app
from idp.config import load_settings
from idp.i18n import compile_catalogs

PG_URL = os.environ.get("IDP_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("IDP_TEST_REDIS_URL", "redis://127.0.0.1:6379")
REQUIRE_SERVICES = os.environ.get("IDP_TEST_REQUIRE_SERVICES") == "1"

# Cheap argon2 in tests (production parameters are measured in bench/login.py), and no grace window
# for refresh-token reuse, so that a reuse revokes at once (the window has tests of its own).
TEST_SETTINGS = {"IDP_ARGON2_TIME_COST": "1", "IDP_ARGON2_MEMORY_COST": "8192",
                 "IDP_REFRESH_REUSE_GRACE_SECONDS": "0"}


def pytest_sessionstart(session: pytest.Session) -> None:
    compile_catalogs()


def worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "gw0")


def worker_number() -> int:
    return int(re.sub(r"\D", "", worker_id()) or 0)


def run_id() -> str:
    """Unique per test process, so two test runs on one machine never share a database."""
    return f"{worker_id()}_{os.getpid()}"


def redis_prefix() -> str:
    """A fresh key namespace on the shared Redis: no flushing, no collisions between runs."""
    return f"satuid-test:{uuid.uuid4().hex}:"


def services_available() -> bool:
    try:
        engine = sa.create_engine(PG_URL)
        with engine.connect():
            pass
        engine.dispose()
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
        return True
    except Exception:
        if REQUIRE_SERVICES:
            raise
        return False


def migrate(url: str) -> None:
    from alembic import command

    from idp.cli import alembic_config

    command.upgrade(alembic_config(url), "head")


def create_pg_database(name: str) -> str:
    """A database of our own (per worker and purpose) on the shared server, migrated fresh."""
    url = create_empty_pg_database(name)
    migrate(url)
    return url


def create_empty_pg_database(name: str) -> str:
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def old_database(kind: str, tmp_path: Path, revision: str) -> Iterator[str]:
    """An empty database of ``kind`` migrated only up to ``revision``, for a migration's test
    (which fills it as that release would have, then upgrades it); dropped afterwards."""
    from alembic import command

    from idp.cli import alembic_config

    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'old.db'}"
    else:
        if not services_available():
            pytest.skip("PostgreSQL is not reachable (CI requires it)")
        url = create_empty_pg_database(f"satuid_migrate_{run_id()}")
    try:
        command.upgrade(alembic_config(url), revision)
        yield url
    finally:
        if kind == "postgres":
            drop_pg_database(url)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating every test would be slow)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "satuid.db"
    migrate(f"sqlite:///{path}")
    return path


def drop_pg_database(url: str) -> None:
    name = sa.engine.make_url(url).database
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    if not services_available():
        yield None
        return
    url = create_pg_database(f"satuid_test_{run_id()}")
    yield url
    drop_pg_database(url)


def reset_pg(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        tables = conn.execute(sa.text(
            "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename <> 'alembic_version'"
        )).scalars().all()
        if tables:
            conn.execute(sa.text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables)
                                 + " RESTART IDENTITY CASCADE"))
        # The audit log's months beyond those a checkpointer makes (this one and the next two), as
        # tests of far-off dates leave them: the next test starts with the partitions of a fresh log.
        today = dt.datetime.now(dt.UTC).date()
        last = (today.year * 12 + today.month - 1) + 2
        for name in conn.execute(sa.text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = to_regclass('audit_event')")).scalars():
            if (month := re.fullmatch(r"audit_event_(\d{4})_(\d{2})", name)) and \
                    int(month[1]) * 12 + int(month[2]) - 1 > last:
                conn.execute(sa.text(f'DROP TABLE "{name}"'))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path,
            pg_database: str | None) -> Iterator[dict[str, str]]:
    """Environment for one backend: the embedded default, or PostgreSQL + Redis."""
    env = {"IDP_INSTANCE_PATH": str(tmp_path / "instance"), **TEST_SETTINGS}
    if request.param == "sqlite":
        (tmp_path / "instance").mkdir()
        db = tmp_path / "instance" / "satuid.db"
        shutil.copy(sqlite_template, db)
        env["IDP_DATABASE_URL"] = f"sqlite:///{db}"
        env["IDP_REDIS_URL"] = ""
        yield env
        return
    if pg_database is None:
        pytest.skip("PostgreSQL/Redis not reachable here (CI sets IDP_TEST_REQUIRE_SERVICES=1)")
    reset_pg(pg_database)
    env["IDP_DATABASE_URL"] = pg_database
    env["IDP_REDIS_URL"] = REDIS_URL
    env["IDP_REDIS_PREFIX"] = redis_prefix()
    yield env


def make_app(env: dict[str, str], **config: object) -> Flask:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        settings = load_settings()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return create_app({"IDP": settings, "TESTING": True, **config})


@pytest.fixture
def app(backend: dict[str, str]) -> Iterator[Flask]:
    app = make_app(backend)
    yield app
    app.extensions["idp.engine"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def db(app: Flask) -> Iterator[sa.orm.Session]:
    with app.app_context():
        from idp.db import get_session

        yield get_session()


# ---- factories ---------------------------------------------------------------------------------

class Factory:
    """Rows a test needs, consistent with each other (a resident's NIK validates, and so on)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._serial = 0

    def resident(self, **overrides: object) -> Any:
        import datetime as dt

        from idp.identity import nik as nikmod
        from idp.models import Resident

        self._serial += 1
        sex = str(overrides.pop("sex", "F"))
        birth = overrides.pop("birth_date", dt.date(1990, 8, 17))
        assert isinstance(birth, dt.date)
        nik = str(overrides.pop("nik", nikmod.build("317404", birth, sex, self._serial)))
        values: dict[str, object] = dict(
            nik=nik, full_name="Siti Rahayu", birth_place="Jakarta", birth_date=birth, sex=sex,
            street_address="Jl. Merdeka No. 1 RT 001 RW 002", village="Menteng",
            district="Menteng", regency="Jakarta Pusat", province="DKI Jakarta",
            postal_code="10310", family_card_number="3174040101090001",
        )
        values.update(overrides)
        with self.app.app_context():
            from idp.db import get_session

            resident = Resident(**values)
            s = get_session()
            s.add(resident)
            s.commit()
            return resident

    def citizen(self, password: str = "kopi tubruk pagi hari", **overrides: object) -> Any:
        from idp.identity.passwords import hash_password
        from idp.models import Citizen

        email = overrides.pop("email", None)
        resident = self.resident(**{k: overrides.pop(k) for k in list(overrides)
                                    if k in {"nik", "full_name", "birth_date", "sex"}})
        with self.app.app_context():
            from idp.db import get_session

            citizen = Citizen(
                nik=resident.nik, full_name=resident.full_name,
                email=email or f"{uuid.uuid4().hex[:8]}@example.id", email_verified=True,
                password_hash=hash_password(password), **overrides,
            )
            s = get_session()
            s.add(citizen)
            s.commit()
            citizen.password = password  # for the test's convenience
            return citizen


@pytest.fixture
def factory(app: Flask) -> Factory:
    return Factory(app)


def csrf_token(html: str) -> str:
    m = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html) or re.search(
        r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no CSRF token on the page"
    return m.group(1)


class AuthActions:
    """Log in and out through the real pages, as a citizen would."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def form(self, path: str, data: dict[str, str], **kwargs: object) -> Any:
        page = self.client.get(path)
        return self.client.post(path, data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                            **data}, **kwargs)

    def login(self, nik: str, password: str, **kwargs: object) -> Any:
        return self.form("/login", {"nik": nik, "password": password}, **kwargs)

    def logout(self) -> Any:
        return self.form("/logout", {})


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


def outbox_messages(app: Flask, recipient: str) -> list[str]:
    """Bodies of the messages sent to ``recipient``, newest first."""
    from sqlalchemy import select

    from idp.models import OutboxMessage

    with app.app_context():
        from idp.db import get_session

        rows = get_session().scalars(select(OutboxMessage).where(
            OutboxMessage.recipient == recipient).order_by(OutboxMessage.id.desc()))
        return [m.body for m in rows]
