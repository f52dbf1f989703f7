"""NIK parsing and validation: fixed cases and properties over every valid combination of parts."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from idp.identity import nik as nikmod
from idp.identity.nik import PROVINCES, InvalidNik, build, matches_registry, normalise, parse

TODAY = dt.date(2026, 11, 23)


def test_parses_a_mans_nik_into_its_parts() -> None:
    n = parse("3171060903850002", today=TODAY)
    assert (n.province_code, n.regency_code, n.district_code) == ("31", "71", "06")
    assert n.province == "DKI Jakarta" and n.region_code == "317106"
    assert n.birth_date == dt.date(1985, 3, 9)
    assert n.sex == "M" and n.serial == "0002"


def test_women_have_forty_added_to_the_day() -> None:
    n = parse("3171065708900001", today=TODAY)
    assert n.sex == "F" and n.birth_date == dt.date(1990, 8, 17)


@pytest.mark.parametrize("typed", ["3171 0657 0890 0001", "31.71.06.570890.0001",
                                   " 3171-0657-0890-0001 ", "3171\u00a0065708900001"])
def test_separators_people_type_are_ignored(typed: str) -> None:
    assert parse(typed, today=TODAY).value == "3171065708900001"


def test_two_digit_year_is_the_latest_not_in_the_future() -> None:
    assert parse("3171060101250001", today=TODAY).birth_date == dt.date(2025, 1, 1)
    assert parse("3171060112260001", today=TODAY).birth_date == dt.date(1926, 12, 1)
    assert parse("3171062902000001", today=TODAY).birth_date == dt.date(2000, 2, 29)


def test_provinces_of_papua_created_in_2022_are_known() -> None:
    for code in ("93", "94", "95", "96"):
        assert parse(f"{code}01010101900001", today=TODAY).province_code == code


@pytest.mark.parametrize(("value", "reason"), [
    ("317106570890000", "format"),      # 15 digits
    ("31710657089000011", "format"),    # 17 digits
    ("317106570890000a", "format"),
    ("３１７１０６５７０８９０００１", "format"),  # full-width digits are not ASCII
    ("", "format"),
    ("1" * 65, "format"),
    ("9971065708900001", "province"),   # 99 is no province
    ("2071065708900001", "province"),
    ("3100065708900001", "region"),     # regency 00
    ("3171005708900001", "region"),     # district 00
    ("3171060013900001", "bad_date"),   # month 13
    ("3171063202900001", "bad_date"),   # day 32 (a man)
    ("3171064002900001", "bad_date"),   # day 40: neither a man's nor a woman's
    ("3171067202900001", "bad_date"),   # day 72 (a woman's 32)
    ("3171060002900001", "bad_date"),   # day 0
    ("3171063002900001", "bad_date"),   # 30 February
    ("3171062902010001", "bad_date"),   # 29 February 2001 and 1901
    ("3171065708900000", "serial"),
])
def test_invalid_niks_are_refused_with_a_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidNik) as e:
        parse(value, today=TODAY)
    assert e.value.reason == reason


def test_matches_registry_compares_date_and_sex() -> None:
    n = parse("3171065708900001", today=TODAY)
    assert matches_registry(n, dt.date(1990, 8, 17), "F")
    assert matches_registry(n, dt.date(1890, 8, 17), "F")  # the NIK cannot tell the century
    assert not matches_registry(n, dt.date(1990, 8, 17), "M")
    assert not matches_registry(n, dt.date(1990, 8, 18), "F")


def test_build_refuses_parts_that_make_no_nik() -> None:
    with pytest.raises(InvalidNik):
        build("997101", dt.date(1990, 1, 1), "M", 1)
    with pytest.raises(InvalidNik):
        build("317100", dt.date(1990, 1, 1), "M", 1)
    with pytest.raises(InvalidNik):
        build("317106", dt.date(1990, 1, 1), "M", 0)
    with pytest.raises(ValueError):
        build("317106", dt.date(1990, 1, 1), "X", 1)


# ---- properties --------------------------------------------------------------------------------

regions = st.builds(
    lambda p, r, d: f"{p}{r:02d}{d:02d}",
    st.sampled_from(sorted(PROVINCES)), st.integers(1, 99), st.integers(1, 99),
)
birth_dates = st.dates(min_value=TODAY.replace(year=TODAY.year - 99) + dt.timedelta(days=1),
                       max_value=TODAY)
sexes = st.sampled_from(nikmod.SEXES)
serials = st.integers(1, 9999)


@given(regions, birth_dates, sexes, serials)
def test_build_then_parse_gives_back_every_part(region: str, born: dt.date, sex: str,
                                                serial: int) -> None:
    value = build(region, born, sex, serial)
    n = parse(value, today=TODAY)
    assert n.value == value and len(value) == 16
    assert n.region_code == region and n.birth_date == born and n.sex == sex
    assert int(n.serial) == serial
    assert matches_registry(n, born, sex)


@given(regions, birth_dates, serials)
def test_a_womans_day_is_her_birth_day_plus_forty(region: str, born: dt.date, serial: int) -> None:
    woman, man = build(region, born, "F", serial), build(region, born, "M", serial)
    assert int(woman[6:8]) == born.day + 40 and int(man[6:8]) == born.day
    assert woman[8:] == man[8:]
    assert parse(woman, today=TODAY).sex == "F" and parse(man, today=TODAY).sex == "M"


@given(st.text())
def test_any_string_that_is_not_sixteen_digits_is_refused(text: str) -> None:
    cleaned = normalise(text)
    assume(not (len(cleaned) == 16 and cleaned.isascii() and cleaned.isdigit()))
    with pytest.raises(InvalidNik) as e:
        parse(text, today=TODAY)
    assert e.value.reason == "format"


@given(st.text(alphabet="0123456789", min_size=0, max_size=40).filter(lambda s: len(s) != 16))
def test_digit_strings_of_the_wrong_length_are_refused(digits: str) -> None:
    with pytest.raises(InvalidNik):
        parse(digits, today=TODAY)


@given(st.text(alphabet="0123456789", min_size=16, max_size=16))
def test_parse_either_accepts_or_gives_a_known_reason(digits: str) -> None:
    try:
        n = parse(digits, today=TODAY)
    except InvalidNik as e:
        assert e.reason in {"province", "region", "bad_date", "serial"}
    else:
        assert n.province_code in PROVINCES and n.birth_date <= TODAY
        assert build(n.region_code, n.birth_date, n.sex, int(n.serial)) == digits
