"""Ed25519 keys of machines and committee members: key files (mode 0600), signing, verifying."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE_MODE = 0o600
PUBLIC_KEY_HEX_LEN = 64
SIGNATURE_HEX_LEN = 128


class KeyFileError(Exception):
    """A key file is missing, malformed, or readable by others."""


@dataclass(frozen=True)
class SigningKey:
    """A private Ed25519 key. Its repr never shows the secret."""

    _key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> SigningKey:
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def public_hex(self) -> str:
        raw = self._key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return raw.hex()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def seed(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def __repr__(self) -> str:
        return f"SigningKey(public={self.public_hex})"

    def save(self, path: Path) -> None:
        """Write the 32-byte seed as hex to a new file created with mode 0600 (never wider)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        try:
            os.fchmod(fd, KEY_FILE_MODE)
            os.write(fd, (self.seed().hex() + "\n").encode())
        finally:
            os.close(fd)

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """Read a key file; refuse one that group or others can read or write."""
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError as exc:
            raise KeyFileError(f"no key file at {path}") from exc
        if mode & 0o077:
            raise KeyFileError(f"key file {path} has mode {mode:04o}; it must be 0600 (chmod 600 {path})")
        text = path.read_text().strip()
        try:
            seed = bytes.fromhex(text)
        except ValueError as exc:
            raise KeyFileError(f"key file {path} is not hex") from exc
        if len(seed) != 32:
            raise KeyFileError(f"key file {path} must hold a 32-byte Ed25519 seed")
        return cls.from_seed(seed)


def is_public_key_hex(value: str) -> bool:
    if len(value) != PUBLIC_KEY_HEX_LEN:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return value == value.lower()


def verify(public_hex: str, message: bytes, signature: bytes) -> bool:
    """True when `signature` is a valid Ed25519 signature of `message` by `public_hex`."""
    if not is_public_key_hex(public_hex) or len(signature) != 64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_hex)).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
