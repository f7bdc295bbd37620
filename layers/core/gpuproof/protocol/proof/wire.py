"""The binary transcript (docs/protocol.md §7, `application/vnd.gpuproof.transcript.v2`): the
same list of GpuOpenings as the JSON encoding, packed rows, raw digests, little-endian integers.

    magic "GPTRv2\\0\\0" || u16 gpu_count || per GPU, in gpu_index order:
      u16 gpu_index || u32 steps || u32 n || u16 d || u16 m || roots (steps x 32 bytes) ||
      per opening, in the drawn pairs' order:
        u32 step || u32 row ||
        [step > 1: packed A_{t-1}[row] (5d/8 bytes) || depth x 32-byte siblings] ||
        packed A_t[row] (5d/8 bytes) || depth x 32-byte siblings

`encode_transcript(groups, params) -> bytes`; `decode_transcript(data, params) -> list[GpuOpenings]`
(raises TranscriptError, code `proof_transcript_malformed`). The decoder takes its shapes from the
service's params, so the header must repeat them and no allocation exceeds what they imply;
nothing else is allowed (trailing bytes are an error). Decoded entries are Python ints bounded by
the layout (rows in [-8, 23]): the verifier then holds them to the protocol's range.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np

from gpuproof.protocol.collector import collector_paused
from gpuproof.protocol.proof import merkle
from gpuproof.protocol.proof.codes import TRANSCRIPT_MALFORMED
from gpuproof.protocol.proof.matrices import HALF, pack_rows, packed_row_bytes, unpack_rows
from gpuproof.protocol.proof.models import GpuOpenings, ProofParams, RowOpening

MAGIC = b"GPTRv2\x00\x00"
MEDIA_TYPE = "application/vnd.gpuproof.transcript.v2"
_GPU_HEADER = struct.Struct("<HIIHH")
_OPENING_HEADER = struct.Struct("<II")
_U16 = struct.Struct("<H")
DIGEST = 32
MAX_PACKED_U = 31  # 5 bits


class TranscriptError(ValueError):
    """The bytes are not a transcript for these params; `code` is the reason code."""

    code = TRANSCRIPT_MALFORMED


def gpu_size(params: ProofParams, steps_of_openings: Sequence[int]) -> int:
    """Bytes of one GPU's section given the steps of its openings (a step-1 opening has no a_prev)."""
    row, depth = packed_row_bytes(params.d), merkle.depth(params.n)
    one = _OPENING_HEADER.size + row + DIGEST * depth
    prev = sum(row + DIGEST * depth for t in steps_of_openings if t > 1)
    return _GPU_HEADER.size + DIGEST * params.steps + one * len(steps_of_openings) + prev


def max_size(params: Sequence[ProofParams]) -> int:
    """The largest transcript these params allow (every opening with its a_prev): a size limit for
    the upload, known before the transcript exists."""
    return len(MAGIC) + _U16.size + sum(gpu_size(p, [2] * p.pairs_total) for p in params)


def _pack_one(values: Sequence[int], d: int, what: str) -> bytes:
    if len(values) != d or not all(type(v) is int and -HALF <= v <= MAX_PACKED_U - HALF for v in values):
        raise ValueError(f"{what}: {len(values)} entries, each must be an int in [-8, 23] (d = {d})")
    return pack_rows(np.array(values, dtype=np.int8).reshape(1, d)).tobytes()


def _path_bytes(path: Sequence[str], depth: int, what: str) -> bytes:
    if len(path) != depth:
        raise ValueError(f"{what}: path of {len(path)} siblings, the tree has depth {depth}")
    return b"".join(bytes.fromhex(s) for s in path)


def encode_transcript(groups: Sequence[GpuOpenings], params: Sequence[ProofParams]) -> bytes:
    """The binary transcript of `groups` (one per params entry, any order: written in gpu_index
    order). Raises ValueError for what the layout cannot represent (a missing group, a row of
    another length, an entry outside the 5-bit field, a path of another depth)."""
    by_index = {g.gpu_index: g for g in groups}
    if sorted(by_index) != sorted(p.gpu_index for p in params) or len(by_index) != len(groups):
        raise ValueError("one group per params entry, exactly")
    out = [MAGIC, _U16.pack(len(params))]
    for p in sorted(params, key=lambda p: p.gpu_index):
        g = by_index[p.gpu_index]
        depth = merkle.depth(p.n)
        if len(g.roots) != p.steps:
            raise ValueError(f"gpu {p.gpu_index}: {len(g.roots)} roots for {p.steps} steps")
        out.append(_GPU_HEADER.pack(p.gpu_index, p.steps, p.n, p.d, len(g.openings)))
        out.append(b"".join(bytes.fromhex(r) for r in g.roots))
        for k, o in enumerate(g.openings):
            what = f"gpu {p.gpu_index} opening {k}"
            out.append(_OPENING_HEADER.pack(o.step, o.row))
            if o.step > 1:
                if o.a_prev is None:
                    raise ValueError(f"{what}: step {o.step} needs a_prev")
                out.append(_pack_one(o.a_prev, p.d, what))
                out.append(_path_bytes(o.a_prev_path, depth, what))
            elif o.a_prev is not None or o.a_prev_path:
                raise ValueError(f"{what}: step 1 has no a_prev")
            out.append(_pack_one(o.a_row, p.d, what))
            out.append(_path_bytes(o.a_path, depth, what))
    return b"".join(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.view = memoryview(data)
        self.at = 0

    def take(self, size: int, what: str) -> memoryview:
        if self.at + size > len(self.view):
            raise TranscriptError(f"truncated: {what} needs {size} bytes at offset {self.at}")
        chunk = self.view[self.at : self.at + size]
        self.at += size
        return chunk

    def unpack(self, fmt: struct.Struct, what: str) -> tuple[int, ...]:
        return fmt.unpack(self.take(fmt.size, what))


def _digests(chunk: memoryview) -> list[str]:
    raw = bytes(chunk)
    return [raw[k : k + DIGEST].hex() for k in range(0, len(raw), DIGEST)]


class PackedRow(list[int]):
    """A decoded row: its entries (Python ints, a list like any other) and `packed`, the bytes the
    transcript carried them in (`pack_rows`), which the verifier reads instead of converting d
    Python ints and hashes as the row's Merkle leaf. Equal to the plain list of its entries."""

    __slots__ = ("packed",)

    def __init__(self, values: list[int], packed: bytes) -> None:
        super().__init__(values)
        self.packed = packed


def _rows(chunks: Sequence[bytes], d: int) -> list[PackedRow]:
    """The decoded rows of one GPU's section, unpacked in one call (`unpack_rows` over all of them)."""
    if not chunks:
        return []
    packed = np.frombuffer(b"".join(chunks), dtype=np.uint8).reshape(len(chunks), -1)
    values = unpack_rows(packed, d).tolist()
    return [PackedRow(v, c) for v, c in zip(values, chunks, strict=True)]


@collector_paused
def decode_transcript(data: bytes, params: Sequence[ProofParams]) -> list[GpuOpenings]:
    """The GpuOpenings of a binary transcript for `params` (the service's, one per GPU), in
    gpu_index order. Raises TranscriptError for anything but exactly that layout."""
    if len(data) > max_size(params):
        raise TranscriptError(f"{len(data)} bytes, over the {max_size(params)} these params allow")
    r = _Reader(data)
    if bytes(r.take(len(MAGIC), "magic")) != MAGIC:
        raise TranscriptError("not a v2 transcript (magic)")
    (count,) = r.unpack(_U16, "gpu_count")
    ordered = sorted(params, key=lambda p: p.gpu_index)
    if count != len(ordered):
        raise TranscriptError(f"{count} GPUs, the challenge has {len(ordered)}")
    out = []
    for p in ordered:
        gpu, steps, n, d, m = r.unpack(_GPU_HEADER, "GPU header")
        if (gpu, steps, n, d, m) != (p.gpu_index, p.steps, p.n, p.d, p.pairs_total):
            raise TranscriptError(
                f"GPU header (gpu {gpu}, T {steps}, n {n}, d {d}, m {m}) is not the challenge's "
                f"(gpu {p.gpu_index}, T {p.steps}, n {p.n}, d {p.d}, m {p.pairs_total})"
            )
        depth, row_size = merkle.depth(n), packed_row_bytes(d)
        roots = _digests(r.take(DIGEST * steps, "roots"))
        headers: list[tuple[int, int, list[str], list[str]]] = []
        chunks: list[bytes] = []  # every packed row of this GPU in order: a_prev (step > 1), a_row
        for k in range(m):
            step, row = r.unpack(_OPENING_HEADER, f"gpu {gpu} opening {k}")
            if not (1 <= step <= steps and 0 <= row < n):
                raise TranscriptError(f"gpu {gpu} opening {k}: step {step}, row {row} outside the chain")
            prev_path: list[str] = []
            if step > 1:
                chunks.append(bytes(r.take(row_size, "a_prev")))
                prev_path = _digests(r.take(DIGEST * depth, "a_prev path"))
            chunks.append(bytes(r.take(row_size, "a_row")))
            headers.append((step, row, prev_path, _digests(r.take(DIGEST * depth, "a_row path"))))
        rows = iter(_rows(chunks, d))
        openings = []
        for step, row, prev_path, a_path in headers:
            a_prev = next(rows) if step > 1 else None
            # Built without re-validation: every value is bounded by the layout just read.
            openings.append(
                RowOpening.model_construct(
                    step=step,
                    row=row,
                    a_prev=a_prev,
                    a_prev_path=prev_path,
                    a_row=next(rows),
                    a_path=a_path,
                )
            )
        out.append(GpuOpenings.model_construct(gpu_index=gpu, roots=roots, openings=openings))
    if r.at != len(data):
        raise TranscriptError(f"{len(data) - r.at} trailing bytes")
    return out
