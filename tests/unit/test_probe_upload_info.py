"""Every hardware field of DBC's CommitteeUploadInfo derives from the probe's inventory."""

from __future__ import annotations

import pytest

from benchmark_probe.inventory import collect_inventory
from benchmark_probe.nvml_double import CudaTestDouble, NvmlTestDouble, fake_gpu, fixed_host
from gpuproof.protocol.report import HostInfo
from gpuproof.protocol.upload_info import (
    UploadInfoError,
    cpu_type_of,
    gpu_type_of,
    upload_fields_from_inventory,
)

MIB = 1 << 20


def test_dbc_reference_vector_machine() -> None:
    """The machine of DBC's test vector: 4 x RTX 3080, Xeon Silver 4214R, 440 GB RAM."""
    gpus = [
        fake_gpu(
            i,
            name="NVIDIA GeForce RTX 3080",
            cuda_cores=8704,
            compute_capability=(8, 6),
            memory_total_bytes=10240 * MIB,
        )
        for i in range(4)
    ]
    nvml = NvmlTestDouble(gpus=gpus)
    host = HostInfo(
        cpu_model="Intel(R) Xeon(R) Silver 4214R CPU @ 2.40GHz",
        cpu_cores=46,
        cpu_mhz=2400,
        ram_bytes=440 << 30,
        sys_disk_bytes=500_107_862_016,
        data_disk_bytes=3_905_000_000_000,
        os="Ubuntu 20.04",
        kernel="5.4",
    )
    inventory = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), host)
    assert inventory.gpus[0].sm_count == 68
    assert upload_fields_from_inventory(inventory).as_dict() == {
        "gpu_type": "GeForceRTX3080",
        "gpu_num": 4,
        "cuda_core": 8704,
        "gpu_mem": 10,
        "sys_disk": 500,
        "data_disk": 3905,
        "cpu_type": "Intel(R) Xeon(R) Silver 4214R",
        "cpu_core_num": 46,
        "cpu_rate": 2400,
        "mem_num": 440,
    }


def test_h100_rounds_to_its_marketed_memory() -> None:
    nvml = NvmlTestDouble.with_gpus(8)
    fields = upload_fields_from_inventory(
        collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    )
    assert (fields.gpu_num, fields.cuda_core, fields.gpu_mem) == (8, 16896, 80)


def test_mixed_models_are_refused_with_every_reason() -> None:
    gpus = [fake_gpu(0), fake_gpu(1, name="NVIDIA A100-SXM4-80GB", cuda_cores=6912)]
    nvml = NvmlTestDouble(gpus=gpus, unsupported=set())
    inventory = collect_inventory(nvml, CudaTestDouble.agreeing_with(nvml), fixed_host())
    with pytest.raises(UploadInfoError) as info:
        upload_fields_from_inventory(inventory)
    assert len(info.value.reasons) == 2


def test_name_rules() -> None:
    assert gpu_type_of("NVIDIA GeForce RTX 4090") == "GeForceRTX4090"
    assert cpu_type_of("AMD EPYC 7763 64-Core Processor") == "AMD EPYC 7763 64-Core Processor"
    assert cpu_type_of("Intel(R) Xeon(R) Gold 6348 CPU @ 2.60GHz") == "Intel(R) Xeon(R) Gold 6348"
