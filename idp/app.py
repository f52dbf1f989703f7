"""The composition root: what SatuID is made of, stated in one place.

``PARTS`` lists every part with its pages (blueprints), its operator commands, its sections on the
citizen's account page and its demo data; ``create_app`` builds the app from the settings, the
infrastructure and these parts, and connects the one cross-part hook (a session that ends tells the
portals by back-channel logout). Nothing registers itself anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from flask import Blueprint, Flask
from flask_babel import lazy_gettext as _l
from sqlalchemy import event
from werkzeug.middleware.proxy_fix import ProxyFix

from idp import (
    audit,
    cache,
    cli,
    db,
    errors,
    health,
    i18n,
    logs,
    metrics,
    outbox,
    security,
    store,
    transparency,
)
from idp.account import cli as account_cli
from idp.account import views as account
from idp.account.views import AccountSection
from idp.auth import cli as auth_cli
from idp.auth import current
from idp.auth import session as sso
from idp.auth import views as login
from idp.auth.mfa import cli as mfa_cli
from idp.auth.mfa import security as login_security
from idp.auth.mfa import step_up
from idp.config import Settings, load_settings
from idp.consent import views as consent
from idp.helpdesk import citizen as helpdesk_citizen
from idp.helpdesk import cli as helpdesk_cli
from idp.helpdesk import views as helpdesk
from idp.identity import cli as identity_cli
from idp.identity.cli import Seeder
from idp.identity.registry import DatabaseRegistry
from idp.models import Client, SigningKey
from idp.oidc import cli as oidc_cli
from idp.oidc import logout, server
from idp.oidc.endpoints import authorization
from idp.oidc.endpoints import views as oidc_endpoints
from idp.outbox import cli as outbox_cli
from idp.registration import views as registration
from idp.services import cli as services_cli
from idp.services import views as services

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Part:
    """One area of SatuID and what it contributes to the app."""

    name: str
    blueprints: tuple[Blueprint, ...] = ()
    commands: tuple[click.Command, ...] = ()
    account_sections: tuple[AccountSection, ...] = ()
    seeders: tuple[Seeder, ...] = ()


PARTS = (
    Part("health", blueprints=(health.bp,)),                                # /healthz, /metrics
    Part("transparency", blueprints=(transparency.bp,)),                    # /audit/checkpoint
    Part("services", blueprints=(services.bp,)),                            # /, /layanan
    Part("identity", seeders=(identity_cli.seed_demo_people,)),             # registry, demo people
    Part("registration", blueprints=(registration.bp,)),                    # /register
    Part("auth", blueprints=(login.bp,), commands=(auth_cli.sessions_cli,)),  # /login, /password
    Part("mfa", blueprints=(step_up.bp, login_security.bp),                # /login/step-up
         account_sections=(AccountSection(
             "security.page", _l("Login security: authenticator app, passkeys, recovery codes")),),
         seeders=(mfa_cli.seed_demo_totp,)),
    Part("oidc", blueprints=(authorization.bp, oidc_endpoints.bp),          # /authorize, /token...
         commands=(oidc_cli.clients_cli, oidc_cli.keys_cli, oidc_cli.logout_cli),
         seeders=(oidc_cli.seed_demo_clients,)),
    Part("consent", blueprints=(consent.bp,),                              # /consent, /account/...
         account_sections=(AccountSection("consent.consents", _l("Services you share data with")),
                           AccountSection("consent.activity",
                                          _l("Which service received which data")))),
    Part("helpdesk", blueprints=(helpdesk.bp, helpdesk_citizen.bp),         # /helpdesk
         commands=(helpdesk_cli.staff_cli, helpdesk_cli.helpdesk_cli),
         account_sections=(AccountSection("cases.mine", _l("Helpdesk cases about you")),)),
    Part("outbox", blueprints=(outbox.bp,), commands=(outbox_cli.outbox_cli,)),  # /dev/outbox
)

# The operator's view of the portals includes what citizens think of them (once, not per app).
oidc_cli.clients_cli.add_command(services_cli.ratings)


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings, infrastructure, the parts, and the hooks between them."""
    test_config = dict(test_config or {})
    # Tests pass ready-made settings as test_config["IDP"]; otherwise the environment decides.
    settings: Settings = test_config.pop("IDP", None) or load_settings()
    app = Flask("idp", template_folder=str(ROOT / "templates"),
                static_folder=str(ROOT / "idp" / "static"), instance_path=str(settings.instance_path))
    app.config.update(
        IDP=settings,
        SECRET_KEY=settings.secret_key,
        # The UI cookie carries the CSRF token: over https the __Host- prefix pins it to this host
        # and path (RFC 6265bis section 4.1.3.2), as the SSO cookie is.
        SESSION_COOKIE_NAME="__Host-satuid_ui" if settings.secure_cookies else "satuid_ui",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # bound to the UI cookie instead; a slow form must not fail
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    app.config.update(test_config)
    if settings.trusted_proxies:
        # Werkzeug's documented way to wrap the WSGI callable, which mypy sees as a method.
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies)

    # Infrastructure: request timing (first, so that it times the commit), the unit of work,
    # short-lived state, the registry port, pages' plumbing.
    metrics.init_app(app)
    sessions = db.init_app(app)
    audit.init_app(sessions)
    # Workers cache portals and signing keys; an operator's change to either reaches them all.
    cache.watch(sessions, Client, SigningKey)
    app.extensions["idp.store"] = store.make_store(settings.redis_url, db.engine_of(app),
                                                   settings.redis_prefix, db.current_connection)
    app.extensions["idp.registry"] = DatabaseRegistry(db.get_session)
    i18n.init_app(app, time_zone=current.time_zone)
    security.init_app(app)
    errors.init_app(app)
    logs.init_app(app)
    sso.init_app(app)
    server.init_app(app)

    # The parts.
    for part in PARTS:
        for blueprint in part.blueprints:
            app.register_blueprint(blueprint)
    sections = [section for part in PARTS for section in part.account_sections]
    app.register_blueprint(account.create_blueprint(sections))             # /account
    seeders = [seeder for part in PARTS for seeder in part.seeders]
    cli.init_app(app, [identity_cli.make_seed_command(seeders), account_cli.accounts_cli,
                       *(command for part in PARTS for command in part.commands)])
    # The protocol endpoints authenticate clients, not browser forms (the logout confirmation
    # page checks its own token).
    security.csrf.exempt(authorization.bp)
    security.csrf.exempt(oidc_endpoints.bp)

    # The hook between parts: an SSO session that ends (auth) queues back-channel logout tokens
    # (oidc) in the same unit of work, delivered once it commits.
    sso.session_ended.connect(logout.on_session_ended, sender=app)
    event.listen(sessions, "after_commit", logout.deliver_queued)
    return app
