"""Every area's blueprint, registered in one list so the app's surface is readable at a glance."""

from __future__ import annotations

from importlib import import_module

from flask import Flask

BLUEPRINTS = [
    "idp.health",             # /healthz, /metrics
    "idp.auth.views",         # /login, /logout, /password/forgot
    "idp.identity.views",     # /register
    "idp.account.views",      # /account
    "idp.auth.mfa.views",     # /login/step-up, /account/security
    "idp.oidc.endpoints.views",  # /authorize, /token, /userinfo, /jwks, discovery, /end-session
    "idp.consent.views",      # /consent, /account/consents, /account/activity
    "idp.outbox",             # /dev/outbox (embedded/development only)
]


def register(app: Flask) -> None:
    for name in BLUEPRINTS:
        module = import_module(name)
        app.register_blueprint(module.bp)
        if hasattr(module, "init_app"):
            module.init_app(app)
