"""A committee member's work as plain functions: talk to the committee API, inspect a transcript
(re-verify the signed report and the proof of throughput locally, with the member's OWN random
row checks), commit blake2_128 of the findings, reveal them, and the bot agent's loop.

The CLI (`gpuproof.cli.committee`), `make demo` and the e2e tests all run these functions.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
from pydantic import ValidationError

from gpuproof.claim import (
    Claim,
    ClaimError,
    claim_of,
    params_reasons,
    stored_capacity_params,
    stored_cpu_deadline,
    verified_claim,
)
from gpuproof.cli.output import backoff_delay, duration, unreachable_message, when
from gpuproof.committee.capacity import CapacityComparison, PhaseSession, compare, recheck
from gpuproof.committee.findings import Findings, findings_from_report
from gpuproof.evidence import MeasuredFacts, Throughput, parse_capacity
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.capacity.openings import (
    INLINE_ENCODING,
    load_openings,
    openings_limit,
)
from gpuproof.protocol.capacity.wire import OpenedTarget
from gpuproof.protocol.client import ServiceError, SignedClient
from gpuproof.protocol.dbc_commit import CommitteeUploadInfo
from gpuproof.protocol.delivery import (
    MAX_TRANSCRIPT_BYTES,
    TranscriptRef,
    decode,
    is_reference,
    parse_reference,
    read_verified,
)
from gpuproof.protocol.proof import ProofParams, ThroughputProof, codes, verify_throughput
from gpuproof.protocol.reasons import Reason
from gpuproof.protocol.report import SignedReport

STATE_MODE = 0o600
Log = Callable[[str], None]
# Runs the member's live check on a round's transcript and folds it into its inspection (cli/live.py).
LiveChecker = Callable[[dict[str, Any], "Inspection"], "Inspection"]


ApiError = ServiceError  # the committee CLI's name for a refusal; one type for both clients


class CommitteeClient(SignedClient):
    """The committee API, every request signed with the member's key."""

    def beacon(self) -> Any:
        return self.request("GET", "/beacon")

    def register(self, linked_accounts: list[str]) -> Any:
        return self.request("POST", "/members", {"account": self.account, "linked_accounts": linked_accounts})

    def retire(self) -> Any:
        return self.request("POST", f"/members/{self.account}/retire", {})

    def assignments(self) -> list[dict[str, Any]]:
        return list(self.assignments_doc()["assignments"])

    def assignments_doc(self) -> dict[str, Any]:
        """The member's record (`member`) and the rounds it was drawn for (`assignments`)."""
        doc: dict[str, Any] = self.request("GET", f"/members/{self.account}/assignments")
        return doc

    def round(self, machine_id: str, round_no: int) -> Any:
        return self.request("GET", f"/rounds/{machine_id}/{round_no}")

    def transcript(self, machine_id: str, round_no: int) -> Any:
        return self.request("GET", f"/rounds/{machine_id}/{round_no}/transcript")

    def capacity_session(self, machine_id: str, round_no: int) -> Any:
        """The round's capacity session (a signed GET: drawn members of the open round only)."""
        return self.request("GET", f"/rounds/{machine_id}/{round_no}/capacity")

    def commit(self, machine_id: str, round_no: int, commit_hash: str) -> Any:
        return self.request("POST", f"/rounds/{machine_id}/{round_no}/commit", {"commit_hash": commit_hash})

    def reveal(
        self,
        machine_id: str,
        round_no: int,
        info: CommitteeUploadInfo,
        live_check: dict[str, Any] | None = None,
    ) -> Any:
        body: dict[str, Any] = {"info": info.model_dump(mode="json")}
        if live_check is not None:
            body["live_check"] = live_check
        return self.request("POST", f"/rounds/{machine_id}/{round_no}/reveal", body)


# ------------------------------------------------------------------------------------ inspection
# Fetches a URL as chunks of bytes (tests and other transports may pass their own).
Fetch = Callable[[str], Iterator[bytes]]
FETCH_CHUNK_BYTES = 1024 * 1024


def http_fetch(url: str) -> Iterator[bytes]:
    """GET `url` streamed (the presigned transcript URL); an HTTP error is an ApiError."""
    with requests.get(url, stream=True, timeout=60) as response:
        if response.status_code >= 400:
            raise ApiError(response.status_code, "transcript_unavailable", response.text[:300], [])
        yield from response.iter_content(FETCH_CHUNK_BYTES)


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Inspection:
    """What this member found in one round's evidence; `supports` is its own judgement."""

    machine_id: str
    round: int
    checks: list[Check]
    fields: dict[str, Any] | None
    rows: list[dict[str, Any]]
    performance_index: float | None
    proof_status: str
    expected_info: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    # The member's own live check of the machine (cli/live.py), when it ran one: revealed with the vote.
    live_check: dict[str, Any] | None = None
    # The per-input breakdown this member computed (docs/scoring.md), re-checked against the service's.
    evidence: dict[str, Any] = field(default_factory=dict)
    # This member's own re-check of the capacity phase against the service's record (per target).
    capacity: dict[str, Any] = field(default_factory=dict)

    @property
    def supports(self) -> bool:
        return self.fields is not None and all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "supports": self.supports, "problems": self.problems}


def _delivered(
    transcript: dict[str, Any], proof_doc: dict[str, Any], fetch: Fetch, params: list[ProofParams]
) -> tuple[ThroughputProof | None, Check]:
    """The uploaded transcript the signed report references: fetched, bounded by the size the
    machine signed, its SHA-256 compared to the signed one, decoded. The service is not trusted."""
    ref, reasons = parse_reference(proof_doc)
    if ref is None:
        return None, Check("transcript", False, "; ".join(r.message for r in reasons))
    where = transcript.get("transcript") or {}
    if not where.get("url"):
        return None, Check("transcript", False, "the service gave no URL for the uploaded transcript")
    try:
        data, reasons = read_verified(fetch(str(where["url"])), ref, MAX_TRANSCRIPT_BYTES)
    except (ApiError, requests.RequestException) as exc:
        return None, Check("transcript", False, f"could not fetch the transcript: {exc}")
    if data is None:
        return None, Check("transcript", False, "; ".join(f"{r.code}: {r.message}" for r in reasons))
    proof, reasons = decode(ref, data, params)
    if proof is None:
        return None, Check("transcript", False, "; ".join(f"{r.code}: {r.message}" for r in reasons))
    detail = f"{ref.transcript_bytes} bytes, sha256 {ref.transcript_sha256[:16]}… as signed (v{ref.version})"
    return proof, Check("transcript", True, detail)


def _proof_checks(
    transcript: dict[str, Any],
    signed: SignedReport,
    rng: np.random.Generator,
    fetch: Fetch = http_fetch,
    verified: list[ThroughputProof] | None = None,
) -> tuple[list[Check], str]:
    """The proof re-verified with this member's own row checks; a verified proof is appended to
    `verified` (the member scores the throughput from it and the challenge's service-clock times)."""
    challenge = transcript.get("challenge") or {}
    params_doc = (challenge.get("params") or {}).get("proof")
    proof_doc = signed.report.proof
    if proof_doc is None:
        if params_doc:
            return [
                Check("proof", False, "the challenge asked for a proof of throughput; the report has none")
            ], ("missing")
        return [], "no proof in this report (the challenge asked for none)"
    if not params_doc:
        return [
            Check("proof", False, "the report carries a proof but the challenge has no proof parameters")
        ], ("unexpected")
    delivery: list[Check] = []
    try:
        params = [ProofParams.model_validate(p) for p in params_doc]
        if is_reference(proof_doc):
            fetched, delivered = _delivered(transcript, proof_doc, fetch, params)
            if fetched is None:
                return [delivered], "undelivered"
            proof, delivery = fetched, [delivered]
        else:
            proof = ThroughputProof.model_validate(proof_doc)
    except ValidationError as exc:
        unsupported = codes.unsupported_version(exc)
        if unsupported is not None:
            return [Check("proof", False, f"{codes.VERSION_UNSUPPORTED}: {unsupported}")], "failed"
        return [Check("proof", False, f"proof_malformed: {exc.error_count()} errors")], "failed"
    secret = challenge.get("pairs_secret")
    reasons = verify_throughput(
        proof,
        machine_id=signed.report.machine_id,
        challenge_id=str(challenge["challenge_id"]),
        nonce=bytes.fromhex(str(challenge["nonce"])),
        params=params,
        pairs_secret=bytes.fromhex(secret) if secret else None,
        issued_at=challenge.get("issued_at"),
        commitment_received_at=challenge.get("commitment_received_at"),
        rng=rng,
    )
    if reasons:
        return [*delivery, Check("proof", False, "; ".join(f"{r.code}: {r.message}" for r in reasons))], (
            "failed"
        )
    checks = sum(p.checks for p in params)
    if verified is not None:
        verified.append(proof)
    return [
        *delivery,
        Check("proof", True, f"Merkle paths and {checks} pairs re-checked with this member's own x"),
    ], "verified"


def _claim_check(challenge: dict[str, Any], verification: dict[str, Any]) -> tuple[Check, Claim | None]:
    """The claim the report is held to: the challenge's (its proof parameters recomputed here),
    else (the challenge expired from the service's table) the one the verification recorded."""
    try:
        if challenge.get("params"):
            claim = claim_of(challenge["params"])
            # A CPU claim's deadline is the service's setting (CpuProofDeadlineSeconds): taken as
            # issued, never below the derived one; every other parameter is recomputed.
            floor = stored_cpu_deadline(challenge["params"]) if claim.cpu else 0.0
            wrong = params_reasons(challenge["params"], claim, cpu_deadline_s=floor)
            if wrong:
                return Check("claim", False, "; ".join(r.message for r in wrong)), claim
            source = "the challenge (its proof parameters recomputed)"
        else:
            claim = verified_claim(verification)
            source = "the service's verification record (the challenge has expired)"
    except ClaimError as exc:
        return Check("claim", False, "; ".join(r.message for r in exc.reasons)), None
    what = "no GPU (CPU only)" if claim.cpu else f"{claim.gpu_count} x {claim.gpu_model}"
    return Check("claim", True, f"claimed {what}, from {source}"), claim


@dataclass(frozen=True)
class CapacityDelivery:
    """The round's capacity session as this member got it (GET /rounds/{m}/{r}/capacity), or why not."""

    doc: dict[str, Any] | None = None
    unavailable: str = ""


NOT_FETCHED = CapacityDelivery(None, "the capacity session was not fetched")


def fetch_capacity(client: CommitteeClient, machine_id: str, round_no: int) -> CapacityDelivery:
    """The capacity session, or why it is unavailable (refused, none stored, unreachable)."""
    try:
        doc = client.capacity_session(machine_id, round_no)
    except ApiError as exc:
        return CapacityDelivery(None, f"{exc.code} ({exc.status}): {exc}")
    except requests.RequestException as exc:
        return CapacityDelivery(None, f"the service is unreachable: {exc}")
    if not isinstance(doc, dict):
        return CapacityDelivery(None, "the capacity session is not a JSON object")
    return CapacityDelivery(doc)


def capacity_openings(doc: dict[str, Any], fetch: Fetch) -> tuple[list[OpenedTarget] | None, str]:
    """The host's openings from the session: inline (base64 of the stored bytes, bounded) or fetched
    from the presigned URLs (one object, or two parts, in order), bounded by the phase's limit,
    checked against the reference's size and SHA-256 (of their concatenation). Decoded by the one
    decoder every reader uses (`load_openings`)."""
    where = doc.get("openings")
    if where is None:
        return None, "no capacity openings were received"
    try:
        media_type = str(where["media_type"])
        params = PhaseSession.from_doc(doc).session.params
        limit = openings_limit(params)
        if where.get("delivery") == "inline":
            if where.get("encoding") != INLINE_ENCODING:
                return None, f"inline openings encoded as {where.get('encoding')!r}"
            encoded = str(where["data"])
            if len(encoded) > 4 * (limit // 3 + 1):
                return None, f"inline openings over the phase's bound ({limit} bytes)"
            return load_openings(base64.b64decode(encoded, validate=True), params, media_type), ""
        ref = TranscriptRef.model_validate(where["reference"])
        urls = [str(u) for u in where["urls"]]
        if len(urls) != len(ref.parts or [ref.transcript_bytes]):
            return None, f"{len(urls)} openings objects for a reference of {len(ref.parts or [1])}"
        data, reasons = read_verified((c for url in urls for c in fetch(url)), ref, limit)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        return None, f"the capacity openings do not decode: {exc}"
    except (ApiError, requests.RequestException) as exc:
        return None, f"could not fetch the capacity openings: {exc}"
    if data is None:
        return None, "; ".join(f"{r.code}: {r.message}" for r in reasons)
    try:
        return load_openings(data, params, media_type), ""
    except ValueError as exc:
        return None, f"the capacity openings do not decode: {exc}"


def capacity_comparison(
    transcript: dict[str, Any],
    delivery: CapacityDelivery,
    claim: Claim | None,
    rng: np.random.Generator,
    fetch: Fetch,
) -> CapacityComparison:
    """This member's own run of the capacity verifier on the service's recorded session and the
    host's openings, compared with the service's record and breakdown (`committee/capacity.py`)."""
    challenge = transcript.get("challenge") or {}
    verification = (transcript.get("report") or {}).get("verification") or {}
    service_doc = verification.get("capacity")
    breakdown = verification.get("evidence")
    machine_id = str(transcript["round"]["machine_id"])
    targets: list[int] = []
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        params = stored_capacity_params(challenge.get("params") or {})
        targets = [] if params is None else [t.target for t in params.targets]
    if delivery.doc is None:
        return compare(service_doc, breakdown, None, targets=targets, unavailable=delivery.unavailable)
    try:
        phase = PhaseSession.from_doc(delivery.doc)
    except (KeyError, TypeError, ValueError) as exc:
        why = f"the capacity session does not parse: {exc}"
        return compare(service_doc, breakdown, None, targets=targets, unavailable=why)
    signed = phase.session.signed
    commitment_signed = None
    if signed is not None:
        with contextlib.suppress(ValueError):
            commitment_signed = signed.commitment.machine_id == machine_id and signed.verifies()
    openings, why = capacity_openings(delivery.doc, fetch)
    mine, reasons = recheck(
        phase,
        openings,
        machine_id=machine_id,
        # The round's challenge, never the session's own word for it: a session of another
        # challenge fails the commitment's challenge check.
        challenge_id=str(transcript["round"]["challenge_id"]),
        challenge_params=challenge.get("params") or {},
        claim=claim,
        rng=rng,
    )
    return compare(
        service_doc,
        breakdown,
        mine,
        reasons,
        targets=targets,
        unavailable=why,
        commitment_signed=commitment_signed,
    )


def capacity_check(comparison: CapacityComparison) -> Check:
    """One line of the inspection: agreed (with what), or `member_capacity_mismatch` and why."""
    if comparison.agreed:
        return Check("capacity_recheck", True, comparison.detail())
    return Check(comparison.reason or "member_capacity_mismatch", False, comparison.detail())


def needs_capacity(transcript: dict[str, Any]) -> bool:
    """Whether the service recorded a capacity record to re-check (none: it proved nothing)."""
    verification = (transcript.get("report") or {}).get("verification") or {}
    return verification.get("capacity") is not None


def inspect_round(
    client: CommitteeClient,
    machine_id: str,
    round_no: int,
    *,
    allow_cpu_backend: bool = False,
    rng: np.random.Generator | None = None,
    fetch: Fetch = http_fetch,
) -> tuple[dict[str, Any], Inspection]:
    """The round's transcript and, where the service recorded a capacity phase, its capacity
    session, fetched and re-verified by this member; returns the transcript and the inspection."""
    transcript: dict[str, Any] = client.transcript(machine_id, round_no)
    capacity = fetch_capacity(client, machine_id, round_no) if needs_capacity(transcript) else NOT_FETCHED
    inspection = inspect_transcript(
        transcript, capacity=capacity, allow_cpu_backend=allow_cpu_backend, rng=rng, fetch=fetch
    )
    return transcript, inspection


def inspect_transcript(
    transcript: dict[str, Any],
    *,
    capacity: CapacityDelivery = NOT_FETCHED,
    allow_cpu_backend: bool = False,
    rng: np.random.Generator | None = None,
    fetch: Fetch = http_fetch,
) -> Inspection:
    """Re-verify the evidence of one round locally; trusts nothing the service concluded. The
    capacity phase is re-checked from `capacity` (the round's capacity session, `inspect_round`
    fetches it); without it, whatever the service says it proved is a mismatch (fail closed)."""
    rng = rng if rng is not None else np.random.default_rng(secrets.randbits(128))
    rnd = transcript["round"]
    machine = transcript["machine"]
    report_doc = transcript["report"]
    machine_id = str(rnd["machine_id"])
    signed = SignedReport.model_validate(report_doc["signed_report"])
    report = signed.report
    checks = [
        Check("report_signature", signed.verifies(), "the machine key signed these report bytes"),
        Check(
            "report_machine", report.machine_id == machine_id, f"the report names {report.machine_id[:16]}…"
        ),
    ]
    digest = hashlib.sha256(canonical_bytes(report_doc["signed_report"])).hexdigest()
    checks.append(Check("evidence_digest", digest == rnd["evidence_digest"], f"sha256 {digest[:16]}…"))
    challenge = transcript.get("challenge") or {}
    if challenge:
        ok = report.challenge_nonce == challenge.get("nonce") and report.challenge_id == challenge.get(
            "challenge_id"
        )
        checks.append(Check("challenge", ok, "the report answers this round's challenge nonce"))
    integ = report.integrity
    preload = [*([integ.ld_preload] if integ.ld_preload else []), *integ.ld_so_preload]
    checks.append(
        Check("integrity", not preload, f"preloaded libraries: {preload}" if preload else "no preload")
    )
    unverified = [f"{b.name}@{b.device}" for b in report.benchmarks if not b.verified]
    checks.append(
        Check("benchmarks", not unverified, f"unverified: {unverified}" if unverified else "all verified")
    )
    verified: list[ThroughputProof] = []
    proof_checks, proof_status = _proof_checks(transcript, signed, rng, fetch, verified)
    checks += proof_checks
    service_record = report_doc.get("verification") or {}
    claim_check, claim = _claim_check(challenge, service_record)
    checks.append(claim_check)
    commitment = hashlib.sha256(verified[0].commitment.signing_bytes()).hexdigest() if verified else None
    comparison = capacity_comparison(transcript, capacity, claim, rng, fetch)
    checks.append(capacity_check(comparison))
    facts = member_facts(challenge, commitment, comparison.record)
    findings = (
        Findings(None, [Reason("claim_missing", "no claim to hold the report to")])
        if claim is None
        else findings_from_report(
            machine_id,
            str(machine["region"]),
            report,
            claim,
            allow_cpu_backend=allow_cpu_backend,
            facts=facts,
        )
    )
    for p in findings.problems:
        checks.append(Check(p.code, False, p.message))
    if findings.evidence:
        checks.append(breakdown_check(findings.evidence, service_record.get("evidence")))
    notes = []
    if proof_status.startswith("no proof"):
        notes.append("NO PROOF IN THIS REPORT: throughput is not proven, only the self-measured benchmarks")
    if not report.inventory.gpus:
        notes.append("CPU backend: no GPU in this report (accepted only where the CPU backend is allowed)")
    return Inspection(
        machine_id=machine_id,
        round=int(rnd["round"]),
        checks=checks,
        fields=findings.fields,
        rows=findings.rows,
        performance_index=findings.performance_index,
        proof_status=proof_status,
        expected_info=rnd.get("expected_info"),
        notes=notes,
        evidence=findings.evidence,
        capacity=comparison.as_dict(),
    )


def member_facts(
    challenge: dict[str, Any], commitment_sha256: str | None, capacity_doc: Any
) -> MeasuredFacts:
    """What the member scores from: the throughput only when it re-verified the proof itself
    (`commitment_sha256` of the proof it verified; None when it did not; the elapsed time from the
    challenge's service-clock times, the service's only timing), and `capacity_doc`, the capacity
    record this member re-verified itself (`CapacityComparison.record`: its own result, or the
    service's where that proves nothing)."""
    capacity, reasons = parse_capacity(capacity_doc)
    throughput = None
    issued, received = challenge.get("issued_at"), challenge.get("commitment_received_at")
    params_doc = (challenge.get("params") or {}).get("proof") or []
    if (
        commitment_sha256 is not None
        and isinstance(issued, int | float)
        and isinstance(received, int | float)
    ):
        params = [ProofParams.model_validate(p) for p in params_doc]
        digest = commitment_sha256
        throughput = Throughput(True, received - issued, {p.gpu_index: float(p.ops) for p in params}, digest)
    return MeasuredFacts(throughput, capacity, tuple(reasons))


def breakdown_check(mine: dict[str, Any], service: Any) -> Check:
    """The member's own per-input breakdown against the one the service recorded."""
    if not isinstance(service, dict):
        return Check("evidence_breakdown", False, "the service recorded no per-input breakdown")
    if mine.get("digest") == service.get("digest"):
        return Check(
            "evidence_breakdown", True, f"same per-input breakdown (sha256 {str(mine['digest'])[:16]}…)"
        )
    theirs = {i.get("input"): i.get("value") for i in service.get("inputs") or [] if isinstance(i, dict)}
    differ = [
        f"{i['input']}: mine {i['value']}, service {theirs.get(i['input'])}"
        for i in mine.get("inputs") or []
        if theirs.get(i["input"]) != i["value"]
    ]
    return Check("evidence_breakdown", False, "; ".join(differ) or "the breakdowns differ (digest)")


def upload_info(inspection: Inspection, rand_str: str) -> CommitteeUploadInfo:
    """The member's CommitteeUploadInfo: its findings and its own judgement (is_support)."""
    if inspection.fields is not None:
        return CommitteeUploadInfo(**inspection.fields, rand_str=rand_str, is_support=inspection.supports)
    return CommitteeUploadInfo(
        machine_id=inspection.machine_id,
        gpu_type="",
        gpu_num=0,
        cuda_core=0,
        gpu_mem=0,
        calc_point=0,
        sys_disk=0,
        data_disk=0,
        cpu_type="",
        cpu_core_num=0,
        cpu_rate=0,
        mem_num=0,
        rand_str=rand_str,
        is_support=False,
    )


# ------------------------------------------------------------------------------------ local state
class MemberState:
    """Votes this member committed (with their secret rand_str), in a JSON file of mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {"votes": {}}
        loaded: dict[str, Any] = json.loads(self.path.read_text())
        return loaded

    def _save(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, STATE_MODE)
        try:
            os.fchmod(fd, STATE_MODE)
            os.write(fd, json.dumps(doc, indent=2, sort_keys=True).encode())
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    @staticmethod
    def key(machine_id: str, round_no: int) -> str:
        return f"{machine_id}:{round_no}"

    def get(self, machine_id: str, round_no: int) -> dict[str, Any] | None:
        with self._lock:
            vote: dict[str, Any] | None = self._load()["votes"].get(self.key(machine_id, round_no))
            return vote

    def put_new(self, machine_id: str, round_no: int, vote: dict[str, Any]) -> dict[str, Any]:
        """Save `vote` unless a vote for this round is saved already; returns the saved one."""
        with self._lock:
            doc = self._load()
            saved: dict[str, Any] | None = doc["votes"].get(self.key(machine_id, round_no))
            if saved is not None:
                return saved
            doc["votes"][self.key(machine_id, round_no)] = vote
            self._save(doc)
            return vote

    def put(self, machine_id: str, round_no: int, vote: dict[str, Any]) -> None:
        with self._lock:
            doc = self._load()
            doc["votes"][self.key(machine_id, round_no)] = vote
            self._save(doc)


class CommitConflict(ValueError):
    """The service holds a commit of this member that the saved vote does not explain."""


def commit_findings(
    client: CommitteeClient, state: MemberState, inspection: Inspection
) -> CommitteeUploadInfo:
    """Commit blake2_128 of this member's CommitteeUploadInfo; rand_str is saved before sending.

    Safe to run again: a saved vote is never replaced. If it was accepted it is returned as it
    is (nothing sent); if its answer never came back the same hash is sent again, and a 409
    `already_committed` is checked against the round's published commits — ours, so it is
    marked committed, or another one (`CommitConflict`)."""
    mid, rno = inspection.machine_id, inspection.round
    vote = state.get(mid, rno)
    if vote is None:
        info = upload_info(inspection, secrets.token_hex(8))
        vote = {
            "info": info.model_dump(mode="json"),
            "commit_hash": info.commit_hash_hex(),
            "committed": False,
            "revealed": False,
            "live_check": inspection.live_check,
        }
        vote = state.put_new(mid, rno, vote)
    info = CommitteeUploadInfo.model_validate(vote["info"])
    if vote.get("committed"):
        return info
    try:
        client.commit(mid, rno, str(vote["commit_hash"]))
    except ApiError as exc:
        if exc.code != "already_committed":
            raise
        theirs = (client.round(mid, rno).get("commits") or {}).get(client.account, {}).get("commit_hash")
        if theirs != vote["commit_hash"]:
            raise CommitConflict(
                f"the service holds another commit of this member ({theirs}) than the vote saved in "
                f"{state.path} ({vote['commit_hash']}): it cannot be revealed from this state"
            ) from exc
    state.put(mid, rno, {**vote, "committed": True})
    return info


def reveal_findings(
    client: CommitteeClient, state: MemberState, machine_id: str, round_no: int
) -> CommitteeUploadInfo:
    vote = state.get(machine_id, round_no)
    if vote is None:
        raise LookupError(f"no committed vote for {machine_id} round {round_no} in {state.path}")
    info = CommitteeUploadInfo.model_validate(vote["info"])
    client.reveal(machine_id, round_no, info, vote.get("live_check"))
    state.put(machine_id, round_no, {**vote, "revealed": True})
    return info


# ------------------------------------------------------------------------------------ the agent
@dataclass
class AgentAction:
    machine_id: str
    round: int
    action: str  # committed | revealed | failed
    detail: str = ""


def agent_tick(
    client: CommitteeClient,
    state: MemberState,
    *,
    allow_cpu_backend: bool = False,
    rng: np.random.Generator | None = None,
    log: Log = lambda _m: None,
    announced: set[str] | None = None,
    live: LiveChecker | None = None,
) -> list[AgentAction]:
    """One pass over this member's open assignments: inspect (and, with `live`, run its own live
    check of the machine) and commit in the commit phase, reveal in the reveal phase. Errors on
    one assignment never stop the others. A round not in `announced` is logged once as a new
    draw, with its deadlines (the member's notification)."""
    actions = []
    for a in client.assignments():
        if a["status"] != "open":
            continue
        mid, rno = str(a["machine_id"]), int(a["round"])
        if announced is not None and f"{mid}:{rno}" not in announced:
            announced.add(f"{mid}:{rno}")
            log(
                f"drawn for machine {mid} round {rno}: commit by {when(a['commit_deadline'])}, "
                f"reveal by {when(a['reveal_deadline'])}"
            )
        try:
            if a["phase"] == "commit" and not a["committed"]:
                transcript, inspection = inspect_round(
                    client, mid, rno, allow_cpu_backend=allow_cpu_backend, rng=rng
                )
                if live is not None and state.get(mid, rno) is None:
                    inspection = live(transcript, inspection)
                info = commit_findings(client, state, inspection)
                detail = f"is_support={info.is_support} calc_point={info.calc_point}"
                if not inspection.supports:
                    detail += f" problems={inspection.problems}"
                actions.append(AgentAction(mid, rno, "committed", detail))
            elif a["phase"] == "reveal" and a["committed"] and not a["revealed"]:
                info = reveal_findings(client, state, mid, rno)
                actions.append(AgentAction(mid, rno, "revealed", f"is_support={info.is_support}"))
        except (ApiError, LookupError, ValueError, requests.RequestException) as exc:
            actions.append(AgentAction(mid, rno, "failed", str(exc)))
    for act in actions:
        log(f"{act.action} {act.machine_id} round {act.round} {act.detail}")
    return actions


@dataclass
class PassStats:
    """The agent's passes: how many, how many could not even list the assignments, the last why."""

    passes: int = 0
    failed: int = 0
    consecutive_failed: int = 0
    last_error: str = ""
    last_unreachable: bool = False  # the last failure was the network's, not a refusal

    def summary(self, actions: list[AgentAction]) -> str:
        counts = {k: sum(a.action == k for a in actions) for k in ("committed", "revealed", "failed")}
        line = (
            f"{self.passes} pass(es), {self.failed} without the service; committed {counts['committed']}, "
            f"revealed {counts['revealed']}, failed {counts['failed']}"
        )
        return line + (f" (last error: {self.last_error})" if self.failed else "")


def run_agent(
    client: CommitteeClient,
    state: MemberState,
    *,
    interval_s: float = 5.0,
    once: bool = False,
    allow_cpu_backend: bool = False,
    stop: threading.Event | None = None,
    log: Log = lambda _m: None,
    stats: PassStats | None = None,
    live: LiveChecker | None = None,
) -> list[AgentAction]:
    """The bot member: `agent_tick` every `interval_s` until `stop` is set (or once). A pass that
    cannot list the assignments is logged in one line and the next waits longer (the interval
    doubled per failure in a row, at most 10 min: `backoff_delay`)."""
    stop = stop or threading.Event()
    stats = stats if stats is not None else PassStats()
    done: list[AgentAction] = []
    announced: set[str] = set()
    while True:
        started = time.monotonic()
        stats.passes += 1
        try:
            done += agent_tick(
                client, state, allow_cpu_backend=allow_cpu_backend, log=log, announced=announced, live=live
            )
            stats.consecutive_failed = 0
        except (ApiError, requests.RequestException) as exc:
            stats.failed += 1
            stats.consecutive_failed += 1
            why = str(exc) if isinstance(exc, ApiError) else unreachable_message(exc, client.api_url)
            stats.last_error = why
            stats.last_unreachable = not isinstance(exc, ApiError)
            wait = backoff_delay(interval_s, stats.consecutive_failed)
            log(f"assignments unavailable: {why}" + ("" if once else f"; next try in {duration(wait)}"))
        wait = backoff_delay(interval_s, stats.consecutive_failed)
        if once or stop.wait(max(0.0, wait - (time.monotonic() - started))):
            return done
