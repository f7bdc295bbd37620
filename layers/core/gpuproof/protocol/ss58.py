"""SS58 addresses (Substrate's account encoding) and account keys compared as public keys.

An account is named either by SS58 (base58 of prefix ‖ 32-byte public key ‖ checksum, any network
prefix) or by the 32-byte public key in hex (with or without 0x). `public_key` turns either into
the key, verifying the checksum; two names of one key compare equal with `account_key`.

Byte layout (docs.substrate.io, "SS58 address format"): prefix 0–63 is one byte; 64–16383 two
bytes, b0 = 0b01 ‖ bits 2..7 of the prefix, b1 = bits 8..13 ‖ bits 0..1 (in b1's top two bits).
Checksum: the first 2 bytes of blake2b-512(b"SS58PRE" ‖ prefix bytes ‖ public key).
Hand-written (docs/decisions.md): the probe's dependencies hold no SS58 library.
"""

from __future__ import annotations

import hashlib
import hmac
import re

ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_PREFIX = b"SS58PRE"
_CHECKSUM_BYTES = 2
KEY_BYTES = 32
DBC_PREFIX = 42  # DBC uses Substrate's generic prefix: addresses start with "5"
MAX_PREFIX = 16383
_HEX_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")


class Ss58Error(ValueError):
    """Not an SS58 address of a 32-byte account (why is in the message)."""


def b58decode(text: str) -> bytes:
    n = 0
    for c in text:
        digit = _INDEX.get(c)
        if digit is None:
            raise Ss58Error(f"{c!r} is not a base58 character")
        n = n * 58 + digit
    body = n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b""
    return b"\0" * (len(text) - len(text.lstrip("1"))) + body


def b58encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(ALPHABET[r])
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + "".join(reversed(out))


def _checksum(prefix_bytes: bytes, key: bytes) -> bytes:
    return hashlib.blake2b(_PREFIX + prefix_bytes + key, digest_size=64).digest()[:_CHECKSUM_BYTES]


def _prefix_bytes(prefix: int) -> bytes:
    if not 0 <= prefix <= MAX_PREFIX or prefix in (46, 47):
        raise Ss58Error(f"{prefix} is not an SS58 network prefix (0–16383, 46 and 47 reserved)")
    if prefix < 64:
        return bytes([prefix])
    return bytes([((prefix & 0b1111_1100) >> 2) | 0b0100_0000, (prefix >> 8) | ((prefix & 0b11) << 6)])


def decode(address: str) -> tuple[int, bytes]:
    """(network prefix, 32-byte public key) of an SS58 address; Ss58Error unless the checksum holds."""
    if not 47 <= len(address) <= 50:
        raise Ss58Error(f"an SS58 address of a 32-byte account has 47–50 characters, not {len(address)}")
    data = b58decode(address)
    if not data:
        raise Ss58Error("empty address")
    if data[0] & 0b1000_0000:
        raise Ss58Error("the first byte's top bit is reserved")
    if data[0] & 0b0100_0000:
        if len(data) < 2:
            raise Ss58Error("truncated two-byte prefix")
        prefix = ((data[0] & 0b0011_1111) << 2) | (data[1] >> 6) | ((data[1] & 0b0011_1111) << 8)
        head = 2
    else:
        prefix, head = data[0], 1
    if len(data) != head + KEY_BYTES + _CHECKSUM_BYTES:
        raise Ss58Error(f"{len(data) - head - _CHECKSUM_BYTES} payload bytes; an account has {KEY_BYTES}")
    key, checksum = data[head : head + KEY_BYTES], data[head + KEY_BYTES :]
    if not hmac.compare_digest(checksum, _checksum(data[:head], key)):
        raise Ss58Error("the SS58 checksum does not match (a mistyped or altered address)")
    if data[:head] != _prefix_bytes(prefix):
        raise Ss58Error("the prefix is not in its canonical encoding")
    return prefix, key


def encode(key: bytes, prefix: int = DBC_PREFIX) -> str:
    if len(key) != KEY_BYTES:
        raise Ss58Error(f"a public key has {KEY_BYTES} bytes, not {len(key)}")
    head = _prefix_bytes(prefix)
    return b58encode(head + key + _checksum(head, key))


def public_key(account: str) -> bytes:
    """The 32-byte public key an account names: SS58 (any prefix, checksum verified) or hex."""
    if _HEX_KEY.match(account):
        return bytes.fromhex(account.removeprefix("0x"))
    return decode(account)[1]


def account_key(account: str) -> str:
    """The account's public key as 64 lowercase hex characters (what accounts are compared by)."""
    return public_key(account).hex()


def account_key_or_none(account: str) -> str | None:
    try:
        return account_key(account)
    except Ss58Error:
        return None


def is_valid_ss58(address: str) -> bool:
    try:
        decode(address)
    except Ss58Error:
        return False
    return True
