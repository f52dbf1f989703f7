"""Operator surfaces: health, metrics, production settings."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from idp.config import ConfigError, load_settings
from tests.conftest import make_app


def test_healthz_reports_database_and_store(client: FlaskClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.get_json() == {"status": "ok", "checks": {"database": "ok", "store": "ok"}}


def test_metrics_behind_a_token_when_configured(backend: dict[str, str], app: Flask) -> None:
    assert app.test_client().get("/metrics").status_code == 200
    guarded = make_app({**backend, "IDP_METRICS_TOKEN": "s3cret-metrics"}).test_client()
    assert guarded.get("/metrics").status_code == 401
    r = guarded.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"})
    assert r.status_code == 200 and "satuid_logins_total" in r.get_data(as_text=True)


def test_production_refuses_embedded_defaults(tmp_path) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({"IDP_ENV": "production", "IDP_INSTANCE_PATH": str(tmp_path),
                       "IDP_DATABASE_URL": "", "IDP_REDIS_URL": "", "IDP_SECRET_KEY": ""})
    message = str(e.value)
    assert "IDP_SECRET_KEY must be set" in message and "https" in message
    assert "PostgreSQL" in message


def test_dev_outbox_is_absent_in_production_like_settings(backend: dict[str, str]) -> None:
    app = make_app({**backend, "IDP_DEV_OUTBOX": "0"})
    assert app.test_client().get("/dev/outbox").status_code == 404


def test_production_requires_a_metrics_token(tmp_path) -> None:
    with pytest.raises(ConfigError) as e:
        load_settings({"IDP_ENV": "production", "IDP_INSTANCE_PATH": str(tmp_path),
                       "IDP_METRICS_TOKEN": ""})
    assert "IDP_METRICS_TOKEN must be set" in str(e.value)


def test_over_https_the_ui_cookie_is_pinned_to_the_host(backend: dict[str, str]) -> None:
    """The UI cookie holds the CSRF token: over https it carries the __Host- prefix, Secure, Path=/."""
    app = make_app({**backend, "IDP_ISSUER": "https://satuid.example.id"})
    client = app.test_client()
    response = client.get("/login", base_url="https://satuid.example.id")
    cookie = response.headers.get("Set-Cookie", "")
    assert cookie.startswith("__Host-satuid_ui=") and "Secure" in cookie and "Path=/" in cookie
    assert "Domain" not in cookie
    app.extensions["idp.engine"].dispose()
