"""Synthetic, consistent residents for the demo registry and for benchmarks.

Every resident is a pure function of its index: the same index always gives the same person, so
seeding is deterministic and running it twice inserts nothing new. The NIK is built from the
resident's region, birth date and sex and validates; the index decides region, sex, birth date and
serial injectively, so no two residents share a NIK. Names, streets and KK numbers come from a
random generator seeded per batch. Region codes follow Kemendagri's pattern (province codes are the
real ones); the people are invented.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from idp.identity import nik as nikmod


@dataclass(frozen=True)
class Region:
    code: str  # province + regency + district, 6 digits
    district: str
    regency: str
    province: str
    birth_place: str  # how people from here write their birthplace on the KTP
    villages: tuple[tuple[str, str], ...]  # (village, postal code)
    surnames: tuple[str, ...] = ()  # family names common here, if any


REGIONS: tuple[Region, ...] = (
    Region("317106", "Menteng", "Kota Jakarta Pusat", "DKI Jakarta", "Jakarta",
           (("Menteng", "10310"), ("Pegangsaan", "10320"), ("Cikini", "10330"),
            ("Kebon Sirih", "10340"), ("Gondangdia", "10350"))),
    Region("317407", "Kebayoran Baru", "Kota Jakarta Selatan", "DKI Jakarta", "Jakarta",
           (("Selong", "12110"), ("Gunung", "12120"), ("Kramat Pela", "12130"),
            ("Gandaria Utara", "12140"), ("Cipete Utara", "12150"), ("Melawai", "12160"),
            ("Petogogan", "12170"), ("Rawa Barat", "12180"), ("Senayan", "12190"))),
    Region("327302", "Coblong", "Kota Bandung", "Jawa Barat", "Bandung",
           (("Cipaganti", "40131"), ("Lebak Siliwangi", "40132"), ("Lebak Gede", "40132"),
            ("Sadang Serang", "40133"), ("Sekeloa", "40134"), ("Dago", "40135"))),
    Region("337403", "Candisari", "Kota Semarang", "Jawa Tengah", "Semarang",
           (("Jatingaleh", "50254"), ("Jomblang", "50256"), ("Candi", "50257"),
            ("Kaliwiru", "50253"), ("Wonotingal", "50252"))),
    Region("347102", "Gondokusuman", "Kota Yogyakarta", "DI Yogyakarta", "Yogyakarta",
           (("Demangan", "55221"), ("Klitren", "55222"), ("Terban", "55223"),
            ("Kotabaru", "55224"), ("Baciro", "55225"))),
    Region("357805", "Gubeng", "Kota Surabaya", "Jawa Timur", "Surabaya",
           (("Gubeng", "60281"), ("Kertajaya", "60282"), ("Pucang Sewu", "60283"),
            ("Baratajaya", "60284"), ("Mojo", "60285"), ("Airlangga", "60286"))),
    Region("517101", "Denpasar Selatan", "Kota Denpasar", "Bali", "Denpasar",
           (("Sesetan", "80223"), ("Sidakarya", "80224"), ("Panjer", "80225"),
            ("Renon", "80226"), ("Sanur", "80228"))),
    Region("127104", "Medan Baru", "Kota Medan", "Sumatera Utara", "Medan",
           (("Babura", "20153"), ("Darat", "20153"), ("Merdeka", "20153"),
            ("Padang Bulan", "20155"), ("Titi Rantai", "20157")),
           ("Siregar", "Nasution", "Harahap", "Lubis", "Simanjuntak", "Sitompul", "Marpaung",
            "Sinaga", "Hutapea", "Pardede")),
    Region("137101", "Padang Utara", "Kota Padang", "Sumatera Barat", "Padang",
           (("Ulak Karang Utara", "25133"), ("Air Tawar Barat", "25132"),
            ("Lolong Belanti", "25136"), ("Gunung Pangilun", "25137"),
            ("Alai Parak Kopi", "25173"))),
    Region("117101", "Baiturrahman", "Kota Banda Aceh", "Aceh", "Banda Aceh",
           (("Peuniti", "23241"), ("Seutui", "23243"), ("Ateuk Jawo", "23243"),
            ("Neusu Aceh", "23244"))),
    Region("187101", "Tanjung Karang Pusat", "Kota Bandar Lampung", "Lampung", "Bandar Lampung",
           (("Kaliawi", "35112"), ("Durian Payung", "35116"), ("Palapa", "35116"),
            ("Gotong Royong", "35119"))),
    Region("647201", "Samarinda Ulu", "Kota Samarinda", "Kalimantan Timur", "Samarinda",
           (("Sidodadi", "75123"), ("Dadi Mulya", "75123"), ("Gunung Kelua", "75123"),
            ("Air Hitam", "75124"))),
    Region("737113", "Rappocini", "Kota Makassar", "Sulawesi Selatan", "Makassar",
           (("Gunung Sari", "90221"), ("Karunrung", "90222"), ("Mappala", "90222"),
            ("Tidung", "90222"), ("Bonto Makkio", "90222"))),
    Region("917101", "Jayapura Utara", "Kota Jayapura", "Papua", "Jayapura",
           (("Gurabesi", "99111"), ("Bhayangkara", "99112"), ("Imbi", "99112"),
            ("Mandala", "99113"), ("Angkasapura", "99113")),
           ("Kogoya", "Wenda", "Tabuni", "Wonda", "Murib", "Mandowen", "Rumbiak", "Ayomi")),
)
_BY_CODE = {r.code: r for r in REGIONS}

MALE = ("Budi", "Agus", "Ahmad", "Andi", "Rizky", "Dedi", "Joko", "Hendra", "Fajar", "Yusuf",
        "Eko", "Bambang", "Arif", "Hadi", "Irfan", "Teguh", "Wahyu", "Rudi", "Dimas", "Gilang",
        "Bayu", "Aditya", "Muhammad", "Rahmat", "Slamet", "Taufik", "Yohanes", "Fransiskus",
        "Reza", "Ilham", "Hasan", "Iwan", "Surya", "Galih", "Anton")
FEMALE = ("Siti", "Dewi", "Sri", "Rina", "Putri", "Ayu", "Indah", "Nur", "Wulan", "Fitri",
          "Ratna", "Maya", "Yuni", "Dian", "Kartika", "Intan", "Nurul", "Anisa", "Rahmawati",
          "Lestari", "Mega", "Citra", "Endang", "Wati", "Sari", "Novita", "Maria", "Agustina",
          "Ani", "Rini", "Eka", "Yulia", "Tuti", "Hana", "Larasati")
MALE_SECOND = ("Santoso", "Wijaya", "Saputra", "Pratama", "Hidayat", "Nugroho", "Setiawan",
               "Kurniawan", "Gunawan", "Susanto", "Firmansyah", "Ramadhan", "Prasetyo",
               "Hakim", "Syahputra", "Maulana", "Wibowo", "Sudirman", "Purnomo", "Halim")
FEMALE_SECOND = ("Rahayu", "Lestari", "Wulandari", "Handayani", "Puspitasari", "Permata",
                 "Safitri", "Anggraini", "Kusumawati", "Susanti", "Maharani", "Pertiwi",
                 "Utami", "Ningsih", "Febriani", "Oktaviani", "Sulistyowati", "Rahmadani")
BALI_MALE = ("I Wayan", "I Made", "I Nyoman", "I Ketut", "I Putu", "I Gede", "I Komang")
BALI_FEMALE = ("Ni Wayan", "Ni Made", "Ni Nyoman", "Ni Ketut", "Ni Putu", "Ni Luh", "Ni Komang")
BALI_GIVEN = ("Sudarma", "Arsana", "Suartika", "Widiastuti", "Sukerti", "Astiti", "Mahendra",
              "Suryani", "Darmayasa", "Artini", "Wirawan", "Ariani")
STREETS = ("Jl. Merdeka", "Jl. Sudirman", "Jl. Diponegoro", "Jl. Pahlawan", "Jl. Kartini",
           "Jl. Gatot Subroto", "Jl. Ahmad Yani", "Jl. Veteran", "Jl. Cendrawasih", "Jl. Melati",
           "Jl. Mawar", "Jl. Kenanga", "Jl. Flamboyan", "Jl. Teuku Umar", "Jl. Imam Bonjol",
           "Jl. Hasanuddin", "Jl. Pattimura", "Jl. Gajah Mada", "Gg. Mangga", "Jl. Kebon Jeruk")

BIRTH_FROM = dt.date(1940, 1, 1)
BIRTH_TO = dt.date(2007, 12, 31)
_DAYS = (BIRTH_TO - BIRTH_FROM).days + 1
# Index -> (region, sex, birth date) is a permutation of this many combinations; past it, the serial
# grows. Multiplying by a stride coprime to it spreads neighbours over regions, sexes and dates.
_COMBINATIONS = len(REGIONS) * 2 * _DAYS
_STRIDE = next(p for p in range(104_729, 10**7) if math.gcd(p, _COMBINATIONS) == 1)
FIRST_SYNTHETIC_SERIAL = 1000  # serials below are kept for the named demo residents
#: The serial has four digits, so this many synthetic residents exist (over six billion).
MAX_RESIDENTS = (10_000 - FIRST_SYNTHETIC_SERIAL) * _COMBINATIONS
BATCH = 10_000  # residents drawn from one seeded generator

#: The registry columns of a line of ``copy_text``. The region's fixed columns come last, so that
#: a region's tail is one ready-made string.
COPY_COLUMNS = ("nik", "birth_date", "sex", "full_name", "birth_place", "street_address", "village",
                "postal_code", "family_card_number", "district", "regency", "province")
BENCH_EMAIL_DOMAIN = "bench.satuid.example"  # RFC 2606: never delivered anywhere


def _ddmmyy(day: dt.date, day_offset: int = 0) -> str:
    return f"{day.day + day_offset:02d}{day.month:02d}{day.year % 100:02d}"


def _full_names(region: Region, sex: str) -> tuple[str, ...]:
    if region.province == "Bali":
        return tuple(f"{title} {given}" for title in (BALI_FEMALE if sex == "F" else BALI_MALE)
                     for given in BALI_GIVEN)
    second = region.surnames or (FEMALE_SECOND if sex == "F" else MALE_SECOND)
    return tuple(f"{first} {last}" for first in (FEMALE if sex == "F" else MALE) for last in second)


@dataclass(frozen=True)
class _RegionText:
    """A region's pieces of a COPY line."""

    code: str
    names: tuple[tuple[str, ...], ...]  # full names, by sex in ``nikmod.SEXES`` order
    birth_places: tuple[str, ...]  # about four in five are the region's own
    villages: tuple[str, ...]  # "village<TAB>postal code"
    tail: str  # district, regency, province and the line's end


@dataclass(frozen=True)
class _Pieces:
    """Every string a row is made of."""

    iso_dates: tuple[str, ...]  # birth dates, by day since BIRTH_FROM
    nik_dates: tuple[tuple[str, ...], ...]  # the NIK's DDMMYY, by sex in ``nikmod.SEXES`` order
    streets: tuple[str, ...]
    rt_rw: tuple[str, ...]
    kk_issued: tuple[str, ...]
    kk_serials: tuple[str, ...]
    regions: tuple[_RegionText, ...]  # in ``REGIONS`` order


# Generating ten million residents in Python is the slow side of seeding, so every string a row is
# made of is built once, and a row is a few table look-ups joined into one COPY text line. Once on
# first use, not at import: every web worker imports this module (the demo seeders are part of the
# app) and never makes a resident, and the tables take some 9 MiB.
# None of these strings holds a tab, newline or backslash, which COPY text would need escaped.
@cache
def _pieces() -> _Pieces:
    birth_days = [BIRTH_FROM + dt.timedelta(days=d) for d in range(_DAYS)]
    return _Pieces(
        iso_dates=tuple(day.isoformat() for day in birth_days),
        nik_dates=tuple(tuple(_ddmmyy(day, nikmod.WOMEN_DAY_OFFSET if sex == "F" else 0)
                              for day in birth_days) for sex in nikmod.SEXES),
        streets=tuple(f"{street} No. {number}" for street in STREETS for number in range(1, 200)),
        rt_rw=tuple(f" RT {rt:03d} RW {rw:03d}" for rt in range(1, 16) for rw in range(1, 12)),
        kk_issued=tuple(_ddmmyy(dt.date(2005, 1, 1) + dt.timedelta(days=d)) for d in range(7000)),
        kk_serials=tuple(f"{n:04d}" for n in range(1, 10_000)),
        regions=tuple(
            _RegionText(region.code, tuple(_full_names(region, sex) for sex in nikmod.SEXES),
                        (region.birth_place,) * 56 + tuple(r.birth_place for r in REGIONS),
                        tuple(f"{village}\t{postal}" for village, postal in region.villages),
                        f"{region.district}\t{region.regency}\t{region.province}\n")
            for region in REGIONS),
    )


def family_card_number(rng: random.Random, region_code: str) -> str:
    """A KK number: region (6), the card's issue date DDMMYY, a serial (4)."""
    issued = dt.date(2005, 1, 1) + dt.timedelta(days=rng.randrange(7000))
    return f"{region_code}{issued:%d%m}{issued.year % 100:02d}{rng.randrange(1, 10000):04d}"


def nik_of(index: int) -> str:
    """Synthetic resident ``index``'s NIK, without making the rest of the resident.

    The index decides region, sex, birth date and serial alone (no random draw), one to one, so
    NIKs never repeat and a benchmark can name any resident by its index.
    """
    if not 0 <= index < MAX_RESIDENTS:
        raise ValueError(f"synthetic residents are numbered 0 to {MAX_RESIDENTS - 1}")
    block, position = divmod(index, _COMBINATIONS)
    rest, r = divmod(position * _STRIDE % _COMBINATIONS, len(REGIONS))
    day, s = divmod(rest, 2)
    return f"{REGIONS[r].code}{_pieces().nik_dates[s][day]}{FIRST_SYNTHETIC_SERIAL + block}"


def bench_email(index: int) -> str:
    """The verified email address of the benchmark account of synthetic resident ``index``."""
    return f"warga{index}@{BENCH_EMAIL_DOMAIN}"


def copy_text(start: int, stop: int) -> Iterator[str]:
    """Synthetic residents ``start`` to ``stop - 1`` as PostgreSQL COPY text (``COPY_COLUMNS``, a
    line each), one string per block of at most ``BATCH``.

    Each block of ``BATCH`` indexes draws from a generator seeded with the block's number, 80 bits
    a resident in index order, so a resident is the same whatever range it is made in.
    """
    if not 0 <= start <= stop <= MAX_RESIDENTS:
        raise ValueError(f"synthetic residents are numbered 0 to {MAX_RESIDENTS - 1}")
    for block_start in range(start - start % BATCH, stop, BATCH):
        first, last = max(start, block_start), min(stop, block_start + BATCH)
        yield "".join(_block_lines(block_start, first, last))


def _block_lines(block_start: int, first: int, last: int) -> Iterator[str]:
    draw = random.Random(f"satuid-resident-block-{block_start // BATCH}").getrandbits
    for _ in range(first - block_start):
        draw(80)
    pieces = _pieces()
    regions, n_regions, sexes = pieces.regions, len(pieces.regions), nikmod.SEXES
    iso, nik_dates = pieces.iso_dates, pieces.nik_dates
    streets, rt_rw, kk_issued, kk_serials = (pieces.streets, pieces.rt_rw, pieces.kk_issued,
                                             pieces.kk_serials)
    n_streets, n_rt_rw, n_issued, n_serials = len(streets), len(rt_rw), len(kk_issued), len(kk_serials)
    for index in range(first, last):
        # The NIK as in nik_of (inlined: this loop runs ten million times).
        block, position = divmod(index, _COMBINATIONS)
        rest, r = divmod(position * _STRIDE % _COMBINATIONS, n_regions)
        day, s = divmod(rest, 2)
        region = regions[r]
        nik = f"{region.code}{nik_dates[s][day]}{FIRST_SYNTHETIC_SERIAL + block}"
        # One draw, read as a mixed-radix number: one digit per random column.
        names = region.names[s]
        x, name = divmod(draw(80), len(names))
        x, place = divmod(x, len(region.birth_places))
        x, street = divmod(x, n_streets)
        x, rt = divmod(x, n_rt_rw)
        x, village = divmod(x, len(region.villages))
        x, issued = divmod(x, n_issued)
        yield (f"{nik}\t{iso[day]}\t{sexes[s]}\t{names[name]}\t{region.birth_places[place]}\t"
               f"{streets[street]}{rt_rw[rt]}\t{region.villages[village]}\t"
               f"{region.code}{kk_issued[issued]}{kk_serials[x % n_serials]}\t{region.tail}")


def resident_rows(start: int, stop: int) -> Iterator[dict[str, str]]:
    """The same residents as ``copy_text``, as rows keyed by column (dates as ISO text)."""
    for text in copy_text(start, stop):
        for line in text.splitlines():
            yield dict(zip(COPY_COLUMNS, line.split("\t"), strict=True))


@dataclass(frozen=True)
class DemoPerson:
    """A named resident of the demo; ``email``/``password`` set for those who get an account."""

    full_name: str
    sex: str
    birth_date: dt.date
    region_code: str
    serial: int
    village: str
    street_address: str
    email: str | None = None
    password: str | None = None

    @property
    def nik(self) -> str:
        return nikmod.build(self.region_code, self.birth_date, self.sex, self.serial)

    def resident_row(self) -> dict[str, object]:
        region = _BY_CODE[self.region_code]
        postal = dict(region.villages)[self.village]
        rng = random.Random(f"satuid-demo-{self.nik}")
        return {
            "nik": self.nik, "full_name": self.full_name, "birth_place": region.birth_place,
            "birth_date": self.birth_date, "sex": self.sex, "street_address": self.street_address,
            "village": self.village, "district": region.district, "regency": region.regency,
            "province": region.province, "postal_code": postal,
            "family_card_number": family_card_number(rng, self.region_code),
        }


DEMO_CITIZENS: tuple[DemoPerson, ...] = (
    DemoPerson("Siti Rahayu", "F", dt.date(1990, 8, 17), "317106", 1, "Cikini",
               "Jl. Cikini Raya No. 73 RT 004 RW 001", "siti@demo.satuid.id",
               "Kopi-Tubruk-Pagi-Hari-17"),
    DemoPerson("Budi Santoso", "M", dt.date(1985, 3, 9), "357805", 2, "Kertajaya",
               "Jl. Kertajaya Indah No. 12 RT 002 RW 005", "budi@demo.satuid.id",
               "Rendang-Pedas-Minang-88"),
    DemoPerson("I Wayan Sudarma", "M", dt.date(1978, 11, 2), "517101", 3, "Sanur",
               "Jl. Danau Tamblingan No. 41 RT 003 RW 002", "wayan@demo.satuid.id",
               "Pantai-Sanur-Senja-Indah-7"),
)

# Residents without an account, so a visitor can try registration.
DEMO_REGISTRANTS: tuple[DemoPerson, ...] = (
    DemoPerson("Dewi Lestari", "F", dt.date(1994, 3, 12), "347102", 4, "Kotabaru",
               "Jl. Suroto No. 9 RT 001 RW 003"),
    DemoPerson("Andi Pratama", "M", dt.date(2000, 1, 25), "737113", 5, "Karunrung",
               "Jl. Sultan Alauddin No. 150 RT 005 RW 002"),
    DemoPerson("Rina Marpaung", "F", dt.date(1988, 6, 30), "127104", 6, "Padang Bulan",
               "Jl. Jamin Ginting No. 88 RT 002 RW 004"),
    DemoPerson("Yohanes Kogoya", "M", dt.date(1992, 9, 14), "917101", 7, "Imbi",
               "Jl. Percetakan No. 21 RT 001 RW 001"),
)
