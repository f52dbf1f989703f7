"""``flask seed-demo``: deterministic, idempotent, consistent demo data and bulk residents."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from idp.identity import cli as identity_cli
from idp.identity import nik as nikmod
from idp.identity import synthetic
from idp.models import AuditEvent, Citizen, Resident
from tests.conftest import AuthActions


def seed(app: Flask, *args: str) -> list[dict[str, Any]]:
    result = app.test_cli_runner().invoke(args=["seed-demo", *args])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def counts(app: Flask) -> tuple[int, int, int]:
    with app.app_context():
        from idp.db import get_session

        s = get_session()
        return tuple(s.scalar(select(func.count()).select_from(m)) or 0
                     for m in (Resident, Citizen, AuditEvent))


def test_seed_demo_prints_demo_citizens_as_json_lines(app: Flask) -> None:
    lines = seed(app)
    people = [line for line in lines if "password" in line]
    assert len(people) >= 3
    for person in people:
        assert {"nik", "name", "password"} <= person.keys()
        assert person["email"].endswith("@demo.satuid.id")
        nikmod.parse(person["nik"])
    assert any(p["email"] == "siti@demo.satuid.id" for p in people)
    registrants = [line["register"] for line in lines if "register" in line]
    assert len(registrants) >= 3
    with app.app_context():
        from idp.db import get_session

        s = get_session()
        for r in registrants:
            assert s.get(Resident, r["nik"]).full_name == r["name"]
            assert s.scalar(select(Citizen).where(Citizen.nik == r["nik"])) is None


def test_seed_demo_is_idempotent(app: Flask) -> None:
    first = seed(app)
    before = counts(app)
    assert seed(app) == first
    assert counts(app) == before


def test_demo_residents_are_consistent_with_their_niks(app: Flask) -> None:
    seed(app)
    with app.app_context():
        from idp.db import get_session

        for resident in get_session().scalars(select(Resident)):
            nik = nikmod.parse(resident.nik)
            assert nikmod.matches_registry(nik, resident.birth_date, resident.sex)
            assert resident.family_card_number[:6] == nik.region_code
            assert resident.province == nik.province
            assert len(resident.postal_code) == 5 and resident.postal_code.isdigit()


def test_demo_citizen_logs_in_with_the_printed_password(app: Flask, auth: AuthActions) -> None:
    person = next(line for line in seed(app) if "password" in line)
    resp = auth.login(person["nik"], person["password"])
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/account")
    with app.app_context():
        from idp.db import get_session

        citizen = get_session().scalar(select(Citizen).where(Citizen.nik == person["nik"]))
        assert citizen.email_verified and citizen.email == person["email"]


def test_demo_registrant_can_register(app: Flask, auth: AuthActions) -> None:
    registrant = next(line["register"] for line in seed(app) if "register" in line)
    resp = auth.form("/register", {"nik": registrant["nik"], "full_name": registrant["name"],
                                   "birth_date": registrant["birth_date"]})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/register/contact")


def test_residents_option_adds_synthetic_rows_once(app: Flask) -> None:
    seed(app)
    base = counts(app)[0]
    seed(app, "--residents", "250")
    assert counts(app)[0] == base + 250
    seed(app, "--residents", "250")
    assert counts(app)[0] == base + 250
    seed(app, "--residents", "300")  # the first 250 are the same people: only 50 are new
    assert counts(app)[0] == base + 300
    with app.app_context():
        from idp.db import get_session

        rows = get_session().scalars(select(Resident).where(
            Resident.nik.notin_([p.nik for p in synthetic.DEMO_CITIZENS + synthetic.DEMO_REGISTRANTS])))
        for resident in rows:
            nik = nikmod.parse(resident.nik)
            assert nikmod.matches_registry(nik, resident.birth_date, resident.sex)


def test_synthetic_residents_depend_only_on_their_index() -> None:
    small = [r for block in synthetic.residents(120) for r in block]
    large = [r for block in synthetic.residents(synthetic.BATCH + 50) for r in block]
    assert small == large[:120]
    niks = [r["nik"] for r in large]
    assert len(set(niks)) == len(niks)
    assert len({r["province"] for r in large}) >= 10
    assert {r["sex"] for r in large} == {"M", "F"}


def test_other_areas_seeders_run_after_and_print_their_lines(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []

    def portals(session: Session) -> list[dict[str, Any]]:
        seen.append(session.scalar(select(func.count()).select_from(Citizen)) or 0)
        return [{"client_id": "portal-pajak"}]

    from idp.app import PARTS

    app.cli.add_command(identity_cli.make_seed_command(
        [seeder for part in PARTS for seeder in part.seeders] + [portals]))
    lines = seed(app)
    assert lines[-1] == {"client_id": "portal-pajak"}
    assert seen and seen[0] >= 3  # the demo citizens exist when other seeders run
