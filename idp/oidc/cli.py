"""Operator commands: ``clients``, ``keys`` and ``logout deliver``; and the demo portals' seeder."""

from __future__ import annotations

import json
import os
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from idp import audit
from idp.auth.mfa.factors import FACTORS
from idp.db import get_session, unit_of_work
from idp.models import Client, SigningKey
from idp.models.base import secret_digest
from idp.models.oidc import LIFE_EVENTS
from idp.oidc import clients as registry
from idp.oidc import keys
from idp.oidc.logout import deliver_due

clients_cli = AppGroup("clients", help="Relying parties (service portals).")
keys_cli = AppGroup("keys", help="Token signing keys.")
logout_cli = AppGroup("logout", help="Back-channel logout deliveries.")


def _client(client_id: str) -> Client:
    client = get_session().get(Client, client_id)
    if client is None:
        raise click.ClickException(f"no client {client_id}")
    return client


@clients_cli.command("create")
@click.option("--name", required=True)
@click.option("--client-id", default=None, help="Default: a random id.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option("--post-logout-uri", "post_logout_uris", multiple=True)
@click.option("--scope", "scopes", multiple=True, help="Repeatable or space-separated.")
@click.option("--auth-method", default="client_secret_basic",
              type=click.Choice(registry.AUTH_METHODS))
@click.option("--backchannel-logout-uri", default=None)
@click.option("--sector", default=None, help="Sector identifier (host) for pairwise subjects.")
@click.option("--jwks", "jwks_file", type=click.File(), default=None, help="Client JWKS (JSON file).")
@click.option("--jwks-uri", default=None)
@click.option("--id-token-alg", default="RS256", type=click.Choice(["RS256", "ES256"]))
@click.option("--minimum-loa", default=1, type=click.IntRange(1, 3))
@click.option("--accepted-factor", "accepted_factors", multiple=True, type=click.Choice(FACTORS),
              help="Repeatable; second factors the portal accepts (default: any). Leave out sms "
                   "to refuse SMS codes.")
@click.option("--requires-in-person", is_flag=True,
              help="Only citizens whose identity was verified in person at a counter.")
@click.option("--purpose", default="", help="Why the portal needs the data (shown on consent).")
@click.option("--description", default="")
@click.option("--category", default="")
@click.option("--logo-uri", default=None)
@click.option("--life-event", "life_events", multiple=True, type=click.Choice(LIFE_EVENTS),
              help="Repeatable; where the services home lists the portal.")
@click.option("--initiate-login-uri", default=None,
              help="Where SatuID starts the portal's sign-in (OIDC Core §4).")
@click.option("--complaint-uri", default=None, help="The portal's complaint channel (e.g. SP4N-LAPOR!).")
def clients_create(name: str, client_id: str | None, redirect_uris: tuple[str, ...],
                   post_logout_uris: tuple[str, ...], scopes: tuple[str, ...], auth_method: str,
                   backchannel_logout_uri: str | None, sector: str | None, jwks_file: Any,
                   jwks_uri: str | None, id_token_alg: str, minimum_loa: int,
                   accepted_factors: tuple[str, ...], requires_in_person: bool, purpose: str,
                   description: str, category: str, logo_uri: str | None,
                   life_events: tuple[str, ...], initiate_login_uri: str | None,
                   complaint_uri: str | None) -> None:
    """Register a portal; prints it as JSON, with its client_secret (shown this once)."""
    session = get_session()
    try:
        client, secret = registry.register(
            session, name=name, client_id=client_id, redirect_uris=list(redirect_uris),
            post_logout_redirect_uris=list(post_logout_uris),
            scopes=[s for item in scopes for s in item.split()] or ["openid"],
            token_endpoint_auth_method=auth_method, backchannel_logout_uri=backchannel_logout_uri,
            sector_identifier=sector, jwks=json.load(jwks_file) if jwks_file else None,
            jwks_uri=jwks_uri, id_token_signed_response_alg=id_token_alg, minimum_loa=minimum_loa,
            accepted_factors=list(accepted_factors), requires_in_person=requires_in_person,
            purpose=purpose, description=description, category=category, logo_uri=logo_uri,
            life_events=list(life_events), initiate_login_uri=initiate_login_uri,
            complaint_uri=complaint_uri,
        )
        audit.append("client_registered", actor="operator", client_id=client.client_id)
        session.commit()
    except registry.ClientError as e:
        raise click.ClickException(str(e)) from e
    except IntegrityError as e:
        session.rollback()
        raise click.ClickException("a client with that id exists already") from e
    out = registry.describe(client)
    if secret:
        out["client_secret"] = secret
    click.echo(json.dumps(out, indent=2))


@clients_cli.command("list")
def clients_list() -> None:
    """One line per portal: id, active, name."""
    for client in registry.all_clients(get_session()):
        click.echo(f"{client.client_id}\t{'active' if client.active else 'disabled'}\t{client.name}")


@clients_cli.command("show")
@click.argument("client_id")
def clients_show(client_id: str) -> None:
    click.echo(json.dumps(registry.describe(_client(client_id)), indent=2))


@clients_cli.command("update")
@click.argument("client_id")
@click.option("--name", default=None)
@click.option("--description", default=None)
@click.option("--category", default=None)
@click.option("--purpose", default=None)
@click.option("--logo-uri", default=None, help="Empty to remove.")
@click.option("--life-event", "life_events", multiple=True, type=click.Choice(LIFE_EVENTS),
              help="Repeatable; replaces the list.")
@click.option("--no-life-events", is_flag=True, help="Take the portal off the services home.")
@click.option("--initiate-login-uri", default=None, help="Empty to remove.")
@click.option("--complaint-uri", default=None, help="Empty to remove.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="Repeatable; replaces the list.")
@click.option("--post-logout-uri", "post_logout_uris", multiple=True, help="Repeatable; replaces.")
@click.option("--backchannel-logout-uri", default=None, help="Empty to remove.")
def clients_update(client_id: str, life_events: tuple[str, ...], no_life_events: bool,
                   redirect_uris: tuple[str, ...], post_logout_uris: tuple[str, ...],
                   **options: str | None) -> None:
    """Change how a portal presents itself and where it is reached; prints it as JSON."""
    fields: dict[str, Any] = {name: value for name, value in options.items() if value is not None}
    if life_events or no_life_events:
        fields["life_events"] = [] if no_life_events else list(dict.fromkeys(life_events))
    if redirect_uris:
        fields["redirect_uris"] = list(redirect_uris)
    if post_logout_uris:
        fields["post_logout_redirect_uris"] = list(post_logout_uris)
    try:
        with unit_of_work():
            client = _client(client_id)
            changed = registry.update(client, **fields)
            if changed:
                audit.append("client_updated", actor="operator", client_id=client_id, fields=changed)
            out = registry.describe(client)
    except registry.ClientError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(out, indent=2))


@clients_cli.command("disable")
@click.argument("client_id")
def clients_disable(client_id: str) -> None:
    """Disable a portal: it can no longer authorize, get or use tokens."""
    with unit_of_work():
        _client(client_id).active = False
        audit.append("client_disabled", actor="operator", client_id=client_id)
    click.echo(f"disabled {client_id}")


@clients_cli.command("set-assurance")
@click.argument("client_id")
@click.option("--minimum-loa", default=None, type=click.IntRange(1, 3))
@click.option("--accepted-factor", "accepted_factors", multiple=True, type=click.Choice(FACTORS),
              help="Repeatable; replaces the list.")
@click.option("--any-factor", is_flag=True, help="Accept every second factor again.")
@click.option("--requires-in-person/--no-requires-in-person", default=None)
def clients_set_assurance(client_id: str, minimum_loa: int | None,
                          accepted_factors: tuple[str, ...], any_factor: bool,
                          requires_in_person: bool | None) -> None:
    """Change what a portal requires: minimum level, accepted factors, in-person identity."""
    factors = [] if any_factor else (list(accepted_factors) or None)
    try:
        with unit_of_work():
            client = _client(client_id)
            registry.set_assurance(client, minimum_loa, factors, requires_in_person)
            audit.append("client_assurance_changed", actor="operator", client_id=client_id,
                         minimum_loa=client.minimum_loa, accepted_factors=client.accepted_factors,
                         requires_in_person=client.requires_in_person)
            out = registry.describe(client)
    except registry.ClientError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps(out, indent=2))


@clients_cli.command("rotate-secret")
@click.argument("client_id")
def clients_rotate_secret(client_id: str) -> None:
    """Give a portal a new secret (the old one stops working at once); prints it once."""
    try:
        with unit_of_work():
            secret = registry.rotate_secret(_client(client_id))
            audit.append("client_secret_rotated", actor="operator", client_id=client_id)
    except registry.ClientError as e:
        raise click.ClickException(str(e)) from e
    click.echo(json.dumps({"client_id": client_id, "client_secret": secret}, indent=2))


@keys_cli.command("rotate")
def keys_rotate() -> None:
    """Promote the published next key to current, retire the current one, publish a new next."""
    with unit_of_work() as session:
        changes = keys.rotate(session)
        for alg, old, new in changes:
            audit.append("key_rotated", actor="operator", alg=alg, retired=old, current=new)
    for alg, old, new in changes:
        click.echo(f"{alg}: {old} retired, {new} now signs")


@keys_cli.command("list")
def keys_list() -> None:
    keys.ensure_keys(get_session())
    for row in get_session().scalars(select(SigningKey).order_by(SigningKey.created_at)):
        click.echo(f"{row.kid}\t{row.alg}\t{row.state}")


@logout_cli.command("deliver")
def logout_deliver() -> None:
    """Deliver due back-channel logout tokens (run it every minute; safe with several workers)."""
    counts = deliver_due(current_app._get_current_object())  # type: ignore[attr-defined]  # Werkzeug's proxy
    click.echo(json.dumps(counts))


# ---- demo portals --------------------------------------------------------------------------------

DEMO_PORTALS: list[dict[str, Any]] = [
    {"client_id": "portal-kesehatan", "name": "Portal Layanan Kesehatan",
     "sector": "kesehatan.demo.satuid.id", "env": "SATUID_DEMO_HEALTH_URL",
     "url": "http://127.0.0.1:5001", "secret_env": "SATUID_DEMO_HEALTH_SECRET",
     "secret": "demo-secret-portal-kesehatan-0001",
     "scopes": ["openid", "profile", "email", "phone", "address", "offline_access", "nik"],
     "category": "health", "purpose": "Mendaftarkan Anda untuk layanan kesehatan dan menampilkan "
                                      "riwayat kunjungan Anda.",
     "description": "Pendaftaran layanan kesehatan, riwayat kunjungan, dan imunisasi anak.",
     "life_events": ["health", "birth"], "complaint": "https://www.lapor.go.id/"},
    {"client_id": "portal-bansos", "name": "Portal Bantuan Sosial",
     "sector": "bansos.demo.satuid.id", "env": "SATUID_DEMO_SOCIAL_URL",
     "url": "http://127.0.0.1:5002", "secret_env": "SATUID_DEMO_SOCIAL_SECRET",
     "secret": "demo-secret-portal-bansos-0002",
     "scopes": ["openid", "profile", "email", "phone", "address", "offline_access"],
     "category": "social assistance", "purpose": "Memeriksa kelayakan Anda untuk bantuan sosial.",
     "description": "Cek kelayakan dan status bantuan sosial keluarga Anda.",
     "life_events": ["social_assistance"], "complaint": "https://www.lapor.go.id/"},
]


def seed_demo_clients(session: Session) -> list[dict[str, Any]]:
    """Register the two example portals (idempotent); their secrets are fixed demo values."""
    lines = []
    keys.ensure_keys(session)
    for portal in DEMO_PORTALS:
        base = os.environ.get(str(portal["env"]), str(portal["url"])).rstrip("/")
        secret = os.environ.get(str(portal["secret_env"]), str(portal["secret"]))
        fields: dict[str, Any] = dict(
            name=portal["name"], redirect_uris=[f"{base}/auth/callback"],
            post_logout_redirect_uris=[f"{base}/"],
            backchannel_logout_uri=f"{base}/auth/backchannel-logout",
            sector_identifier=portal["sector"], category=portal["category"],
            purpose=portal["purpose"], token_endpoint_auth_method="client_secret_basic",
            description=portal["description"], life_events=list(portal["life_events"]),
            initiate_login_uri=f"{base}/auth/initiate", complaint_uri=portal["complaint"],
        )
        client = session.get(Client, portal["client_id"])
        if client is None:
            client, _ = registry.register(session, client_id=portal["client_id"], secret=secret,
                                          scopes=list(portal["scopes"]), **fields)
        else:
            for name, value in fields.items():
                setattr(client, name, value)
            client.scopes = list(portal["scopes"])
            client.secret_hash = secret_digest(secret)
        lines.append({"client": portal["client_id"], "client_secret": secret,
                      "redirect_uri": f"{base}/auth/callback"})
    return lines


