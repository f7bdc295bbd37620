"""Inventory against the NVML TEST DOUBLE: 1 and 8 GPUs, missing library, errors, disagreements."""

from __future__ import annotations

import pytest

from benchmark_probe.inventory import collect_inventory, normalise_pci_bus_id
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fake_gpu, fixed_host

HOST = fixed_host()


def inventory_of(nvml: NvmlTestDouble, cuda: CudaTestDouble | None = None):
    return collect_inventory(nvml, cuda or CudaTestDouble.agreeing_with(nvml), HOST)


@pytest.mark.parametrize("count", [1, 8])
def test_every_gpu_is_read_and_agrees_with_cuda(count: int) -> None:
    inv = inventory_of(NvmlTestDouble.with_gpus(count))
    assert inv.backend == "nvml"
    assert len(inv.gpus) == count
    assert inv.driver_version == "550.54.15"
    assert inv.cuda_driver_version == "12.4"
    assert len({g.uuid for g in inv.gpus}) == count
    for i, gpu in enumerate(inv.gpus):
        assert gpu.index == i
        assert gpu.name == "NVIDIA H100 80GB HBM3"
        assert gpu.sm_count == 132 and gpu.cuda_cores == 16_896
        assert gpu.compute_capability == "9.0"
        assert gpu.pci_bus_id == normalise_pci_bus_id(fake_gpu(i).pci_bus_id)
        assert gpu.pci_device_id == "0x233010de"
        assert gpu.power_limit_w == 700.0
        assert (gpu.pcie_gen_max, gpu.pcie_width_max, gpu.pcie_gen_current) == (5, 16, 5)
        assert gpu.ecc_enabled is True and gpu.mig_enabled is False
        assert gpu.cuda is not None and gpu.cuda.uuid == gpu.uuid
        assert gpu.disagreements == [] and gpu.errors == []
    assert inv.notes == []


def test_missing_library_falls_back_to_cpu_and_says_so() -> None:
    inv = collect_inventory(NvmlTestDouble(library_missing=True), CudaTestDouble([]), HOST)
    assert inv.backend == "cpu"
    assert inv.gpus == []
    assert inv.host == HOST
    assert "no NVIDIA GPU found (NVML library not loadable: NVML Shared Library Not Found)" in inv.notes[0]


def test_zero_devices_is_a_cpu_inventory() -> None:
    inv = collect_inventory(NvmlTestDouble(gpus=[]), CudaTestDouble([]), HOST)
    assert inv.backend == "cpu"
    assert "NVML reports 0 devices" in inv.notes[0]


def test_not_supported_is_none_not_an_error() -> None:
    nvml = NvmlTestDouble.with_gpus(2, unsupported={"nvmlDeviceGetSerial", "nvmlDeviceGetMigMode"})
    inv = inventory_of(nvml)
    for gpu in inv.gpus:
        assert gpu.serial is None and gpu.mig_enabled is None
        assert gpu.errors == []


def test_error_part_way_is_recorded_and_the_walk_goes_on() -> None:
    nvml = NvmlTestDouble.with_gpus(
        8,
        fail_on={"nvmlDeviceGetSerial": {3}, "nvmlDeviceGetHandleByIndex": {5}, "nvmlDeviceGetPciInfo": {6}},
    )
    inv = inventory_of(nvml)
    assert len(inv.gpus) == 8
    assert inv.gpus[3].serial is None
    assert inv.gpus[3].errors == ["serial: NVML error: Unknown Error"]
    assert inv.gpus[3].name == "NVIDIA H100 80GB HBM3"  # the rest of GPU 3 was still read
    assert inv.gpus[5].errors == ["handle: NVML error: Unknown Error"]
    assert inv.gpus[5].name == ""
    assert inv.gpus[6].errors == ["pci: NVML error: Unknown Error"]
    assert any("CUDA shows no device" in d for d in inv.gpus[6].disagreements)
    assert all(inv.gpus[i].errors == [] for i in (0, 1, 2, 4, 7))
    # GPUs 5 and 6 could not be paired, so their CUDA devices are reported unmatched
    assert len([n for n in inv.notes if "no NVML counterpart" in n]) == 2


def test_every_nvml_cuda_disagreement_is_recorded() -> None:
    nvml = NvmlTestDouble.with_gpus(4)
    cuda = CudaTestDouble.agreeing_with(nvml)
    views = cuda.devices
    views[0] = views[0].model_copy(update={"name": "NVIDIA GeForce RTX 4090"})
    views[1] = views[1].model_copy(update={"memory_total_bytes": 24 << 30, "sm_count": 128})
    views[2] = views[2].model_copy(update={"uuid": "GPU-ffffffff-0000-0000-0000-000000000000"})
    views[3] = views[3].model_copy(update={"pci_bus_id": "0000:99:00.0"})
    inv = inventory_of(nvml, cuda)
    assert [d.split(":")[0] for d in inv.gpus[0].disagreements] == ["name"]
    assert sorted(d.split(":")[0] for d in inv.gpus[1].disagreements) == ["memory", "sm_count"]
    assert [d.split(":")[0] for d in inv.gpus[2].disagreements] == ["uuid"]
    assert [d.split(":")[0] for d in inv.gpus[3].disagreements] == ["pci_bus_id"]
    assert any("0000:99:00.0" in n and "no NVML counterpart" in n for n in inv.notes)


def test_cuda_cross_check_failure_is_a_note() -> None:
    inv = inventory_of(NvmlTestDouble.with_gpus(1), CudaTestDouble([], error="cudaErrorNoDevice"))
    assert inv.backend == "nvml"
    assert inv.gpus[0].cuda is None
    assert inv.notes == ["CUDA cross-check failed: cudaErrorNoDevice"]


def test_pci_bus_ids_normalise() -> None:
    assert normalise_pci_bus_id("00000000:3B:00.0") == "0000:3b:00.0"
    assert normalise_pci_bus_id(b"0000:3b:00.0") == "0000:3b:00.0"
