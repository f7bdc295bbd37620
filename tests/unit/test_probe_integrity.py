"""Integrity signals: preloads, digests of the loaded GPU libraries, nvidia-smi, container/VM hints."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from benchmark_probe.integrity import collect_integrity


def _fake_root(tmp_path: Path) -> tuple[Path, Path, Path]:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/ld.so.preload").write_text("# comment\n/usr/lib/libhook.so\n")
    (root / ".dockerenv").write_text("")
    (root / "proc/1").mkdir(parents=True)
    (root / "proc/1/cgroup").write_text("0::/system.slice/docker-abc.scope\n")
    (root / "proc/cpuinfo").write_text("model name\t: Xeon\nflags\t\t: fpu sse hypervisor avx\n")
    (root / "sys/class/dmi/id").mkdir(parents=True)
    (root / "sys/class/dmi/id/sys_vendor").write_text("QEMU\n")
    (root / "sys/class/dmi/id/product_name").write_text("Standard PC (Q35 + ICH9, 2009)\n")
    lib = tmp_path / "libnvidia-ml.so.550.54.15"
    lib.write_bytes(b"not really a library")
    maps = tmp_path / "maps"
    maps.write_text(
        f"7f00-7f10 r-xp 00000000 08:01 123 {lib}\n"
        f"7f10-7f20 r--p 00010000 08:01 123 {lib}\n"
        "7f20-7f30 r-xp 00000000 08:01 124 /usr/lib/libc.so.6\n"
        "7f30-7f40 rw-p 00000000 00:00 0 \n"
    )
    smi = tmp_path / "nvidia-smi"
    smi.write_bytes(b"#!/bin/sh\necho fake\n")
    return root, maps, smi


def test_ld_preload_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/tmp/libfakenvml.so")
    root, maps, smi = _fake_root(tmp_path)
    integrity = collect_integrity(root=root, maps_path=maps, which=lambda _n: str(smi))
    assert integrity.ld_preload == "/tmp/libfakenvml.so"


def test_every_signal_is_collected(tmp_path: Path) -> None:
    root, maps, smi = _fake_root(tmp_path)
    integrity = collect_integrity(env={}, root=root, maps_path=maps, which=lambda _n: str(smi))
    assert integrity.ld_preload is None
    assert integrity.ld_so_preload == ["/usr/lib/libhook.so"]
    lib = tmp_path / "libnvidia-ml.so.550.54.15"
    assert integrity.library_sha256 == {str(lib): hashlib.sha256(b"not really a library").hexdigest()}
    assert integrity.nvidia_smi_sha256 == hashlib.sha256(smi.read_bytes()).hexdigest()
    assert "/.dockerenv present" in integrity.container_hints
    assert "/proc/1/cgroup mentions docker" in integrity.container_hints
    assert "dmi sys_vendor: QEMU" in integrity.vm_hints
    assert "cpu flag hypervisor" in integrity.vm_hints


def test_a_clean_bare_metal_host_has_no_hints(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    integrity = collect_integrity(env={}, root=root, maps_path=tmp_path / "nomaps", which=lambda _n: None)
    assert integrity.model_dump() == {
        "ld_preload": None,
        "ld_so_preload": [],
        "library_sha256": {},
        "nvidia_smi_sha256": None,
        "container_hints": [],
        "vm_hints": [],
    }
