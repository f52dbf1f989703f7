"""Which of Indonesia's three zones a citizen's times are shown in: their choice, else their
NIK's province's."""

from __future__ import annotations

from idp.models import Citizen


def of_nik(nik: str) -> str:
    """The IANA zone of the NIK's province (Perpres 41/1987): WITA from Bali, South, East and North
    Kalimantan and Sulawesi; WIT in Maluku and Papua; WIB elsewhere (and for a malformed NIK)."""
    code = nik[:2]
    if code in ("51", "52", "53", "63", "64", "65") or code.startswith("7"):
        return "Asia/Makassar"
    if code.startswith(("8", "9")):
        return "Asia/Jayapura"
    return "Asia/Jakarta"


def of_citizen(citizen: Citizen) -> str:
    """The IANA zone to show this citizen's times in."""
    return citizen.time_zone or of_nik(citizen.nik)
