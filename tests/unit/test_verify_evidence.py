"""The verify worker's evidence step (`logic/verification.py evidence_results`): the breakdown
recorded in the verification, the capacity record absent or present, and which checks decide."""

from __future__ import annotations

from typing import Any

from gpuproof.claim import Claim, proof_params_for
from gpuproof.logic.verification import CheckResult, Context, evidence_results, verify_report
from gpuproof.protocol.report import SignedReport
from tests.unit.evidence_facts import capacity_doc, throughput
from tests.unit.test_verify_bounds import CANONICAL, MID, gpu, services, signed_doc, store_for

H100 = "H100 SXM5 80GB"


def by_name(checks: list[Any]) -> dict[str, Any]:
    return {(c["name"] if isinstance(c, dict) else c.name): c for c in checks}


def context(shadow: frozenset[str] = frozenset()) -> Context:
    store = store_for(signed_doc([gpu(0, CANONICAL)]), gpu_count=1)
    svc = services(store)
    svc = type(svc)(**{**svc.__dict__, "shadow_checks": shadow})
    signed = SignedReport.model_validate(store.report.signed_report)
    return Context(store.machine, store.challenge, store.report, signed, svc, Claim(H100, 1), [])


def passing_proof(claim: Claim) -> CheckResult:
    """The proof check's record as `check_proof` writes it for a proof that passed in 20 s."""
    tp = throughput(claim)
    params = proof_params_for(claim)
    details = {
        "elapsed_s": tp.elapsed_s,
        "commitment_sha256": "aa" * 32,
        "gpus": [{"gpu_index": p.gpu_index, "ops": p.ops} for p in params],
    }
    return CheckResult("proof_of_throughput", "pass", [], details)


def test_a_verification_without_proof_or_capacity_records_the_breakdown_and_refuses() -> None:
    store = store_for(signed_doc([gpu(0, CANONICAL)]), gpu_count=1)
    verification = verify_report(services(store), MID, "ch")
    assert verification is not None and not verification["passed"]
    assert "capacity" not in verification  # absent: not proven
    checks = by_name(verification["checks"])
    assert checks["measured_model"]["status"] == "fail" and not checks["measured_model"]["shadow"]
    assert {r["code"] for r in checks["measured_model"]["reasons"]} == {
        "model_rate_not_proven",
        "model_capacity_missing",
    }
    for name in ("evidence", "dbc_minimums", "kernel_identity", "model_cross_checks"):
        assert checks[name]["shadow"], name
    breakdown = verification["evidence"]
    inputs = {i["input"]: i for i in breakdown["inputs"]}
    assert inputs["gpu_mem_GB"]["value"] == 0 and inputs["RAM_GB"]["status"] == "not_proven"
    assert breakdown["digest"] == checks["evidence"]["details"]["breakdown_digest"]


def test_a_passing_proof_and_capacity_record_prove_the_inputs() -> None:
    ctx = context()
    claim = Claim(H100, 1)
    found, extra = evidence_results(ctx, [passing_proof(claim)], capacity_doc(claim, ram_proven_gb=512))
    checks = by_name(found)
    # Every evidence check passes; `findings` refuses only for this bare report's missing BF16 figure.
    assert {c.name for c in found if c.status != "pass"} == {"findings"}
    assert {r.code for r in checks["findings"].reasons} == {"benchmark_missing"}
    assert extra["capacity"]["digest"] == "ef" * 32
    inputs = {i["input"]: i for i in extra["evidence"]["inputs"]}
    assert inputs["RAM_GB"]["status"] == "proven" and inputs["RAM_GB"]["value"] == 64  # declared 64 GiB
    assert inputs["gpu_num"]["status"] == "proven" and inputs["gpu_mem_GB"]["value"] == 80
    assert checks["findings"].details["upload_info"]["mem_num"] == 64


def test_absent_capacity_scores_no_more_than_failed() -> None:
    """A passing proof of throughput without a capacity record (the probe skipped the phase, or
    never sent its openings): nothing is counted, exactly as when the phase failed, and the
    measured model refuses with its own reason."""
    ctx = context()
    claim = Claim(H100, 1)
    absent_checks, absent = evidence_results(ctx, [passing_proof(claim)], None)
    _, present = evidence_results(ctx, [passing_proof(claim)], capacity_doc(claim))
    _, malformed = evidence_results(ctx, [passing_proof(claim)], {"version": 1, "gpus": "x"})
    _, failed = evidence_results(
        ctx, [passing_proof(claim)], capacity_doc(claim, passed=[False], ram_passed=False)
    )
    a, p, m, f = (x["evidence"]["calc_point"]["chain_value"] for x in (absent, present, malformed, failed))
    assert a == m == f == 0 < p
    assert absent["evidence"]["scored"]["gpu_num"] == 0
    model = by_name(absent_checks)["measured_model"]
    assert model.status == "fail" and {r.code for r in model.reasons} == {"model_capacity_missing"}


def test_the_model_check_follows_the_proof_into_shadow_mode() -> None:
    ctx = context(frozenset({"proof_of_throughput"}))
    late = CheckResult("proof_of_throughput", "fail", [], {}, shadow=True)
    found, _ = evidence_results(ctx, [late], None)
    assert by_name(found)["measured_model"].shadow and by_name(found)["measured_model"].status == "fail"
