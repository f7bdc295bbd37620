"""Every number on the wire is finite, typed and bounded (protocol/limits.py); strings and lists too."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from gpuproof.protocol import limits as L
from gpuproof.protocol.machine import ChallengeRequest
from gpuproof.protocol.proof import RowOpening, ThroughputProof
from gpuproof.protocol.report import BenchmarkResult, GpuInfo, HostInfo, Integrity, Inventory
from gpuproof.protocol.telemetry import Heartbeat

HOST: dict[str, Any] = {
    "cpu_model": "AMD EPYC 9654",
    "cpu_cores": 192,
    "cpu_mhz": 3700,
    "ram_bytes": 1 << 40,
    "sys_disk_bytes": 2 << 40,
    "data_disk_bytes": 30 << 40,
    "os": "Ubuntu 22.04",
    "kernel": "6.5.0",
}
GPU: dict[str, Any] = {
    "index": 0,
    "name": "NVIDIA H100 80GB HBM3",
    "uuid": "GPU-5a5a5a10-1111-2222-3333-a5a5a5a5a510",
    "pci_bus_id": "00000000:18:00.0",
    "memory_total_bytes": 85_520_809_984,
    "sm_count": 132,
    "cuda_cores": 16896,
    "max_sm_clock_mhz": 1980,
    "max_mem_clock_mhz": 2619,
    "power_limit_w": 700.0,
    "pcie_gen_max": 5,
    "pcie_width_max": 16,
}
BENCH: dict[str, Any] = {
    "name": "gemm_bf16",
    "device": "gpu0",
    "unit": "TFLOPS",
    "median": 700.5,
    "min": 690.0,
    "max": 710.0,
    "repeats": 5,
    "verified": True,
}
BEAT: dict[str, Any] = {
    "machine_id": "ab" * 32,
    "sent_at": 1_790_000_000,
    "backend": "nvml",
    "gpus": [
        {
            "index": 0,
            "utilization_pct": 97.5,
            "temperature_c": 71.0,
            "power_w": 650.0,
            "sm_clock_mhz": 1980,
            "processes": [{"pid": 4242, "used_memory_bytes": 70 << 30}],
        }
    ],
    "host": {"load_average": [12.0, 11.5, 10.0], "cpu_percent": 40.0, "memory_used_bytes": 1 << 38},
}


def refused(model: type[BaseModel], doc: dict[str, Any]) -> list[str]:
    """The locations pydantic refuses, validating the doc as JSON would arrive (json.loads)."""
    with pytest.raises(ValidationError) as info:
        model.model_validate(json.loads(json.dumps(doc)) if _plain(doc) else doc)
    return [".".join(str(p) for p in e["loc"]) for e in info.value.errors()]


def _plain(doc: Any) -> bool:
    try:
        json.dumps(doc, allow_nan=False)
    except ValueError:
        return False
    return True


def test_honest_figures_of_a_large_host_pass() -> None:
    HostInfo.model_validate(HOST)
    GpuInfo.model_validate(GPU)
    BenchmarkResult.model_validate(BENCH)
    Heartbeat.model_validate(BEAT)
    Inventory.model_validate({"backend": "nvml", "gpus": [GPU] * 16, "host": HOST})
    Integrity.model_validate({"ld_so_preload": [], "library_sha256": {"/usr/lib/libcuda.so": "00" * 32}})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ram_bytes", 10**400),
        ("ram_bytes", -1),
        ("ram_bytes", L.MAX_RAM_BYTES + 1),
        ("ram_bytes", 8.0e9),  # a float is not a byte count
        ("cpu_cores", -4),
        ("cpu_cores", L.MAX_CPU_CORES + 1),
        ("cpu_cores", True),
        ("cpu_mhz", L.MAX_CLOCK_MHZ + 1),
        ("sys_disk_bytes", -(1 << 40)),
        ("data_disk_bytes", 10**30),
        ("cpu_model", "x" * (L.MAX_NAME_CHARS + 1)),
    ],
)
def test_host_figures_are_bounded(field: str, value: Any) -> None:
    assert refused(HostInfo, HOST | {field: value}) == [field]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("index", -1),
        ("memory_total_bytes", 10**400),
        ("memory_total_bytes", -1),
        ("sm_count", 10**9),
        ("max_sm_clock_mhz", 10**6),
        ("power_limit_w", float("nan")),
        ("power_limit_w", float("inf")),
        ("power_limit_w", -5.0),
        ("pcie_width_max", 1000),
        ("uuid", "GPU-" + "a" * 200),
        ("errors", ["e"] * (L.MAX_LIST_ITEMS + 1)),
    ],
)
def test_gpu_figures_are_bounded(field: str, value: Any) -> None:
    assert refused(GpuInfo, GPU | {field: value})[0].startswith(field)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("repeats", -3),
        ("repeats", 2.5),
        ("median", float("nan")),
        ("max", float("inf")),
        ("min", -1.0),
        ("median", 1e300),
    ],
)
def test_benchmark_figures_are_finite_and_bounded(field: str, value: Any) -> None:
    assert refused(BenchmarkResult, BENCH | {field: value}) == [field]


def test_inventory_gpu_list_has_the_protocol_ceiling() -> None:
    doc = {"backend": "nvml", "gpus": [GPU] * (L.PROTOCOL_MAX_GPUS + 1), "host": HOST}
    assert refused(Inventory, doc) == ["gpus"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("gpus", 0, "utilization_pct"), float("nan")),
        (("gpus", 0, "utilization_pct"), 101.0),
        (("gpus", 0, "temperature_c"), float("inf")),
        (("gpus", 0, "temperature_c"), 1e6),
        (("gpus", 0, "power_w"), 10**400),
        (("gpus", 0, "memory_used_bytes"), -1),
        (("gpus", 0, "processes", 0, "pid"), -1),
        (("host", "cpu_percent"), float("nan")),
        (("host", "load_average"), [float("inf")]),
        (("host", "memory_total_bytes"), 10**400),
        (("sent_at",), -1),
        (("sent_at",), 10**20),
    ],
)
def test_heartbeat_figures_are_finite_and_bounded(path: tuple[Any, ...], value: Any) -> None:
    doc = json.loads(json.dumps(BEAT))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert refused(Heartbeat, doc)[0].startswith(".".join(str(p) for p in path))


def test_challenge_gpu_count_is_a_bounded_strict_int() -> None:
    assert ChallengeRequest(gpu_count=L.PROTOCOL_MAX_GPUS).gpu_count == L.PROTOCOL_MAX_GPUS
    for bad in (-1, L.PROTOCOL_MAX_GPUS + 1, 2.0, True, "8"):
        assert refused(ChallengeRequest, {"gpu_count": bad}) == ["gpu_count"]


def test_proof_entries_are_bounded_ints_on_the_wire() -> None:
    opening = {
        "step": 2,
        "row": 0,
        "a_prev": [0, 1],
        "a_prev_path": [],
        "a_row": [0, 0],
        "a_path": [],
    }
    RowOpening.model_validate(opening)
    for field in ("a_prev", "a_row"):
        for bad in (-(2**63), 2**63, 10**400, 1.0, True):
            assert refused(RowOpening, opening | {field: [bad, 0]})[0].startswith(field)
    assert refused(RowOpening, opening | {"a_path": ["00" * 32] * (L.MAX_MERKLE_DEPTH + 1)}) == ["a_path"]
    assert refused(RowOpening, opening | {"row": -1}) == ["row"]


def test_proof_group_lists_are_bounded() -> None:
    doc = {
        "commitment": {
            "machine_id": "ab" * 32,
            "challenge_id": "c",
            "nonce": "cd" * 32,
            "gpus": [],
        },
        "signature": "00" * 64,
        "pairs": [{"gpu_index": 0, "pairs": []}] * (L.PROTOCOL_MAX_GPUS + 1),
        "openings": [],
    }
    assert refused(ThroughputProof, doc) == ["pairs"]


def test_the_ceilings_fit_one_verification_transaction() -> None:
    assert L.PROTOCOL_MAX_GPUS + L.VERIFICATION_FIXED_ITEMS <= L.DYNAMODB_MAX_TRANSACTION_ITEMS
    assert L.DEFAULT_MAX_GPUS_PER_MACHINE <= L.PROTOCOL_MAX_GPUS
