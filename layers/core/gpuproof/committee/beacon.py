"""The randomness beacon: a SHA-256 hash chain whose tip is published before any value is used.

Chain: x_0 = SHA-256(seed), x_{k+1} = SHA-256(x_k), tip = x_N (published in advance). Values
are revealed in reverse: beacon value number i (1 ≤ i ≤ N) is x_{N-i}, so SHA-256 applied i
times to value i gives the tip, and SHA-256 of value i gives value i-1 (value 0 = the tip).
Anyone holding the tip checks a revealed value without trusting the service.

Limit: whoever holds the seed knows every future value; the service must fix which value a draw
uses (the next unrevealed index) before it knows the machine. A `Beacon` backed by the hash of a
chain block at a future height removes that trust and can replace this one.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol

VALUE_BYTES = 32
MAX_CHAIN_LENGTH = 1_000_000


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class Beacon(Protocol):
    """A source of public random values committed before use."""

    def commitment(self) -> bytes:
        """What was published in advance (a hash-chain tip; for a chain, e.g. the target height)."""
        ...

    def value(self, index: int) -> bytes:
        """The 32-byte value number `index` (1-based)."""
        ...

    def verify(self, value: bytes, index: int) -> bool:
        """True when `value` is the genuine value number `index`."""
        ...


def verify_beacon_value(value: bytes, index: int, tip: bytes, *, max_index: int = MAX_CHAIN_LENGTH) -> bool:
    """True when hashing `value` `index` times gives `tip` (O(index) hashes)."""
    if len(value) != VALUE_BYTES or len(tip) != VALUE_BYTES or not 1 <= index <= max_index:
        return False
    current = value
    for _ in range(index):
        current = _sha256(current)
    return hmac.compare_digest(current, tip)


def verify_next_value(value: bytes, previous: bytes) -> bool:
    """O(1) check of value i against the already verified value i-1 (or the tip for i = 1)."""
    return len(value) == VALUE_BYTES and hmac.compare_digest(_sha256(value), previous)


class HashChainBeacon:
    """The service's side of the hash-chain beacon: holds the seed, reveals values in order."""

    def __init__(self, seed: bytes, length: int) -> None:
        if not 1 <= length <= MAX_CHAIN_LENGTH:
            raise ValueError(f"chain length must be 1..{MAX_CHAIN_LENGTH}")
        if len(seed) < VALUE_BYTES:
            raise ValueError("the seed must hold at least 32 bytes of secret randomness")
        chain = [_sha256(seed)]
        for _ in range(length):
            chain.append(_sha256(chain[-1]))
        self._chain = chain
        self.length = length

    def commitment(self) -> bytes:
        """The tip x_N: publish it before the first value is used."""
        return self._chain[self.length]

    @property
    def tip(self) -> bytes:
        return self.commitment()

    def value(self, index: int) -> bytes:
        if not 1 <= index <= self.length:
            raise IndexError(f"beacon index must be 1..{self.length}, got {index}")
        return self._chain[self.length - index]

    def verify(self, value: bytes, index: int) -> bool:
        return verify_beacon_value(value, index, self.tip, max_index=self.length)
