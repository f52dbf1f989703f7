"""Operator commands for relying parties and the demo portals' seeder."""

from __future__ import annotations

import json

from sqlalchemy import select


def test_clients_create_prints_the_secret_once_and_stores_only_its_hash(app) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=[
        "clients", "create", "--name", "Portal Pajak", "--client-id", "pajak",
        "--redirect-uri", "https://pajak.example.id/cb", "--post-logout-uri", "https://pajak.example.id/",
        "--scope", "openid profile", "--scope", "email",
        "--backchannel-logout-uri", "https://pajak.example.id/bcl"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.output)
    secret = created["client_secret"]
    assert created["scopes"] == ["openid", "profile", "email"]
    shown = runner.invoke(args=["clients", "show", "pajak"]).output
    assert secret not in shown and '"client_secret"' not in shown
    from idp.db import get_session
    from idp.models import Client

    with app.app_context():
        stored = get_session().get(Client, "pajak")
        assert stored.secret_hash != secret and stored.check_client_secret(secret)
    rotated = json.loads(runner.invoke(args=["clients", "rotate-secret", "pajak"]).output)
    with app.app_context():
        stored = get_session().get(Client, "pajak")
        assert not stored.check_client_secret(secret) and stored.check_client_secret(rotated["client_secret"])
    assert "pajak\tactive" in runner.invoke(args=["clients", "list"]).output
    runner.invoke(args=["clients", "disable", "pajak"])
    assert "pajak\tdisabled" in runner.invoke(args=["clients", "list"]).output


def test_clients_create_refuses_bad_input(app) -> None:
    runner = app.test_cli_runner()
    for extra in (["--redirect-uri", "http://evil.example/cb"], ["--redirect-uri", "https://a.example/cb",
                                                                  "--scope", "admin"],
                  ["--redirect-uri", "https://a.example/cb", "--auth-method", "private_key_jwt"],
                  # The portal's logo is shown on SatuID's pages: checked like every other URI.
                  ["--redirect-uri", "https://a.example/cb", "--logo-uri", "javascript:alert(1)"]):
        result = runner.invoke(args=["clients", "create", "--name", "X", *extra])
        assert result.exit_code != 0 and "Error" in result.output


def test_seed_demo_registers_both_portals_idempotently(app) -> None:
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed-demo"])
    assert first.exit_code == 0, first.output
    assert runner.invoke(args=["seed-demo"]).exit_code == 0
    assert '"client_secret": "demo-secret-portal-kesehatan-0001"' in first.output
    from idp.db import get_session
    from idp.models import Client
    from idp.oidc.pairwise import sector_of

    with app.app_context():
        portals = {c.client_id: c for c in get_session().scalars(select(Client))}
        assert set(portals) == {"portal-kesehatan", "portal-bansos"}
        assert "nik" in portals["portal-kesehatan"].scopes and "nik" not in portals["portal-bansos"].scopes
        assert sector_of(portals["portal-kesehatan"]) == "kesehatan.demo.satuid.id"
        assert portals["portal-bansos"].redirect_uris == ["http://127.0.0.1:5002/auth/callback"]
