"""Portal Bantuan Sosial: a social-assistance portal whose aid application needs two-step verification."""

from __future__ import annotations

import secrets

from flask import Flask, render_template, request, session

from clients.portal import PortalConfig, assurance_required, create_portal, pages_blueprint

pages = pages_blueprint(__name__)

PROGRAMMES = {
    "pkh": "Program Keluarga Harapan (PKH)",
    "bpnt": "Bantuan Pangan Non-Tunai (BPNT)",
    "pip": "Program Indonesia Pintar (PIP)",
}


@pages.route("/pengajuan-bantuan", methods=["GET", "POST"])
@assurance_required
def aid_application() -> str:
    """An aid application commits public money in the citizen's name: level of assurance 2."""
    reference = None
    if request.method == "POST" and request.form.get("programme") in PROGRAMMES:
        reference = f"BANSOS-{secrets.token_hex(4).upper()}"
        session.setdefault("applications", []).append(
            {"reference": reference, "programme": PROGRAMMES[request.form["programme"]]})
        session.modified = True
    return render_template("aid_application.html", programmes=PROGRAMMES, reference=reference,
                           applications=session.get("applications", []))


CONFIG = PortalConfig(
    name="social",
    title="Portal Bantuan Sosial",
    title_en="Social Assistance Portal",
    theme="theme-social",
    client_id="portal-bansos",
    client_secret="demo-secret-portal-bansos-0002",
    scopes="openid profile address",
    pages=pages,
    sensitive_endpoint="pages.aid_application",
    sensitive_label="Pengajuan bantuan",
    base_url="http://127.0.0.1:5002",
)


def create_app(config: PortalConfig | None = None) -> Flask:
    return create_portal(config or CONFIG.from_environment())
