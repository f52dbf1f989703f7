"""No input reaches a 5xx, and a refused request changes nothing durable (a fixed budget here;
``bench/fuzz.py`` sends 10,000 and more on demand)."""

from __future__ import annotations

import os
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from sqlalchemy import func, select
from werkzeug.datastructures import MultiDict

from tests.conftest import make_app
from tests.hostile import (
    CLIENT_ID,
    REDIRECT_URI,
    SIGNED_IN_ENDPOINTS,
    HostileRequest,
    hostile_requests,
)
from tests.oidc_rp import register_portal

DURABLE = ("citizen", "oidc_grant", "oidc_token", "consent_record", "claim_release", "oidc_client")


def durable_counts(app: Flask) -> dict[str, int]:
    from idp.db import get_session
    from idp.models import Base

    with app.app_context():
        session = get_session()
        return {name: session.scalar(select(func.count()).select_from(Base.metadata.tables[name])) or 0
                for name in DURABLE}


@pytest.fixture
def fuzz_app(backend: dict[str, str]) -> Any:
    # Without CSRF the form handlers themselves get the hostile values (CSRF has its own tests).
    app = make_app(backend, WTF_CSRF_ENABLED=False)
    register_portal(app, client_id=CLIENT_ID, redirect_uris=[REDIRECT_URI], secret="fuzz-secret")
    yield app
    app.extensions["idp.engine"].dispose()


@pytest.fixture
def fuzz_citizen(fuzz_app: Flask) -> Any:
    from tests.conftest import Factory

    return Factory(fuzz_app).citizen()


@settings(max_examples=int(os.environ.get("IDP_FUZZ_EXAMPLES", "150")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=hostile_requests())
def test_hostile_input_gets_4xx_and_changes_nothing(fuzz_app: Flask, request: HostileRequest) -> None:
    client = fuzz_app.test_client()
    before = durable_counts(fuzz_app)

    def send(method: str, path: str, params: list[tuple[str, str]]) -> Any:
        if method == "GET":
            return client.get(path, query_string=MultiDict(params))
        return client.post(path, data=MultiDict(params))

    response = request.send(send)
    assert response.status_code < 500, (request, response.get_data(as_text=True)[:300])
    if response.status_code >= 400:
        assert durable_counts(fuzz_app) == before, request


@settings(max_examples=int(os.environ.get("IDP_FUZZ_EXAMPLES", "150")), deadline=None,
          derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(request=hostile_requests(SIGNED_IN_ENDPOINTS))
def test_hostile_input_to_the_signed_in_forms_gets_4xx(fuzz_app: Flask, fuzz_citizen: Any,
                                                       request: HostileRequest) -> None:
    client = fuzz_app.test_client()
    client.post("/login", data={"nik": fuzz_citizen.nik, "password": fuzz_citizen.password})
    if request.method == "GET":
        response = client.get(request.path, query_string=MultiDict(request.params))
    else:
        response = client.post(request.path, data=MultiDict(request.params))
    assert response.status_code < 500, (request, response.get_data(as_text=True)[:300])
