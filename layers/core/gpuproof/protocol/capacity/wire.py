"""The binary capacity openings (docs/protocol.md §17.6, `application/vnd.gpuproof.capacity-openings.v3`):
what the prover's `TargetOpenings` hold, with raw row bytes and raw digests, little-endian integers,
every shape taken from the service's params.

    magic "GPCOv3\\0\\0" || u16 target_count || per target, in ascending target order:
      u16 target || u8 mode (0 scan, 1 sample) || u8 L || u16 d || u16 chunk_rows || u64 n_rows ||
      u32 samples || u16 spot_count || u16 walk_count || u8 walk_stages ||
      roots (C x 32 bytes: the C committed layers', ascending; C = L when commit_stride is 1) ||
      per spot: u16 round || u32 item || the item's rows (k x d bytes) ||
                tree_path (D_t x 32) || answer_path (D_a x 32)
      per walk: u16 walk || per step j = 0 .. C - 1 (the committed stages from L down, stage l, the
                committed layer below it l' = max(0, l - commit_stride)):
                u32 row || a_row (d) || a_path (L x 32) ||
                [l' > 0: 2^(l - l') x (parent row (d) || its path (L x 32)), in `fill.parent_rows` order]

k = min(chunk_rows, n_rows - c * chunk_rows) (scan) or 1 (sample), c = item, or item mod items in
the bandwidth round (§17.12: item = j = (s - 1) x items + c < sweeps x items); D_t = L - log2(chunk_rows)
(scan) or L (sample); D_a = ceil(log2 items). Every step sends its own a_row: a walk's rows are
drawn for each stage on its own (walks v2, `draws.walk_row`). v2 sent the first step's only (a
walk went down one path, each row a parent of the one above); it is refused by its magic.

`encode_openings(openings, params) -> bytes` (raises ValueError for what the layout cannot hold);
`decode_openings(data, params) -> list[OpenedTarget]` (raises OpeningsError, code
`capacity_opening_malformed`): at most `max_size(params)` bytes, the header equal to the params,
every count and index checked before the bytes it implies are taken, nothing after the last walk.
Decoded rows and digests are numpy views of `data` (no copy, no hex, no pydantic); entries are the
bytes as int8, so the verifier's range check still applies. `opened(model)` reads a prover's
`TargetOpenings` into the same structure (in-process callers and tests).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.capacity.codes import OPENING_MALFORMED
from gpuproof.protocol.capacity.draws import bandwidth_round, round_plan, target_rounds
from gpuproof.protocol.capacity.fill import parent_stage
from gpuproof.protocol.capacity.models import (
    OPENINGS_MEDIA_TYPE,
    CapacityParams,
    CapacityTargetParams,
    SpotOpening,
    TargetOpenings,
    WalkOpening,
)
from gpuproof.protocol.collector import collector_paused
from gpuproof.protocol.proof import merkle

MAGIC = b"GPCOv3\x00\x00"
MEDIA_TYPE = OPENINGS_MEDIA_TYPE
DIGEST = 32
MODES = {"scan": 0, "sample": 1}
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_TARGET = struct.Struct("<HBBHHQIHHB")
_SPOT = struct.Struct("<HI")
HEADER_FIELDS = (
    "target",
    "mode",
    "L",
    "d",
    "chunk_rows",
    "n_rows",
    "samples",
    "spot_count",
    "walk_count",
    "walk_stages",
)

Row = npt.NDArray[np.int8]  # d entries
Digests = npt.NDArray[np.uint8]  # k x 32: a path (siblings from the leaf up) or the layer roots


class OpeningsError(ValueError):
    """The bytes are not capacity openings for these params; `code` is the reason code."""

    code = OPENING_MALFORMED


@dataclass(frozen=True)
class OpenedSpot:
    round: int
    item: int
    rows: list[Row]
    tree_path: Digests
    answer_path: Digests


@dataclass(frozen=True)
class OpenedStep:
    stage: int
    row: int
    a_row: Row
    a_path: Digests
    prev: list[Row]  # the parent rows in the committed layer below (none above X_0)
    prev_paths: list[Digests]


@dataclass(frozen=True)
class OpenedWalk:
    walk: int
    steps: list[OpenedStep]


@dataclass(frozen=True)
class OpenedTarget:
    """One target's openings as the verifier reads them."""

    target: int
    roots: Digests
    spots: list[OpenedSpot]
    walks: list[OpenedWalk]


@dataclass(frozen=True)
class _Shape:
    """Every length of one target's section, from the service's params."""

    tp: CapacityTargetParams
    spot_count: int
    plan_rounds: int
    sweep_round: int | None = None

    @classmethod
    def of(cls, params: CapacityParams, tp: CapacityTargetParams) -> _Shape:
        sweep_round = bandwidth_round(params)
        rounds = target_rounds(params, tp.target)
        swept = sweep_round in rounds
        count = (len(rounds) - swept) * min(tp.spots, tp.items)
        if swept:
            count += min(tp.sweep_spots, tp.sweeps * tp.items)
        return cls(tp, count, len(round_plan(params)), sweep_round if swept else None)

    def item_bound(self, round_: int) -> int:
        """Items a spot of this round may name: the bandwidth round's are j = (s - 1) x items + c."""
        return self.tp.items * self.tp.sweeps if round_ == self.sweep_round else self.tp.items

    def chunk(self, round_: int, item: int) -> int:
        """The item of the round's answer tree whose rows a spot opens (c of j in the bandwidth round)."""
        return item % self.tp.items if round_ == self.sweep_round else item

    @property
    def depth(self) -> int:
        return merkle.depth(self.tp.n_rows)

    @property
    def tree_depth(self) -> int:
        """Siblings from an item's subtree to root_L (none when one chunk spans the tree)."""
        return max(0, self.depth - (self.tp.chunk_rows.bit_length() - 1))

    @property
    def answer_depth(self) -> int:
        return merkle.depth(self.tp.items)

    def header(self) -> tuple[int, ...]:
        tp = self.tp
        return (
            tp.target,
            MODES[tp.mode],
            tp.n_stages,
            tp.d,
            tp.chunk_rows,
            tp.n_rows,
            tp.samples,
            self.spot_count,
            tp.walks,
            tp.walk_stages,
        )

    def item_rows(self, item: int) -> int:
        tp = self.tp
        return min(tp.chunk_rows, tp.n_rows - item * tp.chunk_rows) if tp.mode == "scan" else 1

    def max_bytes(self) -> int:
        """The section's size with every spot a full item (every step above a committed layer carries
        its parents; the last, above X_0, none: the verifier regenerates X_0)."""
        tp = self.tp
        row = tp.d + DIGEST * self.depth  # one opened row of a layer with its path
        spot = _SPOT.size + tp.chunk_rows * tp.d + DIGEST * (self.tree_depth + self.answer_depth)
        parents = sum(_parent_count(tp, stage) for stage in tp.committed)
        walk = _U16.size + len(tp.committed) * (_U32.size + row) + parents * row
        return _TARGET.size + DIGEST * len(tp.committed) + self.spot_count * spot + tp.walks * walk


def _parent_count(tp: CapacityTargetParams, stage: int) -> int:
    """Parent rows a walk step at `stage` sends: 2^(l - l'), none above X_0."""
    below = parent_stage(stage, tp.commit_stride)
    return 1 << (stage - below) if below else 0


def _ordered(params: CapacityParams) -> list[CapacityTargetParams]:
    return sorted(params.targets, key=lambda t: t.target)


def host_part_max_size(params: CapacityParams) -> int:
    """The largest second part of two-part openings (host RAM's section; 0 without host RAM)."""
    return sum(_Shape.of(params, tp).max_bytes() for tp in params.targets if tp.is_host)


def max_size(params: CapacityParams) -> int:
    """The largest openings these params allow: the upload's size limit, known before the
    openings exist (an honest encoding is this long, less the rows a short last chunk lacks)."""
    return len(MAGIC) + _U16.size + sum(_Shape.of(params, tp).max_bytes() for tp in params.targets)


# -- encoding ---------------------------------------------------------------------------------------


def _row_bytes(row: str | None, d: int, what: str) -> bytes:
    raw = bytes.fromhex(row) if row is not None else b""
    if len(raw) != d:
        raise ValueError(f"{what}: a row of {len(raw)} bytes, d = {d}")
    return raw


def _path_bytes(path: Sequence[str], depth: int, what: str) -> bytes:
    if len(path) != depth:
        raise ValueError(f"{what}: a path of {len(path)} siblings, the tree has depth {depth}")
    return b"".join(bytes.fromhex(s) for s in path)


def _encode_spot(shape: _Shape, spot: SpotOpening, what: str) -> list[bytes]:
    tp = shape.tp
    if not (1 <= spot.round <= shape.plan_rounds and 0 <= spot.item < shape.item_bound(spot.round)):
        raise ValueError(f"{what}: round {spot.round}, item {spot.item} outside the phase")
    k = shape.item_rows(shape.chunk(spot.round, spot.item))
    if len(spot.rows) != k:
        raise ValueError(f"{what}: {len(spot.rows)} rows, item {spot.item} has {k}")
    return [
        _SPOT.pack(spot.round, spot.item),
        *(_row_bytes(r, tp.d, what) for r in spot.rows),
        _path_bytes(spot.tree_path, shape.tree_depth, what),
        _path_bytes(spot.answer_path, shape.answer_depth, what),
    ]


def _encode_walk(shape: _Shape, walk: WalkOpening, what: str) -> list[bytes]:
    tp, depth = shape.tp, shape.depth
    stages = tp.committed[::-1]
    if not 0 <= walk.walk < tp.walks or len(walk.steps) != len(stages):
        raise ValueError(f"{what}: walk {walk.walk} with {len(walk.steps)} steps")
    out = [_U16.pack(walk.walk)]
    for j, (s, stage) in enumerate(zip(walk.steps, stages, strict=True)):
        if s.stage != stage or not 0 <= s.row < tp.n_rows:
            raise ValueError(f"{what} step {j}: stage {s.stage} row {s.row}, the walk is at stage {stage}")
        out += [_U32.pack(s.row), _row_bytes(s.a_row, tp.d, what), _path_bytes(s.a_path, depth, what)]
        count = _parent_count(tp, stage)
        if len(s.prev) != count or len(s.prev_paths) != count:
            raise ValueError(f"{what} step {j}: {len(s.prev)} parent rows, stage {stage} has {count}")
        for row, path in zip(s.prev, s.prev_paths, strict=True):
            out += [_row_bytes(row, tp.d, what), _path_bytes(path, depth, what)]
    return out


def _encode_target(o: TargetOpenings, params: CapacityParams, tp: CapacityTargetParams) -> list[bytes]:
    shape, what = _Shape.of(params, tp), f"target {tp.target}"
    if o.target != tp.target or len(o.spots) != shape.spot_count or len(o.walks) != tp.walks:
        raise ValueError(
            f"{what}: {len(o.spots)} spots and {len(o.walks)} walks; "
            f"the params open {shape.spot_count} and {tp.walks}"
        )
    out = [_TARGET.pack(*shape.header()), _path_bytes(o.roots, len(tp.committed), f"{what} roots")]
    for k, spot in enumerate(o.spots):
        out += _encode_spot(shape, spot, f"{what} spot {k}")
    for w, walk in enumerate(o.walks):
        out += _encode_walk(shape, walk, f"{what} walk {w}")
    return out


def encode_openings(openings: Sequence[TargetOpenings], params: CapacityParams) -> bytes:
    """The binary openings of `openings` (one per target of `params`, any order). Raises
    ValueError for what the layout cannot represent (a missing target, a count, row or path of
    another length, a walk that is not one)."""
    by_target = {o.target: o for o in openings}
    if sorted(by_target) != sorted(t.target for t in params.targets) or len(by_target) != len(openings):
        raise ValueError("one TargetOpenings per params target, exactly")
    out = [MAGIC, _U16.pack(len(params.targets))]
    for tp in _ordered(params):
        out += _encode_target(by_target[tp.target], params, tp)
    return b"".join(out)


def has_host_part(params: CapacityParams) -> bool:
    """Whether the openings may travel in two parts (docs/protocol.md §17.10): host RAM is a
    target (its section, target 65535, is always the last)."""
    return any(tp.is_host for tp in params.targets)


def encode_head(gpu_openings: Sequence[TargetOpenings], params: CapacityParams) -> bytes:
    """The first part of two-part openings: the magic, the target count and every GPU target's
    section (one TargetOpenings per GPU target, any order), the same bytes `encode_openings`
    begins with; `encode_host_part` is the rest."""
    gpus = [tp for tp in _ordered(params) if not tp.is_host]
    by_target = {o.target: o for o in gpu_openings}
    if sorted(by_target) != [tp.target for tp in gpus] or len(by_target) != len(gpu_openings):
        raise ValueError("one TargetOpenings per GPU target of the params, exactly")
    out = [MAGIC, _U16.pack(len(params.targets))]
    for tp in gpus:
        out += _encode_target(by_target[tp.target], params, tp)
    return b"".join(out)


def encode_host_part(host_openings: TargetOpenings, params: CapacityParams) -> bytes:
    """The second part of two-part openings: host RAM's section (`encode_head` + this =
    `encode_openings`)."""
    host = [tp for tp in params.targets if tp.is_host]
    if not host:
        raise ValueError("the params have no host RAM target")
    return b"".join(_encode_target(host_openings, params, host[0]))


# -- decoding ---------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.view = memoryview(data).cast("B")
        self.at = 0

    def take(self, size: int, what: str) -> memoryview:
        if self.at + size > len(self.view):
            raise OpeningsError(f"truncated: {what} needs {size} bytes at offset {self.at}")
        chunk = self.view[self.at : self.at + size]
        self.at += size
        return chunk

    def unpack(self, fmt: struct.Struct, what: str) -> tuple[int, ...]:
        return fmt.unpack(self.take(fmt.size, what))

    def row(self, d: int, what: str) -> Row:
        return np.frombuffer(self.take(d, what), dtype=np.int8)

    def digests(self, count: int, what: str) -> Digests:
        return np.frombuffer(self.take(DIGEST * count, what), dtype=np.uint8).reshape(count, DIGEST)


def _decode_spot(r: _Reader, shape: _Shape, what: str) -> OpenedSpot:
    tp = shape.tp
    round_, item = r.unpack(_SPOT, what)
    if not (1 <= round_ <= shape.plan_rounds and item < shape.item_bound(round_)):
        raise OpeningsError(f"{what}: round {round_}, item {item} outside the phase")
    rows = [r.row(tp.d, f"{what} rows") for _ in range(shape.item_rows(shape.chunk(round_, item)))]
    return OpenedSpot(
        round=round_,
        item=item,
        rows=rows,
        tree_path=r.digests(shape.tree_depth, f"{what} tree_path"),
        answer_path=r.digests(shape.answer_depth, f"{what} answer_path"),
    )


def _decode_walk(r: _Reader, shape: _Shape, what: str) -> OpenedWalk:
    tp, depth = shape.tp, shape.depth
    (index,) = r.unpack(_U16, what)
    if index >= tp.walks:
        raise OpeningsError(f"{what}: walk {index}, the params open {tp.walks}")
    steps: list[OpenedStep] = []
    for j, stage in enumerate(tp.committed[::-1]):
        (row,) = r.unpack(_U32, f"{what} step {j}")
        if row >= tp.n_rows:
            raise OpeningsError(f"{what} step {j}: row {row} of {tp.n_rows}")
        a_row, a_path = r.row(tp.d, f"{what} step {j} a_row"), r.digests(depth, f"{what} step {j} a_path")
        parents, paths = [], []
        for k in range(_parent_count(tp, stage)):
            parents.append(r.row(tp.d, f"{what} parent {k}"))
            paths.append(r.digests(depth, f"{what} parent {k} path"))
        steps.append(OpenedStep(stage, row, a_row, a_path, parents, paths))
    return OpenedWalk(walk=index, steps=steps)


@collector_paused
def decode_openings(data: bytes | bytearray | memoryview, params: CapacityParams) -> list[OpenedTarget]:
    """The openings of a binary transcript for `params` (the service's), in ascending target
    order. Raises OpeningsError for anything but exactly that layout."""
    bound = max_size(params)
    if len(data) > bound:
        raise OpeningsError(f"{len(data)} bytes, over the {bound} these params allow")
    r = _Reader(data)
    if bytes(r.take(len(MAGIC), "magic")) != MAGIC:
        raise OpeningsError("not capacity openings v3 (magic)")
    (count,) = r.unpack(_U16, "target_count")
    ordered = _ordered(params)
    if count != len(ordered):
        raise OpeningsError(f"{count} targets, the phase has {len(ordered)}")
    out = []
    for tp in ordered:
        shape = _Shape.of(params, tp)
        header = r.unpack(_TARGET, "target header")
        if header != shape.header():
            diff = ", ".join(
                f"{n} {a} (params: {b})"
                for n, a, b in zip(HEADER_FIELDS, header, shape.header(), strict=True)
                if a != b
            )
            raise OpeningsError(f"target {tp.target} header is not the challenge's: {diff}")
        what = f"target {tp.target}"
        roots = r.digests(len(tp.committed), f"{what} roots")
        spots = [_decode_spot(r, shape, f"{what} spot {k}") for k in range(shape.spot_count)]
        walks = [_decode_walk(r, shape, f"{what} walk {w}") for w in range(tp.walks)]
        out.append(OpenedTarget(target=tp.target, roots=roots, spots=spots, walks=walks))
    if r.at != len(data):
        raise OpeningsError(f"{len(data) - r.at} trailing bytes")
    return out


# -- the prover's models, read in process -----------------------------------------------------------


def _hex_row(row: str) -> Row:
    return np.frombuffer(bytes.fromhex(row), dtype=np.int8)


def _hex_digests(path: Sequence[str]) -> Digests:
    raw = b"".join(bytes.fromhex(h) for h in path)
    if len(raw) != DIGEST * len(path):
        raise ValueError("a digest is not 32 bytes")
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(path), DIGEST)


def opened(openings: TargetOpenings) -> OpenedTarget:
    """A prover's (validated) TargetOpenings as the verifier reads them; any shape is kept, for
    the verifier to judge. Raises ValueError for hex that is not hex (a model built unvalidated)."""
    return OpenedTarget(
        target=openings.target,
        roots=_hex_digests(openings.roots),
        spots=[
            OpenedSpot(
                round=s.round,
                item=s.item,
                rows=[_hex_row(row) for row in s.rows],
                tree_path=_hex_digests(s.tree_path),
                answer_path=_hex_digests(s.answer_path),
            )
            for s in openings.spots
        ],
        walks=[
            OpenedWalk(
                walk=w.walk,
                steps=[
                    OpenedStep(
                        stage=s.stage,
                        row=s.row,
                        a_row=_hex_row(s.a_row),
                        a_path=_hex_digests(s.a_path),
                        prev=[_hex_row(row) for row in s.prev],
                        prev_paths=[_hex_digests(path) for path in s.prev_paths],
                    )
                    for s in w.steps
                ],
            )
            for w in openings.walks
        ],
    )
