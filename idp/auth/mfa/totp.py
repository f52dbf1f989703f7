"""Authenticator apps (TOTP, RFC 6238) with the seed encrypted at rest.

The seed is encrypted with AES-256-GCM under a key derived by HKDF-SHA256 (RFC 5869) from the
key-encryption key (``IDP_KEY_ENCRYPTION_KEY``) with info ``totp``; the citizen's id is the
associated data, so a ciphertext copied onto another citizen's row does not decrypt.
"""

from __future__ import annotations

import base64
import hmac
import os
import time

import pyotp
import segno
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app
from sqlalchemy import select
from sqlalchemy.orm import Session

from idp import codes, state
from idp.identity import nik as nikmod
from idp.models import Citizen
from idp.models.base import utcnow
from idp.models.mfa import TotpAuthenticator
from idp.state import Stamp

ISSUER_NAME = "SatuID"
STEP = 30
#: One step either side of now (RFC 6238 §5.2 recommends at most one step of allowed drift).
VALID_WINDOW = 1
_VERSION = "v1:"


def _key() -> bytes:
    kek = current_app.config["IDP"].key_encryption_key.encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"totp").derive(kek)


def encrypt_secret(secret: str, citizen_id: str) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(_key()).encrypt(nonce, secret.encode(), citizen_id.encode())
    return _VERSION + base64.urlsafe_b64encode(nonce + sealed).decode()


def decrypt_secret(token: str, citizen_id: str) -> str:
    if not token.startswith(_VERSION):
        raise ValueError("unknown TOTP secret format")
    raw = base64.urlsafe_b64decode(token[len(_VERSION):])
    return AESGCM(_key()).decrypt(raw[:12], raw[12:], citizen_id.encode()).decode()


def authenticator_of(session: Session, citizen: Citizen) -> TotpAuthenticator | None:
    return session.scalar(select(TotpAuthenticator).where(TotpAuthenticator.citizen_id == citizen.id))


def begin_enrolment(session: Session, citizen: Citizen, secret: str | None = None) -> str:
    """Create (or replace) an unconfirmed authenticator and return its seed to show once."""
    existing = authenticator_of(session, citizen)
    if existing is not None and existing.confirmed:
        raise ValueError("an authenticator is already enrolled; remove it first")
    secret = secret or pyotp.random_base32(32)  # 160 bits, RFC 4226 §4 R6
    encrypted = encrypt_secret(secret, str(citizen.id))
    if existing is None:
        session.add(TotpAuthenticator(citizen_id=citizen.id, secret_encrypted=encrypted))
    else:
        existing.secret_encrypted = encrypted
        existing.created_at = utcnow()
    session.flush()
    return secret


def provisioning_uri(secret: str, citizen: Citizen) -> str:
    # Label: the masked NIK, so a screenshot of the phone does not leak the whole number.
    label = nikmod.mask(citizen.nik)
    return pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=ISSUER_NAME)


def qr_svg_data_uri(uri: str) -> str:
    """The otpauth:// URI as an SVG QR code, rendered here (no third-party image service)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2)


def secret_of(auth: TotpAuthenticator) -> str:
    return decrypt_secret(auth.secret_encrypted, str(auth.citizen_id))


def check_code(auth: TotpAuthenticator, code: str, now: float | None = None) -> bool:
    """Accept a code once: it must match a step within the window and not have been used.

    The matching step is claimed once (``state.totp_steps_used``); a code shown again within its
    window (a replay, or a phished code used twice) is refused.
    """
    code = codes.digits(code)
    if len(code) != 6:
        return False
    now = time.time() if now is None else now
    totp = pyotp.TOTP(secret_of(auth))
    current = int(now // STEP)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if hmac.compare_digest(totp.at(step * STEP), code):
            return state.totp_steps_used.put_if_absent(
                Stamp(at=int(now)), str(auth.citizen_id), str(step), ttl=STEP * (2 * VALID_WINDOW + 2))
    return False


def confirm(session: Session, auth: TotpAuthenticator, code: str) -> bool:
    """Confirm an enrolment with a first code from the app; until then the authenticator does not count."""
    if not check_code(auth, code):
        return False
    auth.confirmed_at = utcnow()
    auth.last_used_at = auth.confirmed_at
    return True


def verify(session: Session, citizen: Citizen, code: str) -> bool:
    auth = authenticator_of(session, citizen)
    if auth is None or not auth.confirmed or not check_code(auth, code):
        return False
    auth.last_used_at = utcnow()
    return True


def remove(session: Session, citizen: Citizen) -> bool:
    auth = authenticator_of(session, citizen)
    if auth is None:
        return False
    session.delete(auth)
    return True
