"""The agent's health signals (ECC errors, retired pages, remapped rows, throttle reasons, XID
events) read through NVML (its test double: the hardware boundary) and bounded on the wire."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from benchmark_probe.nvml_double import NvmlTestDouble, fake_gpu
from benchmark_probe.telemetry import Telemetry, throttle_reasons
from gpuproof.logic.console import telemetry_series
from gpuproof.protocol.telemetry import Heartbeat

MACHINE = "ab" * 32


def test_health_signals_come_from_nvml_and_pass_the_wire_model() -> None:
    sick = fake_gpu(
        1,
        ecc_corrected=12,
        ecc_uncorrected=1,
        retired_pages_double_bit=2,
        retired_pages_pending=True,
        remapped_rows=(3, 1, True, False),
        throttle_mask=0x4 | 0x40,
    )
    nvml = NvmlTestDouble(gpus=[fake_gpu(0), sick], xid_queue=[(1, 79), (1, 48), (0, 13)])
    telemetry = Telemetry(nvml)
    beat = telemetry.read(MACHINE)
    Heartbeat.model_validate(beat)
    healthy, gpu1 = beat["gpus"]
    assert (
        healthy["ecc_uncorrected"] == 0
        and healthy["throttle_reasons"] == []
        and healthy["xid_events"] == [13]
    )
    assert gpu1["ecc_corrected"] == 12 and gpu1["ecc_uncorrected"] == 1
    assert gpu1["retired_pages_double_bit"] == 2 and gpu1["retired_pages_pending"] is True
    assert (gpu1["remapped_rows_correctable"], gpu1["remapped_rows_uncorrectable"]) == (3, 1)
    assert gpu1["remapped_rows_pending"] is True and gpu1["remapping_failed"] is False
    assert gpu1["throttle_reasons"] == ["sw_power_cap", "hw_thermal_slowdown"]
    assert gpu1["xid_events"] == [79, 48]
    # The queue was drained: the next heartbeat reports only new events.
    assert all(g["xid_events"] == [] for g in telemetry.read(MACHINE)["gpus"])


def test_a_gpu_that_cannot_tell_reports_none_not_zero() -> None:
    unsupported = {
        "nvmlDeviceGetTotalEccErrors",
        "nvmlDeviceGetRetiredPages",
        "nvmlDeviceGetRemappedRows",
        "nvmlDeviceGetCurrentClocksThrottleReasons",
        "nvmlEventSetCreate",
    }
    beat = Telemetry(NvmlTestDouble(unsupported=unsupported)).read(MACHINE)
    Heartbeat.model_validate(beat)
    (gpu,) = beat["gpus"]
    assert gpu["ecc_corrected"] is None and gpu["retired_pages_single_bit"] is None
    assert gpu["remapped_rows_uncorrectable"] is None and gpu["throttle_reasons"] is None
    assert gpu["xid_events"] == []
    series = telemetry_series([{"received_at": 1.0, "telemetry": beat}])
    rows = {r["key"]: r["values"] for r in series["health"]["rows"]}
    assert rows["remapped_rows_uncorrectable"] == ["not reported"]


def test_every_throttle_bit_has_a_name_the_wire_accepts() -> None:
    names = throttle_reasons(0x1FF)
    assert len(names) == 9
    beat = Telemetry(NvmlTestDouble(gpus=[fake_gpu(0, throttle_mask=0x1FF)])).read(MACHINE)
    assert Heartbeat.model_validate(beat).gpus[0].throttle_reasons == names


@pytest.mark.parametrize(
    "field, value",
    [
        ("ecc_corrected", -1),
        ("ecc_uncorrected", 2**40),
        ("xid_events", list(range(65))),
        ("throttle_reasons", ["melting"]),
    ],
)
def test_impossible_health_figures_are_refused(field: str, value: object) -> None:
    beat = Telemetry(NvmlTestDouble()).read(MACHINE)
    beat["gpus"][0][field] = value
    with pytest.raises(ValidationError):
        Heartbeat.model_validate(beat)


def test_the_console_lists_xid_events_and_health_per_gpu() -> None:
    nvml = NvmlTestDouble(gpus=[fake_gpu(0, ecc_corrected=4)], xid_queue=[(0, 94)])
    telemetry = Telemetry(nvml)
    beats = [{"received_at": 100.0 + i, "telemetry": telemetry.read(MACHINE)} for i in range(2)]
    series = telemetry_series(beats)
    assert series["xid_events"] == [{"at": 100.0, "gpu": 0, "xid": 94}]
    charts = {c["id"]: c for c in series["charts"]}
    assert charts["gpu-ecc_corrected"]["lines"][0]["values"] == [4.0, 4.0]
    assert series["health"]["gpus"] == [0]
    assert series["other_signals"] == []
