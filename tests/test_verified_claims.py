"""Identity assurance as verified claims (OpenID Connect for Identity Assurance 1.0): a newly
registered citizen's name and birth date come back inside ``verified_claims`` with the registry
match as evidence, released only with consent and only with the scopes that release them."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.conftest import AuthActions, Factory
from tests.oidc_rp import Portal, register_portal
from tests.test_registration import BORN, PASSWORD, identity, last_code

REQUEST = {"verified_claims": {"verification": {"trust_framework": None},
                               "claims": {"name": None, "birthdate": None, "nik": None}}}


def register(app: Flask, auth: AuthActions, factory: Factory) -> Any:
    """A resident registers through the pages, as a citizen would."""
    resident = factory.resident(full_name="Siti Rahayu", birth_date=BORN, sex="F")
    assert identity(auth, resident.nik).status_code == 302
    auth.form("/register/contact", {"email": "siti@example.id"})
    auth.form("/register/verify", {"code": last_code(app, "siti@example.id"), "action": "verify"})
    assert auth.form("/register/password", {"password": PASSWORD, "confirm": PASSWORD}
                     ).status_code == 302
    return resident


def tokens_for(app: Flask, client: FlaskClient, claims: dict[str, Any],
               scope: str = "openid profile") -> tuple[dict[str, Any], dict[str, Any]]:
    info = register_portal(app, client_id="portal-ia")
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    result = portal.sign_in(scope=scope, claims=json.dumps(claims))
    body = portal.token(result["code"]).get_json()
    keys = KeySet.import_key_set(client.get("/jwks").get_json())
    return body, dict(jwt.decode(body["id_token"], keys).claims)


def test_a_newly_registered_citizen_has_the_registry_match_as_evidence(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    register(app, auth, factory)
    _body, claims = tokens_for(app, client, {"id_token": REQUEST})
    verified = claims["verified_claims"]
    verification = verified["verification"]
    assert verification["trust_framework"] == "id_dukcapil" and verification["time"].endswith("Z")
    [evidence] = verification["evidence"]
    assert evidence["type"] == "electronic_record"
    assert evidence["record"]["type"] == "population_register"
    # The scope releases name and birth date; the NIK needs its own scope and is left out.
    assert verified["claims"] == {"name": "Siti Rahayu", "birthdate": BORN.isoformat()}
    assert "nik" not in json.dumps(claims)


def test_verified_claims_come_from_userinfo_too_and_need_consent(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    register(app, auth, factory)
    info = register_portal(app, client_id="portal-ia")
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    first = client.get(portal.authorize_url("openid profile", claims=json.dumps({"userinfo": REQUEST})))
    consent = client.get(first.headers["Location"] + "&lang=en").get_data(as_text=True)
    assert "checked against the population registry" in consent  # the citizen sees what is asked
    result = portal.sign_in(scope="openid profile", claims=json.dumps({"userinfo": REQUEST}))
    access = portal.token(result["code"]).get_json()["access_token"]
    body = client.get("/userinfo", headers={"Authorization": f"Bearer {access}"}).get_json()
    assert body["verified_claims"]["claims"]["name"] == "Siti Rahayu"


def test_no_verified_claims_without_the_scope_of_the_claims_asked(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    register(app, auth, factory)
    _body, claims = tokens_for(app, client, {"id_token": REQUEST}, scope="openid")
    assert "verified_claims" not in claims


def test_an_account_without_any_verification_gets_no_verified_claims(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory) -> None:
    citizen = factory.citizen()  # made directly, not through registration
    auth.login(citizen.nik, citizen.password)
    _body, claims = tokens_for(app, client, {"id_token": REQUEST})
    assert "verified_claims" not in claims


def test_discovery_advertises_identity_assurance(client: FlaskClient) -> None:
    metadata = client.get("/.well-known/openid-configuration").get_json()
    assert metadata["verified_claims_supported"] is True
    assert metadata["trust_frameworks_supported"] == ["id_dukcapil"]
    assert metadata["evidence_supported"] == ["electronic_record", "document"]
    assert metadata["documents_supported"] == ["idcard"]  # the KTP-el, checked at a counter
    assert metadata["documents_methods_supported"] == ["pipp"]
    assert {"name", "birthdate", "address", "nik"} <= set(metadata["claims_in_verified_claims_supported"])


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_the_migration_records_the_registry_match_of_every_existing_account(kind: str, tmp_path) -> None:
    import datetime as dt
    import uuid

    import sqlalchemy as sa
    from alembic import command

    from idp.cli import alembic_config
    from tests.conftest import old_database

    with old_database(kind, tmp_path, "0004_token_scope_keys") as url:
        engine = sa.create_engine(url)
        created = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        with engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO citizen (id, nik, full_name, email_verified, phone_verified, password_hash,"
                " password_changed_at, locale, created_at) VALUES (:id, '3171065708900001', 'Siti',"
                " false, false, 'x', :at, 'id', :at)"),
                {"id": uuid.uuid4().hex if kind == "sqlite" else str(uuid.uuid4()), "at": created})
        command.upgrade(alembic_config(url), "head")
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT method, trust_framework, evidence FROM identity_verification")).all()
        assert len(rows) == 1 and rows[0][0] == "registry_record" and rows[0][1] == "id_dukcapil"
        evidence = rows[0][2] if isinstance(rows[0][2], dict) else json.loads(rows[0][2])
        assert evidence["type"] == "electronic_record"
        engine.dispose()
