"""The population registry port: who the state says a resident is.

Registration checks a citizen against it. ``PopulationRegistry`` is the port; ``DatabaseRegistry`` is
the adapter over the ``registry_resident`` table (filled by ``flask seed-demo``). The real Dukcapil
service would be one more adapter behind the same protocol, installed by ``create_app``.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from flask import current_app
from sqlalchemy.orm import Session

from idp.models import Resident


@dataclass(frozen=True)
class ResidentRecord:
    """What the registry says about one resident (religion and other fields are not asked for)."""

    nik: str
    full_name: str
    birth_place: str
    birth_date: dt.date
    sex: str  # "M" or "F"
    street_address: str  # street, number, RT/RW
    village: str  # kelurahan/desa
    district: str  # kecamatan
    regency: str  # kabupaten/kota
    province: str
    postal_code: str
    family_card_number: str  # KK


@runtime_checkable
class PopulationRegistry(Protocol):
    def lookup(self, nik: str) -> ResidentRecord | None:
        """The resident with this (normalised, 16-digit) NIK, or None when the registry has none."""
        ...


class DatabaseRegistry:
    """The registry as a table in our own database (demo data, benchmarks, tests)."""

    def __init__(self, session: Callable[[], Session]) -> None:
        self._session = session

    def lookup(self, nik: str) -> ResidentRecord | None:
        row = self._session().get(Resident, nik)
        if row is None:
            return None
        return ResidentRecord(
            nik=row.nik, full_name=row.full_name, birth_place=row.birth_place,
            birth_date=row.birth_date, sex=row.sex, street_address=row.street_address,
            village=row.village, district=row.district, regency=row.regency,
            province=row.province, postal_code=row.postal_code,
            family_card_number=row.family_card_number,
        )


def get_registry() -> PopulationRegistry:
    """The registry adapter the composition root installed for this deployment."""
    registry: PopulationRegistry = current_app.extensions["idp.registry"]
    return registry


def normalise_name(name: str) -> str:
    """Compare names as people type them: case, spacing and Unicode forms do not matter."""
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def same_name(typed: str, registered: str) -> bool:
    return normalise_name(typed) == normalise_name(registered)
