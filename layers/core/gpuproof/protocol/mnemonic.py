"""BIP-39 mnemonics and Substrate secret URIs (`PHRASE//hard/soft///password`) for gpuproof keys.

The libraries are Polkascan's: py-bip39-bindings (the Rust `tiny-bip39` crate substrate uses)
for the phrase — its mini secret is the key's seed, for sr25519 and Ed25519 alike, as
substrate-interface's `Keypair.create_from_mnemonic` does — and substrate-interface's
`Keypair.create_from_uri` for derivation paths (`//Alice`), imported only then (it is heavy).
The same phrase and path give the same account as `subkey` and polkadot.js. Derivations are what
that library supports: sr25519 hard and soft junctions; Ed25519 none (it refuses them, and so do
we). A derived sr25519 key has no seed, only its 64-byte secret key, which is what its key file
then holds (`SigningKey.from_sr25519_secret`).

Nothing here logs, prints or keeps a phrase: the CLI shows a generated one once, for backup.
"""

from __future__ import annotations

from gpuproof.protocol.keys import SEED_BYTES, SR25519_SECRET_BYTES, Scheme, SigningKey

WORDS = 12


class MnemonicError(ValueError):
    """Not a valid BIP-39 phrase or secret URI, or a derivation the scheme does not support."""


def _crypto_type(scheme: Scheme) -> int:
    from substrateinterface import KeypairType

    return int(KeypairType.SR25519 if scheme is Scheme.sr25519 else KeypairType.ED25519)


def generate_mnemonic(words: int = WORDS) -> str:
    from bip39 import bip39_generate

    return str(bip39_generate(words))


def key_from_uri(uri: str, scheme: Scheme) -> SigningKey:
    """The key a BIP-39 phrase, optionally followed by a derivation path, names."""
    from bip39 import bip39_to_mini_secret, bip39_validate

    text = " ".join(uri.split())
    if not text:
        raise MnemonicError("empty mnemonic")
    phrase = text.split("/", 1)[0].strip()
    if phrase and not bip39_validate(phrase):
        raise MnemonicError("not a valid BIP-39 mnemonic (a word or the checksum is wrong)")
    if phrase == text:  # no derivation path: the phrase's mini secret is the seed
        return SigningKey.from_seed(bytes(bip39_to_mini_secret(phrase, "")), scheme)
    from substrateinterface import Keypair

    try:
        pair = Keypair.create_from_uri(text, crypto_type=_crypto_type(scheme))
    except NotImplementedError as exc:
        raise MnemonicError(f"{scheme.value} keys have no derivation paths; use --scheme sr25519") from exc
    except ValueError as exc:
        raise MnemonicError(f"not a valid secret URI: {exc}") from exc
    seed = bytes(pair.seed_hex) if isinstance(pair.seed_hex, bytes) else None
    if seed is None and isinstance(pair.seed_hex, str):
        seed = bytes.fromhex(pair.seed_hex.removeprefix("0x"))
    if seed is not None and len(seed) == SEED_BYTES:
        key = SigningKey.from_seed(seed, scheme)
    elif scheme is Scheme.sr25519 and len(pair.private_key) == SR25519_SECRET_BYTES:
        key = SigningKey.from_sr25519_secret(bytes(pair.private_key))
    else:
        raise MnemonicError("the library gave no usable secret for this URI")
    if key.public_hex != bytes(pair.public_key).hex():
        raise MnemonicError("the derived key does not match the library's public key")
    return key
