"""Integrity signals the service judges: preloads, digests of the GPU libraries actually loaded,
the nvidia-smi binary, and hints that the probe runs in a container or a VM.

Collect these AFTER the inventory: only then are libnvidia-ml and libcuda mapped into the process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from gpuproof.protocol.report import Integrity

GPU_LIBRARY_PREFIXES = ("libnvidia-ml.so", "libcuda.so")
_CGROUP_MARKERS = ("docker", "kubepods", "containerd", "libpod", "lxc", "podman")
_VM_VENDORS = (
    "qemu",
    "kvm",
    "vmware",
    "virtualbox",
    "innotek",
    "xen",
    "microsoft corporation",
    "amazon ec2",
    "google",
    "openstack",
    "parallels",
    "bochs",
    "cloud hypervisor",
)


def sha256_file(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def loaded_gpu_libraries(maps_path: Path) -> list[Path]:
    """Paths of libnvidia-ml / libcuda mapped into this process (from /proc/self/maps)."""
    try:
        lines = maps_path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found: set[str] = set()
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) == 6 and Path(parts[5]).name.startswith(GPU_LIBRARY_PREFIXES):
            found.add(parts[5].strip())
    return [Path(p) for p in sorted(found)]


def ld_so_preload(root: Path) -> list[str]:
    try:
        text = (root / "etc/ld.so.preload").read_text(errors="replace")
    except OSError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def container_hints(root: Path, env: Mapping[str, str]) -> list[str]:
    hints = [
        f"{name} present" for name in ("/.dockerenv", "/run/.containerenv") if (root / name[1:]).exists()
    ]
    if env.get("container"):
        hints.append(f"environment container={env['container']}")
    if env.get("KUBERNETES_SERVICE_HOST"):
        hints.append("KUBERNETES_SERVICE_HOST set")
    try:
        cgroup = (root / "proc/1/cgroup").read_text(errors="replace").lower()
    except OSError:
        cgroup = ""
    hints += [f"/proc/1/cgroup mentions {m}" for m in _CGROUP_MARKERS if m in cgroup]
    return hints


def vm_hints(root: Path) -> list[str]:
    hints = []
    for field in ("sys_vendor", "product_name"):
        try:
            value = (root / "sys/class/dmi/id" / field).read_text(errors="replace").strip()
        except OSError:
            continue
        if any(v in value.lower() for v in _VM_VENDORS) or "virtual" in value.lower():
            hints.append(f"dmi {field}: {value}")
    try:
        cpuinfo = (root / "proc/cpuinfo").read_text(errors="replace")
    except OSError:
        cpuinfo = ""
    if any(line.startswith("flags") and " hypervisor" in line for line in cpuinfo.splitlines()):
        hints.append("cpu flag hypervisor")
    return hints


def collect_integrity(
    env: Mapping[str, str] | None = None,
    root: Path = Path("/"),
    maps_path: Path = Path("/proc/self/maps"),
    which: Callable[[str], str | None] = shutil.which,
) -> Integrity:
    env = os.environ if env is None else env
    libraries = {str(p): d for p in loaded_gpu_libraries(maps_path) if (d := sha256_file(p)) is not None}
    smi = which("nvidia-smi")
    return Integrity(
        ld_preload=env.get("LD_PRELOAD") or None,
        ld_so_preload=ld_so_preload(root),
        library_sha256=libraries,
        nvidia_smi_sha256=sha256_file(Path(smi)) if smi else None,
        container_hints=container_hints(root, env),
        vm_hints=vm_hints(root),
    )
