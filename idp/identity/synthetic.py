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
BATCH = 10_000


def _person_name(rng: random.Random, region: Region, sex: str) -> str:
    if region.province == "Bali":
        title = rng.choice(BALI_FEMALE if sex == "F" else BALI_MALE)
        return f"{title} {rng.choice(BALI_GIVEN)}"
    first = rng.choice(FEMALE if sex == "F" else MALE)
    if region.surnames:
        return f"{first} {rng.choice(region.surnames)}"
    return f"{first} {rng.choice(FEMALE_SECOND if sex == 'F' else MALE_SECOND)}"


def family_card_number(rng: random.Random, region_code: str) -> str:
    """A KK number: region (6), the card's issue date DDMMYY, a serial (4)."""
    issued = dt.date(2005, 1, 1) + dt.timedelta(days=rng.randrange(7000))
    return f"{region_code}{issued:%d%m}{issued.year % 100:02d}{rng.randrange(1, 10000):04d}"


def resident_row(index: int, rng: random.Random) -> dict[str, object]:
    """The synthetic resident number ``index`` as a registry row (names drawn from ``rng``)."""
    block, position = divmod(index, _COMBINATIONS)
    combination = (position * _STRIDE) % _COMBINATIONS
    rest, r = divmod(combination, len(REGIONS))
    region = REGIONS[r]
    days, s = divmod(rest, 2)
    sex = nikmod.SEXES[s]
    birth = BIRTH_FROM + dt.timedelta(days=days)
    serial = FIRST_SYNTHETIC_SERIAL + block
    village, postal = rng.choice(region.villages)
    return {
        "nik": nikmod.build(region.code, birth, sex, serial),
        "full_name": _person_name(rng, region, sex),
        "birth_place": region.birth_place if rng.random() < 0.8 else rng.choice(REGIONS).birth_place,
        "birth_date": birth,
        "sex": sex,
        "street_address": f"{rng.choice(STREETS)} No. {rng.randrange(1, 200)} "
                          f"RT {rng.randrange(1, 16):03d} RW {rng.randrange(1, 12):03d}",
        "village": village,
        "district": region.district,
        "regency": region.regency,
        "province": region.province,
        "postal_code": postal,
        "family_card_number": family_card_number(rng, region.code),
    }


def residents(count: int) -> Iterator[list[dict[str, object]]]:
    """The first ``count`` synthetic residents, in blocks of ``BATCH``; the same index always gives
    the same person, whatever ``count`` is (each block has its own seeded generator)."""
    for start in range(0, count, BATCH):
        rng = random.Random(f"satuid-resident-block-{start // BATCH}")
        yield [resident_row(index, rng) for index in range(start, min(start + BATCH, count))]


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
