"""Portals that require an identity verified in person, and the operator commands that say what a
portal requires of the citizen (level, accepted factors, in-person identity)."""

from __future__ import annotations

import json
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Factory
from tests.oidc_rp import Portal, query, register_portal


def _portal(app: Flask, client: FlaskClient, **fields: Any) -> Portal:
    info = register_portal(app, "kependudukan", requires_in_person=True, **fields)
    return Portal(browser=client, client_id=info["client_id"], secret=info["secret"],
                  redirect_uri=info["redirect_uri"])


def _verify_in_person(app: Flask, citizen_id: Any) -> None:
    from idp.identity import verification
    from idp.models import IdentityVerification
    from idp.models.base import utcnow

    with app.app_context():
        from idp.db import get_session

        session = get_session()
        session.add(IdentityVerification(citizen_id=citizen_id, method="in_person",
                                         trust_framework=verification.TRUST_FRAMEWORK,
                                         verified_at=utcnow(), evidence={}))
        session.commit()


def _to_refusal(portal: Portal, citizen: Any, **extra: str) -> Any:
    """Log in for the portal and stop at the first page that is not a redirect."""
    from tests.conftest import csrf_token

    response = portal.browser.get(portal.authorize_url("openid", **extra))
    location = response.headers["Location"]
    page = portal.browser.get(location)
    response = portal.browser.post("/login", data={
        "csrf_token": csrf_token(page.get_data(as_text=True)), "nik": citizen.nik,
        "password": citizen.password, "interaction": query(location)["interaction"], "next": ""})
    for _ in range(5):
        if response.status_code != 302:
            return response
        response = portal.browser.get(response.headers["Location"])
    raise AssertionError("no page")


def test_a_portal_requiring_in_person_identity_explains_the_counter_and_returns_access_denied(
        app: Flask, client: FlaskClient, factory: Factory) -> None:
    citizen = factory.citizen()
    portal = _portal(app, client)
    client.get("/login?lang=en")  # the citizen chose English
    page = _to_refusal(portal, citizen)
    html = page.get_data(as_text=True)
    assert page.status_code == 403
    assert "Verify your identity at a counter" in html and "KTP-el" in html
    back = html.split('class="button" href="')[1].split('"')[0].replace("&amp;", "&")
    returned = client.get(back)
    assert returned.status_code == 302
    params = query(returned.headers["Location"])
    assert returned.headers["Location"].startswith(portal.redirect_uri)
    assert params["error"] == "access_denied" and "in person" in params["error_description"]
    assert params["state"] == portal.last["state"] and "code" not in params
    # prompt=none: no page at all, the same answer at once.
    silent = query(client.get(portal.authorize_url("openid", prompt="none")).headers["Location"])
    assert silent["error"] == "access_denied"


def test_the_page_speaks_indonesian_by_default(app: Flask, client: FlaskClient,
                                               factory: Factory) -> None:
    html = _to_refusal(_portal(app, client), factory.citizen()).get_data(as_text=True)
    assert "Verifikasi identitas Anda di loket" in html and "Kembali ke" in html


def test_a_citizen_verified_in_person_is_let_through(app: Flask, client: FlaskClient,
                                                     factory: Factory) -> None:
    citizen = factory.citizen()
    _verify_in_person(app, citizen.id)
    portal = _portal(app, client)
    result = portal.sign_in(citizen.nik, citizen.password, scope="openid")
    assert "code" in result, result


def test_discovery_advertises_nothing_new_for_in_person_portals(client: FlaskClient) -> None:
    metadata = client.get("/.well-known/openid-configuration").get_json()
    assert not any("in_person" in key for key in metadata)


def test_operators_set_what_a_portal_requires(app: Flask) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(args=[
        "clients", "create", "--name", "Portal KTP", "--client-id", "ktp",
        "--redirect-uri", "https://ktp.example.id/cb", "--minimum-loa", "2",
        "--accepted-factor", "totp", "--accepted-factor", "passkey", "--requires-in-person"])
    assert created.exit_code == 0, created.output
    out = json.loads(created.output)
    assert out["requires_in_person"] is True and out["accepted_factors"] == ["totp", "passkey"]
    changed = runner.invoke(args=["clients", "set-assurance", "ktp", "--any-factor",
                                  "--no-requires-in-person", "--minimum-loa", "3"])
    assert changed.exit_code == 0, changed.output
    out = json.loads(changed.output)
    assert out["requires_in_person"] is False and out["accepted_factors"] == []
    assert out["minimum_loa"] == 3
    refused = runner.invoke(args=["clients", "set-assurance", "ktp", "--accepted-factor", "sms"])
    assert refused.exit_code != 0 and "passkey" in refused.output
    unknown = runner.invoke(args=["clients", "set-assurance", "ktp", "--accepted-factor", "email"])
    assert unknown.exit_code != 0  # email is no second factor
