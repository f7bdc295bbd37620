"""The evidence behind every calc_point input, and the fail-closed inputs calc_point is scored with.

docs/scoring.md is the specification; in short:

- **What was measured** (`MeasuredFacts`): the proof of throughput's result under the service's
  clock (`Throughput`: passed or not, int8 work per GPU, elapsed seconds, its digest) and the
  capacity phase's record (`CapacityRecord`, `verification["capacity"]`, written by
  `gpuproof.protocol.capacity`: VRAM and host RAM proven, bandwidth). An absent or malformed
  capacity record is *not proven*, never an error that scores better.
- **The model from the measurement** (`gpu_evidence`): every reference model whose int8 pipeline
  fits the service-timed elapsed time (`rate_fits`), whose memory can hold the proven bytes and
  whose datasheet bandwidth matches the measured one. The claimed model must be among them; the
  NVML name is a cross-check (host-sent), never the source. Models the measurement cannot tell
  apart (H100 SXM5 | H200 on rate; A100 40GB | 80GB on rate) are listed together.
- **Fail closed** (`assess`): each input scores the least any consistent model would give it:
  cores, memory and large-model factor are the minimum over the candidates (memory: over the
  candidates that can hold the proven VRAM); a GPU the capacity phase did not prove (failed, left
  out of the record, or no record at all) is not counted and scores 0: missing evidence never
  scores more than failed evidence; RAM is min(declared, proven) and 0 unproven; DBC's
  weakest-GPU convention takes the weakest GPU's cores and memory for the whole machine
  (`scoring.weakest_gpu`).
- **Everything the host sent is a claim**: the inventory, NVML names, kernel views, declared RAM,
  disks, CPU; the owner declared the region. The breakdown marks each input `proven` (measured by
  the service), `reference` (the reference table's row of the measured model), `declared` or
  `not_proven` (scored 0).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpuproof.claim import Claim
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.machine import Region
from gpuproof.protocol.proof import codes
from gpuproof.protocol.proof.params import DEFAULT_TOLERANCE, NETWORK_ALLOWANCE_S
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import BenchmarkReport, GpuInfo
from gpuproof.reference import GpuReference, normalise_nvml_name, reference_table
from gpuproof.scoring import REGIONAL_COEFFICIENTS, CalcPoint, ScoringError, calc_point, weakest_gpu

GB = 10**9
GIB = 1 << 30
EVIDENCE_VERSION = 1

# A host faster than a model by more than this factor is not that model (the fast side of the rate
# envelope). Honest GPUs run within ±10% of the estimate (docs/protocol.md §8); 1.2 keeps an honest
# H100 SXM5 (elapsed 17.9-22.7 s on its own parameters) out of the H100 PCIe envelope (23.3 s).
# An estimate, like the table's achieved fractions, until calibrated on a GPU.
FAST_SLACK = 1.2
# Measured bandwidth / datasheet bandwidth a model accepts. Estimates (docs/scoring.md): the capacity
# phase's device-side reads are assumed to reach 0.6-1.1x the datasheet figure; host memory over
# PCIe (<= 64 GB/s) is < 0.05x any HBM part. 0.6 keeps an RTX 4090 (0.85 x 1008 GB/s) out of the
# A100 40GB's envelope (>= 933 GB/s).
BANDWIDTH_LOW = 0.6
BANDWIDTH_HIGH = 1.1
# DBC's published minimums for AI machines (reference/dbc.md): RAM per card and per machine.
DBC_MIN_RAM_GB_PER_GPU = 48
DBC_MIN_RAM_GB_PER_MACHINE = 64

MAX_BYTES = 1 << 56  # 64 PiB: bounds every byte count of the record
Status = Literal["proven", "reference", "declared", "not_proven"]
HOST_SENT = (
    "every figure the host sent (inventory, NVML names, kernel views, declared RAM, disks, CPU) is a "
    "claim; the owner declared the region; only the proof of throughput and the capacity phase "
    "(timed by the service, checked by it) are evidence"
)


# ------------------------------------------------------------------------ the capacity record
class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


ByteCount = Annotated[int, Field(ge=0, le=MAX_BYTES)]
Seconds = Annotated[float, Field(ge=0, le=86_400)]


class CapacityGpu(_Record):
    index: Annotated[int, Field(ge=0, le=255)]
    claimed_bytes: ByteCount
    proven_bytes: ByteCount
    bandwidth_bytes_per_s: Annotated[float, Field(ge=0, le=1e15)]
    read_round_p50_s: Seconds
    read_round_max_s: Seconds
    bandwidth_round_s: Seconds = 0.0
    passed: bool


class HostRamRecord(_Record):
    claimed_bytes: ByteCount
    proven_bytes: ByteCount
    passed: bool


class CapacityRecord(_Record):
    """`verification["capacity"]` as the capacity phase writes it (the contract in docs/scoring.md)."""

    version: Literal[1]
    gpus: Annotated[list[CapacityGpu], Field(max_length=256)]
    host_ram: HostRamRecord | None
    reasons: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=1024)]
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{16,128}$")]

    def gpu(self, index: int) -> CapacityGpu | None:
        return next((g for g in self.gpus if g.index == index), None)


def parse_capacity(doc: Any) -> tuple[CapacityRecord | None, list[Reason]]:
    """The capacity record, or None: absent is not proven; malformed is not proven, with a reason."""
    if doc is None:
        return None, []
    try:
        record = CapacityRecord.model_validate(doc)
    except ValidationError as exc:
        return None, [
            Reason(
                "capacity_record_malformed",
                f"the capacity record does not parse ({exc.error_count()} errors): nothing in it is proven",
                "capacity",
            )
        ]
    indices = [g.index for g in record.gpus]
    if len(set(indices)) != len(indices):
        return None, [
            Reason("capacity_record_malformed", "the capacity record lists a GPU twice", "capacity.gpus")
        ]
    return record, []


# ------------------------------------------------------------------------ throughput facts
@dataclass(frozen=True)
class Throughput:
    """The proof of throughput as the service timed and checked it."""

    passed: bool
    elapsed_s: float | None
    ops_per_gpu: Mapping[int, float]
    digest: str | None = None
    late_only: bool = False
    """The proof failed only its deadline: the work is verified, the time measures a slower part."""

    @property
    def timed(self) -> bool:
        """The elapsed time measures verified work (passed, or failed only by its deadline)."""
        return (
            (self.passed or self.late_only)
            and self.elapsed_s is not None
            and self.elapsed_s > 0
            and bool(self.ops_per_gpu)
        )

    @property
    def proven(self) -> bool:
        return self.passed and self.timed


@dataclass(frozen=True)
class MeasuredFacts:
    throughput: Throughput | None = None
    capacity: CapacityRecord | None = None
    capacity_reasons: tuple[Reason, ...] = ()


NOTHING_MEASURED = MeasuredFacts()
PROOF_CHECK = "proof_of_throughput"


def throughput_from_checks(checks: Sequence[Mapping[str, Any]]) -> Throughput | None:
    """The proof of throughput's result from a verification's `checks` (the service's own record)."""
    doc = next((c for c in checks if c.get("name") == PROOF_CHECK), None)
    if doc is None:
        return None
    details = doc.get("details") or {}
    elapsed = details.get("elapsed_s")
    elapsed_s = float(elapsed) if isinstance(elapsed, int | float) and math.isfinite(elapsed) else None
    ops: dict[int, float] = {}
    for g in details.get("gpus") or []:
        index = g.get("gpu_index")
        value = g.get("ops")
        if (
            value is None
            and elapsed_s is not None
            and isinstance(g.get("proven_tops_lower_bound"), int | float)
        ):
            value = g["proven_tops_lower_bound"] * elapsed_s * 1e12
        if isinstance(index, int) and isinstance(value, int | float) and value > 0:
            ops[index] = float(value)
    digest = details.get("commitment_sha256") or (details.get("transcript") or {}).get("sha256")
    reasons = {r.get("code") for r in doc.get("reasons") or [] if isinstance(r, Mapping)}
    passed = doc.get("status") == "pass" and not reasons
    late_only = reasons == {codes.DEADLINE_MISSED}
    return Throughput(passed, elapsed_s, ops, digest if isinstance(digest, str) else None, late_only)


def facts_from_verification(verification: Mapping[str, Any] | None) -> MeasuredFacts:
    """What the service measured, from its verification record; nothing when there is none."""
    if not verification:
        return NOTHING_MEASURED
    capacity, reasons = parse_capacity(verification.get("capacity"))
    return MeasuredFacts(throughput_from_checks(verification.get("checks") or []), capacity, tuple(reasons))


# ------------------------------------------------------------------------ the rate classifier
@dataclass(frozen=True)
class RateFit:
    """How a model's int8 pipeline would have done this work: its expected and deadline seconds."""

    model: str
    expected_s: float
    deadline_s: float
    side: Literal["fits", "slower", "faster"]
    """slower: the model would have finished before the measured time (the host is slower than it);
    faster: the host finished more than FAST_SLACK x sooner than the model could."""


def expected_seconds(ref: GpuReference, ops: float) -> tuple[float, float] | None:
    """The model's expected and deadline seconds for `ops` int8 operations (docs/protocol.md §8)."""
    rate = ref.expected_int8_tops
    if rate is None or ref.epilogue_fraction is None or ref.setup_s is None:
        return None
    gemm_s = ops / (rate * 1e12)
    expected = gemm_s * (1 + ref.epilogue_fraction) + ref.setup_s
    return expected, expected * DEFAULT_TOLERANCE + NETWORK_ALLOWANCE_S


def rate_fits(ops: float, elapsed_s: float, table: Sequence[GpuReference] | None = None) -> list[RateFit]:
    """Every claimable model (one with an int8 rate) against the service-timed elapsed seconds."""
    rows = reference_table() if table is None else table
    fits = []
    for ref in rows:
        times = expected_seconds(ref, ops)
        if times is None:
            continue
        expected, deadline = times
        if elapsed_s > deadline:
            side: Literal["fits", "slower", "faster"] = "slower"
        elif elapsed_s * FAST_SLACK < expected:
            side = "faster"
        else:
            side = "fits"
        fits.append(RateFit(ref.model, round(expected, 3), round(deadline, 3), side))
    return fits


def holds(ref: GpuReference, proven_bytes: int) -> bool:
    """The model's memory can hold the proven bytes (its nominal GB read as GiB: the generous side,
    so a model is never ruled out by a unit)."""
    return proven_bytes <= ref.mem_gb * GIB


def bandwidth_fits(ref: GpuReference, bytes_per_s: float) -> bool:
    if ref.mem_bw_gbs is None:
        return True  # nothing to compare with: not informative
    datasheet = ref.mem_bw_gbs * GB
    return BANDWIDTH_LOW * datasheet <= bytes_per_s <= BANDWIDTH_HIGH * datasheet


# ------------------------------------------------------------------------ the machine's totals
# A machine's GPUs answer one challenge with one commitment, and every capacity round answers for
# all slots in one message: any GPU can do another's share of the proof's work, hold another's rows
# in its headroom and read them inside a round's slack. The service-timed times bound totals (the
# pooled int8 rate, the bytes read a second), never one slot. POOL_SLACK is FAST_SLACK: the table's
# rates are estimates until calibrated on a GPU (docs/scoring.md §3).
POOL_SLACK = FAST_SLACK


def _effective_rate(ref: GpuReference) -> float | None:
    """int8 operations a second with the epilogue's share counted (expected_seconds's rate)."""
    if ref.expected_int8_tops is None or ref.epilogue_fraction is None or ref.setup_s is None:
        return None
    return ref.expected_int8_tops * 1e12 / (1 + ref.epilogue_fraction)


@dataclass(frozen=True)
class Pool:
    """The machine's pooled-rate facts: its total int8 work, the service-timed seconds and its
    number of slots."""

    ops_total: float
    elapsed_s: float
    slots: int


def machine_pool(count: int, facts: MeasuredFacts) -> Pool | None:
    """The pool of a machine of two GPUs or more whose proof was timed by the service; None
    otherwise (then no least reading is made)."""
    tp = facts.throughput
    if tp is None or not tp.timed or tp.elapsed_s is None or count < 2:
        return None
    ops = [tp.ops_per_gpu.get(i) for i in range(count)]
    if any(o is None for o in ops):
        return None
    return Pool(float(sum(o for o in ops if o is not None)), float(tp.elapsed_s), count)


# The least reading (docs/protocol.md §17.8 "What a machine's evidence binds"): every round of the
# capacity phase and the proof of throughput answers for all slots in one message under one time,
# and nothing binds a slot's rows to one device (a faster GPU's headroom, 1 - FILL_FRACTION of its
# memory, can hold a slower one's rows and read them inside the round's slack). So the evidence
# binds the machine's totals: the fills held, the bytes the bandwidth round read in its time and
# the int8 work in the proof's time. Any set of at most `slots` devices of the table whose totals
# meet them could have answered; the least reading is the one that would score least declared
# honestly, one machine per model (DBC's weakest-GPU rule makes a machine of mixed models score
# less than its models apart, so that is the most the same hardware earns honestly).


# The search's bound on sets visited (its cost: docs/benchmarks.md "The least reading"). Every
# honest machine of the table up to 32 GPUs is searched to the end; at 64 (the protocol's most)
# some stop short: the record then holds the least reading found so far, `exhaustive: false` (a
# set that qualifies, so still a bound the claim is held to, though maybe not the least).
LEAST_READING_VISITS = 50_000


@dataclass(frozen=True)
class _Device:
    ref: GpuReference
    mem_bytes: float  # nominal GB read as GiB: the generous side, as `holds`
    bytes_per_s: float  # BANDWIDTH_HIGH x the datasheet: the generous side, as `bandwidth_fits`
    rate: float  # `_effective_rate`


def _devices(rows: Sequence[GpuReference]) -> list[_Device]:
    """The table's models a reading can be made of (a rate, cores and a bandwidth), fastest first."""
    out = []
    for ref in rows:
        rate = _effective_rate(ref)
        if rate is None or ref.cuda_cores is None or ref.mem_bw_gbs is None or ref.setup_s is None:
            continue
        out.append(_Device(ref, ref.mem_gb * GIB, BANDWIDTH_HIGH * ref.mem_bw_gbs * GB, rate))
    return sorted(out, key=lambda d: (-d.rate, -d.bytes_per_s, -d.mem_bytes, d.ref.model))


def declared_apart(hardware: Sequence[tuple[GpuReference, int]], ram_gb: int, region: Region) -> Decimal:
    """What `hardware` (models and counts) scores declared honestly, one machine per model, the
    host RAM counted once, in the machine of the largest large-model factor (the first such)."""
    present = [(r, n) for r, n in hardware if n > 0]
    if not present:
        return Decimal(0)
    holder = max(range(len(present)), key=lambda i: present[i][0].large_model_factor)
    return sum(
        (
            calc_point(
                gpu_num=n,
                cuda_cores=r.cuda_cores or 0,
                gpu_mem_gb=r.mem_gb,
                ram_gb=Decimal(ram_gb if i == holder else 0),
                region=region,
                large_model_factor=r.large_model_factor,
            ).decimal
            for i, (r, n) in enumerate(present)
        ),
        Decimal(0),
    )


def least_reading(
    counted: Sequence[GpuEvidence],
    scored: ScoredInputs,
    pool: Pool | None,
    rows: Sequence[GpuReference],
) -> dict[str, Any] | None:
    """The set of devices the machine's evidence allows (see above) that would score least declared
    honestly, returned where that is less than the verdict (the claim then scores more than that
    hardware would: the most it may have gained); None otherwise, for one counted GPU or without a
    service-timed proof. A set qualifies when its memory holds every counted slot's proven bytes,
    its bandwidths (each up to 1.1 x its datasheet) read what the bandwidth round read in its time,
    and its pooled int8 rate does the proof's work within POOL_SLACK of the measured time; it has at
    most as many devices as the claim has slots. Exact over every such set: a depth-first search of
    multisets in which a set that qualifies is not grown, and no set is grown past the least so far
    (growing a set never lowers what it declares)."""
    if pool is None or len(counted) < 2:
        return None
    devices = _devices(rows)
    if not devices:
        return None
    need_mem = float(sum(g.proven_bytes or 0 for g in counted))
    need_bw = float(sum(g.bandwidth_bytes_per_s or 0.0 for g in counted))
    budget = POOL_SLACK * pool.elapsed_s - min(d.ref.setup_s or 0.0 for d in devices)
    need_rate = math.inf if budget <= 0 else pool.ops_total / budget
    try:
        verdict = scored.point().decimal
        return _least(devices, need_mem, need_bw, need_rate, pool.slots, scored, verdict)
    except ScoringError:
        return None  # a figure out of calc_point's bounds (the verdict's: `_scored` says why)


def _least(
    devices: Sequence[_Device],
    need_mem: float,
    need_bw: float,
    need_rate: float,
    slots: int,
    scored: ScoredInputs,
    verdict: Decimal,
) -> dict[str, Any] | None:
    """`least_reading`'s search over the qualifying sets (see there)."""
    # The search prices a set in floats (each model's points a GPU, the RAM term at the set's largest
    # factor) and the set it finds exactly (`declared_apart`); a cent apart the two may pick
    # different sets of the same figure.
    unit = [float(declared_apart([(d.ref, 1)], 0, scored.region)) for d in devices]
    ram_at = {
        d.ref.large_model_factor: float(declared_apart([(d.ref, 1)], scored.ram_gb, scored.region)) - unit[i]
        for i, d in enumerate(devices)
    }
    # From devices[i:] (a set grows in the table's order): the most one device adds to each total,
    # and the fewest points a unit of each total costs (a bound on what completing a set costs).
    tail = []
    for i in range(len(devices)):
        rest = list(zip(devices[i:], unit[i:], strict=True))
        tail.append(
            (
                max(d.mem_bytes for d in devices[i:]),
                max(d.bytes_per_s for d in devices[i:]),
                max(d.rate for d in devices[i:]),
                min(u / d.mem_bytes for d, u in rest),
                min(u / d.bytes_per_s for d, u in rest),
                min(u / d.rate for d, u in rest),
            )
        )
    bound = float(verdict)
    least: list[int] | None = None
    counts = [0] * len(devices)
    visits = 0

    def grow(start: int, n: int, mem: float, bw: float, rate: float, points: float, factor: int) -> None:
        nonlocal least, bound, visits
        visits += 1
        if visits > LEAST_READING_VISITS:
            return  # the record says the search stopped short (`exhaustive`)
        value = points + (ram_at[factor] if n else 0.0)
        if n and mem >= need_mem and bw >= need_bw and rate >= need_rate:
            if value < bound:
                least, bound = list(counts), value
            return  # growing a set that qualifies only adds points
        left = slots - n
        if not left:
            return
        more_mem, more_bw, more_rate, per_mem, per_bw, per_rate = tail[start]
        short = (max(0.0, need_mem - mem), max(0.0, need_bw - bw), max(0.0, need_rate - rate))
        if short[0] > left * more_mem or short[1] > left * more_bw or short[2] > left * more_rate:
            return
        if value + max(short[0] * per_mem, short[1] * per_bw, short[2] * per_rate) >= bound:
            return
        for i in range(start, len(devices)):
            d = devices[i]
            counts[i] += 1
            grow(
                i,
                n + 1,
                mem + d.mem_bytes,
                bw + d.bytes_per_s,
                rate + d.rate,
                points + unit[i],
                max(factor, d.ref.large_model_factor),
            )
            counts[i] -= 1

    grow(0, 0, 0.0, 0.0, 0.0, 0.0, 0)
    if least is None:
        return None
    found = least
    value = declared_apart(
        [(d.ref, k) for d, k in zip(devices, found, strict=True)], scored.ram_gb, scored.region
    )
    if value >= verdict:
        return None
    return {
        "devices": [{"model": devices[i].ref.model, "count": n} for i, n in enumerate(found) if n],
        "device_count": sum(found),
        "exhaustive": visits <= LEAST_READING_VISITS,
        "calc_point": str(value),
        "verdict_calc_point": str(verdict),
    }


# ------------------------------------------------------------------------ per-GPU evidence
@dataclass(frozen=True)
class GpuEvidence:
    index: int
    claimed: str
    rate: tuple[RateFit, ...]
    rate_candidates: tuple[str, ...]
    capacity_candidates: tuple[str, ...] | None
    bandwidth_candidates: tuple[str, ...] | None
    candidates: tuple[str, ...]
    proven_bytes: int | None
    bandwidth_bytes_per_s: float | None
    capacity_passed: bool | None
    nvml_name: str | None
    nvml_model: str | None
    cuda_cores: int
    mem_gb: int
    large_model_factor: int
    reasons: tuple[Reason, ...]
    notes: tuple[Reason, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpu": self.index,
            "claimed": self.claimed,
            "candidates": list(self.candidates),
            "rate_candidates": list(self.rate_candidates),
            "capacity_candidates": None
            if self.capacity_candidates is None
            else list(self.capacity_candidates),
            "bandwidth_candidates": None
            if self.bandwidth_candidates is None
            else list(self.bandwidth_candidates),
            "proven_vram_bytes": self.proven_bytes,
            "bandwidth_bytes_per_s": self.bandwidth_bytes_per_s,
            "capacity_passed": self.capacity_passed,
            "nvml_name": self.nvml_name,
            "nvml_model": self.nvml_model,
            "scored": {
                "cuda_cores": self.cuda_cores,
                "gpu_mem_gb": self.mem_gb,
                "large_model_factor": self.large_model_factor,
            },
            "rate": [
                {"model": f.model, "expected_s": f.expected_s, "deadline_s": f.deadline_s, "side": f.side}
                for f in self.rate
                if f.side == "fits" or f.model == self.claimed
            ],
            "reasons": [r.as_dict() for r in self.reasons],
            "notes": [r.as_dict() for r in self.notes],
        }


def _refs(models: Sequence[str], rows: Sequence[GpuReference]) -> list[GpuReference]:
    return [r for r in rows if r.model in models]


def _virtualised(gpu: GpuInfo | None) -> list[Reason]:
    """MIG instances and vGPUs are refused (a slice is not a GPU; present the parent with MIG off).
    Host-sent flags: a modified probe can hide them, so the capacity phase (a slice cannot hold
    90% of the parent's VRAM) is what actually catches one."""
    if gpu is None:
        return []
    reasons = []
    name = gpu.name.upper()
    if gpu.mig_enabled or "MIG" in name.split():
        reasons.append(
            Reason(
                "gpu_mig_refused",
                f"GPU {gpu.index} is in MIG mode: MIG instances are refused, not counted as GPUs "
                "(disable MIG and present the whole card)",
                "inventory.gpus",
            )
        )
    mode = (gpu.virtualization_mode or "").lower()
    if mode in ("vgpu", "host_vgpu", "host_vsga") or name.startswith("GRID ") or "VGPU" in name:
        reasons.append(
            Reason(
                "gpu_vgpu_refused",
                f"GPU {gpu.index} is virtualised ({gpu.virtualization_mode or gpu.name}): a vGPU is "
                "refused (time-shared; present the physical GPU or a passthrough one)",
                "inventory.gpus",
            )
        )
    return reasons


def gpu_evidence(
    index: int,
    claimed: GpuReference,
    gpu: GpuInfo | None,
    facts: MeasuredFacts,
    table: Sequence[GpuReference] | None = None,
) -> GpuEvidence:
    """One claimed GPU: the models consistent with what the service measured, and its fail-closed
    scoring inputs (min over the candidates; 0 when nothing is proven)."""
    rows = reference_table() if table is None else table
    reasons: list[Reason] = _virtualised(gpu)
    notes: list[Reason] = []
    tp = facts.throughput
    fits: list[RateFit] = []
    rate_candidates: list[str] = []
    ops = tp.ops_per_gpu.get(index) if tp is not None else None
    if tp is not None and tp.timed and ops is not None and tp.elapsed_s is not None:
        fits = rate_fits(ops, tp.elapsed_s, rows)
        rate_candidates = [f.model for f in fits if f.side == "fits"]
        mine = next((f for f in fits if f.model == claimed.model), None)
        if mine is None or mine.side == "slower":
            reasons.append(
                Reason(
                    "model_rate_below_claim",
                    f"GPU {index}: {tp.elapsed_s:.2f} s under the service's clock is slower than a "
                    f"{claimed.model} (deadline {mine.deadline_s if mine else 0:.2f} s); the rate fits "
                    f"{', '.join(rate_candidates) or 'no reference model'}",
                    "proof",
                )
            )
        elif mine.side == "faster":
            notes.append(
                Reason(
                    "model_rate_above_claim",
                    f"GPU {index}: {tp.elapsed_s:.2f} s is more than {FAST_SLACK}x faster than a "
                    f"{claimed.model} ({mine.expected_s:.2f} s expected): a faster part, or an "
                    "achieved fraction above the table's estimate (scored as the claim)",
                    "proof",
                )
            )
            rate_candidates.append(claimed.model)  # an under-claim scores the claim, never more
    else:
        reasons.append(
            Reason(
                "model_rate_not_proven",
                f"GPU {index}: no passing proof of throughput: the model is not measured",
                "proof",
            )
        )
    cap = facts.capacity.gpu(index) if facts.capacity is not None else None
    capacity_candidates: list[str] | None = None
    bandwidth_candidates: list[str] | None = None
    if cap is not None and cap.passed:
        capacity_candidates = [r.model for r in rows if holds(r, cap.proven_bytes)]
        bandwidth_candidates = [r.model for r in rows if bandwidth_fits(r, cap.bandwidth_bytes_per_s)]
        if claimed.model not in capacity_candidates:
            reasons.append(
                Reason(
                    "model_capacity_above_claim",
                    f"GPU {index} proved {cap.proven_bytes} bytes, more than a {claimed.model} holds",
                    "capacity",
                )
            )
        if claimed.model not in bandwidth_candidates:
            # The envelope is an estimate until calibrated on a GPU: a bandwidth outside the claimed
            # model's is a cross-check (shadow by default) and does not narrow the candidates
            # (which can only lower the score); reads served from host memory miss the capacity
            # phase's own round deadline.
            notes.append(
                Reason(
                    "model_bandwidth_outside_claim",
                    f"GPU {index}: {cap.bandwidth_bytes_per_s / GB:.0f} GB/s measured; a "
                    f"{claimed.model} has {claimed.mem_bw_gbs} GB/s (accepted "
                    f"{BANDWIDTH_LOW}-{BANDWIDTH_HIGH}x)",
                    "capacity",
                )
            )
            bandwidth_candidates = None
    elif cap is not None:
        reasons.append(Reason("model_capacity_failed", f"GPU {index} failed the capacity phase", "capacity"))
    elif facts.capacity is not None:
        reasons.append(
            Reason(
                "model_capacity_failed",
                f"GPU {index} is missing from the capacity record: its VRAM is not proven",
                "capacity",
            )
        )
    else:
        # No record: the phase was skipped, never completed, or proves nothing (capacity_missing,
        # capacity_record_malformed, ...). Scored as a failure: a host that would fail the phase
        # must not score more by not taking it (fail closed).
        reasons.append(
            Reason(
                "model_capacity_missing",
                f"GPU {index}: no capacity record proves it (the phase was skipped, incomplete or "
                "unverifiable): its VRAM, and that it is a device of its own, are not proven",
                "capacity",
            )
        )
    candidates = [
        m
        for m in rate_candidates
        if (capacity_candidates is None or m in capacity_candidates)
        and (bandwidth_candidates is None or m in bandwidth_candidates)
    ]
    nvml_model = normalise_nvml_name(gpu.name, rows) if gpu is not None else None
    if gpu is not None and nvml_model != claimed.model:
        notes.append(
            Reason(
                "nvml_name_cross_check",
                f"GPU {index}: NVML says {gpu.name!r} ({nvml_model or 'no reference model'}), the "
                f"claim is {claimed.model}; the model is taken from the measurement, never the name",
                "inventory.gpus",
            )
        )
    refs = _refs(candidates, rows)
    if reasons or not refs or cap is None or not cap.passed:
        cores = mem = 0
        factor = 1
    else:
        cores = min(r.cuda_cores or 0 for r in refs)
        mem = min(r.mem_gb for r in refs)
        factor = min(r.large_model_factor for r in refs)
    return GpuEvidence(
        index=index,
        claimed=claimed.model,
        rate=tuple(fits),
        rate_candidates=tuple(rate_candidates),
        capacity_candidates=None if capacity_candidates is None else tuple(capacity_candidates),
        bandwidth_candidates=None if bandwidth_candidates is None else tuple(bandwidth_candidates),
        candidates=tuple(candidates),
        proven_bytes=cap.proven_bytes if cap is not None and cap.passed else None,
        bandwidth_bytes_per_s=cap.bandwidth_bytes_per_s if cap is not None and cap.passed else None,
        capacity_passed=None if cap is None else cap.passed,
        nvml_name=None if gpu is None else gpu.name,
        nvml_model=nvml_model,
        cuda_cores=cores,
        mem_gb=mem,
        large_model_factor=factor,
        reasons=tuple(reasons),
        notes=tuple(notes),
    )


# ------------------------------------------------------------------------ the whole machine
@dataclass(frozen=True)
class InputEvidence:
    """One calc_point input: its scored value, how it is known, and the evidence."""

    name: str
    value: Any
    status: Status
    evidence: dict[str, Any]
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.name,
            "value": self.value,
            "status": self.status,
            "evidence": self.evidence,
            "note": self.note,
        }


@dataclass(frozen=True)
class ScoredInputs:
    gpu_num: int
    cuda_cores: int
    gpu_mem_gb: int
    ram_gb: int
    region: Region
    large_model_factor: int

    def point(self) -> CalcPoint:
        """DBC's calc_point of these inputs (raises ScoringError out of its bounds)."""
        return calc_point(
            gpu_num=self.gpu_num,
            cuda_cores=self.cuda_cores,
            gpu_mem_gb=self.gpu_mem_gb,
            ram_gb=Decimal(self.ram_gb),
            region=self.region,
            large_model_factor=self.large_model_factor,
        )


@dataclass(frozen=True)
class Assessment:
    """The evidence of every calc_point input, the inputs it scores, and its reasons by check:
    `model` (deciding), `ceiling` and `unproven` (recorded; shadow by default), `minimums` (DBC's
    minimums against the proven figures; shadow by default)."""

    inputs: list[InputEvidence]
    gpus: list[GpuEvidence]
    scored: ScoredInputs
    point: CalcPoint | None
    declared_ram_gb: int
    model_reasons: list[Reason] = field(default_factory=list)
    ceiling_reasons: list[Reason] = field(default_factory=list)
    unproven: list[Reason] = field(default_factory=list)
    minimums: list[Reason] = field(default_factory=list)
    scoring_error: Reason | None = None

    def as_dict(self) -> dict[str, Any]:
        body = {
            "version": EVIDENCE_VERSION,
            "host_sent": HOST_SENT,
            "inputs": [i.as_dict() for i in self.inputs],
            "gpus": [g.as_dict() for g in self.gpus],
            "scored": {
                "gpu_num": self.scored.gpu_num,
                "cuda_cores": self.scored.cuda_cores,
                "gpu_mem_gb": self.scored.gpu_mem_gb,
                "ram_gb": self.scored.ram_gb,
                "region": self.scored.region.value,
                "region_coefficient": str(REGIONAL_COEFFICIENTS[self.scored.region]),
                "large_model_factor": self.scored.large_model_factor,
            },
            "calc_point": None
            if self.point is None
            else {"point": str(self.point.decimal), "chain_value": self.point.chain_value},
            "minimums": {
                "ram_gb_per_gpu": DBC_MIN_RAM_GB_PER_GPU,
                "ram_gb_per_machine": DBC_MIN_RAM_GB_PER_MACHINE,
                "met": not self.minimums,
                "reasons": [r.as_dict() for r in self.minimums],
            },
            "not_proven": [r.as_dict() for r in self.unproven],
        }
        body["digest"] = hashlib.sha256(canonical_bytes(body)).hexdigest()
        return body


def _ram(declared_gb: int, facts: MeasuredFacts) -> tuple[int, InputEvidence, list[Reason]]:
    ram = facts.capacity.host_ram if facts.capacity is not None else None
    if ram is not None and ram.passed:
        proven_gb = ram.proven_bytes // GIB
        value = min(declared_gb, proven_gb)
        ev = InputEvidence(
            "RAM_GB",
            value,
            "proven",
            {
                "proven_bytes": ram.proven_bytes,
                "declared_gb": declared_gb,
                "capacity_digest": facts.capacity.digest if facts.capacity else None,
            },
            "min(declared, proven GiB rounded down): never more than the capacity phase proved",
        )
        return value, ev, []
    why = "failed" if ram is not None else "absent"
    ev = InputEvidence(
        "RAM_GB",
        0,
        "not_proven",
        {"declared_gb": declared_gb, "host_ram_proof": why},
        f"declared {declared_gb} GB, host RAM proof {why}: the RAM term scores 0 (fail closed)",
    )
    return (
        0,
        ev,
        [Reason("ram_not_proven", f"host RAM is not proven ({why}); scored 0 GB", "capacity.host_ram")],
    )


def _minimums(gpu_num: int, ram_gb: int) -> list[Reason]:
    reasons = []
    if gpu_num and ram_gb < DBC_MIN_RAM_GB_PER_GPU * gpu_num:
        reasons.append(
            Reason(
                "dbc_ram_per_gpu_below_minimum",
                f"{ram_gb} GB proven RAM for {gpu_num} GPUs; "
                f"DBC asks >= {DBC_MIN_RAM_GB_PER_GPU} GB per card",
                "capacity.host_ram",
            )
        )
    if ram_gb < DBC_MIN_RAM_GB_PER_MACHINE:
        reasons.append(
            Reason(
                "dbc_ram_per_machine_below_minimum",
                f"{ram_gb} GB proven RAM; DBC asks >= {DBC_MIN_RAM_GB_PER_MACHINE} GB per machine",
                "capacity.host_ram",
            )
        )
    return reasons


def assess(
    claim: Claim,
    report: BenchmarkReport,
    region: Region,
    declared_ram_gb: int,
    facts: MeasuredFacts,
    table: Sequence[GpuReference] | None = None,
) -> Assessment:
    """Every calc_point input with its evidence, scored fail-closed with DBC's weakest-GPU rule."""
    rows = reference_table() if table is None else table
    ram_gb, ram_ev, unproven = _ram(declared_ram_gb, facts)
    unproven = [*unproven, *facts.capacity_reasons]
    region_ev = InputEvidence(
        "region",
        region.value,
        "declared",
        {"coefficient": str(REGIONAL_COEFFICIENTS[region])},
        "declared by the owner at registration; not proven (no location evidence is gathered)",
    )
    tp = facts.throughput
    proof_ev: dict[str, Any] = {
        "proof_passed": bool(tp and tp.proven),
        "elapsed_s": None if tp is None else tp.elapsed_s,
        "digest": None if tp is None else tp.digest,
    }
    reference = claim.reference
    if claim.cpu or reference is None:
        inputs = [
            InputEvidence("gpu_num", 0, "declared", {}, "no GPU claimed (CPU backend)"),
            ram_ev,
            region_ev,
            InputEvidence("large_model_factor", 1, "reference", {}, "no GPU: factor 1"),
        ]
        scored = ScoredInputs(0, 0, 0, ram_gb, region, 1)
        return _scored(inputs, [], scored, declared_ram_gb, [], [], unproven)

    by_index = {g.index: g for g in report.inventory.gpus}
    pool = machine_pool(claim.gpu_count, facts)
    gpus = [gpu_evidence(i, reference, by_index.get(i), facts, rows) for i in range(claim.gpu_count)]
    model_reasons = [r for g in gpus for r in g.reasons]
    ceiling = [r for g in gpus for r in g.notes]
    cap = facts.capacity
    counted = [g for g in gpus if g.capacity_passed]
    count_status: Status = "proven" if cap is not None else "not_proven"
    count_note = "GPUs that each held their share of VRAM at the same time in the capacity phase"
    if cap is None:
        # The proof's aggregate int8 work does not count devices (K faster GPUs do M > K slower
        # ones' work): without the capacity phase no GPU is counted, as when every GPU failed it.
        count_note += "; no capacity record, so none is counted (missing scores as failed)"
        unproven.append(
            Reason(
                "gpu_count_not_proven",
                f"{claim.gpu_count} GPUs claimed; without a capacity record none is counted (the "
                "proof of throughput bounds aggregate work, not devices)",
                "capacity",
            )
        )
        unproven.append(
            Reason(
                "vram_not_proven", "no capacity record: no GPU's memory is proven; scored 0 GB", "capacity"
            )
        )
    gpu_num = len(counted)
    cores, mem = weakest_gpu([(g.cuda_cores, g.mem_gb) for g in counted]) if counted else (0, 0)
    factor = min((g.large_model_factor for g in counted), default=1)
    weakest = min(counted, key=lambda g: (g.cuda_cores, g.mem_gb), default=None)
    rate_status: Status = "proven" if tp is not None and tp.proven else "not_proven"
    inputs = [
        InputEvidence(
            "gpu_num",
            gpu_num,
            count_status,
            {**proof_ev, "claimed": claim.gpu_count, "capacity_digest": None if cap is None else cap.digest},
            count_note,
        ),
        InputEvidence(
            "gpu_model",
            reference.model,
            rate_status,
            {**proof_ev, "candidates": sorted({m for g in gpus for m in g.candidates})},
            "the claimed model must be among the models the service-timed rate (and, when proven, "
            "capacity and bandwidth) fit; the NVML name is a cross-check only",
        ),
        InputEvidence(
            "cuda_cores",
            cores,
            "reference",
            {"weakest_gpu": None if weakest is None else weakest.index},
            "reference table: the fewest cores of the candidate models, weakest GPU for the machine "
            "(each slot's candidates as if the slots were separate devices: gpu_num's "
            "`least_reading` says what the machine's totals alone allow)",
        ),
        InputEvidence(
            "gpu_mem_GB",
            mem,
            "proven" if cap is not None else "not_proven",
            {
                "weakest_gpu": None if weakest is None else weakest.index,
                "proven_vram_bytes": None if weakest is None else weakest.proven_bytes,
                "capacity_digest": None if cap is None else cap.digest,
            },
            "the smallest memory of the models consistent with the proven VRAM and the rate, "
            "weakest GPU for the machine (0 without a capacity proof)",
        ),
        ram_ev,
        region_ev,
        InputEvidence(
            "large_model_factor",
            factor,
            "reference",
            {},
            "reference table's factor of the candidate models (the smallest, fail closed)",
        ),
    ]
    scored = ScoredInputs(gpu_num, cores, mem, ram_gb, region, factor)
    least = least_reading(counted, scored, pool, rows) if cores else None
    if least is not None:
        inputs[0] = dataclasses.replace(inputs[0], evidence={**inputs[0].evidence, "least_reading": least})
        hardware = " + ".join(f"{d['count']} x {d['model']}" for d in least["devices"])
        unproven.append(
            Reason(
                "least_reading_lower",
                f"the rounds answer for every slot at once, so the evidence binds the machine's "
                f"totals, not each slot: {hardware} could have answered (memory, bandwidth and "
                f"pooled rate fit), hardware that declared honestly (one machine per model) scores "
                f"{least['calc_point']}, not {least['verdict_calc_point']} (recorded, not scored: "
                "docs/protocol.md §17.8)",
                "capacity",
            )
        )
    minimums = _minimums(gpu_num, ram_gb)
    return _scored(inputs, gpus, scored, declared_ram_gb, model_reasons, ceiling, unproven, minimums)


def _scored(
    inputs: list[InputEvidence],
    gpus: list[GpuEvidence],
    scored: ScoredInputs,
    declared_ram_gb: int,
    model_reasons: list[Reason],
    ceiling: list[Reason],
    unproven: list[Reason],
    minimums: list[Reason] | None = None,
) -> Assessment:
    point: CalcPoint | None = None
    error: Reason | None = None
    try:
        point = scored.point()
    except ScoringError as exc:
        error = Reason(exc.code, str(exc))
    return Assessment(
        inputs,
        gpus,
        scored,
        point,
        declared_ram_gb,
        model_reasons,
        ceiling,
        unproven,
        minimums if minimums is not None else _minimums(scored.gpu_num, scored.ram_gb),
        error,
    )
