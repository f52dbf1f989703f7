"""Passkeys (W3C WebAuthn Level 3) through py_webauthn: registration and assertion ceremonies.

The relying party id and origin come from the settings (``IDP_WEBAUTHN_RP_ID``,
``IDP_WEBAUTHN_ORIGIN``). User verification is required in both ceremonies, so a passkey proves
possession and a PIN or biometric at once: level 3. Challenges live in the store, keyed on the SSO
session, and are taken once (§13.4.3: a challenge must not be reused). The user name an
authenticator shows is the masked NIK.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from idp import state
from idp.identity import nik as nikmod
from idp.models import Citizen
from idp.models.base import utcnow
from idp.models.mfa import Passkey
from idp.state import WebauthnChallenge

TIMEOUT_MS = 120_000


class PasskeyRejected(Exception):
    """The browser's response did not verify (wrong origin, no user verification, replay...)."""


def _settings() -> tuple[str, str]:
    s = current_app.config["IDP"]
    return s.webauthn_rp_id, s.webauthn_origin


def passkeys_of(session: Session, citizen: Citizen) -> list[Passkey]:
    return list(session.scalars(select(Passkey).where(Passkey.citizen_id == citizen.id)
                                .order_by(Passkey.created_at)))


def _descriptors(passkeys: list[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    out = []
    for p in passkeys:
        transports = []
        for t in p.transports or []:
            try:
                transports.append(AuthenticatorTransport(t))
            except ValueError:
                continue
        out.append(PublicKeyCredentialDescriptor(id=p.credential_id, transports=transports or None))
    return out


def registration_options(session: Session, citizen: Citizen, ceremony: str) -> str:
    """Options for ``navigator.credentials.create`` as JSON; the challenge is kept for ``register``."""
    rp_id, _origin = _settings()
    options = generate_registration_options(
        rp_id=rp_id,
        rp_name="SatuID",
        user_id=citizen.id.bytes,  # random, carries no personal data (§14.6.1)
        user_name=nikmod.mask(citizen.nik),  # shown by authenticators: never the whole NIK
        user_display_name=citizen.full_name,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=_descriptors(passkeys_of(session, citizen)),
    )
    state.passkey_registrations.put(
        WebauthnChallenge(challenge=bytes_to_base64url(options.challenge), citizen_id=str(citizen.id)),
        ceremony)
    return options_to_json(options)


def register(session: Session, citizen: Citizen, ceremony: str, credential: dict[str, Any],
             name: str) -> Passkey:
    pending = state.passkey_registrations.take(ceremony)
    if pending is None or pending.citizen_id != str(citizen.id):
        raise PasskeyRejected("no registration in progress")
    rp_id, origin = _settings()
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(pending.challenge),
            expected_rp_id=rp_id,
            expected_origin=origin,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as e:
        raise PasskeyRejected(str(e)) from e
    transports = credential.get("response", {}).get("transports") or []
    passkey = Passkey(
        citizen_id=citizen.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=[str(t) for t in transports if isinstance(t, str)][:8],
        device_type=verified.credential_device_type.value,
        name=(name.strip() or "Passkey")[:64],
    )
    session.add(passkey)
    try:
        session.flush()
    except IntegrityError as e:  # the same credential registered twice
        session.rollback()
        raise PasskeyRejected("credential already registered") from e
    return passkey


def authentication_options(session: Session, citizen: Citizen, ceremony: str,
                           allowed: list[Passkey] | None = None) -> str:
    """Options for ``navigator.credentials.get`` limited to this citizen's passkeys (``allowed``:
    only those)."""
    rp_id, _origin = _settings()
    options = generate_authentication_options(
        rp_id=rp_id,
        timeout=TIMEOUT_MS,
        allow_credentials=_descriptors(passkeys_of(session, citizen) if allowed is None else allowed),
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    state.passkey_assertions.put(
        WebauthnChallenge(challenge=bytes_to_base64url(options.challenge), citizen_id=str(citizen.id)),
        ceremony)
    return options_to_json(options)


def authenticate(session: Session, citizen: Citizen, ceremony: str,
                 credential: dict[str, Any]) -> Passkey:
    """Verify an assertion; returns the passkey used (user verification was required)."""
    pending = state.passkey_assertions.take(ceremony)
    if pending is None or pending.citizen_id != str(citizen.id):
        raise PasskeyRejected("no authentication in progress")
    try:
        raw_id = base64url_to_bytes(str(credential.get("rawId") or credential.get("id") or ""))
    except ValueError as e:
        raise PasskeyRejected("bad credential id") from e
    passkey = session.scalar(select(Passkey).where(Passkey.credential_id == raw_id,
                                                   Passkey.citizen_id == citizen.id))
    if passkey is None:
        raise PasskeyRejected("unknown credential")
    rp_id, origin = _settings()
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=base64url_to_bytes(pending.challenge),
            expected_rp_id=rp_id,
            expected_origin=origin,
            credential_public_key=passkey.public_key,
            credential_current_sign_count=passkey.sign_count,
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError) as e:
        raise PasskeyRejected(str(e)) from e
    passkey.sign_count = verified.new_sign_count
    passkey.device_type = verified.credential_device_type.value
    passkey.last_used_at = utcnow()
    return passkey


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError as e:
        raise PasskeyRejected("body is not JSON") from e
    if not isinstance(value, dict):
        raise PasskeyRejected("body is not a JSON object")
    return value


def find(session: Session, citizen: Citizen, passkey_id: str) -> Passkey | None:
    try:
        pid = uuid.UUID(passkey_id)
    except ValueError:
        return None
    return session.scalar(select(Passkey).where(Passkey.id == pid, Passkey.citizen_id == citizen.id))
