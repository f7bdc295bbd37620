"""The automated stage: verify a stored report off the request path and move the machine on.

Each check yields a CheckResult; a failing check refuses the machine unless configuration puts
it in shadow mode (recorded, not deciding). Checks new to production (`SHADOW_BY_DEFAULT`) are
in shadow mode until `EnforceChecks` (env ENFORCE_CHECKS) names them.

The evidence checks run after the others, on what they measured (`gpuproof.evidence`): the
proof of throughput's result and the capacity phase's record (`verification["capacity"]`);
`verification["evidence"]` is the per-input breakdown calc_point was scored from (docs/scoring.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import ValidationError

from gpuproof.claim import (
    Claim,
    ClaimError,
    capacity_params_reasons,
    claim_of,
    params_reasons,
    stored_capacity_params,
    stored_proof_params,
)
from gpuproof.committee.findings import Findings, findings_from_report, measured_bf16
from gpuproof.evidence import MeasuredFacts, parse_capacity, throughput_from_checks
from gpuproof.identity import kernel_reasons
from gpuproof.logic.attempts import CooldownPolicy, after_verification
from gpuproof.logic.capacity import load_session, openings_reference
from gpuproof.logic.machines import too_many_gpus
from gpuproof.logic.ports import Clock, TranscriptStore
from gpuproof.logic.records import Attempts, Challenge, Machine, StoredReport, Verdict
from gpuproof.logic.revocation import revoked_verdict
from gpuproof.logic.states import MachineState
from gpuproof.protocol.capacity import codes as capacity_codes
from gpuproof.protocol.capacity import verify_capacity
from gpuproof.protocol.capacity.models import OPENINGS_SUFFIX
from gpuproof.protocol.capacity.openings import openings_limit
from gpuproof.protocol.capacity.wire import OpeningsError, decode_openings
from gpuproof.protocol.delivery import (
    DEFAULT_MAX_BYTES_PER_GPU,
    decode,
    is_reference,
    parse_reference,
    transcript_key,
    transcript_limit,
)
from gpuproof.protocol.gpu_uuid import normalise_gpu_uuid
from gpuproof.protocol.limits import DEFAULT_MAX_GPUS_PER_MACHINE, MAX_CHECK_REASONS
from gpuproof.protocol.proof import GpuPairs, ThroughputProof, codes, verify_throughput
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import SignedReport

Status = Literal["pass", "fail"]


@dataclass
class CheckResult:
    name: str
    status: Status
    reasons: list[Reason] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    shadow: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "shadow": self.shadow,
            "reasons": [r.as_dict() for r in self.reasons],
            "details": self.details,
        }


def listed(reasons: list[Reason], limit: int = MAX_CHECK_REASONS) -> list[Reason]:
    """The first `limit` reasons, then one per code of the rest, counting them: every code stays
    listed and the stored verification stays far below DynamoDB's 400 KB item (9 capacity
    targets of wrong openings fail ~1,400 spots and walks, 8 GPUs of wrong rows 1,120 openings)."""
    if len(reasons) <= limit:
        return reasons
    rest: dict[str, int] = {}
    for r in reasons[limit:]:
        rest[r.code] = rest.get(r.code, 0) + 1
    return [
        *reasons[:limit],
        *(Reason(code, f"and {n} more with this code (a check lists {limit})") for code, n in rest.items()),
    ]


def check(name: str, reasons: list[Reason], **details: Any) -> CheckResult:
    return CheckResult(name, "fail" if reasons else "pass", listed(reasons), details)


class VerificationStore(Protocol):
    def get_machine(self, machine_id: str) -> Machine | None: ...

    def get_challenge(self, challenge_id: str) -> Challenge | None: ...

    def get_report(self, machine_id: str, challenge_id: str) -> StoredReport | None: ...

    def gpu_uuid_owners(self, uuids: list[str]) -> dict[str, str]: ...

    def record_verification(
        self,
        report: StoredReport,
        verification: dict[str, Any],
        state: MachineState,
        claim_uuids: list[str],
        attempts: Attempts,
        held: Sequence[str] = (),
        revocation: Verdict | None = None,
    ) -> bool:
        """Write the result and the machine's attempts once (conditional); False when another
        delivery already did. GPU UUIDs `held` and no longer claimed are released; `revocation`
        (a scored machine refused) withdraws its score in the same transaction."""


@dataclass(frozen=True)
class VerifyServices:
    store: VerificationStore
    clock: Clock
    allow_cpu_backend: bool
    shadow_checks: frozenset[str]
    cooldown: CooldownPolicy = field(default_factory=CooldownPolicy)
    max_gpus_per_machine: int = DEFAULT_MAX_GPUS_PER_MACHINE
    transcripts: TranscriptStore | None = None
    transcript_max_bytes_per_gpu: int = DEFAULT_MAX_BYTES_PER_GPU
    cpu_proof_deadline_s: float = 0.0  # the CPU backend's deadline floor (gpuproof.claim)
    enforced_checks: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Context:
    machine: Machine
    challenge: Challenge
    stored: StoredReport
    signed: SignedReport
    svc: VerifyServices
    claim: Claim | None
    claim_problems: list[Reason]


def check_signature(ctx: Context) -> CheckResult:
    ok = ctx.signed.verifies()
    return check(
        "report_signature",
        [] if ok else [Reason("report_signature_invalid", "the stored report's signature does not verify")],
    )


def check_claim(ctx: Context) -> CheckResult:
    """The challenge's claim (model, GPU count) and the proof parameters it gets, recomputed here
    rather than trusted as stored. A CPU-only claim passes only where the CPU backend is allowed."""
    reasons = list(ctx.claim_problems)
    claim = ctx.claim
    if claim is not None:
        reasons += params_reasons(ctx.challenge.params, claim, cpu_deadline_s=ctx.svc.cpu_proof_deadline_s)
        if claim.cpu and not ctx.svc.allow_cpu_backend:
            reasons.append(Reason("cpu_claim_refused", "the challenge claims no GPU (a CPU-only host)"))
    details: dict[str, Any] = {} if claim is None else claim.as_dict()
    if claim is not None and claim.cpu and ctx.svc.allow_cpu_backend:
        details["note"] = "CPU backend accepted because ALLOW_CPU_BACKEND=true (local stack and tests only)"
    return check("claim", reasons, **details)


def check_integrity(ctx: Context) -> CheckResult:
    integ = ctx.signed.report.integrity
    reasons = []
    if integ.ld_preload:
        reasons.append(Reason("integrity_ld_preload", f"LD_PRELOAD is set ({integ.ld_preload!r})"))
    if integ.ld_so_preload:
        reasons.append(Reason("integrity_ld_preload", f"/etc/ld.so.preload lists {integ.ld_so_preload}"))
    return check(
        "integrity",
        reasons,
        container_hints=integ.container_hints,
        vm_hints=integ.vm_hints,
        library_sha256=integ.library_sha256,
    )


def check_inventory(ctx: Context) -> CheckResult:
    reasons = []
    for gpu in ctx.signed.report.inventory.gpus:
        reasons += [Reason("nvml_cuda_disagreement", f"GPU {gpu.index}: {d}") for d in gpu.disagreements]
        reasons += [Reason("inventory_error", f"GPU {gpu.index}: {e}") for e in gpu.errors]
    found = len(ctx.signed.report.inventory.gpus)
    # Intake refuses these too; the limit may have been lowered since.
    reasons += too_many_gpus(found, ctx.svc.max_gpus_per_machine, "the inventory lists", "inventory.gpus")
    return check("inventory", reasons, gpu_count=found)


def check_benchmarks(ctx: Context) -> CheckResult:
    unverified = [b for b in ctx.signed.report.benchmarks if not b.verified]
    reasons = [
        Reason("benchmark_unverified", f"{b.name} on {b.device} is not backed by verified work")
        for b in unverified
    ]
    return check("benchmarks", reasons, count=len(ctx.signed.report.benchmarks))


def gpu_uuids(report: SignedReport) -> tuple[list[str], list[str]]:
    """The inventory's GPU UUIDs normalised (in order), and the raw ones that are not UUIDs."""
    normalised, malformed = [], []
    for gpu in report.report.inventory.gpus:
        uuid = normalise_gpu_uuid(gpu.uuid)
        if uuid is None:
            malformed.append(gpu.uuid)
        else:
            normalised.append(uuid)
    return normalised, malformed


def check_gpu_uuids(ctx: Context) -> CheckResult:
    """Uniqueness of each GPU, claimed on the normalised UUID (protocol/gpu_uuid.py)."""
    uuids, malformed = gpu_uuids(ctx.signed)
    reasons = [
        Reason("gpu_uuid_malformed", f"{u!r} is not a GPU UUID (GPU-8-4-4-4-12 hex)") for u in malformed
    ]
    owners = ctx.svc.store.gpu_uuid_owners(sorted(set(uuids)))
    reasons += [
        Reason("gpu_uuid_taken", f"GPU {u} is registered to machine {m}")
        for u, m in owners.items()
        if m != ctx.machine.machine_id
    ]
    dupes = sorted({u for u in uuids if uuids.count(u) > 1})
    reasons += [Reason("gpu_uuid_duplicate", f"GPU {u} appears twice in the inventory") for u in dupes]
    return check("gpu_uuids", reasons, uuids=uuids)


def check_kernel_identity(ctx: Context) -> CheckResult:
    """The kernel's view (/proc/driver/nvidia, PCI enumeration) against NVML's and the claim's
    count (`gpuproof.identity`); host-sent, shadow mode by default."""
    count = ctx.claim.gpu_count if ctx.claim is not None else len(ctx.signed.report.inventory.gpus)
    reasons, details = kernel_reasons(ctx.signed.report.inventory, count)
    return check("kernel_identity", reasons, **details)


def check_findings(ctx: Context, facts: MeasuredFacts) -> tuple[list[CheckResult], Findings | None]:
    """The report against its claim, as the committee will see it (`committee.findings`), scored
    from what the service measured (`facts`): `findings` (GPU count and every GPU's identified model
    equal the claim, each GPU's self-measured BF16 rate inside the claimed model's envelope, a
    missing figure is a failure, calc_point from the evidence), `measured_model` (the claimed model
    among those the service-timed proof and the capacity phase fit; MIG and vGPU refused), and,
    shadow by default, `model_cross_checks`, `evidence` (inputs not proven) and `dbc_minimums`."""
    if ctx.claim is None:
        return [check("findings", [Reason("claim_missing", "no claim to hold the report to")])], None
    found = findings_from_report(
        ctx.machine.machine_id,
        ctx.machine.region,
        ctx.signed.report,
        ctx.claim,
        allow_cpu_backend=ctx.svc.allow_cpu_backend,
        facts=facts,
    )
    a = found.assessment
    model = [] if a is None else a.model_reasons
    results = [
        check(
            "findings",
            [p for p in found.problems if p not in model],  # never empty without CommitteeUploadInfo
            upload_info=found.fields,
            gpus=found.rows,
            performance_index=found.performance_index,
        ),
    ]
    if a is not None:
        results += [
            check("measured_model", model, gpus=[g.as_dict() for g in a.gpus]),
            check("model_cross_checks", a.ceiling_reasons),
            check("evidence", a.unproven, breakdown_digest=found.evidence.get("digest")),
            check("dbc_minimums", a.minimums, ram_gb=a.scored.ram_gb, gpu_num=a.scored.gpu_num),
        ]
    return results, found


# A self-reported bf16 rate this far above the service-timed proven rate is not believed.
SELF_REPORT_OVER_PROVEN = 1.5


def _delivered_proof(
    ctx: Context, raw: dict[str, Any]
) -> tuple[ThroughputProof | None, list[Reason], dict[str, Any]]:
    """The transcript the report references, fetched from the store (streamed, bounded, its
    SHA-256 compared to the signed reference's) and decoded."""
    ref, reasons = parse_reference(raw)
    if ref is None:
        return None, reasons, {}
    ch = ctx.challenge
    limit = transcript_limit(ctx.svc.transcript_max_bytes_per_gpu, len(stored_proof_params(ch.params)))
    details: dict[str, Any] = {
        "transcript": {
            "key": transcript_key(ctx.machine.machine_id, ch.challenge_id),
            "version": ref.version,
            "bytes": ref.transcript_bytes,
            "sha256": ref.transcript_sha256,
            "limit_bytes": limit,
            "delivered": False,
        }
    }
    if ctx.svc.transcripts is None:
        return None, [Reason("transcript_missing", "this service has no transcript store")], details
    data, reasons = ctx.svc.transcripts.read(ctx.machine.machine_id, ch.challenge_id, ref, limit)
    if data is None:
        return None, reasons, details
    details["transcript"]["delivered"] = True  # size and SHA-256 are the signed reference's
    proof, reasons = decode(ref, data, stored_proof_params(ch.params))
    return proof, reasons, details


def _proof_reasons(ctx: Context) -> tuple[list[Reason], dict[str, Any]]:
    raw = ctx.signed.report.proof
    if raw is None:
        return [Reason("proof_missing", "the report carries no proof of throughput")], {}
    delivery: dict[str, Any] = {}
    try:
        if is_reference(raw):
            delivered, reasons, delivery = _delivered_proof(ctx, raw)
            if delivered is None:
                return reasons, delivery
            proof = delivered
        else:
            proof = ThroughputProof.model_validate(raw)
    except ValidationError as exc:
        unsupported = codes.unsupported_version(exc)
        if unsupported is not None:
            return [Reason(codes.VERSION_UNSUPPORTED, unsupported, "proof")], delivery
        return [Reason("proof_malformed", f"the proof does not parse: {exc.error_count()} errors")], delivery
    ch = ctx.challenge
    if ch.commitment_sha256 is None or ch.commitment_received_at is None or ch.pairs is None:
        return [Reason("proof_commitment_missing", "no commitment was received for this challenge")], delivery
    if hashlib.sha256(proof.commitment.signing_bytes()).hexdigest() != ch.commitment_sha256:
        return [
            Reason("proof_commitment_changed", "the report's commitment is not the one the service timed")
        ], delivery
    try:
        params = stored_proof_params(ch.params)
    except ValidationError as exc:
        message = codes.unsupported_version(exc) or "the challenge's proof parameters do not parse"
        return [Reason(codes.VERSION_UNSUPPORTED, message, "challenge.params")], delivery
    reasons = verify_throughput(
        proof,
        machine_id=ctx.machine.machine_id,
        challenge_id=ch.challenge_id,
        nonce=bytes.fromhex(ch.nonce),
        params=params,
        pairs=[GpuPairs.model_validate(p) for p in ch.pairs],
        issued_at=ch.issued_at,
        commitment_received_at=ch.commitment_received_at,
    )
    elapsed = ch.commitment_received_at - ch.issued_at
    per_gpu = []
    for p in params:
        # int8 ops per second under the service's clock; a bf16 rate above 1.5x it is not believed
        # (no part runs bf16 faster than int8).
        proven = p.ops / elapsed / 1e12 if elapsed > 0 else None
        per_gpu.append(
            {
                "gpu_index": p.gpu_index,
                "ops": p.ops,
                "claimed_rate_tops": p.claimed_rate_tops,
                "proven_tops_lower_bound": proven,
                "deadline_s": p.deadline_s,
            }
        )
        gpu = next((g for g in ctx.signed.report.inventory.gpus if g.index == p.gpu_index), None)
        reported = measured_bf16(ctx.signed.report, gpu) if gpu is not None else None
        if not reasons and proven and reported and reported > SELF_REPORT_OVER_PROVEN * proven:
            reasons.append(
                Reason(
                    "benchmark_exceeds_proven",
                    f"GPU {p.gpu_index} reports {reported:.1f} TFLOPS bf16 but proved only "
                    f"{proven:.1f} TOPS int8 under the service's clock",
                )
            )
    return reasons, {
        "elapsed_s": elapsed,
        "commitment_sha256": ch.commitment_sha256,
        "gpus": per_gpu,
        **delivery,
    }


def check_proof(ctx: Context) -> CheckResult:
    """The proof of throughput, timed by the service's clock and verified by exact row checks."""
    reasons, details = _proof_reasons(ctx)
    return check("proof_of_throughput", reasons, **details)


CAPACITY_CHECK = "capacity"


def _capacity(ctx: Context) -> tuple[list[Reason], dict[str, Any] | None]:
    """The capacity phase (docs/protocol.md §17) from the service's own records in the challenge
    (its nonces, its clock) and the host's openings (the binary transcript, inline in the challenge
    or uploaded; decoded to views of its bytes); the record is `CapacityResult.as_record`."""
    ch = ctx.challenge
    missing = capacity_codes.MISSING
    if ctx.claim is None:
        return [Reason(missing, "no claim to size the capacity phase from")], None
    try:
        params = stored_capacity_params(ch.params)
    except (ValidationError, ValueError):
        params = None
    if params is None:
        return [Reason(missing, "the challenge carries no capacity phase")], None
    mismatch = capacity_params_reasons(ch.params, ctx.claim)
    if mismatch:
        return mismatch, None
    if ch.capacity is None:
        return [Reason(missing, "the capacity phase was never opened")], None
    nonce, session = load_session(params, ch.capacity)
    if session.signed is None or session.commitment_received_at is None:
        return [Reason(missing, "no capacity commitment was received")], None
    if session.draw_secret is None:
        return [Reason(capacity_codes.ROUND_MISSING, "the read rounds were not all answered")], None
    malformed = capacity_codes.OPENING_MALFORMED
    try:
        ref = openings_reference(ch)
    except ValidationError:
        return [Reason(malformed, "the capacity openings' reference does not parse")], None
    data: bytes | bytearray | None = ch.capacity_openings
    if ref is not None:
        if ctx.svc.transcripts is None:
            return [Reason("transcript_missing", "this service has no transcript store")], None
        limit = openings_limit(params)
        mid = ctx.machine.machine_id
        data, reasons = ctx.svc.transcripts.read(mid, ch.challenge_id, ref, limit, OPENINGS_SUFFIX)
        if data is None:
            return reasons, None  # absent, or not the referenced bytes (size, SHA-256)
    if data is None:
        return [Reason(missing, "no capacity openings were received")], None
    try:
        openings = decode_openings(data, params)
    except OpeningsError as exc:
        return [Reason(exc.code, f"the capacity openings do not decode: {exc}", "capacity.openings")], None
    result = verify_capacity(
        params,
        machine_id=ctx.machine.machine_id,
        challenge_id=ch.challenge_id,
        nonce=nonce,
        signed=session.signed,
        phase_opened_at=session.opened_at,
        commitment_received_at=session.commitment_received_at,
        rounds=session.rounds,
        draw_secret=session.draw_secret,
        openings=openings,
    )
    return list(result.reasons), result.as_record()


def check_capacity(ctx: Context) -> CheckResult:
    """VRAM and host RAM held, proven by the capacity phase. In shadow (CapacityEnforcement, the
    default) its reasons are recorded and do not refuse; its record is verification["capacity"]."""
    reasons, record = _capacity(ctx)
    return check(CAPACITY_CHECK, reasons, record=record)


CHECKS: list[Callable[[Context], CheckResult]] = [
    check_signature,
    check_claim,
    check_integrity,
    check_inventory,
    check_benchmarks,
    check_gpu_uuids,
    check_kernel_identity,
    check_proof,
    check_capacity,
]

# New to production: recorded, not deciding, until EnforceChecks names them (docs/operations.md).
SHADOW_BY_DEFAULT = frozenset(
    {"kernel_identity", "model_cross_checks", "evidence", "dbc_minimums", CAPACITY_CHECK}
)


def is_shadow(name: str, svc: VerifyServices) -> bool:
    return name in svc.shadow_checks or (name in SHADOW_BY_DEFAULT and name not in svc.enforced_checks)


def run_checks(ctx: Context, checks: list[Callable[[Context], CheckResult]]) -> list[CheckResult]:
    results = []
    for fn in checks:
        result = fn(ctx)
        result.shadow = is_shadow(result.name, ctx.svc)
        results.append(result)
    return results


def evidence_results(
    ctx: Context, results: list[CheckResult], capacity_doc: Any
) -> tuple[list[CheckResult], dict[str, Any]]:
    """The findings and evidence checks on what the checks before measured, and the verification
    fields they add (`evidence`: the breakdown; `capacity`: the capacity phase's record as given)."""
    capacity, capacity_reasons = parse_capacity(capacity_doc)
    throughput = throughput_from_checks([r.as_dict() for r in results])
    found, findings = check_findings(ctx, MeasuredFacts(throughput, capacity, tuple(capacity_reasons)))
    proof_shadow = any(r.name == "proof_of_throughput" and r.shadow for r in results)
    for r in found:
        # The measured model rests on the proof's timing: while the proof of throughput is in
        # shadow mode (deadline calibration), so is the model check; scoring stays fail-closed.
        r.shadow = is_shadow(r.name, ctx.svc) or (r.name == "measured_model" and proof_shadow)
    extra: dict[str, Any] = {}
    if capacity_doc is not None:
        extra["capacity"] = capacity_doc
    if findings is not None and findings.evidence:
        extra["evidence"] = findings.evidence
    return found, extra


def verify_report(svc: VerifyServices, machine_id: str, challenge_id: str) -> dict[str, Any] | None:
    """Verify one stored report; returns the verification written, or None if nothing was due."""
    machine = svc.store.get_machine(machine_id)
    stored = svc.store.get_report(machine_id, challenge_id)
    challenge = svc.store.get_challenge(challenge_id)
    if machine is None or stored is None or challenge is None:
        raise LookupError(f"nothing to verify for {machine_id}/{challenge_id}")
    if stored.verification is not None or machine.state != MachineState.submitted:
        return None  # a redelivery: the first delivery already decided
    claim: Claim | None = None
    claim_problems: list[Reason] = []
    try:
        claim = claim_of(challenge.params)
    except ClaimError as exc:
        claim_problems = exc.reasons
    try:
        signed = SignedReport.model_validate(stored.signed_report)
    except ValidationError as exc:
        # Stored before today's bounds: refused with the reason, never retried forever.
        results = [
            check(
                "report_schema",
                [
                    Reason(
                        "report_schema_invalid",
                        f"the stored report breaks the wire model: {exc.error_count()} errors",
                    )
                ],
            )
        ]
        return _record(svc, machine, stored, claim, results, [])
    ctx = Context(machine, challenge, stored, signed, svc, claim, claim_problems)
    results = run_checks(ctx, CHECKS)
    # The capacity phase's record (check_capacity); absent, nothing it proves is proven (fail closed).
    found, extra = evidence_results(ctx, results, capacity_record(results))
    return _record(svc, machine, stored, claim, results + found, gpu_uuids(signed)[0], extra)


def capacity_record(results: list[CheckResult]) -> Any:
    """The capacity phase's record for this challenge (`verification["capacity"]`, from
    `check_capacity`); None when nothing was verified (docs/scoring.md): every input it proves is
    then not proven."""
    capacity = next((r for r in results if r.name == CAPACITY_CHECK), None)
    return None if capacity is None else capacity.details.get("record")


def _record(
    svc: VerifyServices,
    machine: Machine,
    stored: StoredReport,
    claim: Claim | None,
    results: list[CheckResult],
    uuids: list[str],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the verification and the machine's attempts (a refusal is a failed attempt)."""
    deciding = [r for r in results if r.status == "fail" and not r.shadow]
    passed = not deciding
    now = svc.clock.now()
    verification: dict[str, Any] = {
        "passed": passed,
        # The claim the report was held to; the draw and the committee score it from here.
        "claim": None if claim is None else claim.as_dict(),
        "verified_at": now,
        "reasons": [reason.as_dict() for r in deciding for reason in r.reasons],
        "checks": [r.as_dict() for r in results],
        **(extra or {}),
    }
    state = MachineState.auto_verified if passed else MachineState.refused
    attempts = after_verification(
        machine.attempts, stored.challenge_id, passed, svc.clock.now(), svc.cooldown
    )
    verification["attempts"] = attempts.as_dict()
    revocation = None
    if not passed and machine.scored:
        # A scored machine failed its re-verification: the score on chain no longer holds.
        codes = sorted({r.code for res in deciding for r in res.reasons})
        revocation = revoked_verdict(
            machine,
            Reason("reverification_failed", f"the re-verification was refused: {', '.join(codes)}"),
            {"challenge_id": stored.challenge_id, "report_sha256": stored.report_sha256, "reasons": codes},
            now,
        )
        verification["revoked_verdict_id"] = None if revocation is None else revocation.verdict_id
    svc.store.record_verification(
        stored,
        verification,
        state,
        uuids if passed else [],
        attempts,
        held=machine.gpu_uuids,
        revocation=revocation,
    )
    return verification
