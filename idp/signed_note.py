"""Signed checkpoints in the C2SP formats that transparency logs share (Go's sumdb, Sigstore's Rekor,
the witness network): a ``tlog-checkpoint`` body signed as a ``signed-note`` with Ed25519.

So an outside monitor can check SatuID's audit checkpoints with the tools it already has: the body is

    <origin>\\n<tree size>\\n<base64 root hash>\\n<extension lines...>

and each signature line is ``— <key name> <base64(key id || signature)>``, where the key id is the
first four bytes of SHA-256(name || "\\n" || 0x01 || public key). The verifier key is published as
``<name>+<hex key id>+<base64(0x01 || public key)>``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ED25519 = b"\x01"
_DASH = "\u2014 "


def key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ED25519 + public).digest()[:4]


def _raw(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


_NAME = re.compile(r"[^\s+]+")  # a key name: no spaces, no "+" (C2SP signed-note)
_SIZE = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True)
class Signer:
    name: str
    key: Ed25519PrivateKey

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ValueError(f"not a signed-note key name: {self.name!r}")

    @property
    def public(self) -> bytes:
        return _raw(self.key.public_key())

    @property
    def verifier_key(self) -> str:
        public = self.public
        return f"{self.name}+{key_id(self.name, public).hex()}+{base64.b64encode(ED25519 + public).decode()}"

    def sign(self, body: str) -> str:
        """The note: ``body`` (ending in a newline), a blank line, and this key's signature line."""
        if not body.endswith("\n") or "\n\n" in body:
            raise ValueError("a note body ends with one newline and has no blank line")
        signature = key_id(self.name, self.public) + self.key.sign(body.encode())
        return f"{body}\n{_DASH}{self.name} {base64.b64encode(signature).decode()}\n"


@dataclass(frozen=True)
class Verifier:
    name: str
    id: bytes
    key: Ed25519PublicKey

    @classmethod
    def parse(cls, text: str) -> Verifier:
        name, hex_id, encoded = text.strip().split("+", 2)  # the base64 part may hold "+"
        raw = base64.b64decode(encoded, validate=True)
        if raw[:1] != ED25519 or len(raw) != 33:
            raise ValueError("not an Ed25519 verifier key")
        if key_id(name, raw[1:]) != bytes.fromhex(hex_id):
            raise ValueError("the verifier key's id does not match its key")
        return cls(name, bytes.fromhex(hex_id), Ed25519PublicKey.from_public_bytes(raw[1:]))

    def open(self, note: str) -> str | None:
        """The note's body if one of its signatures is this key's and valid, else None."""
        body, sep, signatures = note.rpartition("\n\n")
        if not sep:
            return None
        body += "\n"
        for line in signatures.splitlines():
            if not line.startswith(_DASH):
                return None
            name, _, encoded = line[len(_DASH):].partition(" ")
            if name != self.name:
                continue
            try:
                raw = base64.b64decode(encoded, validate=True)
            except ValueError:
                return None
            if raw[:4] != self.id:
                continue
            try:
                self.key.verify(raw[4:], body.encode())
            except InvalidSignature:
                return None
            return body
        return None


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode(), *self.extensions]
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        lines = body.rstrip("\n").split("\n")
        if len(lines) < 3 or not _SIZE.fullmatch(lines[1]) or not lines[1].isascii():
            raise ValueError("not a checkpoint")
        root = base64.b64decode(lines[2], validate=True)
        if len(root) != 32:
            raise ValueError("a checkpoint's root is a SHA-256 hash")
        return cls(lines[0], int(lines[1]), root, tuple(lines[3:]))


def load_or_create(path: str, name: str, *, create: bool) -> Signer:
    """The signing key kept at ``path`` (PEM, mode 0600); created there when ``create`` allows (of
    two processes creating it at once, one writes it and both use that one)."""
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except FileNotFoundError:
        if not create:
            raise
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        try:
            fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            if time.time() - os.path.getmtime(path + ".new") > 30:  # left by a crash
                os.unlink(path + ".new")
                return load_or_create(path, name, create=create)
            return _wait_for(path, name)
        try:
            os.write(fd, pem)
        finally:
            os.close(fd)
        os.link(path + ".new", path)  # appears whole or not at all
        os.unlink(path + ".new")
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return Signer(name, key)


def _wait_for(path: str, name: str) -> Signer:
    for _ in range(50):
        if os.path.exists(path):
            return load_or_create(path, name, create=False)
        time.sleep(0.1)
    raise FileNotFoundError(path)
