"""The capacity phase's GPU executor (docs/protocol.md §17): `CupyCapacityProver`, the CuPy twin of
the numpy `CapacityProver`, bit for bit (same commitment, answers and openings for the same nonce
and parameters).

NOT YET RUN ON A GPU (none was lent when it was written). Its code runs in the tests against the
CUDA test double (benchmark_probe/cupy_double.py: the same cuBLAS calls, the same kernel source
built with g++, the double's device-memory limit), giving the numpy prover's outputs.
`scripts/gpu_check.sh` runs it for real the first time a GPU is lent. CuPy is imported lazily;
`cupy=` takes the double.

**GPU targets.** X_0 is generated on the target's own device (SHAKE-128, one thread per row) into
one N x d int8 buffer, and every stage is computed IN PLACE: the rows a stage pairs
(i, p_l(i) = i xor 2^(l-1)) depend only on each other, so the buffer is processed in *groups*
closed under the pairing (a chunk of `group_rows` rows, with its partner chunk when the pairing
reaches beyond it): the group's pair operand, one row [X[a] | X[a + h]] per pair (K = 2d, `cap_pairs`,
a plain copy), goes through one int8 x int8 -> int32 gemmEx against the stage matrix W
(`stage_matrix`: [[B[pi_l], 6 B[sigma_l]], [B[sigma_l], B[pi_l]]] mod 251, both rows of the pair
out; CUBLAS_COMPUTE_32I, exact), a lone row (mate past the last row) straight from the buffer
against B[pi_l] - 6 B[sigma_l], and g_l(c) = ((c + l) mod 251) - 125 is written back over the
group's rows (`cap_pair_epilogue`, `cap_epilogue`). After
each stage the layer's Merkle tree is hashed on the device (subtrees of 16 rows per thread, then
one kernel per level, padding never materialised) and only its root is kept.

**Host RAM** ("filled from the GPUs"): computed on the GPUs, held in host memory (numpy; pinned
with `host_pinned`), out of core in two passes, spread over every GPU of the claim:
pass 1: stages 1..c act within aligned blocks of C = 2^c rows: per block, X_0 generated on a
device, stages 1..c, one download; pass 2: stages c+1..L pair rows that differ only in bits
>= c, so for a window of w consecutive low values the 2^(L-c) slabs {k C + j0 .. k C + j0 + w}
are closed under all of them: one upload (a strided gather of whole slabs), stages c+1..L, one
download. Host memory is read and written about twice (3 x the fill crosses PCIe). Slabs and
blocks are aligned subtrees, so each layer's tree is kept as its nodes at height c (pass 1) or
log2 w (pass 2) and finished on a device. Its pages are first-touched in the background, in
order (`_Touch`): a block's download waits for its own pages only.

**Lanes.** Each device runs lanes: a worker thread with its own stream (lane 0 the default stream,
the GPU targets' lane; lanes 1.. non-blocking streams), cuBLAS handle set to it, buffer and stage matrices.
Host RAM's blocks and windows go to whichever lane is free, so one lane's copies overlap another's
kernels (`HOST_LANES`); where the memory allows (`MemoryPlan.beside`) its lanes are 1.. and run
beside the GPU fills on lane 0, its copies overlapping their kernels.

**Memory budget** (`plan_memory`, checked on every device before anything is allocated, from
`cudaMemGetInfo` after freeing CuPy's pool; a fill that does not fit is refused, saying which
device lacks how much): per device, the GPU fills it holds + the largest working set of one
step + `margin_bytes`:
- a GPU target's stage: pair operand G x 2d + int32 product G x 2d x 4 (G = group rows) + two
  stage matrices (2 x 5d^2) + its layer's tree (32 x ceil(N/16) bytes and the levels above, ~4N);
  its answers: the answer tree (~64 x items bytes); its openings' recompute: the job buffer
  (`window_rows`) + every stage's matrices, forward or inverse (L x 5d^2) + a kept block;
- a host-fill step: the buffer (max(C, 2^(L-c) w) rows x d) + the stage scratch + every stage's
  stage matrices and their inverses (2 L x 5d^2) + the buffer's tree + the layer trees' upper
  levels; a host answer batch: rows x (d + 40) + the answer tree;
- the host step's lane parts once per lane, and, beside the GPU fills, added to the GPU step.

**Answers.** Scan: every item hashed on the device that holds the rows (`cap_answer_rows`), then
the answer tree there. Sample: the sampled rows drawn and hashed on the device
(`cap_answer_sampled`); for host RAM the device computes the sampled row numbers, the host gathers
those rows (numpy), and the device hashes them.

**Openings.** The device (or host RAM) holds X_L only, and the walks open every layer. The fill
keeps each layer's tree nodes at height H (`kept`: GPU H = 6 on the device, 32 bytes per 64 rows,
~1 GB for an H100's 27 layers; host RAM H = min(10, the fill's window height) in host memory), so
a row's Merkle path needs only its aligned block of 2^H rows: hashed again, its root must be the
kept node; the siblings above come from the tree over the kept nodes, whose root must be the
committed one. Each round's (and sweep's) answer tree keeps its nodes at height 6 when answered;
the openings rebuild only the spotted items' blocks from X_L (roots checked against the kept
nodes), and read X_L's wanted rows (spots, the walks' top rows). Then the recompute (`reopen.py`)
in jobs, X_L left intact: *blocks* of X_0 taken up through stages 1..l (the rows wanted below a
threshold T), *descents* of X_L's slabs taken down through the inverse stage maps L..b + 1
(`fill.unstage_matrices`, `unstage_matrix`: the stage kernels with the inverse matrices, after
`cap_shift`, the epilogue's offset 125) for the rows at or above T; `reopen.plan` picks T for the
fewest row-stages with every job within the job buffer (`window_rows`). A GPU runs a layer's
blocks side by side (`block_batches`) and its descents one after another in one buffer, its stage
matrices uploaded once; host RAM's jobs go to every host device's lanes (`_spread`), a descent's
slabs uploaded in one strided copy (`_copy_slabs`), nothing written back. For
an H100 (H = 5) 0.0355 of the fill's 27 N row-stages, for host RAM at 256 GiB 0.0629 of its 29 N
(ESTIMATE of the plan at real sizes; the windowed recompute before it: 0.555 and 0.731).

Self-checks before anything is committed: sampled rows of X_0 against hashlib's SHAKE-128, and
sampled rows of the first stage against numpy's exact product (a GEMM that is not exact refuses).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from gpuproof.protocol.capacity.draws import SAMPLE_DOMAIN, Walk, bandwidth_round, item_rows
from gpuproof.protocol.capacity.fill import (
    ANSWER_DOMAIN,
    HALF,
    LONE,
    MIX,
    ROW_DOMAIN,
    TAG_X0,
    Q,
    b_matrix,
    capacity_seed,
    chain_value,
    coefficients,
    gen_rows,
    inverse_b,
    leaf,
    parent_rows,
    parent_stage,
    partner,
    stage_perms,
    stage_rows,
    u32,
    unstage_matrices,
)
from gpuproof.protocol.capacity.kernels import MAX_HEAD_BYTES, SOURCE
from gpuproof.protocol.capacity.models import (
    CapacityAnswer,
    CapacityCommitment,
    CapacityParams,
    CapacityRound,
    CapacityTargetParams,
    SpotOpening,
    TargetAnswer,
    TargetCommitment,
    TargetOpenings,
    WalkOpening,
    WalkStep,
)
from gpuproof.protocol.capacity.params import FILL_OVERHEAD, fill_seconds
from gpuproof.protocol.capacity.reopen import Job, Plan, block_batches, plan, rows_cap, slab_run, walk_wants
from gpuproof.protocol.capacity.sweep import (
    SWEEP_COLUMNS,
    SWEEP_KEY_DOMAIN,
    SWEEP_LEAF_DOMAIN,
    TAG_R,
    split_item,
    sweep_keys,
)
from gpuproof.protocol.proof import merkle
from gpuproof.protocol.proof.shake_kernels import RATE_BYTES

T = TypeVar("T")

CUDA_R_8I, CUDA_R_32I = 3, 10  # cudaDataType_t (library_types.h)
CUBLAS_COMPUTE_32I, CUBLAS_GEMM_DEFAULT = 72, -1
CUBLAS_OP_N, CUBLAS_OP_T = 0, 1
THREADS = 256
TREE_BASE_HEIGHT = 4  # one thread hashes 16 rows and their subtree
GROUP_ROWS = 1 << 17  # rows per half of a stage group (the operand holds up to this many pairs): a
# GPU fill's 38,782 launches and cuBLAS calls an H100 (75,521 at 2^16, 147,265 at 2^15), which the
# GIL serialises across the GPUs' threads (scripts/probe_estimate.py "issuing the work"); the plan
# halves it where its scratch (`stage_bytes`: 1.35 GB at d = 1024) does not fit
MIN_GROUP_ROWS = 64
HOST_BUFFER_BYTES = 1 << 30  # a host-fill block / window on each device
MARGIN_BYTES = 256 << 20  # cuBLAS workspace, CuPy pool rounding, kernels
SMALL_BYTES = 4096  # message prefixes, index arrays, empty digests of one step
HOST_MARGIN_BYTES = 1 << 30
TOUCH_BYTES = 256 << 20  # host pages are first touched in slices of this, in parallel
GPU_KEPT_HEIGHT = 6  # the fill keeps each layer's tree nodes at this height (32 bytes per 64 rows)
HOST_KEPT_HEIGHT = 10  # the same for host RAM (at most the fill's window height)
WINDOW_BYTES = 1 << 30  # a GPU recompute window's rows (2^(L - c + H) of them), halved while short
MIN_WINDOW_BYTES = 64 << 20
ANSWER_KEPT_HEIGHT = 6  # each round's answer tree kept at this height (32 bytes per 64 items)
HOST_LANES = 2  # host-fill lanes per device: one lane's block crosses PCIe while another's is computed

_EMPTIES = [merkle.EMPTY_LEAF]
for _ in range(64):
    _EMPTIES.append(merkle.node_hash(_EMPTIES[-1], _EMPTIES[-1]))
EMPTIES: tuple[bytes, ...] = tuple(_EMPTIES)  # EMPTIES[k]: root of an all-padding subtree of height k


class CapacityMemoryError(MemoryError):
    """The phase's fills and working memory do not fit the devices (or host RAM): refused before
    anything is allocated."""


def _pow2_floor(x: int) -> int:
    return 1 << (max(1, x).bit_length() - 1)


def _log2(x: int) -> int:
    return x.bit_length() - 1


# -- the memory budget -------------------------------------------------------------------------------------


def tree_bytes(v: int, top: int, base: int | None = None) -> int:
    """Device bytes of a tree over v nodes at height `base` (default: rows, base 16) up to `top`."""
    b = min(TREE_BASE_HEIGHT, top) if base is None else base
    count, total = -(-v // 2**b) if v else 0, 0
    for _ in range(b, top + 1):
        total += 32 * count
        count = (count + 1) // 2
    return total + 32 * (top + 1)


def stage_bytes(group: int, d: int) -> int:
    """Pair operand (G x 2d int8) and product (G x 2d int32) of one stage group, and two stage
    matrices (`stage_matrix`: 5 d^2 bytes each)."""
    return group * 2 * d + group * 2 * d * 4 + 2 * STAGE_MATRIX_ENTRIES * d * d


STAGE_MATRIX_ENTRIES = 5  # the pair matrix (2d x 2d) and the lone one (d x d), in units of d^2


def _times_mod(k: int) -> npt.NDArray[np.int8]:
    """k . x mod 251 centred, for every int8 x (indexed by x + 128): a table, so that the stage
    matrices are built with int8 lookups and copies (a few ms at d = 1024) instead of int64 sums."""
    x = np.arange(-128, 128, dtype=np.int64)
    return ((k * x + Q // 2) % Q - Q // 2).astype(np.int8)


_MIX_TIMES, _LONE_TIMES = _times_mod(MIX), _times_mod(LONE)
_SUM_MOD = ((np.arange(-256, 256, dtype=np.int64) + Q // 2) % Q - Q // 2).astype(np.int8)  # (a + b) mod 251


def stage_matrix(b_pi: npt.NDArray[np.int8], b_sigma: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
    """A stage's GEMM matrices, transposed for cuBLAS (`_Gpu.gemm`) and flat: W^T (2d x 2d) then
    M^T (d x d), with W = [[B[pi], MIX B[sigma]], [B[sigma], B[pi]]] and M = B[pi] + LONE B[sigma],
    the MIX and LONE products reduced mod 251 and centred to int8. A pair's operand [X[a] | X[a+h]]
    (a the lower row) times W is [C_a | C_(a+h)] modulo 251: X[a] B[pi] + 1 X[a+h] B[sigma] and
    X[a+h] B[pi] + MIX X[a] B[sigma] (`fill.coefficients`: 1 below the mate, MIX above it); a lone
    row times M is X B[pi] + LONE X B[sigma]. g_l reads C modulo 251 only, so the rows are the
    fill's exactly, and |C| <= 2d 125^2 as with the coefficients applied to the rows. Moving the
    coefficients from the operand's rows (one scaled copy per row) into these d x d matrices makes
    the operand a plain copy, one row per PAIR: half the bytes a stage gathers, and lone rows, whose
    mate is missing, are multiplied straight from the buffer."""
    d = b_pi.shape[0]
    index = b_sigma.astype(np.intp) + 128
    out = np.empty(STAGE_MATRIX_ENTRIES * d * d, dtype=np.int8)
    wt = out[: 4 * d * d].reshape(2 * d, 2 * d)  # W^T = [[B[pi]^T, B[sigma]^T], [(MIX B[sigma])^T, B[pi]^T]]
    wt[:d, :d] = b_pi.T
    wt[:d, d:] = b_sigma.T
    wt[d:, :d] = _MIX_TIMES[index].T
    wt[d:, d:] = b_pi.T
    lone = _SUM_MOD[b_pi.astype(np.intp) + _LONE_TIMES[index].astype(np.intp) + 256]
    out[4 * d * d :].reshape(d, d)[...] = lone.T
    return out


def unstage_matrix(w: npt.NDArray[np.int64], lone: npt.NDArray[np.int64]) -> npt.NDArray[np.int8]:
    """An inverse stage's matrices (`fill.unstage_matrices`) in `stage_matrix`'s layout: W'^T
    (2d x 2d) then M'^T (d x d), int8. A pair's operand [X_l[a] + s | X_l[a+h] + s] times W' is
    [X_(l-1)[a] | X_(l-1)[a+h]] mod 251, a lone row's times M' its X_(l-1) row (`reopen.py`)."""
    d = lone.shape[0]
    out = np.empty(STAGE_MATRIX_ENTRIES * d * d, dtype=np.int8)
    out[: 4 * d * d].reshape(2 * d, 2 * d)[...] = w.T
    out[4 * d * d :].reshape(d, d)[...] = lone.T
    return out


def stage_work(v: int, h: int, group: int) -> Iterator[tuple[int, int, int, int]]:
    """A stage's work over a buffer of v rows pairing b with b xor h, group by group (`_groups`):
    (lo, pairs, lone_first, lone_rows): pair p of the group is rows a and a + h, a = lo + (p // h) 2h
    + p % h; rows lone_first .. lone_first + lone_rows - 1 have their mate at or beyond v."""
    for lo, lo_n, _hi, hi_n in _groups(v, h, group):
        if h >= group:  # a chunk and its partner chunk (h rows on): pair r is (lo + r, lo + h + r)
            yield lo, hi_n, lo + hi_n, lo_n - hi_n
            continue
        full, rem = divmod(lo_n, 2 * h)  # blocks of 2h rows within the chunk
        paired = max(0, rem - h)
        yield lo, full * h + paired, lo + full * 2 * h + paired, min(rem, h) - paired


def answer_tree_bytes(tp: CapacityTargetParams) -> int:
    return tree_bytes(tp.items, merkle.depth(tp.items), base=0) + 4 * MAX_HEAD_BYTES


def kept_bytes(n_rows: int, layers: int, height: int) -> int:
    """The committed layers' tree nodes at `height` (`layers` of them), kept from the fill for the
    openings."""
    return layers * -(-n_rows // (1 << height)) * 32


def host_fill_seconds(
    tp: CapacityTargetParams,
    layout: HostLayout,
    gpus: int,
    lanes: int,
    *,
    rate_tops: float,
    bandwidth_gbs: float,
    hash_bytes_per_s: float,
    link_bytes_per_s: float,
    touch_s: float = 0.0,
) -> float:
    """ESTIMATE of this executor's host fill on `gpus` devices with `lanes` lanes each, at the
    rates of `params.fill_seconds` (summed over the GPUs): pass 1 computes stages 1..c and crosses
    PCIe once, pass 2 computes stages c+1..L and crosses twice. With one lane a pass's compute and
    copies add, which is `fill_seconds` with its three crossings exactly; with two or more, one
    lane's copies overlap another's kernels: a pass takes its longer part plus one job's worth of
    the shorter on each device (the first job's compute and the last one's copies have nothing
    beside them). Pass 1 ends no sooner than host RAM's first touch (`touch_s` from the fill's
    start: its copies write the touched pages). Not measured: scripts/gpu_check.sh records the
    host fill to calibrate it."""
    n, d, top, c = tp.n_rows, tp.d, tp.n_stages, min(layout.block_log, tp.n_stages)
    compute = fill_seconds(
        n,
        d,
        rate_tops=rate_tops,
        bandwidth_gbs=bandwidth_gbs,
        hash_bytes_per_s=hash_bytes_per_s,
        commit_stride=tp.commit_stride,
    )
    crossing = n * d / link_bytes_per_s * (1 + FILL_OVERHEAD)
    blocks = -(-n // layout.block_rows)
    passes = [(compute * c / top, crossing, blocks)]
    if layout.two_pass:
        passes.append((compute * (top - c) / top, 2 * crossing, layout.block_rows // layout.window_rows))
    total = 0.0
    for k, (work, copies, jobs) in enumerate(passes):
        took = lane_pass_seconds(work, copies, jobs, gpus, lanes)
        total += max(took, touch_s) if k == 0 else took
    return total


def lane_pass_seconds(work: float, copies: float, jobs: int, gpus: int, lanes: int) -> float:
    """ESTIMATE of one pass of host RAM's jobs (`_spread`: blocks or windows, taken in turn by every
    lane of every device) whose kernels take `work` and PCIe copies `copies` seconds in all: with
    one lane they add; with two or more one lane's copies overlap another's kernels, so the pass
    takes its longer part plus one job's worth of the shorter on each device (the first job's
    compute and the last one's copies have nothing beside them)."""
    if lanes > 1:
        return max(work, copies) + min(work, copies) / max(1, -(-jobs // max(1, gpus)))
    return work + copies


@dataclass(frozen=True)
class HostLayout:
    """How the host fill is cut: blocks of 2^block_log rows (pass 1), windows of `window_rows`
    low values over 2^(L - block_log) slabs (pass 2, when block_log < L)."""

    n_rows: int
    n_stages: int
    block_log: int
    window_rows: int

    @property
    def block_rows(self) -> int:
        return 1 << self.block_log

    @property
    def two_pass(self) -> bool:
        return self.block_log < self.n_stages

    @property
    def slabs(self) -> int:
        return 1 << (self.n_stages - self.block_log)

    @property
    def window_log(self) -> int:
        return _log2(self.window_rows)

    @property
    def buffer_rows(self) -> int:
        first = min(self.block_rows, self.n_rows)
        return max(first, self.slabs * self.window_rows) if self.two_pass else first

    @staticmethod
    def choose(
        n_rows: int,
        n_stages: int,
        buffer_rows: int,
        block_rows: int | None = None,
        window_rows: int | None = None,
    ) -> HostLayout:
        """From a buffer of `buffer_rows` (a power of two): C = min(buffer, 2^L), w = buffer / 2^(L-c)."""
        c = min(_log2(block_rows if block_rows is not None else buffer_rows), n_stages)
        if c < 1:
            raise CapacityMemoryError("a host-fill block must hold at least 2 rows")
        if c == n_stages:
            return HostLayout(n_rows, n_stages, c, 1 << c)
        slabs = 1 << (n_stages - c)
        w = window_rows if window_rows is not None else buffer_rows // slabs
        if w < 1:
            raise CapacityMemoryError(
                f"a host fill of {n_rows} rows (L = {n_stages}) in two passes needs a device buffer of "
                f"at least 2^{-(-n_stages // 2)} rows; {buffer_rows} fit"
            )
        if w & (w - 1) or w > 1 << c:
            raise ValueError("window_rows must be a power of two no larger than the block")
        return HostLayout(n_rows, n_stages, c, w)


@dataclass(frozen=True)
class DeviceBudget:
    device: int
    free_bytes: int
    fill_bytes: int  # the GPU fills it holds
    working_bytes: int  # the largest step's scratch and trees
    margin_bytes: int

    @property
    def need_bytes(self) -> int:
        return self.fill_bytes + self.working_bytes + self.margin_bytes

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.free_bytes


@dataclass(frozen=True)
class MemoryPlan:
    devices: list[DeviceBudget]
    group_rows: int
    host: HostLayout | None
    host_fill_bytes: int
    host_available_bytes: int | None  # MemAvailable; None where it cannot be read (then not checked)
    kept_height: int = GPU_KEPT_HEIGHT  # H of the GPU targets' kept tree nodes
    host_lanes: int = 1  # host-fill lanes per device, each with its own buffer and stream
    beside: bool = False  # host RAM's fill runs beside the GPU fills (lanes 1..), not after them
    window_bytes: int = WINDOW_BYTES  # a GPU recompute window's most bytes

    @property
    def host_lane_ids(self) -> list[int]:
        """The lanes host RAM's work runs on: 1.. beside the GPU fills (lane 0 runs those), else 0.."""
        return list(range(1, 1 + self.host_lanes) if self.beside else range(self.host_lanes))

    @property
    def lane_ids(self) -> list[int]:
        return sorted({0, *self.host_lane_ids})

    def problems(self) -> list[str]:
        out = [
            f"device {b.device}: needs {b.need_bytes:,} bytes (fills {b.fill_bytes:,} + working "
            f"{b.working_bytes:,} + margin {b.margin_bytes:,}), {b.free_bytes:,} free"
            for b in self.devices
            if not b.fits
        ]
        if self.host_available_bytes is not None and self.host is not None:
            need = self.host_fill_bytes + HOST_MARGIN_BYTES
            if need > self.host_available_bytes:
                out.append(
                    f"host RAM: the fill needs {self.host_fill_bytes:,} bytes (+ {HOST_MARGIN_BYTES:,} "
                    f"margin), {self.host_available_bytes:,} available"
                )
        return out

    @property
    def fits(self) -> bool:
        return not self.problems()

    def describe(self) -> str:
        problems = self.problems()
        head = "the capacity fill does not fit" if problems else "the capacity fill fits"
        lines = [f"{b.device}: {b.need_bytes:,} of {b.free_bytes:,} bytes" for b in self.devices]
        return f"{head}: {'; '.join(problems or lines)}"


@dataclass(frozen=True)
class CupyCapacityOptions:
    """Sizes of the working memory (defaults adapt to free memory; explicit values are used as given)."""

    group_rows: int | None = None
    host_buffer_bytes: int = HOST_BUFFER_BYTES
    host_block_rows: int | None = None
    host_window_rows: int | None = None
    margin_bytes: int = MARGIN_BYTES
    host_pinned: bool = False
    kept_height: int | None = None  # H: the height of the tree nodes each layer keeps (default above)
    window_bytes: int | None = None  # a GPU recompute job's most bytes (default WINDOW_BYTES, adapts)
    answer_kept_height: int = ANSWER_KEPT_HEIGHT  # each answer tree's nodes kept at this height
    host_lanes: int = HOST_LANES  # at most this many (one when two do not fit)
    host_beside: bool = True  # host RAM's fill beside the GPU fills where both working sets fit


def host_available_bytes() -> int | None:
    """/proc/meminfo's MemAvailable (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


class HostReservation:
    """Host RAM's fill array allocated and its pages first-touched ahead of the phase (`reserve_host`),
    for the host target of one set of params; `CupyCapacityProver(reserved=...)` fills it."""

    def __init__(self, tp: CapacityTargetParams, available: int | None) -> None:
        self.shape = (tp.n_rows, tp.d)
        self.available = available  # host RAM available before it was allocated
        self.touch: _Touch | None = _Touch(
            np.empty(self.shape, dtype=np.int8), max(1, TOUCH_BYTES // tp.d), lambda: None
        )

    def host_ram(self) -> int | None:
        """The host RAM the memory plan may count on for the fill: what is available now plus what
        this reservation already holds (its touched pages are no longer "available")."""
        now = host_available_bytes()
        if now is None or self.touch is None:
            return now
        return now + self.touch.touched_bytes

    def take(self, tp: CapacityTargetParams) -> _Touch | None:
        """The touch (array and pages) for `tp` if it is the one reserved for, once."""
        touch, self.touch = self.touch, None
        if touch is not None and self.shape != (tp.n_rows, tp.d):
            touch.cancel()
            return None
        return touch

    def release(self) -> None:
        """The array given back (a phase skipped or failed before its fill)."""
        touch, self.touch = self.touch, None
        if touch is not None:
            touch.cancel()


def reserve_host(
    params: CapacityParams, options: CupyCapacityOptions | None = None
) -> HostReservation | None:
    """Host RAM's fill array allocated now and first-touched in the background (at a lower
    priority, `lower_priority`), so that the fill, opened later, does not wait for the pages: the probe
    reserves it right after taking the challenge, beside the throughput proof. None (nothing
    allocated) when the params have no host target, the fill is to be pinned (committed when
    allocated, in the fill), or host RAM does not hold it with its margin now (the memory plan then
    refuses the phase, as without a reservation)."""
    opts = options or CupyCapacityOptions()
    host = [tp for tp in params.targets if tp.is_host]
    if not host or opts.host_pinned:
        return None
    available = host_available_bytes()
    if available is not None and host[0].fill_bytes + HOST_MARGIN_BYTES > available:
        return None
    return HostReservation(host[0], available)


def default_kept_height(params: CapacityParams) -> int:
    """GPU_KEPT_HEIGHT with every layer committed; one lower per halving of the committed layers
    (commit_stride 2: H = 5), so the kept nodes take the same memory and a recompute window's slabs
    are half as tall (a cheaper recompute, `recompute_row_stages`)."""
    stride = max((tp.commit_stride for tp in params.targets if not tp.is_host), default=1)
    return max(0, GPU_KEPT_HEIGHT - (stride.bit_length() - 1))


def gpu_kept_height(tp: CapacityTargetParams, kept: int) -> int:
    return max(0, min(kept, tp.n_stages))


def _kept_cost(tp: CapacityTargetParams, kept: int) -> int:
    """Device bytes that depend on H: the kept nodes, a recomputed block of 2^H rows with its tree,
    and the recompute's job buffer at its cap (`reopen.rows_cap`, which grows with H). A higher H
    saves memory only while the first term shrinks faster than the others grow."""
    h = gpu_kept_height(tp, kept)
    job = min(tp.n_rows, rows_cap(tp.n_stages, h)) * tp.d
    return kept_bytes(tp.n_rows, len(tp.committed), h) + (1 << h) * (tp.d + 4) + job


def descent_floor(n_stages: int, height: int) -> int:
    """The inverse stages built ahead are those above this: a descent to layer b costs
    (L - b) 2^(H + L - b) row-stages and a block at layer l l 2^l, so `reopen.plan` puts its
    threshold near (L + H) / 2 (an H100 at H = 5: 15 of 27; 256 GiB of host RAM at H = 10: 20 of 29)."""
    return max(0, (n_stages + height) // 2 - 2)


def window_rows(tp: CapacityTargetParams, window_bytes: int, height: int) -> int:
    """The most rows a GPU recompute job's buffer may hold (`reopen.py`): `window_bytes`, at most N
    and at most `reopen.rows_cap` (an H100: 2^17 rows, 128 MiB; its plan's largest job 74,016)."""
    return max(1, min(window_bytes // tp.d, tp.n_rows, rows_cap(tp.n_stages, height)))


def host_kept_height(layout: HostLayout, options: CupyCapacityOptions) -> int:
    """At most the fill's window height (a window's slabs are whole kept blocks; w <= C)."""
    h = options.kept_height if options.kept_height is not None else HOST_KEPT_HEIGHT
    return max(0, min(h, layout.window_log))


def _gpu_working(tp: CapacityTargetParams, group: int, kept: int, window_bytes: int) -> tuple[int, int]:
    """(the fill's step, the largest later step: an answer, the openings' recompute)."""
    g = min(group, _pow2_floor(tp.n_rows))
    h = gpu_kept_height(tp, kept)
    fill_step = stage_bytes(g, tp.d) + tree_bytes(tp.n_rows, tp.n_stages, min(TREE_BASE_HEIGHT, h))
    reopen_step = (
        stage_bytes(g, tp.d)
        + window_rows(tp, window_bytes, h) * tp.d
        + tp.n_stages * STAGE_MATRIX_ENTRIES * tp.d * tp.d  # each stage's, forward or inverse (`reopen.py`)
        + tree_bytes(tp.n_rows, tp.n_stages, h)  # one layer's tree above its kept nodes
        + tree_bytes(1 << h, h, min(TREE_BASE_HEIGHT, h))
        + (1 << h) * tp.d
    )
    return fill_step + SMALL_BYTES, max(answer_tree_bytes(tp), reopen_step) + SMALL_BYTES


def _host_working(
    tp: CapacityTargetParams,
    layout: HostLayout,
    group: int,
    first: bool,
    options: CupyCapacityOptions,
    lanes: int = 1,
) -> tuple[int, int]:
    """(the fill's and recompute's step, on every lane; an answer batch)."""
    rows = layout.buffer_rows
    g = min(group, _pow2_floor(rows))
    top = layout.block_log
    h = host_kept_height(layout, options)
    lane = (  # each lane's buffer, scratch, matrices of every stage (and their inverses, for the
        # openings' descents), the buffer's tree, a recomputed block
        rows * tp.d
        + stage_bytes(g, tp.d)
        + 2 * tp.n_stages * STAGE_MATRIX_ENTRIES * tp.d * tp.d
        + tree_bytes(rows, top, min(TREE_BASE_HEIGHT, h))
        + tree_bytes(1 << h, h, min(TREE_BASE_HEIGHT, h))
        + (1 << h) * tp.d
    )
    fill_step = (
        lanes * lane
        + (tree_bytes(-(-tp.n_rows // 2**layout.window_log), tp.n_stages, layout.window_log) if first else 0)
        + (tree_bytes(tp.n_rows, tp.n_stages, h) if first else 0)  # a layer's tree above its kept nodes
    )
    answer = rows * (tp.d + 40) + (answer_tree_bytes(tp) if first else 0)
    return fill_step + SMALL_BYTES, answer + SMALL_BYTES


def _plan_for(
    params: CapacityParams,
    device_of: Callable[[int], int],
    host_devices: Sequence[int],
    free: Mapping[int, int],
    group: int,
    host_buffer_bytes: int,
    options: CupyCapacityOptions,
    host_ram: int | None,
    kept: int = GPU_KEPT_HEIGHT,
    lanes: int = 1,
    beside: bool = False,
    window_bytes: int = WINDOW_BYTES,
) -> MemoryPlan:
    """`beside`: host RAM's fill step holds its working set while the GPU fills hold theirs
    (added), else one after the other (the larger); every later step (answers, the openings'
    recompute: GPU targets, then host RAM) runs alone."""
    fills: dict[int, int] = defaultdict(int)
    gpu_fill: dict[int, int] = defaultdict(int)
    later: dict[int, int] = defaultdict(int)
    host_working: dict[int, int] = defaultdict(int)
    layout: HostLayout | None = None
    host_fill = 0
    for tp in params.targets:
        if tp.is_host:
            buffer_rows = _pow2_floor(max(2, host_buffer_bytes // tp.d))
            layout = HostLayout.choose(
                tp.n_rows, tp.n_stages, buffer_rows, options.host_block_rows, options.host_window_rows
            )
            host_fill = tp.fill_bytes + kept_bytes(
                tp.n_rows, len(tp.committed), host_kept_height(layout, options)
            )
            for k, dev in enumerate(host_devices):
                step, answer = _host_working(tp, layout, group, k == 0, options, lanes)
                host_working[dev] = max(host_working[dev], step)
                later[dev] = max(later[dev], answer)
        else:
            dev = device_of(tp.target)
            fills[dev] += tp.fill_bytes + kept_bytes(tp.n_rows, len(tp.committed), gpu_kept_height(tp, kept))
            step, after = _gpu_working(tp, group, kept, window_bytes)
            gpu_fill[dev] = max(gpu_fill[dev], step)
            later[dev] = max(later[dev], after)
    working = {
        dev: max(
            gpu_fill[dev] + host_working[dev] if beside else max(gpu_fill[dev], host_working[dev]), later[dev]
        )
        for dev in free
    }
    budgets = [
        DeviceBudget(dev, free[dev], fills[dev], working[dev], options.margin_bytes) for dev in sorted(free)
    ]
    host = layout is not None
    return MemoryPlan(
        budgets, group, layout, host_fill, host_ram, kept, lanes if host else 1, beside and host, window_bytes
    )


# -- one device ---------------------------------------------------------------------------------------------


@dataclass
class DeviceTree:
    """A Merkle tree's levels on one device, from height `base` to `top` (only real nodes; a missing
    right sibling is the all-padding subtree of its height)."""

    cp: Any
    device: int
    base: int
    levels: list[Any]
    counts: list[int]

    @property
    def top(self) -> int:
        return self.base + len(self.levels) - 1

    def top_nodes(self) -> npt.NDArray[np.uint8]:
        with self.cp.cuda.Device(self.device):
            return np.asarray(self.cp.asnumpy(self.levels[-1]), dtype=np.uint8)

    def root(self) -> bytes:
        if self.counts[-1] != 1:
            raise ValueError("the tree's top level has more than one node")
        return bytes(self.top_nodes()[0].tobytes())

    def nodes(self, indices: Sequence[int]) -> list[bytes]:
        """The nodes at height `base` with these indices."""
        if not indices:
            return []
        with self.cp.cuda.Device(self.device):
            picked = self.cp.asnumpy(self.levels[0][self.cp.asarray(np.array(indices, dtype=np.int64))])
        return [bytes(np.asarray(picked[k], dtype=np.uint8).tobytes()) for k in range(len(indices))]

    def siblings(self, nodes: Sequence[int]) -> list[list[bytes]]:
        """For each node index at height `base`, its siblings at heights base .. top - 1."""
        out: list[list[bytes]] = [[] for _ in nodes]
        with self.cp.cuda.Device(self.device):
            for k, (level, count) in enumerate(zip(self.levels[:-1], self.counts[:-1], strict=True)):
                wanted = [(i >> k) ^ 1 for i in nodes]
                inside = sorted({j for j in wanted if j < count})
                got: dict[int, bytes] = {}
                if inside:
                    picked = self.cp.asnumpy(level[self.cp.asarray(np.array(inside, dtype=np.int64))])
                    got = {
                        j: bytes(np.asarray(picked[n], dtype=np.uint8).tobytes())
                        for n, j in enumerate(inside)
                    }
                for path, j in zip(out, wanted, strict=True):
                    path.append(got[j] if j < count else EMPTIES[self.base + k])
        return out


def _groups(v: int, h: int, group: int) -> Iterator[tuple[int, int, int, int]]:
    """Row groups of a stage pairing i with i xor h over a buffer of v rows, each closed under the
    pairing: (lo, lo_n, hi, hi_n) = rows lo .. lo + lo_n - 1 and hi .. hi + hi_n - 1."""
    if h < group:
        for s in range(0, v, group):
            yield s, min(group, v - s), 0, 0
        return
    for s in range(0, v, group):
        if s & h:
            continue
        hi = s + h
        yield s, min(group, v - s), hi, max(0, min(group, v - hi))


def _copy_slabs(
    g: _Gpu,
    to_device: bool,
    buf: Any,
    x: npt.NDArray[np.int8],
    j0: int,
    stride: int,
    w: int,
    run: tuple[int, int],
) -> int:
    """Slab k of host rows x (rows k stride + j0 ..) to or from buffer rows k w ..: the full slabs
    in ONE strided copy (`_Gpu.h2d_slabs` / `d2h_slabs`), the short tail in another; the run's row
    count. One Python call a window instead of one a slab (the GIL is shared by every GPU's
    threads)."""
    full, tail = run
    if to_device:
        g.h2d_slabs(buf, x, j0, stride, w, full)
        if tail:
            g.h2d(buf[full * w : full * w + tail], x[full * stride + j0 : full * stride + j0 + tail])
    else:
        g.d2h_slabs(x, buf, j0, stride, w, full)
        if tail:
            g.d2h(x[full * stride + j0 : full * stride + j0 + tail], buf[full * w : full * w + tail])
    return full * w + tail


class _Gpu:
    """One lane of one device: its kernels and calls, on the lane's own stream. Used only on the
    lane's worker thread, device and stream current. Lane 0 runs on the legacy default stream
    (everything but the host fill runs there); lanes 1.. on non-blocking streams of their own, so
    one lane's copies overlap another's kernels. Every launch, copy, cuBLAS call and sync names
    the lane's stream: nothing waits on the whole device."""

    def __init__(self, cp: Any, device: int, lane: int = 0) -> None:
        self.cp, self.device, self.lane = cp, device, lane
        self.stream = cp.cuda.Stream(null=True) if lane == 0 else cp.cuda.Stream(non_blocking=True)
        self.module = cp.RawModule(code=SOURCE, options=MODULE_OPTIONS)
        self._empties: dict[int, Any] = {}
        self.calls = 0  # kernel launches and cuBLAS calls made (`cpu`)
        self.call_s = 0.0  # host seconds inside them: Python and driver work, mostly under the GIL

    def cpu(self) -> tuple[float, int]:
        """(host seconds inside launches and cuBLAS calls, calls) so far: a step's difference is what
        issuing its work cost the host, which the GIL serialises across the GPUs' threads (the
        waits for the device are not in it; scripts/gpu_check.sh records it)."""
        return self.call_s, self.calls

    def launch(self, name: str, count: int, *args: Any) -> None:
        if count > 0:
            start = time.perf_counter()
            self.module.get_function(name)(
                ((count + THREADS - 1) // THREADS,), (THREADS,), args, stream=self.stream
            )
            self.calls += 1
            self.call_s += time.perf_counter() - start

    def upload(self, data: bytes | npt.NDArray[Any]) -> Any:
        array = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
        return self.cp.asarray(array)

    def empty_digest(self, height: int) -> Any:
        if height not in self._empties:
            self._empties[height] = self.upload(EMPTIES[height])
        return self._empties[height]

    def sync(self) -> None:
        self.stream.synchronize()

    def h2d(self, dst: Any, src: npt.NDArray[Any]) -> None:
        rt = self.cp.cuda.runtime
        rt.memcpyAsync(dst.data.ptr, src.ctypes.data, src.nbytes, rt.memcpyHostToDevice, self.stream.ptr)

    def d2h(self, dst: npt.NDArray[Any], src: Any) -> None:
        rt = self.cp.cuda.runtime
        rt.memcpyAsync(dst.ctypes.data, src.data.ptr, dst.nbytes, rt.memcpyDeviceToHost, self.stream.ptr)

    def h2d_slabs(
        self, dst: Any, src: npt.NDArray[np.int8], first: int, stride: int, w: int, count: int
    ) -> None:
        """dst rows k w .. k w + w - 1 = src rows first + k stride .., k < count: one 2D copy."""
        if count > 0:
            d, rt = src.shape[1], self.cp.cuda.runtime
            assert first + (count - 1) * stride + w <= src.shape[0] and count * w <= dst.shape[0]
            rt.memcpy2DAsync(
                dst.data.ptr,
                w * d,
                src.ctypes.data + first * d,
                stride * d,
                w * d,
                count,
                rt.memcpyHostToDevice,
                self.stream.ptr,
            )

    def d2h_slabs(
        self, dst: npt.NDArray[np.int8], src: Any, first: int, stride: int, w: int, count: int
    ) -> None:
        """dst rows first + k stride .. = src rows k w .. k w + w - 1, k < count: one 2D copy."""
        if count > 0:
            d, rt = dst.shape[1], self.cp.cuda.runtime
            assert first + (count - 1) * stride + w <= dst.shape[0] and count * w <= src.shape[0]
            rt.memcpy2DAsync(
                dst.ctypes.data + first * d,
                stride * d,
                src.data.ptr,
                w * d,
                w * d,
                count,
                rt.memcpyDeviceToHost,
                self.stream.ptr,
            )

    def free_bytes(self) -> int:
        self.cp.get_default_memory_pool().free_all_blocks()
        free, _total = self.cp.cuda.runtime.memGetInfo()
        return int(free)

    def warm(self) -> None:
        """Kernels built and cuBLAS's handle made on this thread (a tiny stage, before any timing)."""
        cp = self.cp
        buf = cp.empty((4, 8), dtype=cp.int8)
        self.seeded_rows(buf, b"\0" * 32, TAG_X0, 0, 4)
        mats = cp.asarray(np.zeros(STAGE_MATRIX_ENTRIES * 8 * 8, dtype=np.int8))
        scratch = (cp.empty((2, 16), dtype=cp.int8), cp.empty((2, 16), dtype=cp.int32))
        self.stage(buf, 3, 1, 1, mats, scratch, 2)  # one pair and one lone row
        self.tree(buf, 4, 2)
        self.sync()

    # -- rows, GEMM, stages --------------------------------------------------------------------------------
    def seeded_rows(self, out: Any, seed: bytes, tag: bytes, first: int, rows: int) -> None:
        """out[0 .. rows) = rows first .. first + rows - 1 of a seeded matrix (`fill.gen_rows`)."""
        prefix = ROW_DOMAIN + seed + tag
        if len(prefix) + 4 >= RATE_BYTES:
            raise ValueError("the row message must fit one SHAKE-128 block")
        d = out.shape[1]
        self.launch(
            "seeded_rows",
            rows,
            self.upload(prefix),
            np.uint32(len(prefix)),
            np.uint32(first),
            np.uint32(rows),
            np.uint32(d),
            np.uint32(Q),
            out,
        )

    def gemm(self, a: Any, b: Any, c32: Any, m: int, n: int, k: int) -> None:
        """c32[:n] (n x m, row-major) = b[:n] (n x k, row-major, rows k apart) . A, A (k x m) given as
        `a` = A^T row-major (m x k), int8 in, int32 out, exact.

        cuBLAS is column-major: row-major C = U . A is column-major C^T = A^T . U^T; `a` read as
        column-major is A (k x m), taken with op = T: the TN layout the int8 (IMMA) kernels have
        always accepted; lda = ldb = k, ldc = m (multiples of 4).
        """
        cp = self.cp
        start = time.perf_counter()
        handle = cp.cuda.device.get_cublas_handle()  # this thread's handle: set to the lane's stream
        cp.cuda.cublas.setStream(handle, self.stream.ptr)
        one, zero = np.ones(1, np.int32), np.zeros(1, np.int32)  # host pointers (CUBLAS_POINTER_MODE_HOST)
        cp.cuda.cublas.gemmEx(
            handle,
            CUBLAS_OP_T,
            CUBLAS_OP_N,
            m,
            n,
            k,
            one.ctypes.data,
            a.data.ptr,
            CUDA_R_8I,
            k,
            b.data.ptr,
            CUDA_R_8I,
            k,
            zero.ctypes.data,
            c32.data.ptr,
            CUDA_R_32I,
            m,
            CUBLAS_COMPUTE_32I,
            CUBLAS_GEMM_DEFAULT,
        )
        self.calls += 1
        self.call_s += time.perf_counter() - start

    def stage(
        self,
        buf: Any,
        v: int,
        h: int,
        stage: int,
        mats: Any,
        scratch: tuple[Any, Any],
        group: int,
        offset: int | None = None,
    ) -> None:
        """Stage `stage` over rows 0..v-1 of `buf`, pairing buffer rows b and b xor h, in place:
        per group (`stage_work`) its pairs' operand (`cap_pairs`), one GEMM against W (`mats`,
        `stage_matrix`) and both rows of each pair written back; its lone rows (at most one range)
        multiplied by M straight from the buffer and written back, each entry ((C + offset) mod 251)
        - 125: offset `stage` is g_l; an inverse stage (`unstage_matrix`) passes 125, the residue."""
        u, c32 = scratch
        d = buf.shape[1]
        u64 = np.uint64
        add = np.int32(stage if offset is None else offset)
        w, lone_m = mats[: 4 * d * d], mats[4 * d * d :]
        for lo, pairs, first, rows in stage_work(v, h, group):
            if pairs:
                self.launch("cap_pairs", pairs * (d // 2), buf, u64(d), u64(lo), u64(h), u64(pairs), u)
                self.gemm(w, u, c32, 2 * d, pairs, 2 * d)
                self.launch(
                    "cap_pair_epilogue",
                    pairs * 2 * d,
                    c32,
                    u64(d),
                    u64(lo),
                    u64(h),
                    u64(pairs),
                    add,
                    buf,
                )
            if rows:
                self.gemm(lone_m, buf[first : first + rows], c32, d, rows, d)
                self.launch("cap_epilogue", rows * d, c32, u64(d), u64(first), u64(rows), add, buf)

    def shift(self, buf: Any, v: int, s: int) -> None:
        """Rows 0..v-1 of `buf` plus s mod 251, in place (`cap_shift`)."""
        count = v * buf.shape[1]
        self.launch("cap_shift", count, buf, np.uint64(count), np.int32(s), buf)

    def slabs(self, src: Any, n: int, c: int, j0: int, m: int, w: int, dst: Any) -> None:
        """dst's rows k w .. = src's rows k 2^c + j0 .. + w - 1 (those below n), k < 2^m (`cap_slabs`)."""
        u64, d = np.uint64, src.shape[1]
        self.launch(
            "cap_slabs", (w << m) * (d // 4), src, u64(n), u64(d), u64(c), u64(j0), np.uint32(m), u64(w), dst
        )

    def scratch(self, group: int, v: int, d: int) -> tuple[Any, Any]:
        g = min(group, _pow2_floor(v))  # a group's pairs (<= G) x 2d, or its lone rows (< 2G) x d
        return self.cp.empty((g, 2 * d), dtype=self.cp.int8), self.cp.empty((g, 2 * d), dtype=self.cp.int32)

    # -- trees -----------------------------------------------------------------------------------------
    def tree(self, buf: Any, v: int, top: int, base: int | None = None) -> DeviceTree:
        """The tree over rows 0..v-1 of `buf` (padded), heights `base` (default min(4, top)) .. top."""
        base = min(TREE_BASE_HEIGHT, top) if base is None else base
        nodes = -(-v // 2**base)
        level = self.cp.empty((nodes, 32), dtype=self.cp.uint8)
        d = buf.shape[1]
        self.launch(
            "cap_subtree",
            nodes,
            buf,
            np.uint32(d),
            np.uint64(v),
            np.uint32(base),
            self.empty_digest(0),
            np.uint64(nodes),
            level,
        )
        return self.up(level, nodes, base, top)

    def up(self, level: Any, count: int, base: int, top: int) -> DeviceTree:
        levels, counts = [level], [count]
        for height in range(base, top):
            parents = (count + 1) // 2
            parent = self.cp.empty((parents, 32), dtype=self.cp.uint8)
            self.launch(
                "cap_nodes",
                parents,
                level,
                np.uint64(count),
                self.empty_digest(height),
                np.uint64(parents),
                parent,
            )
            level, count = parent, parents
            levels.append(level)
            counts.append(count)
        return DeviceTree(self.cp, self.device, base, levels, counts)

    def tree_of(self, nodes: npt.NDArray[np.uint8], height: int, top: int) -> DeviceTree:
        """The tree above host nodes at `height` (a tree's level, or answer leaves at 0)."""
        return self.up(self.cp.asarray(np.ascontiguousarray(nodes, dtype=np.uint8)), len(nodes), height, top)

    # -- answers -------------------------------------------------------------------------------------------
    def answer_leaves(self, rows: Any, v: int, chunk: int, head: bytes, first_item: int, items: int) -> Any:
        leaves = self.cp.empty((items, 32), dtype=self.cp.uint8)
        self.launch(
            "cap_answer_rows",
            items,
            self.upload(head),
            np.uint32(len(head)),
            rows,
            np.uint64(v),
            np.uint64(rows.shape[1]),
            np.uint64(chunk),
            np.uint32(first_item),
            np.uint64(items),
            leaves,
        )
        return leaves

    def sampled_leaves(
        self, x: Any, n: int, answer_head: bytes, sample_head: bytes, items: int, first_item: int = 0
    ) -> Any:
        leaves = self.cp.empty((items, 32), dtype=self.cp.uint8)
        self.launch(
            "cap_answer_sampled",
            items,
            self.upload(answer_head),
            np.uint32(len(answer_head)),
            self.upload(sample_head),
            np.uint32(len(sample_head)),
            x,
            np.uint64(n),
            np.uint64(x.shape[1]),
            np.uint32(first_item),
            np.uint64(items),
            leaves,
        )
        return leaves

    def sweep_tree(self, x: Any, n: int, chunk: int, key: bytes, target: int, items: int) -> DeviceTree:
        """One sweep of the bandwidth round over the rows held (`sweep.sweep_leaves`): the
        fingerprints of every row under R_s, then their leaves and tree, all on the device."""
        leaves = self.sweep_leaves(x, n, chunk, key, target, 0, items)
        return self.up(leaves, items, 0, merkle.depth(items))

    def sweep_leaves(
        self, x: Any, v: int, chunk: int, key: bytes, target: int, first_item: int, items: int
    ) -> Any:
        """Sweep leaves first_item .. first_item + items - 1 over rows 0..v-1 of `x` (their rows)."""
        d = int(x.shape[1])
        matrix = np.ascontiguousarray(gen_rows(key, TAG_R, range(SWEEP_COLUMNS), d).T)
        prints = self.cp.empty((v, SWEEP_COLUMNS), dtype=self.cp.uint8)
        self.launch("cap_fingerprint", v, x, np.uint64(v), np.uint64(d), self.upload(matrix), prints)
        head = SWEEP_LEAF_DOMAIN + key + u32(target)
        return self.answer_leaves(prints, v, chunk, head, first_item, items)

    def sample_rows(self, sample_head: bytes, first_item: int, items: int, n: int) -> npt.NDArray[np.intp]:
        out = self.cp.empty((items,), dtype=self.cp.uint64)
        self.launch(
            "cap_sample_rows",
            items,
            self.upload(sample_head),
            np.uint32(len(sample_head)),
            np.uint32(first_item),
            np.uint64(items),
            np.uint64(n),
            out,
        )
        return np.asarray(self.cp.asnumpy(out)).astype(np.intp)


MODULE_OPTIONS = ("--std=c++11",)


def build_module(cp: Any) -> Any:
    """The capacity source built for the current device and loaded, through CuPy's kernel cache (a
    first build pays NVRTC, later ones, in this process or another, load the cached CUBIN)."""
    module = cp.RawModule(code=SOURCE, options=MODULE_OPTIONS)
    module.get_function("cap_pairs")  # CuPy builds a RawModule on its first function
    return module


class CupyCapacityRuntime:
    """The GPUs the phase runs on: one worker thread per device and lane (CuPy keeps cuBLAS handles
    per thread, so the handle made while preparing is the one the fill uses), kernels built once per
    lane. `devices` maps a GPU target (its gpu_index) to a CUDA ordinal (default: the same)."""

    def __init__(self, cupy: Any = None, devices: Mapping[int, int] | None = None) -> None:
        if cupy is None:
            import cupy as module  # fail early, with CuPy's own message, when it is missing

            cupy = module
        self.cp: Any = cupy
        self.devices = dict(devices or {})
        self._workers: dict[tuple[int, int], ThreadPoolExecutor] = {}
        self._gpus: dict[tuple[int, int], _Gpu] = {}
        self._lock = threading.Lock()

    def device_of(self, target: int) -> int:
        return self.devices.get(target, target)

    def submit(self, device: int, work: Callable[[_Gpu], T], lane: int = 0) -> Future[T]:
        key = (device, lane)
        with self._lock:
            if key not in self._workers:
                self._workers[key] = ThreadPoolExecutor(
                    1, thread_name_prefix=f"capacity-gpu{device}-lane{lane}"
                )
            worker = self._workers[key]

        def run() -> T:
            with self.cp.cuda.Device(device):
                if key not in self._gpus:
                    self._gpus[key] = _Gpu(self.cp, device, lane)
                gpu = self._gpus[key]
                with gpu.stream:
                    return work(gpu)

        return worker.submit(run)

    def on(self, device: int, work: Callable[[_Gpu], T], lane: int = 0) -> T:
        return self.submit(device, work, lane).result()

    def all(self, jobs: Sequence[tuple[int, Callable[[_Gpu], T]]], lanes: Sequence[int] = (0,)) -> list[T]:
        """Each job on every one of `lanes` of its device, at once."""
        futures = [self.submit(device, work, lane) for device, work in jobs for lane in lanes]
        return [f.result() for f in futures]

    def prepare(self, devices: Sequence[int], lanes: Sequence[int] = (0,)) -> None:
        """Kernels built and cuBLAS warmed on every device and lane (before the phase is opened):
        the source built first on the calling thread (`build_module`: its NVRTC build, 7.5 s of one
        core to CUBIN, docs/measurements.md, fills CuPy's kernel cache; the probe calls this from a
        thread at a lower priority, beside the throughput proof), then every lane warmed at once,
        each loading the cached build instead of building it again."""
        devices, lanes = sorted(set(devices)), list(lanes)
        if devices and lanes:
            with self.cp.cuda.Device(devices[0]):
                build_module(self.cp)
        self.all([(d, lambda g: g.warm()) for d in devices], lanes)

    def free_bytes(self, devices: Sequence[int]) -> dict[int, int]:
        got = self.all([(d, lambda g: g.free_bytes()) for d in sorted(set(devices))])
        return dict(zip(sorted(set(devices)), got, strict=True))


def plan_memory(
    params: CapacityParams,
    runtime: CupyCapacityRuntime,
    options: CupyCapacityOptions | None = None,
    *,
    host_ram: int | None = None,
) -> MemoryPlan:
    """The budget of `params` on the runtime's devices (module docstring), the defaults shrunk
    (group rows, host buffer) until it fits or reach their minimum, with one host-fill lane per
    device; then, nothing else shrunk, the first that fits of: host RAM's fill beside the GPU fills
    (`host_beside`) with `host_lanes` lanes .. 1, after them with `host_lanes` .. 2 (the estimate,
    `scripts/probe_estimate.py`: beside with one lane is faster than after with two)."""
    gpus = [runtime.device_of(tp.target) for tp in params.targets if not tp.is_host]
    hosts = _host_devices(params, runtime)
    free = runtime.free_bytes(
        sorted(set(gpus) | set(hosts if any(tp.is_host for tp in params.targets) else []))
    )
    ram = host_ram if host_ram is not None else host_available_bytes()
    return plan_for_free(params, runtime.device_of, hosts, free, options, ram)


def plan_for_free(
    params: CapacityParams,
    device_of: Callable[[int], int],
    hosts: Sequence[int],
    free: Mapping[int, int],
    options: CupyCapacityOptions | None,
    ram: int | None,
) -> MemoryPlan:
    """`plan_memory` for devices with `free` bytes each (device -> bytes) and `ram` bytes of host
    memory available (None: not checked)."""
    opts = options or CupyCapacityOptions()
    group = opts.group_rows or GROUP_ROWS
    buffer = opts.host_buffer_bytes
    kept = opts.kept_height if opts.kept_height is not None else default_kept_height(params)
    window = opts.window_bytes if opts.window_bytes is not None else WINDOW_BYTES
    while True:
        plan = _plan_for(params, device_of, hosts, free, group, buffer, opts, ram, kept, window_bytes=window)
        if plan.fits:
            most = max(1, opts.host_lanes)
            besides = (
                opts.host_beside and plan.host is not None and any(not tp.is_host for tp in params.targets)
            )
            choices = [(lanes, True) for lanes in range(most, 0, -1)] if besides else []
            for lanes, beside in choices + [(lanes, False) for lanes in range(most, 1, -1)]:
                more = _plan_for(
                    params, device_of, hosts, free, group, buffer, opts, ram, kept, lanes, beside, window
                )
                if more.fits:
                    return more
            return plan
        raise_kept = opts.kept_height is None and any(
            _kept_cost(tp, kept + 2) < _kept_cost(tp, kept) for tp in params.targets if not tp.is_host
        )
        shrink_group = opts.group_rows is None and group > MIN_GROUP_ROWS
        shrink_buffer = opts.host_block_rows is None and any(tp.is_host for tp in params.targets)
        if shrink_buffer and plan.host is not None:
            min_rows = 1 << -(-plan.host.n_stages // 2)
            d = next(tp.d for tp in params.targets if tp.is_host)
            shrink_buffer = buffer // 2 >= min_rows * d
        shrink_window = opts.window_bytes is None and window > MIN_WINDOW_BYTES
        if not (shrink_group or shrink_buffer or raise_kept or shrink_window):
            return plan
        if shrink_window:
            window //= 2
        if raise_kept:
            kept += 2
        if shrink_group:
            group //= 2
        if shrink_buffer:
            buffer //= 2


def _host_devices(params: CapacityParams, runtime: CupyCapacityRuntime) -> list[int]:
    gpus = sorted({runtime.device_of(tp.target) for tp in params.targets if not tp.is_host})
    return gpus or [runtime.device_of(0)]


# -- the prover ---------------------------------------------------------------------------------------------


def lower_priority() -> None:
    """The calling thread at a lower priority (nice + 10, Linux only, where a thread's id names it
    alone): the capacity phase's background work that runs beside the service-timed throughput
    proof (host RAM's first touch, `reserve_host`; the kernels' build, the probe's
    `CupyCapacityFactory.warm_beside`), whose threads must get a core at once whenever they wake."""
    if sys.platform == "linux":  # a sandbox refusing it: the touch then runs at the normal priority
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


class _Touch:
    """Host RAM's pages first-touched in parallel (page faults are slow one thread at a time; the
    copies then run at the link's speed), in slices of `step` rows taken in order, in the
    background: a host-fill block waits only for its own slices (`wait`), so the fill starts with
    the first slice, not after the last. step 0: nothing to touch (pinned memory). Made in O(1)
    (one flag a slice, one task a thread: 1 TiB is 4096 slices), as the probe makes it right after
    taking the challenge (`reserve_host`)."""

    def __init__(self, array: npt.NDArray[np.int8], step: int, touched: Callable[[], object]) -> None:
        self.array, self.step = array, step
        self._slices = -(-len(array) // step) if step else 0
        self._done = bytearray(self._slices)
        self._left = self._slices
        self._next = 0  # the next slice to touch: the threads take them in order
        self._cond = threading.Condition()
        self._error: BaseException | None = None
        self._touched = touched
        self._pool: ThreadPoolExecutor | None = None
        if not self._slices:
            touched()
            return
        threads = min(16, os.cpu_count() or 1, self._slices)
        self._pool = ThreadPoolExecutor(
            threads, thread_name_prefix="capacity-touch", initializer=lower_priority
        )
        for _ in range(threads):
            self._pool.submit(self._run)

    def _run(self) -> None:
        while True:
            with self._cond:
                k, self._next = self._next, self._next + 1
            if k >= self._slices:
                return
            self._touch(k)

    @property
    def touched_bytes(self) -> int:
        """The bytes of the slices touched so far (all of them for pinned memory)."""
        if not self.step:
            return int(self.array.nbytes)
        row = int(self.array.nbytes) // max(1, len(self.array))
        with self._cond:
            done = self._slices - self._left
        return min(int(self.array.nbytes), done * self.step * row)

    def notify(self, touched: Callable[[], object]) -> None:
        """`touched` called once every page is: now if they are, else when the last slice is."""
        with self._cond:
            left = self._left
            if left:
                self._touched = touched
        if not left and self._error is None:
            touched()

    def _touch(self, k: int) -> None:
        try:
            if self._error is None:
                self.array[k * self.step : (k + 1) * self.step] = 0
        except BaseException as exc:  # a failed touch must not leave a block waiting forever
            self._error = exc
        finally:
            with self._cond:
                self._left -= 1
                last = self._left == 0
            try:
                if last and self._error is None:
                    self._touched()  # before the last slice is marked: `close` returns after it
            finally:
                with self._cond:
                    self._done[k] = 1
                    self._cond.notify_all()

    def _wait_slices(self, first: int, last: int) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._done.find(0, first, last + 1) < 0)  # memchr: no 0 left

    def wait(self, first: int, rows: int) -> None:
        """Until rows first .. first + rows - 1 are touched; a touch that failed raises here."""
        if self.step and rows > 0:
            self._wait_slices(first // self.step, (first + rows - 1) // self.step)
        if self._error is not None:
            raise self._error

    def cancel(self) -> None:
        """The slices not yet started skipped, the threads gone (a fill that failed)."""
        if self._error is None:
            self._error = RuntimeError("host RAM's first touch was cancelled")
        if self._slices:
            self._wait_slices(0, self._slices - 1)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def close(self) -> None:
        """Every page touched (or the error raised), the threads gone."""
        try:
            self.wait(0, len(self.array))
        finally:
            if self._pool is not None:
                self._pool.shutdown()
                self._pool = None


@dataclass
class _Target:
    tp: CapacityTargetParams
    seed: bytes
    device: int | None  # None: host RAM
    roots: list[bytes] = field(default_factory=list)
    held: Any = None  # X_L (after the openings' recompute, X_c): a device array, or the host's numpy array
    touch: _Touch | None = None  # host RAM's first touch, while it runs
    kept: dict[int, Any] = field(default_factory=dict)  # layer -> its tree's nodes at kept_height
    kept_height: int = 0


Opened = dict[tuple[int, int], tuple[bytes, list[bytes]]]  # (layer, row) -> (row bytes, Merkle path)


def _lower_paths(block: npt.NDArray[np.int8], base: int, locals_: Sequence[int]) -> list[list[bytes]]:
    """Siblings at heights 0..base-1 of rows `locals_` of one aligned block (short blocks padded)."""
    levels = merkle.levels([leaf(block[i]) for i in range(block.shape[0])], base)
    return [merkle.path(levels, i) for i in locals_]


class CupyCapacityProver:
    """Same interface and outputs as `CapacityProver` (fill, answer, open); see the module docstring.

    `cupy` (the module or the CUDA test double) or `runtime` (shared, e.g. prepared by the probe);
    `devices` maps GPU targets to CUDA ordinals."""

    def __init__(
        self,
        nonce: bytes,
        machine_id: str,
        challenge_id: str,
        params: CapacityParams,
        devices: Mapping[int, int] | None = None,
        cupy: Any = None,
        *,
        runtime: CupyCapacityRuntime | None = None,
        options: CupyCapacityOptions | None = None,
        reserved: HostReservation | None = None,
    ) -> None:
        self.nonce, self.machine_id, self.challenge_id, self.params = nonce, machine_id, challenge_id, params
        self.runtime = runtime if runtime is not None else CupyCapacityRuntime(cupy, devices)
        self.cp = self.runtime.cp
        self.options = options or CupyCapacityOptions()
        for tp in params.targets:
            if tp.d % 4:
                raise ValueError(f"target {tp.target}: the GPU executor needs d % 4 == 0 (int8 gemmEx)")
        self.states = {
            tp.target: _Target(
                tp,
                capacity_seed(nonce, machine_id, tp.target),
                None if tp.is_host else self.runtime.device_of(tp.target),
            )
            for tp in params.targets
        }
        self.host_reserved = False  # host RAM's array came reserved and touched ahead (`reserve_host`)
        for t in self.states.values():
            touch = reserved.take(t.tp) if reserved is not None and t.device is None else None
            if touch is not None:
                t.touch, t.held = touch, touch.array
                self.host_reserved = True
        self.host_devices = _host_devices(params, self.runtime)
        self.sweep_round = bandwidth_round(params)
        self.swept: dict[int, list[bytes]] = {}  # target -> its bandwidth round's sweep roots
        self.memory: MemoryPlan | None = None
        # the fill's parts, host seconds from its start (scripts/gpu_check.sh records them to
        # calibrate the model): gpu_done, touched (host RAM's pages), host_start, host_done
        self.fill_parts_s: dict[str, float] = {}
        # target -> the openings' recompute as planned (scripts/gpu_check.sh records it beside
        # open_s to calibrate scripts/probe_estimate.py's model): split c, windows, row-stages
        self.recompute: dict[int, dict[str, float]] = {}
        # GPU target -> its fill's host seconds inside launches and cuBLAS calls, and their count
        # (`_Gpu.cpu`; scripts/gpu_check.sh records it to calibrate the estimate's CALL_S)
        self.fill_cpu: dict[int, dict[str, float]] = {}
        self._stage_host: dict[tuple[int, int], npt.NDArray[np.int8]] = {}
        self._stage_lock = threading.Lock()
        self._b_cache: dict[int, npt.NDArray[np.int8]] = {}
        self._b_inv_cache: dict[int, npt.NDArray[np.int64]] = {}
        self._inverses: threading.Thread | None = None  # the inverse stages built beside the fill
        self._b_locks: dict[int, threading.Lock] = {}
        self._uploaded: dict[
            tuple[int, int, int, int], Any
        ] = {}  # (device, lane, target, stage; -s: inverse) -> stage matrices
        # target -> (device, lane) -> its buffer and stage scratch
        self._buffers: dict[int, dict[tuple[int, int], tuple[Any, tuple[Any, Any]]]] = {}
        # (target, round, sweep or 0) -> the answer tree's (height, nodes) kept for the openings
        self._answer_kept: dict[tuple[int, int, int], tuple[int, npt.NDArray[np.uint8]]] = {}

    # -- the budget -------------------------------------------------------------------------------------
    def plan(self) -> MemoryPlan:
        return plan_memory(self.params, self.runtime, self.options)

    def check(self) -> MemoryPlan:
        """The budget, refused with its numbers when it does not fit (before anything is allocated)."""
        plan = self.plan()
        if not plan.fits:
            raise CapacityMemoryError(plan.describe())
        self.memory = plan
        return plan

    # -- shared pieces ----------------------------------------------------------------------------------
    def _b_host(self, t: _Target) -> npt.NDArray[np.int8]:
        """B = L . U (`fill.b_matrix`: one d x d float64 product on the host, 44 ms at d = 1024 on
        the dev machine), once per target; targets' products run in parallel (a lock per target)."""
        with self._stage_lock:
            lock = self._b_locks.setdefault(t.tp.target, threading.Lock())
        with lock:
            if t.tp.target not in self._b_cache:
                self._b_cache[t.tp.target] = b_matrix(t.seed, t.tp.d)
            return self._b_cache[t.tp.target]

    def _b_inv_host(self, t: _Target) -> npt.NDArray[np.int64]:
        """B^-1 (`fill.inverse_b`: 0.21 s at d = 1024 on the dev machine), once per target."""
        with self._stage_lock:
            lock = self._b_locks.setdefault(-1 - t.tp.target, threading.Lock())
        with lock:
            if t.tp.target not in self._b_inv_cache:
                self._b_inv_cache[t.tp.target] = inverse_b(t.seed, t.tp.d)
            return self._b_inv_cache[t.tp.target]

    def _stage_matrix_host(self, t: _Target, stage: int) -> npt.NDArray[np.int8]:
        """The stage's matrices (`stage_matrix`), built on the host; `stage` -s: the inverse of stage
        s (`unstage_matrix`; 0.13 s at d = 1024 on the dev machine, two d^3 products)."""
        key = (t.tp.target, stage)
        with self._stage_lock:
            if key in self._stage_host:
                return self._stage_host[key]
        if stage < 0:
            pi, sigma = stage_perms(t.seed, -stage, t.tp.d)
            mats = unstage_matrix(*unstage_matrices(self._b_inv_host(t), pi, sigma))
        else:
            b = self._b_host(t)
            pi, sigma = stage_perms(t.seed, stage, t.tp.d)
            mats = stage_matrix(b[pi], b[sigma])
        with self._stage_lock:
            return self._stage_host.setdefault(key, mats)

    def _stage_matrix(self, g: _Gpu, t: _Target, stage: int, keep: bool) -> Any:
        """Per lane: an upload is ordered on its lane's stream only."""
        key = (g.device, g.lane, t.tp.target, stage)
        with self._stage_lock:
            if key in self._uploaded:
                return self._uploaded[key]
        mats = g.cp.asarray(self._stage_matrix_host(t, stage))
        if keep:
            with self._stage_lock:
                self._uploaded[key] = mats
        return mats

    def _group(self) -> int:
        return self.memory.group_rows if self.memory is not None else (self.options.group_rows or GROUP_ROWS)

    @staticmethod
    def _sample_check(count: int) -> list[int]:
        return sorted({0, 1, count // 2, count - 1} & set(range(count)))

    def _check_x0(self, g: _Gpu, t: _Target, buf: Any, first: int, v: int) -> None:
        rows = self._sample_check(v)
        want = gen_rows(t.seed, TAG_X0, [first + r for r in rows], t.tp.d)
        if not np.array_equal(g.cp.asnumpy(buf[g.cp.asarray(np.array(rows, dtype=np.int64))]), want):
            raise RuntimeError("GPU row generation differs from SHAKE-128 on the host: refusing to commit")

    def _check_stage1(self, g: _Gpu, t: _Target, buf: Any, first: int, v: int) -> None:
        """Sampled rows of X_1 against numpy's exact product (float64 is exact here: |c| < 2^53)."""
        tp = t.tp
        rows = self._sample_check(v)
        mates = [partner(first + r, 1, tp.n_rows) for r in rows]
        own = gen_rows(t.seed, TAG_X0, [first + r for r in rows], tp.d)
        mate = gen_rows(t.seed, TAG_X0, mates, tp.d)
        b = self._b_host(t).astype(np.float64)
        pi, sigma = stage_perms(t.seed, 1, tp.d)
        k = coefficients(np.array([first + r for r in rows], dtype=np.intp), 1, tp.n_rows)
        want = stage_rows(own, mate, b[pi], b[sigma], 1, k)
        if not np.array_equal(g.cp.asnumpy(buf[g.cp.asarray(np.array(rows, dtype=np.int64))]), want):
            raise RuntimeError(
                "GPU int8 GEMM is not exact on the first rows: refusing to commit (check cuBLAS gemmEx)"
            )

    # -- kept trees and Merkle paths ----------------------------------------------------------------------
    def _keep(
        self, g: _Gpu, t: _Target, tree: DeviceTree, stage: int, pieces: Sequence[tuple[int, int, int]]
    ) -> None:
        """Copy the nodes at kept_height of `tree` (a tree over buffer rows) into the layer's kept
        nodes: pieces (buffer node, global node, count)."""
        level = tree.levels[t.kept_height - tree.base]
        if t.device is not None:  # the whole layer, on its device
            kept = g.cp.empty(level.shape, dtype=g.cp.uint8)
            kept[...] = level
            t.kept[stage] = kept
            return
        nodes = np.asarray(g.cp.asnumpy(level), dtype=np.uint8)
        for local, first, count in pieces:
            t.kept[stage][first : first + count] = nodes[local : local + count]

    def _keep_slabs(
        self,
        g: _Gpu,
        t: _Target,
        tree: DeviceTree,
        stage: int,
        firsts: npt.NDArray[np.int64],
        rows: npt.NDArray[np.int64],
        w: int,
    ) -> None:
        """`_keep` for a host window's slabs (slab k: buffer rows k w .., host rows firsts[k] ..,
        rows[k] of them), in one indexed copy rather than one a slab."""
        h = t.kept_height
        level = tree.levels[h - tree.base]
        nodes = np.asarray(g.cp.asnumpy(level), dtype=np.uint8)
        counts = -(-rows // (1 << h))
        offsets = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        slab = np.repeat(np.arange(len(firsts), dtype=np.int64), counts)
        t.kept[stage][(firsts >> h)[slab] + offsets] = nodes[((slab * w) >> h) + offsets]

    def _uppers(
        self, g: _Gpu, t: _Target, want: Mapping[int, set[int]]
    ) -> tuple[dict[int, bytes], dict[tuple[int, int], tuple[bytes, list[bytes]]]]:
        """Per wanted layer, the root of the tree above its kept nodes (to be the committed one) and,
        per wanted row, its kept node and that tree's siblings above it: no row is needed for them."""
        h, top = t.kept_height, t.tp.n_stages
        roots: dict[int, bytes] = {}
        out: dict[tuple[int, int], tuple[bytes, list[bytes]]] = {}
        for layer, rows in sorted(want.items()):
            kept = t.kept[layer]
            upper = g.up(kept, len(kept), h, top) if t.device is not None else g.tree_of(kept, h, top)
            roots[layer] = upper.root()
            ordered = sorted(rows)
            index = [r >> h for r in ordered]
            for r, node, sibs in zip(ordered, upper.nodes(index), upper.siblings(index), strict=True):
                out[(layer, r)] = (node, sibs)
            del upper
        return roots, out

    def _collect(
        self,
        g: _Gpu,
        t: _Target,
        buf: Any,
        v: int,
        layer: int,
        local_of: Mapping[int, int],
        uppers: Mapping[tuple[int, int], tuple[bytes, list[bytes]]],
        out: Opened,
    ) -> None:
        """Rows `local_of` (global row -> buffer row; a kept block of 2^H global rows is an aligned
        block of the buffer) of `layer` with their Merkle paths: heights below H from their block,
        hashed here (its root must be the kept node: else the recompute is wrong), the rest from
        `uppers`."""
        h = t.kept_height
        size = 1 << h
        by_block: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for row, loc in local_of.items():
            by_block[loc >> h].append((row, loc))
        for block_index, members in sorted(by_block.items()):
            start = block_index << h
            count = min(size, v - start, t.tp.n_rows - ((members[0][0] >> h) << h))  # the block's real rows
            block = g.cp.empty((count, buf.shape[1]), dtype=g.cp.int8)
            block[...] = buf[start : start + count]
            sub = g.tree(block, count, h, min(TREE_BASE_HEIGHT, h))
            if sub.root() != uppers[(layer, members[0][0])][0]:
                raise RuntimeError(
                    f"target {t.tp.target}: the recomputed rows of layer {layer} at row {members[0][0]} "
                    "differ from the committed layer"
                )
            rows = np.asarray(g.cp.asnumpy(block), dtype=np.int8)
            base = sub.base
            mids = sub.siblings([(loc - start) >> base for _, loc in members])
            for (row, loc), mid in zip(members, mids, strict=True):
                off = loc - start
                s0 = (off >> base) << base
                lower = _lower_paths(rows[s0 : s0 + (1 << base)], base, [off - s0])[0]
                out[(layer, row)] = (rows[off].tobytes(), lower + mid + uppers[(layer, row)][1])

    # -- fill -------------------------------------------------------------------------------------------
    def _run_gpu(self, t: _Target) -> dict[int, bytes]:
        """A GPU target's fill: every committed layer's root, its nodes at kept_height kept on the
        device (a layer not committed is never hashed)."""
        assert t.device is not None

        def work(g: _Gpu) -> dict[int, bytes]:
            tp, cp = t.tp, g.cp
            n, d, top = tp.n_rows, tp.d, tp.n_stages
            cpu0, calls0 = g.cpu()
            x = t.held if t.held is not None else cp.empty((n, d), dtype=cp.int8)
            g.seeded_rows(x, t.seed, TAG_X0, 0, n)
            self._check_x0(g, t, x, 0, n)
            scratch = g.scratch(self._group(), n, d)
            roots: dict[int, bytes] = {}
            base = min(TREE_BASE_HEIGHT, top, t.kept_height)
            committed = set(tp.committed)
            for stage in range(1, top + 1):
                g.stage(
                    x,
                    n,
                    1 << (stage - 1),
                    stage,
                    self._stage_matrix(g, t, stage, keep=False),
                    scratch,
                    self._group(),
                )
                if stage == 1:
                    self._check_stage1(g, t, x, 0, n)
                if stage not in committed:
                    continue  # not committed: never hashed
                tree = g.tree(x, n, top, base)
                roots[stage] = tree.root()
                self._keep(g, t, tree, stage, [])
                del tree  # one layer's tree at a time (the budget counts one)
            del scratch
            cpu1, calls1 = g.cpu()
            g.sync()
            self.fill_cpu[tp.target] = {"call_s": cpu1 - cpu0, "calls": calls1 - calls0}
            t.held = x
            return roots

        return self.runtime.on(t.device, work)

    def _reopen_plan(self, t: _Target, want: Mapping[int, set[int]], max_rows: int) -> Plan:
        """The recompute's jobs (`reopen.plan`), recorded for scripts/gpu_check.sh; refused when no
        threshold's jobs fit `max_rows` (the memory plan's buffer)."""
        tp = t.tp
        n, top, h = tp.n_rows, tp.n_stages, t.kept_height
        found = plan({k: v for k, v in want.items() if k < top}, n, top, h, max_rows)
        if found is None:
            raise CapacityMemoryError(
                f"target {tp.target}: the openings' recompute needs a buffer of more than {max_rows} rows "
                f"(N = {n}, L = {top}, H = {h})"
            )
        self.recompute[tp.target] = {
            "threshold": found.threshold,
            "blocks": sum(1 for j in found.jobs if not j.down),
            "descents": sum(1 for j in found.jobs if j.down),
            "largest": found.largest(n, top, h),
            "row_stages": found.row_stages,
            "fraction": found.row_stages / (n * top),  # of the fill's N L
        }
        return found

    def _run_job(
        self,
        g: _Gpu,
        t: _Target,
        job: Job,
        buf: Any,
        scratch: tuple[Any, Any],
        load: Callable[[_Gpu, Job, Any, int], None],
        found: Callable[[_Gpu, Any, int, int, Mapping[int, int]], None],
    ) -> None:
        """One recompute job in `buf` (`reopen.py`): a block's X_0 rows seeded, then stages 1..l;
        a descent's X_L slabs loaded (`load`), then stages L..b + 1 inverted (each after adding
        125 - l, `cap_shift`); each wanted layer's rows handed to `found` as it is reached."""
        tp = t.tp
        n, top, h = tp.n_rows, tp.n_stages, t.kept_height
        v = job.rows(n, top, h)
        group = self._group()
        at: dict[int, dict[int, int]] = defaultdict(dict)
        for row, layer in job.wanted:
            at[layer][row] = job.local(row, h)
        if job.down:
            load(g, job, buf, v)
        else:
            g.seeded_rows(buf, t.seed, TAG_X0, job.first_row(), v)
        for stage in job.stages(top):
            if job.down:
                g.shift(buf, v, HALF - stage)
                pair = 1 << (h + stage - 1 - job.layer)
                g.stage(buf, v, pair, stage, self._stage_matrix(g, t, -stage, True), scratch, group, HALF)
                layer = stage - 1
            else:
                g.stage(
                    buf, v, 1 << (stage - 1), stage, self._stage_matrix(g, t, stage, True), scratch, group
                )
                layer = stage
            if layer in at:
                found(g, buf, v, layer, at[layer])

    def _run_blocks(
        self,
        g: _Gpu,
        t: _Target,
        blocks: Sequence[Job],
        buf: Any,
        scratch: tuple[Any, Any],
        found: Callable[[_Gpu, Any, int, int, Mapping[int, int]], None],
    ) -> None:
        """Blocks of one layer l side by side in `buf` (`block_batches`: block i at rows i 2^l ..,
        a short block last), taken through stages 1..l together: a stage pairs rows within a block
        (h = 2^(s-1) < 2^l), so one stage's calls serve them all, not one set a block (the GIL
        serialises every GPU's calls)."""
        tp = t.tp
        n, top, h = tp.n_rows, tp.n_stages, t.kept_height
        layer, size = blocks[0].layer, 1 << blocks[0].layer
        at: dict[int, dict[int, int]] = defaultdict(dict)
        v = 0
        for slot, job in enumerate(blocks):
            rows = job.rows(n, top, h)
            g.seeded_rows(buf[slot * size :], t.seed, TAG_X0, job.first_row(), rows)
            for row, wanted in job.wanted:
                at[wanted][row] = slot * size + job.local(row, h)
            v = slot * size + rows
        group = self._group()
        for stage in range(1, layer + 1):
            g.stage(buf, v, 1 << (stage - 1), stage, self._stage_matrix(g, t, stage, True), scratch, group)
            if stage in at:
                found(g, buf, v, stage, at[stage])

    def _reopen_gpu(self, t: _Target, want: Mapping[int, set[int]]) -> tuple[dict[int, bytes], Opened]:
        """The openings of a GPU target (module docstring): X_L's wanted rows from the buffer, then
        the recompute's jobs (`reopen.py`) in one job buffer, X_L left intact: the blocks of a layer
        side by side (`block_batches`), the descents one after another."""
        assert t.device is not None

        def load(g: _Gpu, job: Job, buf: Any, v: int) -> None:
            tp = t.tp
            h = t.kept_height
            g.slabs(t.held, tp.n_rows, job.layer, job.key << h, tp.n_stages - job.layer, 1 << h, buf)

        def work(g: _Gpu) -> tuple[dict[int, bytes], Opened]:
            tp, cp = t.tp, g.cp
            n, d, top = tp.n_rows, tp.d, tp.n_stages
            roots, uppers = self._uppers(g, t, want)
            opened: Opened = {}
            if top in want:
                self._collect(g, t, t.held, n, top, {r: r for r in want[top]}, uppers, opened)
            rows = window_rows(tp, self._window_bytes(), t.kept_height)  # the budgeted job buffer
            jobs = self._reopen_plan(t, want, rows)
            cpu0, calls0 = g.cpu()
            if jobs.jobs:
                buf = cp.empty((rows, d), dtype=cp.int8)
                scratch = g.scratch(self._group(), rows, d)

                def found(g: _Gpu, buf: Any, v: int, layer: int, local_of: Mapping[int, int]) -> None:
                    self._collect(g, t, buf, v, layer, local_of, uppers, opened)

                try:
                    for blocks in block_batches([j for j in jobs.jobs if not j.down], n, rows):
                        self._run_blocks(g, t, blocks, buf, scratch, found)
                    for job in (j for j in jobs.jobs if j.down):
                        self._run_job(g, t, job, buf, scratch, load, found)
                finally:
                    del buf, scratch
                    with self._stage_lock:  # the matrices this recompute uploaded
                        for key in [k for k in self._uploaded if k[:3] == (g.device, g.lane, tp.target)]:
                            del self._uploaded[key]
            cpu1, calls1 = g.cpu()
            self.recompute[tp.target].update(call_s=cpu1 - cpu0, calls=calls1 - calls0)
            g.sync()
            return roots, opened

        return self.runtime.on(t.device, work)

    def _block_stage(
        self, g: _Gpu, t: _Target, buf: Any, v: int, stage: int, scratch: Any, group: int
    ) -> None:
        """Stage `stage` (<= the block height) over a host block of v rows, in place."""
        g.stage(buf, v, 1 << (stage - 1), stage, self._stage_matrix(g, t, stage, keep=True), scratch, group)

    def _window_stage(
        self, g: _Gpu, t: _Target, buf: Any, v: int, split: int, w: int, stage: int, scratch: Any, group: int
    ) -> None:
        """Stage `stage` (> split) over a window of slabs of w rows: slab k pairs with slab
        k xor 2^(stage - 1 - split)."""
        g.stage(
            buf,
            v,
            (1 << (stage - 1 - split)) * w,
            stage,
            self._stage_matrix(g, t, stage, keep=True),
            scratch,
            group,
        )

    def _host_array(self, t: _Target, touched: Callable[[], object] = lambda: None) -> _Touch:
        """Host RAM's array, its pages first-touched in the background (`_Touch`); pinned memory
        is committed when allocated. `touched` is called once every page is."""
        tp = t.tp
        if self.options.host_pinned:
            memory = self.cp.cuda.alloc_pinned_memory(tp.fill_bytes)
            array = np.frombuffer(memory, dtype=np.int8, count=tp.fill_bytes).reshape(tp.n_rows, tp.d)
            return _Touch(array, 0, touched)
        return _Touch(np.empty((tp.n_rows, tp.d), dtype=np.int8), max(1, TOUCH_BYTES // tp.d), touched)

    def _window_bytes(self) -> int:
        if self.memory is not None:
            return self.memory.window_bytes
        return self.options.window_bytes if self.options.window_bytes is not None else WINDOW_BYTES

    def _lanes(self) -> list[int]:
        """The lanes host RAM's work runs on (`MemoryPlan.host_lane_ids`)."""
        return self.memory.host_lane_ids if self.memory is not None else [0]

    def _spread(self, jobs: Sequence[int], run: Callable[[_Gpu, int], None]) -> None:
        """Jobs taken in turn by every lane of every host device: while one lane's block crosses
        PCIe, another's is computed."""
        queue = iter(jobs)
        take = threading.Lock()

        def worker(g: _Gpu) -> None:
            while True:
                with take:
                    job = next(queue, None)
                if job is None:
                    return
                run(g, job)

        self.runtime.all([(dev, worker) for dev in self.host_devices], self._lanes())

    def _host_buffers(self, t: _Target, layout: HostLayout) -> Callable[[_Gpu], tuple[Any, tuple[Any, Any]]]:
        """Each host device lane's buffer and stage scratch, made on first use (released by
        `_release`)."""
        buffers = self._buffers.setdefault(t.tp.target, {})
        group = self._group()

        def buffer(g: _Gpu) -> tuple[Any, tuple[Any, Any]]:
            key = (g.device, g.lane)
            if key not in buffers:
                rows = layout.buffer_rows
                buffers[key] = (
                    g.cp.empty((rows, t.tp.d), dtype=g.cp.int8),
                    g.scratch(group, rows, t.tp.d),
                )
            return buffers[key]

        return buffer

    def _release(self, t: _Target) -> None:
        buffers = self._buffers.pop(t.tp.target, {})

        def release(g: _Gpu) -> None:
            buffers.pop((g.device, g.lane), None)
            with self._stage_lock:
                for key in [k for k in self._uploaded if k[:3] == (g.device, g.lane, t.tp.target)]:
                    del self._uploaded[key]

        self.runtime.all([(dev, release) for dev in self.host_devices], self._lanes())

    def _run_host(self, t: _Target) -> dict[int, bytes]:
        """Host RAM's fill, out of core over every host device (module docstring); each committed
        layer's nodes at kept_height kept in host memory."""
        tp = t.tp
        n, top, h = tp.n_rows, tp.n_stages, t.kept_height
        layout = self._layout(tp)
        if t.held is None:
            t.touch = self._host_array(t)
            t.held = t.touch.array
        x: npt.NDArray[np.int8] = t.held
        touch = t.touch
        c_log, w_log = layout.block_log, layout.window_log
        height = {s: (c_log if s <= c_log else w_log) for s in tp.committed}
        level = {s: np.zeros((-(-n // 2 ** height[s]), 32), dtype=np.uint8) for s in height}
        t.kept.update({s: np.zeros((-(-n // 2**h), 32), dtype=np.uint8) for s in height})
        buffer = self._host_buffers(t, layout)
        group = self._group()

        def block(g: _Gpu, b: int) -> None:
            buf, scratch = buffer(g)
            start = b * layout.block_rows
            v = min(layout.block_rows, n - start)
            g.seeded_rows(buf, t.seed, TAG_X0, start, v)
            if b == 0:
                self._check_x0(g, t, buf, start, v)
            for stage in range(1, c_log + 1):
                self._block_stage(g, t, buf, v, stage, scratch, group)
                if stage == 1 and b == 0:
                    self._check_stage1(g, t, buf, start, v)
                if stage not in height:
                    continue  # not committed: never hashed
                tree = g.tree(buf, v, c_log, min(TREE_BASE_HEIGHT, h))
                level[stage][b] = tree.top_nodes()[0]
                self._keep(g, t, tree, stage, [(0, start >> h, -(-v // 2**h))])
                del tree
            if touch is not None:
                touch.wait(start, v)  # the block's host pages first
            g.d2h(x[start : start + v], buf[:v])
            g.sync()

        def window(g: _Gpu, j0: int) -> None:
            buf, scratch = buffer(g)
            w, stride = layout.window_rows, layout.block_rows
            run = slab_run(n, stride, layout.slabs, j0, w)
            slabs = run[0] + (1 if run[1] else 0)
            firsts = np.arange(slabs, dtype=np.int64) * stride + j0
            rows = np.minimum(w, n - firsts)
            v = _copy_slabs(g, True, buf, x, j0, stride, w, run)
            for stage in range(c_log + 1, top + 1):
                self._window_stage(g, t, buf, v, c_log, w, stage, scratch, group)
                if stage not in height:
                    continue
                tree = g.tree(buf, v, w_log, min(TREE_BASE_HEIGHT, h))
                level[stage][firsts >> w_log] = tree.top_nodes()[:slabs]
                self._keep_slabs(g, t, tree, stage, firsts, rows, w)
                del tree
            _copy_slabs(g, False, buf, x, j0, stride, w, run)
            g.sync()

        try:
            self._spread(range(-(-n // layout.block_rows)), block)
        finally:
            if touch is not None:
                touch.close()
                t.touch = None
        if layout.two_pass:
            self._spread(range(0, layout.block_rows, layout.window_rows), window)
        self._release(t)
        roots: dict[int, bytes] = {}

        def finish(g: _Gpu) -> None:
            for stage in height:
                roots[stage] = g.tree_of(level[stage], height[stage], top).root()

        self.runtime.on(self.host_devices[0], finish, self._lanes()[0])
        t.held = x
        return roots

    def _reopen_host(self, t: _Target, want: Mapping[int, set[int]]) -> tuple[dict[int, bytes], Opened]:
        """Host RAM's openings: X_L's wanted rows from host memory, then the recompute's jobs
        (`reopen.py`) spread over every host device's lanes, in their host-fill buffers: a block's
        rows seeded on the device, a descent's slabs uploaded once in one strided copy (nothing
        goes back; host memory keeps X_L)."""
        tp = t.tp
        n, top, h = tp.n_rows, tp.n_stages, t.kept_height
        layout = self._layout(tp)
        x: npt.NDArray[np.int8] = t.held
        w = 1 << h
        roots, uppers = self.runtime.on(self.host_devices[0], lambda g: self._uppers(g, t, want))
        opened: Opened = {}
        lock = threading.Lock()

        def found_in(g: _Gpu, buf: Any, v: int, layer: int, local_of: Mapping[int, int]) -> None:
            if local_of:
                found: Opened = {}
                self._collect(g, t, buf, v, layer, local_of, uppers, found)
                with lock:
                    opened.update(found)

        if top in want:

            def from_held(g: _Gpu) -> None:
                for b in sorted({r >> h for r in want[top]}):
                    start = b << h
                    rows = min(w, n - start)
                    dev = g.cp.empty((rows, tp.d), dtype=g.cp.int8)
                    g.h2d(dev, x[start : start + rows])
                    found_in(g, dev, rows, top, {r: r - start for r in want[top] if r >> h == b})

            self.runtime.on(self.host_devices[0], from_held)

        def load(g: _Gpu, job: Job, buf: Any, v: int) -> None:  # strided copies: no host-side copy
            j0, stride = job.key << h, 1 << job.layer
            _copy_slabs(g, True, buf, x, j0, stride, w, slab_run(n, stride, 1 << (top - job.layer), j0, w))

        jobs = self._reopen_plan(t, want, layout.buffer_rows)
        if jobs.jobs:
            buffer = self._host_buffers(t, layout)

            def run(g: _Gpu, k: int) -> None:
                buf, scratch = buffer(g)
                self._run_job(g, t, jobs.jobs[k], buf, scratch, load, found_in)
                g.sync()

            self._spread(range(len(jobs.jobs)), run)
            self._release(t)
        return roots, opened

    def _layout(self, tp: CapacityTargetParams) -> HostLayout:
        if self.memory is not None and self.memory.host is not None:
            return self.memory.host
        buffer_rows = _pow2_floor(max(2, self.options.host_buffer_bytes // tp.d))
        return HostLayout.choose(
            tp.n_rows, tp.n_stages, buffer_rows, self.options.host_block_rows, self.options.host_window_rows
        )

    def _prefetch_stages(self, targets: Sequence[_Target]) -> threading.Thread:
        """Every target's B and stage matrices (`stage_matrix`) built ahead on one host thread, stage
        by stage across the targets, while the GPUs run the stages before: a lane starting stage l
        then finds its matrices ready instead of leaving its GPU idle while it builds them (B = L . U
        44 ms, each stage's matrices 15 ms at d = 1024, median of 11 on the dev machine, 2026-12-07:
        9 targets' 27 stages take 3.6 s of this thread beside an H100's 17.5 s fill;
        `_stage_matrix_host` is idempotent, so a lane that gets there first builds them itself)."""

        def run() -> None:
            for stage in range(1, max((t.tp.n_stages for t in targets), default=0) + 1):
                for t in targets:
                    if stage <= t.tp.n_stages:
                        self._stage_matrix_host(t, stage)

        thread = threading.Thread(target=run, name="capacity-stage-matrices", daemon=True)
        thread.start()
        return thread

    def _prefetch_inverses(self, targets: Sequence[_Target], after: threading.Thread) -> threading.Event:
        """The inverse stages the openings' descents are likely to need (those above `descent_floor`,
        from the top stage down, across the targets; 0.13 s a stage and B^-1 0.21 s a target at d =
        1024 on the dev machine: ≈ 15 s of one thread for 8 H100s and 256 GiB, beside an ≈ 20 s
        fill), built on a thread of their own after the stage matrices (`after`), while the GPUs
        fill, and ONLY then: the returned event, set when the fill ends, stops it at the next stage,
        so no background product competes with the timed rounds' host work; one not built yet is
        built when a descent needs it. Not joined: the fill does not wait for it."""
        stop = threading.Event()

        def run() -> None:
            after.join()
            top = max((t.tp.n_stages for t in targets), default=0)
            for stage in range(top, 0, -1):
                for t in targets:
                    if stop.is_set():
                        return
                    if descent_floor(t.tp.n_stages, t.kept_height) < stage <= t.tp.n_stages:
                        self._stage_matrix_host(t, -stage)

        self._inverses = threading.Thread(target=run, name="capacity-inverse-matrices", daemon=True)
        self._inverses.start()
        return stop

    def fill(self) -> CapacityCommitment:
        """Every GPU target at once on its own device (lane 0), host RAM's pages first-touched
        meanwhile; host RAM's fill on every device's host lanes, beside the GPU fills when the plan
        says so (`MemoryPlan.beside`: its copies then overlap their kernels), else after them.
        Refused before anything is allocated when it does not fit."""
        plan = self.check()
        gpu = [t for t in self.states.values() if t.device is not None]
        host = [t for t in self.states.values() if t.device is None]
        for t in gpu:
            t.kept_height = gpu_kept_height(t.tp, plan.kept_height)
        for t in host:
            t.kept_height = host_kept_height(self._layout(t.tp), self.options)
        start = time.perf_counter()
        parts = self.fill_parts_s
        parts.clear()

        def since() -> float:
            return time.perf_counter() - start

        def host_fill(t: _Target) -> dict[int, bytes]:
            parts.setdefault("host_start", since())
            roots = self._run_host(t)
            parts["host_done"] = since()
            return roots

        ahead = self._prefetch_stages([*gpu, *host])
        quiet = self._prefetch_inverses([*gpu, *host], ahead)
        for t in host:
            if t.held is None:  # its pages first-touched in the background, in order, from now
                t.touch = self._host_array(t, lambda: parts.setdefault("touched", since()))
                t.held = t.touch.array
            elif t.touch is not None:  # reserved ahead: touched already, or still being touched
                t.touch.notify(lambda: parts.setdefault("touched", since()))
        try:
            with ThreadPoolExecutor(max(1, len(gpu) + len(host))) as pool:
                beside = {t.tp.target: pool.submit(host_fill, t) for t in host if plan.beside}
                done = [(t, pool.submit(self._run_gpu, t)) for t in gpu]
                for t, future in done:
                    roots = future.result()
                    t.roots = [roots[s] for s in t.tp.committed]
                parts["gpu_done"] = since()
                for t in host:
                    roots = beside[t.tp.target].result() if t.tp.target in beside else host_fill(t)
                    t.roots = [roots[s] for s in t.tp.committed]
        except BaseException:
            for t in host:  # a failed fill leaves no touch running
                if t.touch is not None:
                    t.touch.cancel()
                    t.touch = None
            raise
        finally:
            quiet.set()  # the inverses stop here: the rounds run without them
            ahead.join()  # done long before the fills (it only builds small host matrices)
        return CapacityCommitment(
            machine_id=self.machine_id,
            challenge_id=self.challenge_id,
            nonce=self.nonce.hex(),
            targets=[
                TargetCommitment(
                    target=tp.target,
                    chain=chain_value(self.states[tp.target].seed, self.states[tp.target].roots).hex(),
                    root=self.states[tp.target].roots[-1].hex(),
                )
                for tp in self.params.targets
            ],
        )

    # -- answers ----------------------------------------------------------------------------------------
    @staticmethod
    def _heads(tp: CapacityTargetParams, round_nonce: bytes) -> tuple[bytes, bytes]:
        answer = ANSWER_DOMAIN + round_nonce + u32(tp.target)
        sample = SAMPLE_DOMAIN + round_nonce + u32(tp.target)
        if max(len(answer), len(sample)) > MAX_HEAD_BYTES:
            raise ValueError("the round nonce is longer than the kernels' message head")
        return answer, sample

    def _answer_tree(self, t: _Target, tp: CapacityTargetParams, round_nonce: bytes) -> DeviceTree:
        """The round's answer tree over `tp.items` leaves (tp may be another mode of the same fill)."""
        answer_head, sample_head = self._heads(tp, round_nonce)
        depth = merkle.depth(tp.items)
        if t.device is not None:

            def on_gpu(g: _Gpu) -> DeviceTree:
                if tp.mode == "scan":
                    leaves = g.answer_leaves(t.held, tp.n_rows, tp.chunk_rows, answer_head, 0, tp.items)
                else:
                    leaves = g.sampled_leaves(t.held, tp.n_rows, answer_head, sample_head, tp.items)
                return g.up(leaves, tp.items, 0, depth)

            return self.runtime.on(t.device, on_gpu)
        leaves = self._host_leaves(t, tp, answer_head, sample_head)
        return self.runtime.on(self.host_devices[0], lambda g: g.tree_of(leaves, 0, depth))

    def _host_leaves(
        self,
        t: _Target,
        tp: CapacityTargetParams,
        answer_head: bytes,
        sample_head: bytes,
        first: int = 0,
        count: int | None = None,
    ) -> npt.NDArray[np.uint8]:
        """Answer leaves first .. first + count - 1 (default: all) of rows held in host RAM, hashed on
        the host devices (items split among them)."""
        x: npt.NDArray[np.int8] = t.held
        end = tp.items if count is None else first + count
        out = np.empty((end - first, 32), dtype=np.uint8)
        share = -(-(end - first) // len(self.host_devices))
        batch_rows = self._layout(tp).buffer_rows
        items_per_batch = max(1, batch_rows // tp.chunk_rows)

        def part(start: int) -> Callable[[_Gpu], None]:
            def work(g: _Gpu) -> None:
                last = min(end, start + share)
                for b0 in range(start, last, items_per_batch):
                    count = min(items_per_batch, last - b0)
                    if tp.mode == "scan":
                        rows = x[b0 * tp.chunk_rows : min((b0 + count) * tp.chunk_rows, tp.n_rows)]
                    else:
                        rows = np.ascontiguousarray(x[g.sample_rows(sample_head, b0, count, tp.n_rows)])
                    dev = g.cp.empty(rows.shape, dtype=g.cp.int8)
                    g.h2d(dev, rows)
                    leaves = g.answer_leaves(dev, rows.shape[0], tp.chunk_rows, answer_head, b0, count)
                    out[b0 - first : b0 - first + count] = g.cp.asnumpy(leaves)

            return work

        self.runtime.all(
            [
                (dev, part(first + k * share))
                for k, dev in enumerate(self.host_devices)
                if first + k * share < end
            ]
        )
        return out

    def answer_root(self, tp: CapacityTargetParams, round_nonce: bytes) -> bytes:
        """One target's answer root (tp: the target's params, or another mode over the same fill)."""
        return self._answer_tree(self.states[tp.target], tp, round_nonce).root()

    def _sweep_tree(self, t: _Target, key: bytes) -> DeviceTree:
        tp = t.tp
        if t.device is None:
            raise ValueError(f"target {tp.target}: host RAM has no bandwidth round")
        return self.runtime.on(
            t.device, lambda g: g.sweep_tree(t.held, tp.n_rows, tp.chunk_rows, key, tp.target, tp.items)
        )

    def _keep_answer(self, t: _Target, round_: int, sweep: int, tree: DeviceTree) -> bytes:
        """The tree's root; its nodes at `answer_kept_height` kept for the openings, which then
        rebuild only the spotted items' blocks from X_L instead of the whole tree."""
        height = min(tree.top, self.options.answer_kept_height)
        with self.cp.cuda.Device(tree.device):
            nodes = np.asarray(tree.cp.asnumpy(tree.levels[height - tree.base]), dtype=np.uint8)
        self._answer_kept[(t.tp.target, round_, sweep)] = (height, nodes)
        return tree.root()

    def sweep_roots(self, t: _Target, round_nonce: bytes) -> list[bytes]:
        """The bandwidth round (docs/protocol.md §17.12): P sweeps, each keyed by the previous root."""
        roots: list[bytes] = []
        key = round_nonce
        for s in range(1, t.tp.sweeps + 1):
            tree = self._sweep_tree(t, key)
            roots.append(self._keep_answer(t, self.sweep_round or 0, s, tree))
            del tree
            key = hashlib.sha256(SWEEP_KEY_DOMAIN + key + roots[-1]).digest()
        self.swept[t.tp.target] = roots
        return roots

    def answer(self, round_: CapacityRound) -> CapacityAnswer:
        nonce = bytes.fromhex(round_.nonce)
        targets = [self.states[target] for target in round_.targets]
        if round_.round == self.sweep_round:
            with ThreadPoolExecutor(max(1, len(targets))) as pool:  # every GPU sweeps at once
                swept = list(pool.map(lambda t: self.sweep_roots(t, nonce), targets))
            return CapacityAnswer(
                round=round_.round,
                answers=[
                    TargetAnswer(target=t.tp.target, root=s[-1].hex(), sweep_roots=[r.hex() for r in s[:-1]])
                    for t, s in zip(targets, swept, strict=True)
                ],
            )

        def root(t: _Target) -> bytes:
            return self._keep_answer(t, round_.round, 0, self._answer_tree(t, t.tp, nonce))

        with ThreadPoolExecutor(max(1, len(targets))) as pool:  # every GPU of a round at once
            roots = list(pool.map(root, targets))
        return CapacityAnswer(
            round=round_.round,
            answers=[
                TargetAnswer(target=t.tp.target, root=r.hex()) for t, r in zip(targets, roots, strict=True)
            ],
        )

    # -- openings ---------------------------------------------------------------------------------------
    def open(
        self,
        round_nonces: Mapping[int, bytes],
        spots: Mapping[int, Mapping[int, Sequence[int]]],
        walks: Mapping[int, Sequence[Walk]],
        ready: Callable[[list[TargetOpenings]], None] | None = None,
    ) -> list[TargetOpenings]:
        """Spots and walks; each fill recomputed for them in its own buffer (module docstring): every
        GPU target at once, then host RAM on all GPUs; `ready` gets the GPU targets' openings in
        between (when host RAM is a target: the probe uploads them while host RAM's recompute runs)."""
        gpu = [t for t in self.states.values() if t.device is not None]
        host = [t for t in self.states.values() if t.device is None]

        def one(t: _Target) -> TargetOpenings:
            return self._open_target(t, round_nonces, spots[t.tp.target], walks[t.tp.target])

        with ThreadPoolExecutor(max(1, len(gpu))) as pool:
            opened = dict(zip([t.tp.target for t in gpu], pool.map(one, gpu), strict=True))
        if host and ready is not None:
            ready([opened[tp.target] for tp in self.params.targets if not tp.is_host])
        opened.update({t.tp.target: one(t) for t in host})
        return [opened[tp.target] for tp in self.params.targets]

    def _open_target(
        self,
        t: _Target,
        round_nonces: Mapping[int, bytes],
        spots: Mapping[int, Sequence[int]],
        walks: Sequence[Walk],
    ) -> TargetOpenings:
        tp = t.tp
        answer_paths: dict[tuple[int, int], list[bytes]] = {}
        for r, items in sorted(spots.items()):  # from X_L, before the recompute overwrites it
            if r == self.sweep_round:  # items j = (s - 1) x items + c: one sweep's tree at a time
                keys = sweep_keys(round_nonces[r], self.swept.get(tp.target, []), tp.sweeps)
                by_sweep: dict[int, list[int]] = defaultdict(list)
                for j in items:
                    by_sweep[split_item(tp, j)[0]].append(j)
                for s, js in sorted(by_sweep.items()):
                    found = self._answer_paths(t, r, s, keys[s - 1], [split_item(tp, j)[1] for j in js])
                    answer_paths.update({(r, j): path for j, path in zip(js, found, strict=True)})
                continue
            paths = self._answer_paths(t, r, 0, round_nonces[r], list(items))
            answer_paths.update({(r, item): path for item, path in zip(items, paths, strict=True)})
        want = self._wanted(tp, round_nonces, spots, walks)
        roots, opened = self._reopen_gpu(t, want) if t.device is not None else self._reopen_host(t, want)
        committed = dict(zip(tp.committed, t.roots, strict=True))
        for stage, root in roots.items():
            if root != committed[stage]:
                raise RuntimeError(
                    f"target {tp.target}: the recomputed layer {stage} differs from the committed one"
                )
        return TargetOpenings(
            target=tp.target,
            roots=[r.hex() for r in t.roots],
            spots=self._spots(tp, opened, answer_paths, round_nonces, spots, self.sweep_round),
            walks=[self._walk(tp, opened, w) for w in walks],
        )

    def _answer_leaves(
        self, t: _Target, sweep: int, nonce: bytes, first: int, count: int
    ) -> npt.NDArray[np.uint8]:
        """Leaves first .. first + count - 1 of a round's answer tree (sweep 0) or of sweep `sweep`'s
        (nonce: that sweep's key), from the rows held."""
        tp = t.tp
        if t.device is None:
            answer_head, sample_head = self._heads(tp, nonce)
            return self._host_leaves(t, tp, answer_head, sample_head, first, count)

        def on_gpu(g: _Gpu) -> npt.NDArray[np.uint8]:
            if tp.mode == "sample" and not sweep:
                answer_head, sample_head = self._heads(tp, nonce)
                leaves = g.sampled_leaves(t.held, tp.n_rows, answer_head, sample_head, count, first)
            else:
                lo, hi = first * tp.chunk_rows, min((first + count) * tp.chunk_rows, tp.n_rows)
                rows = g.cp.empty((hi - lo, tp.d), dtype=g.cp.int8)
                rows[...] = t.held[lo:hi]
                if sweep:
                    leaves = g.sweep_leaves(rows, hi - lo, tp.chunk_rows, nonce, tp.target, first, count)
                else:
                    head = self._heads(tp, nonce)[0]
                    leaves = g.answer_leaves(rows, hi - lo, tp.chunk_rows, head, first, count)
            return np.asarray(g.cp.asnumpy(leaves), dtype=np.uint8)

        return self.runtime.on(t.device, on_gpu)

    def _answer_paths(
        self, t: _Target, round_: int, sweep: int, nonce: bytes, items: Sequence[int]
    ) -> list[list[bytes]]:
        """Answer-tree paths of `items`: below the kept height from their block's leaves, rebuilt
        from the rows held (the block's root must be the kept node), above it from the tree over the
        kept nodes. Without kept nodes (a round this prover did not answer), the whole tree."""
        tp = t.tp
        kept = self._answer_kept.get((tp.target, round_, sweep))
        if kept is None:
            if sweep:
                return self._sweep_tree(t, nonce).siblings(list(items))
            return self._answer_tree(t, tp, nonce).siblings(list(items))
        height, nodes = kept
        depth = merkle.depth(tp.items)
        device = t.device if t.device is not None else self.host_devices[0]
        uppers = self.runtime.on(
            device, lambda g: g.tree_of(nodes, height, depth).siblings([i >> height for i in items])
        )
        lowers: dict[int, list[bytes]] = {}
        for block in sorted({i >> height for i in items}):
            first = block << height
            count = min(1 << height, tp.items - first)
            leaves = self._answer_leaves(t, sweep, nonce, first, count)
            levels = merkle.levels([bytes(leaf_.tobytes()) for leaf_ in leaves], height)
            if levels[-1][0] != bytes(nodes[block].tobytes()):
                raise RuntimeError(
                    f"target {tp.target}: round {round_}'s answer leaves rebuilt from the rows held differ"
                )
            for i in items:
                if i >> height == block:
                    lowers[i] = merkle.path(levels, i - first)
        return [lowers[i] + upper for i, upper in zip(items, uppers, strict=True)]

    def _wanted(
        self,
        tp: CapacityTargetParams,
        round_nonces: Mapping[int, bytes],
        spots: Mapping[int, Sequence[int]],
        walks: Sequence[Walk],
    ) -> dict[int, set[int]]:
        want: dict[int, set[int]] = defaultdict(set)
        for r, items in spots.items():
            for item in items:
                c = split_item(tp, item)[1] if r == self.sweep_round else item
                want[tp.n_stages].update(item_rows(tp, round_nonces[r], c))
        for layer, rows in walk_wants(tp, walks).items():
            want[layer].update(rows)
        return dict(want)

    @staticmethod
    def _spots(
        tp: CapacityTargetParams,
        opened: Opened,
        answer_paths: Mapping[tuple[int, int], list[bytes]],
        round_nonces: Mapping[int, bytes],
        spots: Mapping[int, Sequence[int]],
        sweep_round: int | None = None,
    ) -> list[SpotOpening]:
        top = tp.n_stages
        sub_height = tp.chunk_rows.bit_length() - 1
        out = []
        for r, items in sorted(spots.items()):
            for item in items:
                c = split_item(tp, item)[1] if r == sweep_round else item
                rows = item_rows(tp, round_nonces[r], c)
                path = opened[(top, rows[0])][1]
                out.append(
                    SpotOpening(
                        round=r,
                        item=item,
                        rows=[opened[(top, i)][0].hex() for i in rows],
                        tree_path=[s.hex() for s in (path[sub_height:] if tp.mode == "scan" else path)],
                        answer_path=[s.hex() for s in answer_paths[(r, item)]],
                    )
                )
        return out

    @staticmethod
    def _walk(tp: CapacityTargetParams, opened: Opened, walk: Walk) -> WalkOpening:
        def row_hex(layer: int, row: int) -> str:
            return opened[(layer, row)][0].hex()

        def path_hex(layer: int, row: int) -> list[str]:
            return [s.hex() for s in opened[(layer, row)][1]]

        steps = []
        for stage, row in zip(walk.stages, walk.rows, strict=True):
            below = parent_stage(stage, tp.commit_stride)
            parents = parent_rows(row, stage, below, tp.n_rows) if below else []
            steps.append(
                WalkStep(
                    stage=stage,
                    row=row,
                    a_row=row_hex(stage, row),
                    a_path=path_hex(stage, row),
                    prev=[row_hex(below, i) for i in parents],
                    prev_paths=[path_hex(below, i) for i in parents],
                )
            )
        return WalkOpening(walk=walk.index, steps=steps)


__all__ = [
    "EMPTIES",
    "CapacityMemoryError",
    "CupyCapacityOptions",
    "CupyCapacityProver",
    "CupyCapacityRuntime",
    "DeviceBudget",
    "DeviceTree",
    "HostLayout",
    "MemoryPlan",
    "plan_memory",
]
