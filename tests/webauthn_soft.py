"""A software WebAuthn authenticator for tests that speak HTTP without a browser: it answers the
options SatuID's pages fetch with the JSON ``webauthn.js`` would post (W3C WebAuthn Level 3 §6.1
authenticator data, "none" attestation, ES256), with user presence and user verification set."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

UP, UV, AT = 0x01, 0x04, 0x40  # §6.1 flags: user present, user verified, attested credential data


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SoftAuthenticator:
    """One passkey bound to this object (a single-device credential: ``hwk``)."""

    def __init__(self, rp_id: str, origin: str) -> None:
        self.rp_id = rp_id
        self.origin = origin
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.sign_count = 0

    def _client_data(self, kind: str, challenge: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": self.origin,
                           "crossOrigin": False}).encode()

    def _cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"),
                            -3: numbers.y.to_bytes(32, "big")})

    def _auth_data(self, flags: int, attested: bytes = b"") -> bytes:
        self.sign_count += 1
        return (hashlib.sha256(self.rp_id.encode()).digest() + bytes([flags])
                + self.sign_count.to_bytes(4, "big") + attested)

    def create(self, options: dict[str, Any]) -> dict[str, Any]:
        """``navigator.credentials.create`` for these options, as registrationJSON."""
        attested = (bytes(16) + len(self.credential_id).to_bytes(2, "big") + self.credential_id
                    + self._cose_key())
        auth_data = self._auth_data(UP | UV | AT, attested)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"])
        return {"id": b64u(self.credential_id), "rawId": b64u(self.credential_id),
                "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64u(client_data),
                             "attestationObject": b64u(attestation), "transports": ["internal"]}}

    def get(self, options: dict[str, Any]) -> dict[str, Any]:
        """``navigator.credentials.get`` for these options, as assertionJSON."""
        allowed = [c["id"] for c in options.get("allowCredentials", [])]
        assert b64u(self.credential_id) in allowed, "the server did not offer this passkey"
        auth_data = self._auth_data(UP | UV)
        client_data = self._client_data("webauthn.get", options["challenge"])
        signature = self.key.sign(auth_data + hashlib.sha256(client_data).digest(),
                                  ec.ECDSA(hashes.SHA256()))
        return {"id": b64u(self.credential_id), "rawId": b64u(self.credential_id),
                "type": "public-key", "clientExtensionResults": {},
                "response": {"clientDataJSON": b64u(client_data),
                             "authenticatorData": b64u(auth_data), "signature": b64u(signature)}}
