"""The signed report verifies; any changed byte or field fails."""

from __future__ import annotations

import json

import pytest

from benchmark_probe import __version__
from benchmark_probe.backends.cpu import CpuBackend
from benchmark_probe.bench import BenchPlan, run_benchmarks
from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fixed_host
from benchmark_probe.report import Challenge, ChallengeFormatError, build_report
from gpuproof.protocol.canonical import canonical_bytes
from gpuproof.protocol.keys import SigningKey, verify
from gpuproof.protocol.report import Integrity, SignedReport

KEY = SigningKey.from_seed(bytes(range(32)))
CHALLENGE = Challenge("ch-1", "ab" * 32, 1_900_000_000, {"steps": 4})


@pytest.fixture(scope="module")
def signed() -> SignedReport:
    nvml = NvmlTestDouble.with_gpus(2)
    inventory = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    benchmarks = run_benchmarks(CpuBackend(), BenchPlan.quick())
    integrity = Integrity(ld_preload="/x.so", container_hints=["/.dockerenv present"])
    return build_report(KEY, CHALLENGE, inventory, benchmarks, integrity, created_at=1_800_000_000)


def test_report_is_bound_to_key_challenge_and_version(signed: SignedReport) -> None:
    assert signed.verifies()
    r = signed.report
    assert (r.machine_id, r.challenge_id, r.challenge_nonce) == (KEY.public_hex, "ch-1", "ab" * 32)
    assert r.probe_version == __version__
    assert r.proof is None


def test_report_survives_the_wire(signed: SignedReport) -> None:
    wire = canonical_bytes(signed.model_dump(mode="json"))
    assert SignedReport.model_validate(json.loads(wire)).verifies()


def test_any_flipped_byte_of_the_signed_bytes_fails(signed: SignedReport) -> None:
    message = signed.report.signing_bytes()
    signature = bytes.fromhex(signed.signature)
    step = max(1, len(message) // 300)
    for i in range(0, len(message), step):
        tampered = bytearray(message)
        tampered[i] ^= 0x01
        assert not verify(KEY.public_hex, bytes(tampered), signature), i


def test_any_flipped_byte_on_the_wire_fails(signed: SignedReport) -> None:
    """The signature covers the canonical re-encoding: a flip either is refused or changes nothing."""
    wire = canonical_bytes(signed.model_dump(mode="json"))
    step = max(1, len(wire) // 300)
    for i in range(0, len(wire), step):
        tampered = bytearray(wire)
        tampered[i] ^= 0x01
        try:
            candidate = SignedReport.model_validate(json.loads(bytes(tampered)))
        except ValueError:  # JSON or schema refuses it: also a failure to pass
            continue
        # e.g. a float's 17th digit can parse to the same double: same report, same signature
        assert not candidate.verifies() or candidate == signed, i


def test_a_changed_field_fails(signed: SignedReport) -> None:
    report = signed.report
    faster = [b.model_copy(update={"median": b.median * 2}) for b in report.benchmarks]
    changes = [
        {"benchmarks": faster},
        {"challenge_nonce": "cd" * 32},
        {"inventory": report.inventory.model_copy(update={"notes": ["edited"]})},
        {"integrity": report.integrity.model_copy(update={"ld_preload": None})},
        {"proof": {"root": "00"}},
    ]
    for change in changes:
        assert not signed.model_copy(update={"report": report.model_copy(update=change)}).verifies(), change


def test_challenge_response_must_name_id_and_nonce() -> None:
    assert Challenge.from_json({"challenge_id": "c", "nonce": "AB" * 32}).nonce == "ab" * 32
    with pytest.raises(ChallengeFormatError, match="nonce"):
        Challenge.from_json({"challenge_id": "c"})
