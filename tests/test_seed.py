"""``flask seed-demo``: deterministic, idempotent, consistent demo data, and the bulk residents and
accounts of benchmarks (COPY on PostgreSQL, row by row on SQLite)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from idp.identity import cli as identity_cli
from idp.identity import nik as nikmod
from idp.identity import synthetic
from idp.identity.passwords import verify_password
from idp.models import AuditEvent, Citizen, IdentityVerification, Resident
from tests.conftest import AuthActions, Factory
from tests.oidc_rp import Portal, register_portal


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
    small = list(synthetic.resident_rows(0, 120))
    large = list(synthetic.resident_rows(0, synthetic.BATCH + 50))
    assert small == large[:120]
    # A range that starts inside a block gives the same people as the whole block.
    assert list(synthetic.resident_rows(synthetic.BATCH - 5, synthetic.BATCH + 5)) == \
        large[synthetic.BATCH - 5:synthetic.BATCH + 5]
    niks = [r["nik"] for r in large]
    assert len(set(niks)) == len(niks)
    assert len({r["province"] for r in large}) >= 10
    assert {r["sex"] for r in large} == {"M", "F"}
    assert len({r["full_name"] for r in large}) > 1000


def test_nik_of_gives_each_generated_residents_nik() -> None:
    # Every (region, sex, birth date) has a resident before the serial grows.
    wrap = synthetic.MAX_RESIDENTS // (10_000 - synthetic.FIRST_SYNTHETIC_SERIAL)
    # Around a block of the generator, where the serial grows, and far into ten million.
    for start in (0, synthetic.BATCH - 3, wrap - 5, 9_999_990):
        for offset, row in enumerate(synthetic.resident_rows(start, start + 10)):
            assert row["nik"] == synthetic.nik_of(start + offset)
            nik = nikmod.parse(row["nik"])
            assert nikmod.matches_registry(nik, dt.date.fromisoformat(row["birth_date"]), row["sex"])
            assert nik.province == row["province"] and row["family_card_number"][:6] == nik.region_code
            assert len(row["postal_code"]) == 5 and row["family_card_number"].isdigit()
    assert synthetic.nik_of(wrap - 1)[-4:] == "1000" and synthetic.nik_of(wrap)[-4:] == "1001"
    assert synthetic.nik_of(wrap)[:12] == synthetic.nik_of(0)[:12]
    with pytest.raises(ValueError):
        synthetic.nik_of(synthetic.MAX_RESIDENTS)
    assert synthetic.bench_email(7) == "warga7@bench.satuid.example"


def synthetic_niks(app: Flask) -> list[str]:
    """The registry's NIKs with a synthetic serial (the named demo residents have small ones)."""
    with app.app_context():
        from idp.db import get_session

        niks = get_session().scalars(select(Resident.nik))
        return [n for n in niks if int(n[-4:]) >= synthetic.FIRST_SYNTHETIC_SERIAL]


def bench_audit_rows(app: Flask) -> list[dict[str, Any]]:
    with app.app_context():
        from idp.db import get_session

        return [e.details for e in get_session().scalars(
            select(AuditEvent).where(AuditEvent.event == "bench_accounts_created"))]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_bulk_residents_and_accounts_load_once_on_postgresql(app: Flask) -> None:
    seed(app)
    base = counts(app)
    lines = seed(app, "--residents", "30000", "--accounts", "3000")
    assert lines[-1] == {"bench_accounts": {"count": 3000, "password": "bench mark kopi susu pagi",
                                            "email": "warga<i>@bench.satuid.example"}}
    assert counts(app)[:2] == (base[0] + 30_000, base[1] + 3000)
    niks = synthetic_niks(app)
    assert sorted(niks) == sorted(synthetic.nik_of(i) for i in range(30_000))
    for nik in niks:
        nikmod.parse(nik)
    with app.app_context():
        from idp.db import get_session

        s = get_session()
        # The load dropped the registry's primary key for speed; it is back.
        assert s.scalar(text("SELECT count(*) FROM pg_indexes WHERE indexname = 'pk_registry_resident'")) == 1
        bench = s.scalars(select(Citizen).where(Citizen.email.like("%@bench.satuid.example"))).all()
        assert len(bench) == 3000
        names = {nik: name for nik, name in s.execute(select(Resident.nik, Resident.full_name))}
        for citizen in bench:
            index = int(citizen.email.removeprefix("warga").split("@")[0])
            assert citizen.nik == synthetic.nik_of(index) and citizen.email_verified
            assert citizen.id == identity_cli.bench_citizen_id(index)
            assert citizen.full_name == names[citizen.nik] and citizen.closed_at is None
        verified = s.scalars(select(IdentityVerification.citizen_id).where(
            IdentityVerification.method == "registry_record")).all()
        assert len(verified) == len(set(verified)) == base[1] + 3000
    assert bench_audit_rows(app) == [{"count": 3000}]

    before = counts(app)
    seed(app, "--residents", "30000", "--accounts", "3000")
    assert counts(app) == before
    assert bench_audit_rows(app) == [{"count": 3000}]


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_bulk_load_resumes_and_skips_niks_already_there(app: Flask) -> None:
    # Residents 0..999 from an earlier run, and two NIKs of later residents that came another way.
    seed(app, "--residents", "1000")
    with app.app_context():
        from idp.db import get_session

        s = get_session()
        for index in (1500, 25_000):
            s.add(Resident(**{**next(synthetic.resident_rows(index, index + 1)),
                              "birth_date": dt.date(1990, 1, 1), "full_name": "Sudah Ada"}))
        s.commit()
    seed(app, "--residents", "30000")
    assert sorted(synthetic_niks(app)) == sorted(synthetic.nik_of(i) for i in range(30_000))
    with app.app_context():
        from idp.db import get_session

        kept = get_session().get(Resident, synthetic.nik_of(25_000))
        assert kept is not None and kept.full_name == "Sudah Ada"  # left as it was


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_fresh_load_meeting_a_nik_already_there_falls_back_to_blocks(app: Flask) -> None:
    with app.app_context():
        from idp.db import get_session

        s = get_session()
        s.add(Resident(**{**next(synthetic.resident_rows(7, 8)), "birth_date": dt.date(1990, 1, 1)}))
        s.commit()
    seed(app, "--residents", "5000")
    assert sorted(synthetic_niks(app)) == sorted(synthetic.nik_of(i) for i in range(5000))
    with app.app_context():
        from idp.db import get_session

        s = get_session()
        assert s.scalar(text("SELECT count(*) FROM pg_indexes WHERE indexname = 'pk_registry_resident'")) == 1


def test_a_bench_account_logs_in_and_signs_in_to_a_portal(app: Flask, auth: AuthActions,
                                                          client: FlaskClient) -> None:
    # --accounts alone makes the residents it needs; SQLite takes the small count row by row.
    lines = seed(app, "--accounts", "40")
    assert lines[-1]["bench_accounts"]["count"] == 40
    assert len(synthetic_niks(app)) == 40
    assert bench_audit_rows(app) == [{"count": 40}]
    nik = synthetic.nik_of(37)
    assert auth.login(nik, "not the bench password").status_code != 302
    resp = auth.login(nik, identity_cli.BENCH_PASSWORD)
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/account")

    info = register_portal(app, client_id="portal-bench")
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    request = {"id_token": {"verified_claims": {"verification": {"trust_framework": None},
                                                "claims": {"name": None}}}}
    result = portal.sign_in(scope="openid profile email", claims=json.dumps(request))
    body = portal.token(result["code"]).get_json()
    claims = jwt.decode(body["id_token"], KeySet.import_key_set(client.get("/jwks").get_json())).claims
    with app.app_context():
        from idp.db import get_session

        name = get_session().get(Resident, nik).full_name
    assert claims["acr"] == "urn:satuid:loa:1"
    userinfo = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert userinfo.get_json()["email"] == synthetic.bench_email(37)
    assert userinfo.get_json()["email_verified"] is True
    assert claims["verified_claims"]["claims"] == {"name": name}
    assert claims["verified_claims"]["verification"]["trust_framework"] == "id_dukcapil"

    seed(app, "--accounts", "40")
    assert bench_audit_rows(app) == [{"count": 40}]


def test_bench_accounts_leave_a_resident_who_has_an_account_alone(
        app: Flask, factory: Factory) -> None:
    own = factory.citizen(nik=synthetic.nik_of(2), email="punya@example.id")
    seed(app, "--accounts", "5", "--accounts-password", "satu dua tiga empat lima")
    assert bench_audit_rows(app) == [{"count": 4}]
    with app.app_context():
        from idp.db import get_session

        s = get_session()
        accounts = s.scalars(select(Citizen).where(Citizen.nik == synthetic.nik_of(2))).all()
        assert [c.id for c in accounts] == [own.id] and accounts[0].email == "punya@example.id"
        other = s.scalar(select(Citizen).where(Citizen.nik == synthetic.nik_of(4)))
        assert other is not None and verify_password(other.password_hash, "satu dua tiga empat lima")


def test_bench_accounts_are_refused_in_production(app: Flask) -> None:
    app.config["IDP"] = dataclasses.replace(app.config["IDP"], environment="production")
    before = counts(app)
    result = app.test_cli_runner().invoke(args=["seed-demo", "--accounts", "10"])
    assert result.exit_code != 0 and "production" in result.output
    assert counts(app) == before


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
