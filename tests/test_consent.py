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


def test_each_release_is_linked_to_its_audit_event_and_the_citizen_can_prove_it(
        app, client, factory) -> None:
    import base64
    import json
    import re

    from idp import merkle
    from idp.db import get_session
    from idp.models import AuditEvent, ClaimRelease
    from idp.signed_note import Checkpoint, Verifier

    citizen = factory.citizen()
    info = register_portal(app)
    portal = Portal(client, info["client_id"], info["secret"], info["redirect_uri"])
    result = portal.sign_in(citizen.nik, citizen.password, scope="openid profile email")
    tokens = portal.token(result["code"]).get_json()
    assert client.get("/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
                      ).status_code == 200
    with app.app_context():
        session = get_session()
        releases = session.scalars(select(ClaimRelease).order_by(ClaimRelease.id)).all()
        assert [r.channel for r in releases] == ["id_token", "userinfo"]
        for release in releases:
            event = session.get(AuditEvent, release.audit_event_id)
            assert event is not None and event.event == "claims_released"
            assert event.details == {"channel": release.channel, "claims": release.claims}
            assert event.citizen_id == str(citizen.id) and event.client_id == release.client_id
        release_id = releases[-1].id

    # Before the checkpointer has folded it in, the citizen is told to come back.
    early = client.get(f"/account/activity/{release_id}/proof?lang=en")
    assert early.status_code == 302
    assert "not ready yet" in client.get("/account/activity?lang=en").get_data(as_text=True)

    assert app.test_cli_runner().invoke(args=["audit", "checkpoint"]).exit_code == 0
    page = client.get("/account/activity?lang=en").get_data(as_text=True)
    assert re.search(rf'href="/account/activity/{release_id}/proof"', page)
    assert "Download proof" in page and "data protection authority" in page  # said in plain words
    halaman = client.get("/account/activity?lang=id").get_data(as_text=True)
    assert "Unduh bukti" in halaman and "otoritas pelindungan data" in halaman
    download = client.get(f"/account/activity/{release_id}/proof")
    assert download.status_code == 200 and "attachment" in download.headers["Content-Disposition"]
    proof = json.loads(download.get_data(as_text=True))
    assert proof["release"]["claims"] == releases[-1].claims
    # Checked against what SatuID publishes, not against its database.
    published = client.get("/audit/checkpoint").get_data(as_text=True)
    key = Verifier.parse(client.get("/audit/key").get_data(as_text=True))
    signed = Checkpoint.parse(key.open(published) or "")
    assert json.loads(proof["leaf"])["details"]["channel"] == "userinfo"
    assert merkle.verify_inclusion(merkle.leaf_hash(proof["leaf"].encode()), proof["leaf_index"],
                                   signed.size, [base64.b64decode(h) for h in proof["inclusion_path"]],
                                   signed.root)

    # Nobody else's release, and no one logged out.
    from tests.conftest import AuthActions

    other, stranger = factory.citizen(), app.test_client()
    assert "/login" in stranger.get(f"/account/activity/{release_id}/proof").headers["Location"]
    AuthActions(stranger).login(other.nik, other.password)
    assert stranger.get(f"/account/activity/{release_id}/proof").status_code == 404
