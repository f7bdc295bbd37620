"""Human-readable summary tables (Rich) for interactive runs; JSON output never goes through here."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from gpuproof.protocol.report import BenchmarkResult, Integrity, Inventory

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


def bench_table(console: Console, results: list[BenchmarkResult]) -> None:
    table = Table(title="Micro-benchmarks (median of repeats; min–max)")
    table.add_column("device", no_wrap=True)
    table.add_column("benchmark", no_wrap=True, min_width=15)  # copy_h2d_pinned: never cut short
    for col in ("median", "min", "max"):
        table.add_column(col, justify="right")
    table.add_column("unit")
    table.add_column("n", justify="right")  # repeats
    table.add_column("verified")
    for r in results:
        ok = "[green]yes[/]" if r.verified else f"[red]NO: {r.error}[/]"
        table.add_row(
            r.device, r.name, f"{r.median:.3f}", f"{r.min:.3f}", f"{r.max:.3f}", r.unit, str(r.repeats), ok
        )
    console.print(table)
