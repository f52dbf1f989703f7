"""The population-registry port and its database adapter."""

from __future__ import annotations

import datetime as dt

from flask import Flask

from idp.identity.registry import (
    DatabaseRegistry,
    PopulationRegistry,
    ResidentRecord,
    get_registry,
    normalise_name,
    same_name,
)
from tests.conftest import Factory


def test_database_adapter_satisfies_the_protocol(app: Flask) -> None:
    with app.app_context():
        from idp.db import get_session

        assert isinstance(DatabaseRegistry(get_session), PopulationRegistry)
        assert isinstance(get_registry(), DatabaseRegistry)


def test_lookup_returns_the_residents_record(app: Flask, factory: Factory) -> None:
    resident = factory.resident(full_name="Dewi Lestari", birth_date=dt.date(1994, 3, 12), sex="F")
    with app.app_context():
        record = get_registry().lookup(resident.nik)
        assert isinstance(record, ResidentRecord)
        assert record.full_name == "Dewi Lestari" and record.sex == "F"
        assert record.birth_date == dt.date(1994, 3, 12)
        assert record.family_card_number == resident.family_card_number
        assert record.province and record.regency and record.district and record.village
        assert get_registry().lookup("3171060101900001") is None


def test_another_adapter_can_replace_the_table(app: Flask) -> None:
    class OneResident:
        """What a Dukcapil client would look like to SatuID."""

        def lookup(self, nik: str) -> ResidentRecord | None:
            return None

    app.extensions["idp.registry"] = OneResident()
    with app.app_context():
        assert isinstance(get_registry(), OneResident)
        assert isinstance(get_registry(), PopulationRegistry)


def test_names_compare_without_case_spacing_or_unicode_form() -> None:
    assert same_name("  siti   RAHAYU ", "Siti Rahayu")
    assert same_name("Ｓｉｔｉ Rahayu", "Siti Rahayu")  # full-width letters typed on some phones
    assert not same_name("Siti Rahayuu", "Siti Rahayu")
    assert normalise_name("I  Wayan\tSudarma") == "i wayan sudarma"
