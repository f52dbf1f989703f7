"""Portal Layanan Kesehatan: a health-service portal whose medical records need two-step verification."""

from __future__ import annotations

import hashlib

from flask import Flask, render_template

from clients.portal import PortalConfig, assurance_required, create_portal, current_user, pages_blueprint

pages = pages_blueprint(__name__)


@pages.get("/rekam-medis")
@assurance_required
def medical_records() -> str:
    """Medical records: sensitive health data (UU PDP art. 4), so level of assurance 2 is required."""
    user = current_user()
    assert user is not None
    # Example data, the same for a citizen every time (derived from the portal's pairwise sub).
    seed = int(hashlib.sha256(user["sub"].encode()).hexdigest(), 16)
    clinics = ["Puskesmas Menteng", "RSUD Tarakan", "Klinik Pratama Cikini"]
    visits = [
        {"date": f"2026-0{1 + (seed >> (8 * i)) % 9}-{10 + (seed >> (4 * i)) % 18}",
         "clinic": clinics[(seed >> i) % len(clinics)],
         "note": ["Pemeriksaan umum", "Imunisasi", "Kontrol tekanan darah"][(seed >> (2 * i)) % 3]}
        for i in range(3)
    ]
    return render_template("medical_records.html", visits=sorted(visits, key=lambda v: v["date"]))


CONFIG = PortalConfig(
    name="health",
    title="Portal Layanan Kesehatan",
    title_en="Health Services Portal",
    theme="theme-health",
    client_id="portal-kesehatan",
    client_secret="demo-secret-portal-kesehatan-0001",
    scopes="openid profile nik",
    pages=pages,
    sensitive_endpoint="pages.medical_records",
    sensitive_label="Rekam medis",
    base_url="http://127.0.0.1:5001",
)


def create_app(config: PortalConfig | None = None) -> Flask:
    return create_portal(config or CONFIG.from_environment())
