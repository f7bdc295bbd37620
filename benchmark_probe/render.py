"""Human-readable summary tables (Rich) for interactive runs; JSON output never goes through here."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from gpuproof.protocol.machine import Region
from gpuproof.protocol.report import BenchmarkResult, Integrity, Inventory
from gpuproof.reference import RATE_HIGH, RATE_LOW, GpuReference, lookup
from gpuproof.scoring import ScoringError, calc_point_for_model

GIB = 1 << 30


def _opt(value: Any) -> str:
    return "—" if value is None else str(value)


def inventory_tables(console: Console, inventory: Inventory, integrity: Integrity | None) -> None:
    host = inventory.host
    table = Table(title="Host", show_header=False)
    for label, value in (
        ("CPU", f"{host.cpu_model} ({host.cpu_cores} threads, {host.cpu_mhz} MHz)"),
        ("RAM", f"{host.ram_bytes / GIB:.1f} GiB"),
        ("Disks", f"system {host.sys_disk_bytes / 1e9:.0f} GB, data {host.data_disk_bytes / 1e9:.0f} GB"),
        ("OS", f"{host.os}, kernel {host.kernel}"),
        ("Backend", inventory.backend),
        ("Driver / CUDA", f"{_opt(inventory.driver_version)} / {_opt(inventory.cuda_driver_version)}"),
    ):
        table.add_row(label, value)
    console.print(table)
    if inventory.gpus:
        console.print(_gpu_table(inventory))
    if integrity is not None:
        console.print(_integrity_table(integrity))
    for note in inventory.notes:
        console.print(f"[yellow]note:[/] {note}")


def _gpu_table(inventory: Inventory) -> Table:
    table = Table(title="GPUs (NVML, cross-checked with CUDA)")
    for col in ("#", "name", "memory", "SMs", "cores", "PCIe cur/max", "ECC", "MIG", "checks"):
        table.add_column(col)
    for g in inventory.gpus:
        problems = [*g.disagreements, *g.errors]
        table.add_row(
            str(g.index),
            g.name or "?",
            f"{g.memory_total_bytes / GIB:.1f} GiB",
            _opt(g.sm_count),
            _opt(g.cuda_cores),
            f"gen{_opt(g.pcie_gen_current)} x{_opt(g.pcie_width_current)} / "
            f"gen{_opt(g.pcie_gen_max)} x{_opt(g.pcie_width_max)}",
            _opt(g.ecc_enabled),
            _opt(g.mig_enabled),
            "[green]ok[/]" if not problems else "[red]" + "; ".join(problems) + "[/]",
        )
    return table


def _integrity_table(integrity: Integrity) -> Table:
    table = Table(title="Integrity signals", show_header=False)
    table.add_row("LD_PRELOAD", _opt(integrity.ld_preload))
    table.add_row("/etc/ld.so.preload", ", ".join(integrity.ld_so_preload) or "—")
    for path, digest in integrity.library_sha256.items():
        table.add_row(path, digest[:16] + "…")
    table.add_row("nvidia-smi sha256", (integrity.nvidia_smi_sha256 or "—")[:16])
    table.add_row("container hints", ", ".join(integrity.container_hints) or "—")
    table.add_row("VM hints", ", ".join(integrity.vm_hints) or "—")
    return table


# ------------------------------------------------------------------------------------ previews
def upload_table(upload: dict[str, Any]) -> Table:
    """DBC's CommitteeUploadInfo fields as the service would derive them from this inventory."""
    table = Table(title="DBC CommitteeUploadInfo fields (derived from this inventory)", show_header=False)
    if "error" in upload:
        for reason in upload["error"]:
            table.add_row("[red]not derivable[/]", str(getattr(reason, "message", reason)))
        return table
    for key, value in upload.items():
        table.add_row(key, str(value))
    return table


def _gpu_reference(inventory: Inventory) -> GpuReference | None:
    names = {g.name for g in inventory.gpus if g.name}
    if len(names) != 1:
        return None
    return lookup(names.pop())


def calc_point_preview(inventory: Inventory, mem_num: int | None, region: Region | None) -> list[str]:
    """What calc_point the machine would get if every claim is proven (scoring.calc_point_for_model
    on the reference table's figures for the model, never the host's): a preview, not a verdict."""
    if not inventory.gpus:
        return ["calc_point preview: no GPU found, so no calc_point (a CPU-only machine earns none)"]
    ref = _gpu_reference(inventory)
    if ref is None:
        names = sorted({g.name or "?" for g in inventory.gpus})
        return [f"calc_point preview: {', '.join(names)} not in the reference table (or mixed models)"]
    if mem_num is None:
        return ["calc_point preview: the host's RAM could not be read"]
    basis = region or Region.china
    try:
        point = calc_point_for_model(ref, gpu_num=len(inventory.gpus), ram_gb=mem_num, region=basis)
    except ScoringError as exc:
        return [f"calc_point preview: {exc}"]
    where = f"region {basis.value}" if region else "no --region given: coefficient 1 (region china)"
    return [
        f"calc_point preview: {point.decimal} "
        f"({len(inventory.gpus)} x {ref.model}, {mem_num} GB RAM, {where})",
        "  a preview from the reference table: the verdict's calc_point counts only what is proven",
    ]


def _reference_cell(ref: GpuReference | None, r: BenchmarkResult) -> str:
    """The model's reference figure (or envelope) beside a measured one; '' when none applies."""
    if ref is None or not r.verified:
        return ""
    if r.name == "gemm_bf16" and ref.expected_bf16_tflops is not None:
        low, high = RATE_LOW * ref.expected_bf16_tflops, RATE_HIGH * ref.expected_bf16_tflops
        mark = "[green]inside[/]" if ref.rate_fits(r.median) else "[red]outside[/]"
        return f"{low:.1f}–{high:.1f} ({mark})"
    if r.name == "gemm_fp32" and ref.fp32_tflops is not None:
        return f"peak {ref.fp32_tflops:g}"
    if r.name == "gemm_int8" and ref.expected_int8_tops is not None:
        return f"~{ref.expected_int8_tops:g} (estimate)"
    if r.name == "copy_d2d" and ref.mem_bw_gbs is not None:
        return f"memory peak {ref.mem_bw_gbs:g} (a copy moves each byte twice)"
    return ""


def bench_table(console: Console, results: list[BenchmarkResult], inventory: Inventory | None = None) -> None:
    by_label = {
        f"gpu{g.index}": lookup(g.name) if g.name else None for g in (inventory.gpus if inventory else [])
    }
    table = Table(title="Micro-benchmarks (median of repeats; min–max) beside the model's reference")
    table.add_column("device", no_wrap=True)
    table.add_column("benchmark", no_wrap=True, min_width=15)  # copy_h2d_pinned: never cut short
    for col in ("median", "min", "max"):
        table.add_column(col, justify="right")
    table.add_column("unit")
    table.add_column("n", justify="right")  # repeats
    table.add_column("verified")
    table.add_column("reference")
    for r in results:
        ok = "[green]yes[/]" if r.verified else f"[red]NO: {r.error}[/]"
        table.add_row(
            r.device,
            r.name,
            f"{r.median:.3f}",
            f"{r.min:.3f}",
            f"{r.max:.3f}",
            r.unit,
            str(r.repeats),
            ok,
            _reference_cell(by_label.get(r.device), r),
        )
    console.print(table)
