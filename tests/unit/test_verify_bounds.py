"""The verify worker on hostile but bounded input: UUIDs normalised before uniqueness is claimed,
the GPUs-per-machine limit, reports stored before today's bounds; it never raises on them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pytest

from gpuproof.adapters.dynamo import claimed_uuids
from gpuproof.claim import Claim, challenge_params, claim_of
from gpuproof.logic.records import Attempts, Challenge, Machine, StoredReport, Verdict
from gpuproof.logic.states import MachineState
from gpuproof.logic.verification import (
    CHECKS,
    Context,
    VerifyServices,
    check_gpu_uuids,
    check_inventory,
    verify_report,
)
from gpuproof.protocol.gpu_uuid import normalise_gpu_uuid
from gpuproof.protocol.keys import SigningKey
from gpuproof.protocol.limits import (
    DYNAMODB_MAX_TRANSACTION_ITEMS,
    PROTOCOL_MAX_GPUS,
    VERIFICATION_FIXED_ITEMS,
)
from gpuproof.protocol.report import BenchmarkReport, GpuInfo, HostInfo, Integrity, Inventory, SignedReport

KEY = SigningKey.from_seed(bytes([5]) * 32)
MID = KEY.public_hex
CANONICAL = "GPU-5a5a5a10-1111-2222-3333-a5a5a5a5a510"
HOST = HostInfo(
    cpu_model="cpu",
    cpu_cores=8,
    cpu_mhz=3000,
    ram_bytes=64 << 30,
    sys_disk_bytes=1 << 40,
    data_disk_bytes=0,
    os="Linux",
    kernel="6.1",
)


class Clock:
    def now(self) -> float:
        return 1_800_000_000.0


class Store:
    """The verify worker's port, in memory: one machine, one challenge, one report."""

    def __init__(self, machine: Machine, challenge: Challenge, report: StoredReport) -> None:
        self.machine, self.challenge, self.report = machine, challenge, report
        self.owners: dict[str, str] = {}
        self.recorded: list[tuple[dict[str, Any], MachineState, list[str]]] = []

    def get_machine(self, machine_id: str) -> Machine | None:
        return self.machine

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        return self.challenge

    def get_report(self, machine_id: str, challenge_id: str) -> StoredReport | None:
        return self.report

    def gpu_uuid_owners(self, uuids: list[str]) -> dict[str, str]:
        return {u: self.owners[u] for u in uuids if u in self.owners}

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
        claimed_uuids(claim_uuids)  # the adapter's own bound, as DynamoDB would enforce it
        self.recorded.append((verification, state, claim_uuids))
        return True


def gpu(index: int, uuid: str) -> GpuInfo:
    return GpuInfo(
        index=index,
        name="NVIDIA H100 80GB HBM3",
        uuid=uuid,
        pci_bus_id=f"0:{index}",
        memory_total_bytes=80 << 30,
    )


def signed_doc(gpus: list[GpuInfo]) -> dict[str, Any]:
    report = BenchmarkReport(
        machine_id=MID,
        challenge_id="ch",
        challenge_nonce="cd" * 32,
        probe_version="t",
        created_at=int(time.time()),
        inventory=Inventory(backend="nvml", gpus=gpus, host=HOST),
        integrity=Integrity(),
    )
    return SignedReport.sign(report, KEY).model_dump(mode="json")


def store_for(doc: dict[str, Any], gpu_count: int = 0) -> Store:
    machine = Machine(MID, "owner", "europe", MachineState.submitted, 0.0, 0.0, last_challenge_id="ch")
    claim = Claim("H100 SXM5 80GB", gpu_count) if gpu_count else Claim(None, 0)
    challenge = Challenge("ch", MID, "cd" * 32, 0.0, 900.0, challenge_params(claim))
    return Store(machine, challenge, StoredReport(MID, "ch", 1.0, "00" * 32, doc))


def services(store: Store, max_gpus: int = 16) -> VerifyServices:
    return VerifyServices(
        store, Clock(), allow_cpu_backend=False, shadow_checks=frozenset(), max_gpus_per_machine=max_gpus
    )


def context(store: Store, max_gpus: int = 16) -> Context:
    return Context(
        store.machine,
        store.challenge,
        store.report,
        SignedReport.model_validate(store.report.signed_report),
        services(store, max_gpus),
        claim_of(store.challenge.params),
        [],
    )


@pytest.mark.parametrize(
    "raw",
    [
        CANONICAL,
        CANONICAL.upper(),
        "gpu-5A5A5A10-1111-2222-3333-A5A5A5A5A510",
        "5a5a5a10-1111-2222-3333-a5a5a5a5a510",
        f"  {CANONICAL}\t",
        f"{CANONICAL} ",
        "GPU-5a5a5a1011112222333 3a5a5a5a5a510".replace(" ", ""),
    ],
)
def test_normalise_gpu_uuid(raw: str) -> None:
    assert normalise_gpu_uuid(raw) == CANONICAL


@pytest.mark.parametrize(
    "raw",
    ["", "GPU-", "GPU-xyz", "MIG-5a5a5a10-1111-2222-3333-a5a5a5a5a510", CANONICAL + "0", "GPU-" + "g" * 32],
)
def test_malformed_gpu_uuid(raw: str) -> None:
    assert normalise_gpu_uuid(raw) is None


@pytest.mark.parametrize(
    "other", [CANONICAL.upper(), CANONICAL.removeprefix("GPU-"), CANONICAL + " ", " " + CANONICAL.lower()]
)
def test_the_same_gpu_written_differently_is_a_duplicate(other: str) -> None:
    store = store_for(signed_doc([gpu(0, CANONICAL), gpu(1, other)]))
    result = check_gpu_uuids(context(store))
    assert [r.code for r in result.reasons] == ["gpu_uuid_duplicate"]


def test_a_gpu_of_another_machine_is_taken_whatever_its_spelling() -> None:
    store = store_for(signed_doc([gpu(0, CANONICAL.upper() + " ")]))
    store.owners[CANONICAL] = "another machine"
    assert [r.code for r in check_gpu_uuids(context(store)).reasons] == ["gpu_uuid_taken"]


def test_a_malformed_uuid_is_a_refusal_reason() -> None:
    store = store_for(signed_doc([gpu(0, "not-a-uuid"), gpu(1, CANONICAL)]))
    assert [r.code for r in check_gpu_uuids(context(store)).reasons] == ["gpu_uuid_malformed"]


def test_claims_are_written_normalised() -> None:
    store = store_for(signed_doc([gpu(0, CANONICAL.upper() + " ")]), gpu_count=1)
    # Every other check in shadow mode (this report has no proof): it passes, and claims its GPU.
    shadow = frozenset(
        {
            "report_signature",
            "claim",
            "integrity",
            "inventory",
            "benchmarks",
            "findings",
            "measured_model",
            "proof_of_throughput",
            "capacity",
        }
    )
    svc = VerifyServices(store, Clock(), allow_cpu_backend=False, shadow_checks=shadow)
    verification = verify_report(svc, MID, "ch")
    assert verification is not None and verification["passed"], verification
    deciding = {c["name"] for c in verification["checks"] if not c["shadow"]}
    assert deciding == {"gpu_uuids"} and len(CHECKS) == 9
    assert store.recorded[0][1:] == (MachineState.auto_verified, [CANONICAL])
    assert claimed_uuids([CANONICAL.upper(), f" {CANONICAL}"]) == [CANONICAL]


def test_more_gpus_than_the_configured_limit_are_refused() -> None:
    uuids = [f"GPU-{i:08x}-1111-2222-3333-444444444444" for i in range(20)]
    store = store_for(signed_doc([gpu(i, u) for i, u in enumerate(uuids)]), gpu_count=20)
    codes = [r.code for r in check_inventory(context(store, max_gpus=16)).reasons]
    assert codes == ["too_many_gpus"]
    assert check_inventory(context(store, max_gpus=64)).reasons == []


def test_an_inventory_of_1000_gpus_is_refused_never_raised() -> None:
    """Stored before the bounds (the wire model now stops it at intake): refused once, recorded."""
    doc = signed_doc([gpu(0, CANONICAL)])
    doc["report"]["inventory"]["gpus"] = [
        doc["report"]["inventory"]["gpus"][0]
        | {"index": i % 256, "uuid": f"GPU-{i:08x}-1111-2222-3333-444444444444"}
        for i in range(1000)
    ]
    store = store_for(doc, gpu_count=0)
    verification = verify_report(services(store), MID, "ch")
    assert verification is not None and not verification["passed"]
    assert [r["code"] for r in verification["reasons"]] == ["report_schema_invalid"]
    assert store.recorded[0][1] is MachineState.refused and store.recorded[0][2] == []


def test_a_stored_report_with_ram_10_to_the_400_is_refused_never_raised() -> None:
    doc = signed_doc([gpu(0, CANONICAL)])
    doc["report"]["inventory"]["host"]["ram_bytes"] = 10**400
    verification = verify_report(services(store_for(doc)), MID, "ch")
    assert verification is not None and [r["code"] for r in verification["reasons"]] == [
        "report_schema_invalid"
    ]


def test_the_largest_verification_fits_one_transaction() -> None:
    uuids = [f"GPU-{i:08x}-1111-2222-3333-444444444444" for i in range(PROTOCOL_MAX_GPUS)]
    assert len(claimed_uuids(uuids)) + VERIFICATION_FIXED_ITEMS <= DYNAMODB_MAX_TRANSACTION_ITEMS
    too_many = [f"GPU-{i:08x}-1111-2222-3333-444444444444" for i in range(DYNAMODB_MAX_TRANSACTION_ITEMS)]
    with pytest.raises(ValueError):
        claimed_uuids(too_many)


def test_max_gpus_per_machine_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuproof.config import max_gpus_per_machine
    from gpuproof.protocol.limits import DEFAULT_MAX_GPUS_PER_MACHINE

    monkeypatch.delenv("MAX_GPUS_PER_MACHINE", raising=False)
    assert max_gpus_per_machine() == DEFAULT_MAX_GPUS_PER_MACHINE
    monkeypatch.setenv("MAX_GPUS_PER_MACHINE", "8")
    assert max_gpus_per_machine() == 8
    for bad in ("0", str(PROTOCOL_MAX_GPUS + 1)):
        monkeypatch.setenv("MAX_GPUS_PER_MACHINE", bad)
        with pytest.raises(RuntimeError):
            max_gpus_per_machine()
