"""Consent records: append-only, listed for the citizen, withdrawal revokes refresh tokens."""

from __future__ import annotations

from sqlalchemy import select

from tests.conftest import csrf_token
from tests.oidc_rp import Portal, register_portal


def test_consent_page_names_portal_purpose_and_data_and_approve_comes_first(app, client, factory,
                                                                            auth) -> None:
    citizen = factory.citizen()
    info = register_portal(app, purpose="Memeriksa kelayakan bantuan.")
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    auth.login(citizen.nik, citizen.password)
    location = client.get(portal.authorize_url("openid email offline_access")).headers["Location"]
    html = client.get(location.replace("http://localhost", "") + "&lang=en").get_data(as_text=True)
    assert "Portal portal-test" in html and "Memeriksa kelayakan bantuan." in html
    assert "Your email address" in html and "until you withdraw consent" in html
    assert html.index('value="approve"') < html.index('value="deny"')
    indonesian = client.get(location.replace("http://localhost", "") + "&lang=id").get_data(as_text=True)
    assert "Alamat email Anda" in indonesian


def test_withdrawal_is_recorded_and_revokes_the_portals_tokens(app, client, factory) -> None:
    citizen = factory.citizen()
    info = register_portal(app)
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    result = portal.sign_in(citizen.nik, citizen.password, scope="openid profile offline_access")
    tokens = portal.token(result["code"]).get_json()
    page = client.get("/account/consents?lang=en")
    html = page.get_data(as_text=True)
    assert "Portal portal-test" in html and "Withdraw consent" in html
    response = client.post(f"/account/consents/{portal.client_id}/withdraw",
                           data={"csrf_token": csrf_token(html)})
    assert response.status_code == 302
    refreshed = portal.refresh(tokens["refresh_token"])
    assert refreshed.get_json()["error"] == "invalid_grant"
    # The access token stops working too: the portal reads nothing more after withdrawal.
    userinfo = client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert userinfo.status_code == 401
    # Asking again needs consent again.
    assert "/consent?" in client.get(portal.authorize_url("openid profile")).headers["Location"]
    from idp.db import get_session
    from idp.models import AuditEvent, ConsentRecord

    with app.app_context():
        session = get_session()
        actions = list(session.scalars(select(ConsentRecord.action).order_by(ConsentRecord.id)))
        events = set(session.scalars(select(AuditEvent.event)))
    assert actions == ["granted", "withdrawn"]
    assert {"consent_granted", "consent_withdrawn", "grants_revoked", "claims_released"} <= events


def test_consent_pages_need_login(client) -> None:
    assert "/login" in client.get("/account/consents").headers["Location"]
    assert "/login" in client.get("/account/activity").headers["Location"]
    assert client.get("/consent?interaction=nothing").status_code == 400
