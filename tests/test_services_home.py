"""The services home: portals by life event, search, third-party initiated login, ratings, and the
operator's commands for the new metadata."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import AuthActions, Factory, csrf_token


def register_portal(app: Flask, client_id: str, name: str, events: list[str], **fields: Any) -> None:
    from idp.db import get_session
    from idp.oidc import clients

    with app.app_context():
        clients.register(get_session(), client_id=client_id, name=name, life_events=events,
                         redirect_uris=[f"https://{client_id}.example.id/cb"], **fields)
        get_session().commit()


def grant(app: Flask, citizen: Any, client_id: str) -> None:
    """The citizen used the portal (what an authorization leaves behind)."""
    from idp.db import get_session
    from idp.models import Grant

    with app.app_context():
        get_session().add(Grant(client_id=client_id, citizen_id=citizen.id))
        get_session().commit()


@pytest.fixture
def portals(app: Flask) -> None:
    register_portal(app, "sehat", "Portal Kesehatan", ["health", "birth"],
                    description="Pendaftaran BPJS dan riwayat kunjungan",
                    initiate_login_uri="https://sehat.example.id/auth/initiate?from=satuid",
                    complaint_uri="https://www.lapor.go.id/instansi/sehat")
    register_portal(app, "pajak", "Portal Pajak", ["tax"], description="Lapor SPT tahunan")
    register_portal(app, "internal", "Internal tool", [])  # not on the services home


def test_home_groups_portals_by_life_event_for_everyone(client: FlaskClient, portals: None) -> None:
    for path in ("/", "/layanan"):
        page = client.get(path + "?lang=en").get_data(as_text=True)
        health = page.index('id="event-health"')
        assert page.index('id="event-birth"') < health < page.index('id="event-tax"')
        assert page.count('data-client="sehat"') == 2  # under health and under birth
        assert 'data-client="pajak"' in page and "Internal tool" not in page
        assert "Log in to SatuID" in page
    page = client.get("/?lang=id").get_data(as_text=True)
    assert "Kesehatan" in page and "Masuk" in page and "Adukan" in page


def test_search_matches_names_descriptions_and_life_events(client: FlaskClient, portals: None) -> None:
    def found(q: str) -> set[str]:
        page = client.get("/layanan", query_string={"q": q, "lang": "en"}).get_data(as_text=True)
        return {c for c in ("sehat", "pajak") if f'data-client="{c}"' in page}

    assert found("bpjs") == {"sehat"}
    assert found("SPT") == {"pajak"}
    assert found("birth certificate") == {"sehat"}  # the life event's examples
    assert found("pájak portal") == {"pajak"}  # accents and case do not matter
    assert found("tidak ada") == set()
    assert "No service matches" in client.get("/layanan?q=tidak+ada&lang=en").get_data(as_text=True)
    assert client.get("/layanan", query_string={"q": "x" * 5000}).status_code == 200
    assert client.get("/layanan", query_string={"q": "\x00"}).status_code == 400


def test_masuk_sends_the_browser_to_the_portals_initiate_login_uri_with_iss(
        app: Flask, client: FlaskClient, portals: None) -> None:
    response = client.get("/layanan/sehat/masuk")
    assert response.status_code == 303
    issuer = app.config["IDP"].issuer
    from urllib.parse import urlencode
    assert response.headers["Location"] == \
        f"https://sehat.example.id/auth/initiate?from=satuid&{urlencode({'iss': issuer})}"
    assert client.get("/layanan/pajak/masuk").status_code == 404  # no initiate_login_uri
    assert client.get("/layanan/internal/masuk").status_code == 404
    assert client.get("/layanan/nope/masuk").status_code == 404


def ratings_of_sehat(client: FlaskClient) -> tuple[float, float]:
    """The ratings histogram's count and sum for the portal ``sehat``, as /metrics serves them."""
    text = client.get("/metrics").get_data(as_text=True)
    found = dict(re.findall(r'^satuid_service_rating_score_(count|sum)\{client_id="sehat"\} (\S+)$',
                            text, flags=re.MULTILINE))
    return float(found.get("count", 0)), float(found.get("sum", 0))


def test_a_citizen_rates_a_service_they_used_once_a_month(
        app: Flask, client: FlaskClient, auth: AuthActions, factory: Factory, portals: None) -> None:
    from idp import clock

    ratings_before = ratings_of_sehat(client)
    citizen = factory.citizen()
    auth.login(citizen.nik, citizen.password)
    assert "Rate this service" not in client.get("/layanan?lang=en").get_data(as_text=True)
    refused = client.get("/layanan/sehat/nilai", follow_redirects=True)
    assert "after you have used it" in client.get("/layanan/sehat/nilai?lang=en",
                                                   follow_redirects=True).get_data(as_text=True)
    assert refused.status_code == 200
    grant(app, citizen, "sehat")
    assert "Rate this service" in client.get("/layanan?lang=en").get_data(as_text=True)
    form = client.get("/layanan/sehat/nilai")
    token = csrf_token(form.get_data(as_text=True))
    bad = client.post("/layanan/sehat/nilai", data={"csrf_token": token, "score": "9"})
    assert bad.status_code == 400
    ok = client.post("/layanan/sehat/nilai?lang=en", data={"csrf_token": token, "score": "4",
                                                           "comment": "Antrian cepat"}, follow_redirects=True)
    assert "Thank you for rating Portal Kesehatan" in ok.get_data(as_text=True)
    again = client.post("/layanan/sehat/nilai?lang=en", data={"csrf_token": token, "score": "1"},
                        follow_redirects=True)
    assert "already rated" in again.get_data(as_text=True)
    assert "Rated this month" in client.get("/layanan?lang=en").get_data(as_text=True)

    clock.advance(32 * 24 * 3600)  # next month: a new rating is welcome
    try:
        token = csrf_token(client.get("/layanan/sehat/nilai").get_data(as_text=True))
        assert client.post("/layanan/sehat/nilai", data={"csrf_token": token, "score": "2"}
                           ).status_code == 302
        result = app.test_cli_runner().invoke(args=["clients", "ratings", "--json"])
        assert result.exit_code == 0, (result.output, result.exception)
        rows = [json.loads(line) for line in result.output.splitlines()]
        assert rows == [{"client_id": "sehat", "name": "Portal Kesehatan", "count": 2, "average": 3.0,
                         "count_this_month": 1, "average_this_month": 2.0}]
        count, total = ratings_of_sehat(client)
        assert (count - ratings_before[0], total - ratings_before[1]) == (2, 4 + 2)  # counted as stored
        table = app.test_cli_runner().invoke(args=["clients", "ratings"]).output
        assert "sehat\t2\t3.00\t1\t2.00\tPortal Kesehatan" in table
    finally:
        clock.reset()


def test_rating_needs_a_login(client: FlaskClient, portals: None) -> None:
    response = client.get("/layanan/sehat/nilai")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_operators_set_life_events_and_addresses(app: Flask, portals: None) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["clients", "update", "pajak", "--life-event", "tax",
                                 "--life-event", "business",
                                 "--initiate-login-uri", "https://pajak.example.id/login/start",
                                 "--complaint-uri", "https://www.lapor.go.id/pajak"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["life_events"] == ["tax", "business"]
    assert out["initiate_login_uri"] == "https://pajak.example.id/login/start"
    bad = runner.invoke(args=["clients", "update", "pajak", "--initiate-login-uri", "http://evil.example/x"])
    assert bad.exit_code != 0 and "http is only allowed" in bad.output
    bad = runner.invoke(args=["clients", "update", "pajak", "--life-event", "wedding"])
    assert bad.exit_code != 0
    cleared = json.loads(runner.invoke(args=["clients", "update", "pajak", "--complaint-uri", ""]).output)
    assert cleared["complaint_uri"] is None
    created = runner.invoke(args=["clients", "create", "--name", "Portal Sekolah", "--client-id", "sekolah",
                                  "--redirect-uri", "https://sekolah.example.id/cb",
                                  "--life-event", "education",
                                  "--initiate-login-uri", "https://sekolah.example.id/initiate",
                                  "--complaint-uri", "https://www.lapor.go.id/sekolah"])
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["life_events"] == ["education"]
