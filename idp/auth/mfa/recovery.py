"""Recovery codes: ten single-use codes, shown once, stored as SHA-256 digests.

Why SHA-256 and not argon2: each code carries 80 random bits (16 base32 characters), so no
dictionary or brute-force attack on a leaked digest is feasible, and a slow hash would add nothing
but cost. A fast, unsalted-per-code digest also lets the lookup be one indexed query instead of ten
argon2 verifications per attempt (which would be a denial-of-service lever). The citizen's id is
mixed in, so equal digests never link two citizens.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import delete, update
from sqlalchemy.orm import Session

from idp.db import rowcount
from idp.models import Citizen
from idp.models.base import utcnow
from idp.models.mfa import RecoveryCode

COUNT = 10
_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: codes are typed from paper
_LENGTH = 16  # 16 symbols of 31: about 79 bits


def _normalise(code: str) -> str:
    return "".join(ch for ch in code.upper() if ch.isalnum())


def digest(citizen: Citizen, code: str) -> str:
    return hashlib.sha256(f"{citizen.id}:{_normalise(code)}".encode()).hexdigest()


def _new_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))
    return "-".join(raw[i:i + 4] for i in range(0, _LENGTH, 4))


def regenerate(session: Session, citizen: Citizen) -> list[str]:
    """Replace every code of the citizen with ten new ones; the caller shows them once."""
    session.execute(delete(RecoveryCode).where(RecoveryCode.citizen_id == citizen.id))
    codes = [_new_code() for _ in range(COUNT)]
    session.add_all(RecoveryCode(citizen_id=citizen.id, code_hash=digest(citizen, c)) for c in codes)
    session.flush()
    return codes


def use(session: Session, citizen: Citizen, code: str) -> bool:
    """Spend one code. The conditional UPDATE makes two simultaneous uses of a code yield one success."""
    if len(_normalise(code)) != _LENGTH:
        return False
    result = session.execute(
        update(RecoveryCode)
        .where(RecoveryCode.citizen_id == citizen.id,
               RecoveryCode.code_hash == digest(citizen, code),
               RecoveryCode.used_at.is_(None))
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


def remove_all(session: Session, citizen: Citizen) -> int:
    return rowcount(session.execute(delete(RecoveryCode).where(RecoveryCode.citizen_id == citizen.id)))
