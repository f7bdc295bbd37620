"""DBC's `CommitteeUploadInfo` and its commit hash: what a committee member commits, then reveals.

Commit hash = blake2b with a 16-byte digest (blake2_128) over the plain concatenation, no
separators, of machine_id, gpu_type, the decimal strings of gpu_num, cuda_core, gpu_mem,
calc_point, sys_disk, data_disk, then cpu_type, the decimal strings of cpu_core_num, cpu_rate,
mem_num, then rand_str, then "1" or "0" for is_support (reference/dbc.md). Strings are UTF-8.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from pydantic import Field

from gpuproof.protocol.report import Hex64, WireModel

U32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
U64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
DbcText = Annotated[str, Field(max_length=256)]
COMMIT_HASH_BYTES = 16


class CommitteeUploadInfo(WireModel):
    """A member's findings on one machine, fields in DBC's order."""

    machine_id: Hex64
    gpu_type: DbcText
    gpu_num: U32
    cuda_core: U32
    gpu_mem: U64
    calc_point: U64
    sys_disk: U64
    data_disk: U64
    cpu_type: DbcText
    cpu_core_num: U32
    cpu_rate: U64
    mem_num: U64
    rand_str: DbcText
    is_support: bool

    def commit_bytes(self) -> bytes:
        """The exact bytes DBC hashes (no separators)."""
        parts = (
            self.machine_id,
            self.gpu_type,
            str(self.gpu_num),
            str(self.cuda_core),
            str(self.gpu_mem),
            str(self.calc_point),
            str(self.sys_disk),
            str(self.data_disk),
            self.cpu_type,
            str(self.cpu_core_num),
            str(self.cpu_rate),
            str(self.mem_num),
            self.rand_str,
            "1" if self.is_support else "0",
        )
        return "".join(parts).encode("utf-8")

    def commit_hash(self) -> bytes:
        """blake2_128 of `commit_bytes()`: the 16 bytes a member commits."""
        return hashlib.blake2b(self.commit_bytes(), digest_size=COMMIT_HASH_BYTES).digest()

    def commit_hash_hex(self) -> str:
        """`commit_hash()` as 32 lowercase hex characters, no 0x prefix."""
        return self.commit_hash().hex()

    def matches_commit(self, commit: bytes | str) -> bool:
        """True when this reveal hashes to `commit` (bytes, or hex with or without 0x)."""
        if isinstance(commit, str):
            try:
                commit = bytes.fromhex(commit.removeprefix("0x"))
            except ValueError:
                return False
        return hmac.compare_digest(self.commit_hash(), commit)
