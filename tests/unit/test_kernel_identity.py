"""Device identity from the kernel (issue 12 §4): the probe reads /proc/driver/nvidia/gpus and PCI
enumeration beside NVML (against a fake tree: `benchmark_probe/kernel_double.py`, the
hardware-boundary double); the service's `kernel_identity` check names every disagreement and runs
in shadow mode until EnforceChecks names it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmark_probe.inventory import collect_inventory
from benchmark_probe.kernel import parse_information, read_kernel_view
from benchmark_probe.kernel_double import FakeKernelGpu, kernel_gpu_of, write_tree
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fixed_host
from gpuproof.identity import kernel_reasons
from gpuproof.logic.verification import SHADOW_BY_DEFAULT, VerifyServices, is_shadow
from gpuproof.protocol.report import Inventory


def codes(reasons: Any) -> set[str]:
    return {r.code for r in reasons}


def host(tmp_path: Path, count: int, kernel: list[FakeKernelGpu] | None = None) -> Inventory:
    nvml = NvmlTestDouble.with_gpus(count)
    roots = write_tree(tmp_path, kernel if kernel is not None else [kernel_gpu_of(g) for g in nvml.gpus])
    return collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host(), kernel_roots=roots)


def honest(tmp_path: Path, count: int) -> list[FakeKernelGpu]:
    return [kernel_gpu_of(g) for g in NvmlTestDouble.with_gpus(count).gpus]


def test_the_probe_reads_the_kernels_view(tmp_path: Path) -> None:
    inv = host(tmp_path, 8)
    assert inv.kernel is not None and not inv.kernel.errors
    assert len(inv.kernel.proc_gpus) == 8 and len(inv.kernel.pci_devices) == 8  # host bridges left out
    first = inv.kernel.proc_gpus[0]
    assert first.model == "NVIDIA H100 80GB HBM3" and first.bus_location == inv.gpus[0].pci_bus_id
    assert first.uuid == inv.gpus[0].uuid
    assert (
        inv.kernel.pci_devices[0].device_id == "0x2330" and inv.kernel.pci_devices[0].class_code == "0x030200"
    )


def test_an_honest_host_agrees(tmp_path: Path) -> None:
    reasons, details = kernel_reasons(host(tmp_path, 8), 8)
    assert reasons == [] and details["counts"] == {"claimed": 8, "nvml": 8, "proc": 8, "pci": 8}
    assert "host-sent" in details["note"]


def test_a_gpu_nvml_shows_that_the_kernel_does_not(tmp_path: Path) -> None:
    """NVML (or a shim in front of it) lists 4 GPUs; the kernel and PCI know 2."""
    kernel = honest(tmp_path, 4)[:2]
    reasons, _ = kernel_reasons(host(tmp_path, 4, kernel), 4)
    assert codes(reasons) == {"kernel_gpu_count_mismatch", "kernel_bus_id_mismatch"}


def test_a_claim_of_more_gpus_than_pci_enumerates(tmp_path: Path) -> None:
    reasons, _ = kernel_reasons(host(tmp_path, 2), 4)
    assert codes(reasons) == {"kernel_gpu_count_mismatch"}


def test_model_and_uuid_disagreements(tmp_path: Path) -> None:
    kernel = honest(tmp_path, 2)
    kernel[0] = replace(kernel[0], model="NVIDIA A100-SXM4-40GB")
    kernel[1] = replace(kernel[1], uuid="GPU-00000000-0000-0000-0000-00000000abcd")
    reasons, _ = kernel_reasons(host(tmp_path, 2, kernel), 2)
    assert codes(reasons) == {"kernel_model_mismatch", "kernel_uuid_mismatch"}


def test_a_gpu_in_proc_missing_from_pci_enumeration(tmp_path: Path) -> None:
    kernel = honest(tmp_path, 2)
    kernel[1] = replace(kernel[1], in_pci=False)
    reasons, _ = kernel_reasons(host(tmp_path, 2, kernel), 2)
    assert codes(reasons) == {"kernel_gpu_count_mismatch", "kernel_bus_id_mismatch"}


def test_no_nvidia_module_or_no_kernel_view(tmp_path: Path) -> None:
    view = read_kernel_view(tmp_path / "proc", tmp_path / "sys")
    assert view.proc_gpus == [] and len(view.errors) == 2
    inv = host(tmp_path, 1)
    reasons, _ = kernel_reasons(inv.model_copy(update={"kernel": None}), 1)
    assert codes(reasons) == {"kernel_view_missing"}


def test_a_cpu_host_without_gpus_has_nothing_to_compare() -> None:
    reasons, _ = kernel_reasons(Inventory(backend="cpu", host=fixed_host()), 0)
    assert reasons == []


def test_information_files_parse_as_the_module_writes_them() -> None:
    text = "Model: \t\t NVIDIA H100 80GB HBM3\nGPU UUID: \t GPU-12\nBus Location: \t 0000:18:00.0\n"
    assert parse_information(text) == {
        "Model": "NVIDIA H100 80GB HBM3",
        "GPU UUID": "GPU-12",
        "Bus Location": "0000:18:00.0",
    }


def test_kernel_identity_is_shadow_until_enforced() -> None:
    base: Any = {"store": None, "clock": None, "allow_cpu_backend": False, "shadow_checks": frozenset()}
    default = VerifyServices(**base)
    assert {
        "kernel_identity",
        "dbc_minimums",
        "evidence",
        "model_cross_checks",
        "capacity",
    } == SHADOW_BY_DEFAULT
    assert is_shadow("kernel_identity", default) and not is_shadow("measured_model", default)
    enforced = VerifyServices(**base, enforced_checks=frozenset({"kernel_identity"}))
    assert not is_shadow("kernel_identity", enforced) and is_shadow("dbc_minimums", enforced)
