"""Demo data for second factors: a demo citizen with an authenticator app already set up.

The TOTP secret is fixed and printed (``seed-demo``'s JSON line, key ``totp_secret``) so a person
can add it to any authenticator app and try step-up. Demo only: a real seed is random and secret.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from idp import audit
from idp.auth.mfa import totp
from idp.identity.cli import ensure_demo_citizen, insert_residents
from idp.identity.synthetic import DemoPerson
from idp.models.base import utcnow

DEMO_TOTP_SECRET = "SATUIDDEMOTOTPSECRETJAKARTA23456"
DEMO_TOTP_CITIZEN = DemoPerson("Ayu Kartika", "F", dt.date(1996, 5, 21), "317106", 8, "Cikini",
                               "Jl. Raden Saleh No. 5 RT 002 RW 003", "ayu@demo.satuid.id",
                               "Batik-Parang-Solo-2024")


def seed_demo_totp(session: Session) -> list[dict[str, Any]]:
    """Create (once) the demo citizen and her confirmed authenticator; return her JSON line."""
    person = DEMO_TOTP_CITIZEN
    insert_residents(session.connection(), [person.resident_row()])
    citizen = ensure_demo_citizen(session, person)
    if totp.authenticator_of(session, citizen) is None:
        totp.begin_enrolment(session, citizen, secret=DEMO_TOTP_SECRET)
        auth = totp.authenticator_of(session, citizen)
        assert auth is not None
        auth.confirmed_at = utcnow()
        audit.append("mfa_totp_added", actor="operator:seed-demo", citizen_id=citizen.id,
                     source="demo")
    return [{"nik": person.nik, "name": person.full_name, "password": person.password,
             "email": person.email, "birth_date": person.birth_date.isoformat(),
             "totp_secret": DEMO_TOTP_SECRET}]
