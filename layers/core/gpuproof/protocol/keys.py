"""Keys of machines and committee members: key files (mode 0600), signing, verifying.

Two schemes: Ed25519 (the default) and sr25519 (Schnorrkel, DBC's own, "substrate" signing
context) so a machine already bonded on DBC can reuse its node key. Either way the public key
is 32 bytes and its hex is the machine_id or member account.

An sr25519 key derived with a `//` path (`gpuproof.protocol.mnemonic`) has no 32-byte seed, only
schnorrkel's 64-byte secret key (key ‖ nonce): its key file holds those 64 bytes.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import sr25519
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_FILE_MODE = 0o600
SEED_BYTES = 32
SR25519_SECRET_BYTES = 64  # schnorrkel's expanded secret key: what a `//` derivation yields
PUBLIC_KEY_HEX_LEN = 64
SIGNATURE_HEX_LEN = 128


class Scheme(StrEnum):
    ed25519 = "ed25519"
    sr25519 = "sr25519"


class KeyFileError(Exception):
    """A key file is missing, malformed, or readable by others."""


@dataclass(frozen=True)
class SigningKey:
    """A private key and its scheme. Its repr never shows the secret.

    Key files hold the 32-byte seed as hex; an sr25519 file prefixes it with "sr25519:" (and may
    hold a derived key's 64-byte secret instead of a seed).
    """

    _seed: bytes = field(repr=False)
    scheme: Scheme = Scheme.ed25519

    def __post_init__(self) -> None:
        derived = self.scheme is Scheme.sr25519 and len(self._seed) == SR25519_SECRET_BYTES
        if len(self._seed) != SEED_BYTES and not derived:
            raise ValueError("a key seed is 32 bytes (an sr25519 secret key 64)")

    @classmethod
    def generate(cls, scheme: Scheme = Scheme.ed25519) -> SigningKey:
        return cls(os.urandom(32), Scheme(scheme))

    @classmethod
    def from_seed(cls, seed: bytes, scheme: Scheme = Scheme.ed25519) -> SigningKey:
        return cls(seed, Scheme(scheme))

    @classmethod
    def from_sr25519_secret(cls, secret: bytes) -> SigningKey:
        """An sr25519 key from schnorrkel's 64-byte secret key (a derived key has no seed)."""
        if len(secret) != SR25519_SECRET_BYTES:
            raise ValueError("an sr25519 secret key is 64 bytes")
        return cls(secret, Scheme.sr25519)

    def _sr25519_pair(self) -> tuple[bytes, bytes]:
        if len(self._seed) == SR25519_SECRET_BYTES:
            return bytes(sr25519.public_from_secret_key(self._seed)), self._seed
        public, secret = sr25519.pair_from_seed(self._seed)
        return bytes(public), bytes(secret)

    def _ed25519(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self._seed)

    @property
    def public_hex(self) -> str:
        if self.scheme is Scheme.sr25519:
            return self._sr25519_pair()[0].hex()
        raw = (
            self._ed25519()
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return raw.hex()

    def sign(self, message: bytes) -> bytes:
        if self.scheme is Scheme.sr25519:
            return bytes(sr25519.sign(self._sr25519_pair(), message))
        return self._ed25519().sign(message)

    def seed(self) -> bytes:
        return self._seed

    def __repr__(self) -> str:
        return f"SigningKey(scheme={self.scheme.value}, public={self.public_hex})"

    def save(self, path: Path) -> None:
        """Write the seed as hex to a new file created with mode 0600 (never wider)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix = "" if self.scheme is Scheme.ed25519 else f"{self.scheme.value}:"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        try:
            os.fchmod(fd, KEY_FILE_MODE)
            os.write(fd, (prefix + self._seed.hex() + "\n").encode())
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
        scheme = Scheme.ed25519
        if ":" in text:
            name, text = text.split(":", 1)
            try:
                scheme = Scheme(name)
            except ValueError as exc:
                raise KeyFileError(f"key file {path} names an unknown scheme") from exc
        try:
            seed = bytes.fromhex(text)
        except ValueError as exc:
            raise KeyFileError(f"key file {path} is not hex") from exc
        if len(seed) == SR25519_SECRET_BYTES and scheme is Scheme.sr25519:
            return cls.from_sr25519_secret(seed)
        if len(seed) != SEED_BYTES:
            raise KeyFileError(f"key file {path} must hold a 32-byte seed")
        return cls.from_seed(seed, scheme)


def is_public_key_hex(value: str) -> bool:
    if len(value) != PUBLIC_KEY_HEX_LEN:
        return False
    try:
        bytes.fromhex(value)
    except ValueError:
        return False
    return value == value.lower()


def _verify_ed25519(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _verify_sr25519(public: bytes, message: bytes, signature: bytes) -> bool:
    try:
        return bool(sr25519.verify(signature, message, public))
    except (ValueError, TypeError):
        return False


def verify(public_hex: str, message: bytes, signature: bytes, scheme: Scheme | None = None) -> bool:
    """True when `signature` is a valid signature of `message` by `public_hex`.

    With `scheme` (an RFC 9421 `alg`), only that scheme; without it (signed reports, commitments,
    bond messages, which name no scheme), a signature valid under either scheme for this key.
    """
    if not is_public_key_hex(public_hex) or len(signature) != 64:
        return False
    public = bytes.fromhex(public_hex)
    if scheme in (None, Scheme.ed25519) and _verify_ed25519(public, message, signature):
        return True
    return scheme in (None, Scheme.sr25519) and _verify_sr25519(public, message, signature)
