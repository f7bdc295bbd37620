"""Key files for every gpuproof CLI: a new key from a fresh BIP-39 mnemonic (shown once, for
backup), or an existing one imported — a 32-byte secret seed (`subkey inspect` prints it as
"Secret seed: 0x…") or a mnemonic with an optional `//` derivation path (`gpuproof.protocol.mnemonic`).

Secrets are read from stdin, behind a hidden prompt on a terminal: never from the command line, so
they stay out of shell history and the process list, and they are never echoed or logged. The
key file is created with mode 0600 and never overwritten.
"""

from __future__ import annotations

import getpass
import hmac
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from gpuproof.cli.output import KEY_PATH_FIELD, ExitCode, fail
from gpuproof.protocol.keys import Scheme, SigningKey
from gpuproof.protocol.mnemonic import MnemonicError, generate_mnemonic, key_from_uri
from gpuproof.protocol.ss58 import DBC_PREFIX, Ss58Error, account_key, encode

err = Console(stderr=True, soft_wrap=True)


def read_secret_seed(as_json: bool) -> bytes:
    text = getpass.getpass("secret seed (hex): ") if sys.stdin.isatty() else sys.stdin.readline()
    text = text.strip().removeprefix("0x")
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        fail("the secret seed must be 32 bytes of hex (64 characters, 0x optional)", as_json, ExitCode.USAGE)
    return seed


def read_mnemonic(scheme: Scheme, as_json: bool) -> SigningKey:
    """A BIP-39 phrase (optionally `//derivation`) from stdin; refused (exit 2) when invalid."""
    text = getpass.getpass("mnemonic (12 or 24 words): ") if sys.stdin.isatty() else sys.stdin.readline()
    try:
        return key_from_uri(text, scheme)
    except MnemonicError as exc:
        fail(str(exc), as_json, ExitCode.USAGE, code="bad_mnemonic")


def address(key: SigningKey, prefix: int = DBC_PREFIX) -> str:
    """The key's SS58 address (DBC's prefix 42 unless told)."""
    return encode(bytes.fromhex(key.public_hex), prefix)


def checked(key: SigningKey, expected: str | None, as_json: bool, what: str) -> SigningKey:
    """Refused (exit 4, nothing written) unless the key's public key is `expected` (SS58 of any
    prefix, or hex with or without 0x, any case)."""
    if not expected:
        return key
    try:
        wanted = account_key(expected.strip())
    except Ss58Error as exc:
        fail(
            f"{expected!r} is neither an SS58 address nor a public key in hex: {exc}", as_json, ExitCode.USAGE
        )
    if not hmac.compare_digest(wanted, key.public_hex):
        fail(
            f"the key's {what} is {key.public_hex} ({address(key)}), not {wanted}: nothing written",
            as_json,
            ExitCode.KEY,
            code="unexpected_key",
        )
    return key


def imported_key(scheme: Scheme, expected_public: str | None, as_json: bool, what: str) -> SigningKey:
    """The key from the seed on stdin, checked against `expected_public`."""
    return checked(SigningKey.from_seed(read_secret_seed(as_json), scheme), expected_public, as_json, what)


@dataclass(frozen=True)
class NewKey:
    key: SigningKey
    source: str  # generated | seed | mnemonic
    mnemonic_shown: bool = False


def _backup_prompt(phrase: str, show: bool, yes: bool, as_json: bool) -> bool:
    """Show a generated phrase once (stderr, never stdout) and ask that it be written down.
    Shown on a terminal, or when asked (`--show-mnemonic`); never in a log by default."""
    if not (show or sys.stderr.isatty()):
        return False
    err.print(
        "[bold]recovery phrase (BIP-39)[/]: write these words down, offline; anyone with them holds "
        "this key, and they are shown only now:"
    )
    err.print(f"  {phrase}", markup=False, highlight=False)
    if not yes and sys.stdin.isatty() and not typer.confirm("Have you written the phrase down?", err=True):
        fail("key not written (the phrase was not confirmed)", as_json, ExitCode.FAILED)
    return True


def new_key(
    scheme: Scheme,
    *,
    import_seed: bool,
    import_mnemonic: bool,
    expected: str | None,
    show_mnemonic: bool,
    yes: bool,
    as_json: bool,
    what: str,
) -> NewKey:
    """What `keygen` writes: imported (seed or mnemonic, checked against `expected`) or generated."""
    if import_seed and import_mnemonic:
        fail("--import-seed and --import-mnemonic exclude each other", as_json, ExitCode.USAGE)
    if import_seed:
        return NewKey(imported_key(scheme, expected, as_json, what), "seed")
    if import_mnemonic:
        return NewKey(checked(read_mnemonic(scheme, as_json), expected, as_json, what), "mnemonic")
    if expected:
        fail("--expect-* checks an imported key; a new key is random", as_json, ExitCode.USAGE)
    phrase = generate_mnemonic()
    key = key_from_uri(phrase, scheme)
    shown = _backup_prompt(phrase, show_mnemonic, yes, as_json)
    return NewKey(key, "generated", shown)


def write_key(path: Path, made: NewKey, as_json: bool) -> dict[str, Any]:
    """Create the key file (mode 0600, never overwriting); the summary every keygen prints."""
    try:
        made.key.save(path)
    except FileExistsError:
        fail(f"refusing to overwrite existing key file {path}", as_json, ExitCode.KEY, code="key_exists")
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror}", as_json, ExitCode.KEY)
    return {
        "public_key": made.key.public_hex,
        "address": address(made.key),
        KEY_PATH_FIELD: str(path),
        "scheme": made.key.scheme.value,
        "imported": made.source != "generated",
        "source": made.source,
        "mnemonic_shown": made.mnemonic_shown,
    }


def refuse_existing(path: Path, as_json: bool) -> None:
    if path.exists():
        fail(f"refusing to overwrite existing key file {path}", as_json, ExitCode.KEY, code="key_exists")
