"""SatuID: national digital identity provider (OpenID Connect), keyed on the NIK."""

from __future__ import annotations

from typing import Any

from flask import Flask

from idp.config import load_settings


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: settings, extensions, blueprints, error handlers. Nothing runs at import."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    test_config = dict(test_config or {})
    # Tests pass ready-made settings as test_config["IDP"]; otherwise the environment decides.
    settings = test_config.pop("IDP", None) or load_settings()
    app = Flask(
        __name__,
        template_folder=str(root / "templates"),
        static_folder=str(root / "idp" / "static"),
        instance_path=str(settings.instance_path),
    )
    app.config.update(
        IDP=settings,
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="satuid_ui",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.secure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # bound to the UI cookie instead; a slow form must not fail
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    if test_config:
        app.config.update(test_config)

    if settings.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies
        )

    from idp import db, errors, i18n, logs, security, store

    db.init_app(app)
    app.extensions["idp.store"] = store.make_store(settings.redis_url, app.extensions["idp.engine"],
                                                   settings.redis_prefix)
    i18n.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    logs.init_app(app)

    from idp import blueprints, cli

    blueprints.register(app)
    cli.init_app(app)
    return app
