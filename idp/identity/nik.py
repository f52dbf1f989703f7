"""The NIK (Nomor Induk Kependudukan): parsing and validation.

Sixteen digits (UU 24/2013 on population administration, Permendagri on the NIK): province (2),
regency/city (2), district (2), birth date DDMMYY with 40 added to the day for women, and a serial
(4, never 0000). Province codes are Kemendagri's, including the Papua provinces created in 2022.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

PROVINCES: dict[str, str] = {
    "11": "Aceh", "12": "Sumatera Utara", "13": "Sumatera Barat", "14": "Riau", "15": "Jambi",
    "16": "Sumatera Selatan", "17": "Bengkulu", "18": "Lampung",
    "19": "Kepulauan Bangka Belitung", "21": "Kepulauan Riau", "31": "DKI Jakarta",
    "32": "Jawa Barat", "33": "Jawa Tengah", "34": "DI Yogyakarta", "35": "Jawa Timur",
    "36": "Banten", "51": "Bali", "52": "Nusa Tenggara Barat", "53": "Nusa Tenggara Timur",
    "61": "Kalimantan Barat", "62": "Kalimantan Tengah", "63": "Kalimantan Selatan",
    "64": "Kalimantan Timur", "65": "Kalimantan Utara", "71": "Sulawesi Utara",
    "72": "Sulawesi Tengah", "73": "Sulawesi Selatan", "74": "Sulawesi Tenggara",
    "75": "Gorontalo", "76": "Sulawesi Barat", "81": "Maluku", "82": "Maluku Utara",
    "91": "Papua", "92": "Papua Barat", "93": "Papua Selatan", "94": "Papua Tengah",
    "95": "Papua Pegunungan", "96": "Papua Barat Daya",
}

SEXES = ("M", "F")  # as on the KTP: L (laki-laki) and P (perempuan)
WOMEN_DAY_OFFSET = 40
_SEPARATORS = " .-\u00a0\t"


class InvalidNik(ValueError):
    """Why a string is not a NIK; ``reason`` is a stable code for messages and tests.

    Reasons: ``format`` (not 16 digits), ``province``, ``region`` (regency or district 00),
    ``bad_date``, ``serial`` (0000).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Nik:
    """A valid NIK and what it encodes."""

    value: str
    province_code: str
    regency_code: str
    district_code: str
    birth_date: dt.date
    sex: str  # "M" or "F"
    serial: str

    @property
    def province(self) -> str:
        return PROVINCES[self.province_code]

    @property
    def region_code(self) -> str:
        return self.province_code + self.regency_code + self.district_code


def mask(value: str) -> str:
    """A NIK as SatuID shows it where it may be seen by others (a page, an authenticator app's
    label, a message): the region and the serial, never the birth date between them."""
    return value[:6] + "******" + value[-4:]


def normalise(raw: str) -> str:
    """Drop the spaces, dots and dashes people type between digit groups."""
    return "".join(ch for ch in raw.strip() if ch not in _SEPARATORS)


def _birth_date(day: int, month: int, yy: int, today: dt.date) -> dt.date:
    """The NIK has a two-digit year: take the most recent date that is not in the future."""
    for year in (2000 + yy, 1900 + yy):
        try:
            born = dt.date(year, month, day)
        except ValueError:
            continue  # 29 February exists in 2000 but not in 1900
        if born <= today:
            return born
    raise InvalidNik("bad_date")


def _check_region(region: str) -> None:
    if len(region) != 6 or not region.isascii() or not region.isdigit():
        raise InvalidNik("format")
    if region[:2] not in PROVINCES:
        raise InvalidNik("province")
    if region[2:4] == "00" or region[4:6] == "00":
        raise InvalidNik("region")


def parse(raw: str, *, today: dt.date | None = None) -> Nik:
    """Parse and validate a NIK, or raise :class:`InvalidNik`."""
    if len(raw) > 64:
        raise InvalidNik("format")
    value = normalise(raw)
    if len(value) != 16 or not value.isascii() or not value.isdigit():
        raise InvalidNik("format")
    _check_region(value[:6])
    day, month, yy = int(value[6:8]), int(value[8:10]), int(value[10:12])
    sex = "F" if day > WOMEN_DAY_OFFSET else "M"
    if sex == "F":
        day -= WOMEN_DAY_OFFSET
    if not 1 <= day <= 31 or not 1 <= month <= 12:
        raise InvalidNik("bad_date")
    born = _birth_date(day, month, yy, today or dt.date.today())
    serial = value[12:16]
    if serial == "0000":
        raise InvalidNik("serial")
    return Nik(value, value[0:2], value[2:4], value[4:6], born, sex, serial)


def build(region_code: str, birth_date: dt.date, sex: str, serial: int) -> str:
    """Compose a NIK from its parts (the inverse of :func:`parse`, used for synthetic residents)."""
    _check_region(region_code)
    if sex not in SEXES:
        raise ValueError(f"sex must be one of {SEXES}")
    if not 1 <= serial <= 9999:
        raise InvalidNik("serial")
    day = birth_date.day + (WOMEN_DAY_OFFSET if sex == "F" else 0)
    return f"{region_code}{day:02d}{birth_date.month:02d}{birth_date.year % 100:02d}{serial:04d}"


def matches_registry(nik: Nik, birth_date: dt.date, sex: str) -> bool:
    """The date and sex encoded in the NIK agree with the registry's record.

    The NIK holds only two digits of the year, so the century is not compared.
    """
    return (
        (nik.birth_date.day, nik.birth_date.month, nik.birth_date.year % 100)
        == (birth_date.day, birth_date.month, birth_date.year % 100)
        and nik.sex == sex
    )
