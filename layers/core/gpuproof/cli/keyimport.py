"""Importing an existing key (e.g. a DBC sr25519 account or node key) into a gpuproof key file.

The 32-byte secret seed (`subkey inspect` prints it as "Secret seed: 0x…") is read from stdin,
behind a hidden prompt on a terminal: never from the command line, so it stays out of shell
history and the process list, and it is never echoed or logged.
"""

from __future__ import annotations

import getpass
import hmac
import sys

from gpuproof.cli.output import fail
from gpuproof.protocol.keys import Scheme, SigningKey


def read_secret_seed(as_json: bool) -> bytes:
    text = getpass.getpass("secret seed (hex): ") if sys.stdin.isatty() else sys.stdin.readline()
    text = text.strip().removeprefix("0x")
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        fail("the secret seed must be 32 bytes of hex (64 characters, 0x optional)", as_json, 2)
    return seed


def imported_key(scheme: Scheme, expected_public: str | None, as_json: bool, what: str) -> SigningKey:
    """The key from the seed on stdin; refused (exit 2) unless its public key is `expected_public`."""
    key = SigningKey.from_seed(read_secret_seed(as_json), scheme)
    wanted = (expected_public or "").lower().removeprefix("0x")
    if wanted and not hmac.compare_digest(wanted, key.public_hex):
        fail(f"the key's {what} is {key.public_hex}, not {wanted}: nothing written", as_json, 2)
    return key
