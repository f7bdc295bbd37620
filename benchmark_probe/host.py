"""The host's own figures: CPU model, cores and clock, RAM, system and data disks, OS and kernel."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path

import psutil

from gpuproof.protocol.report import HostInfo

_GHZ_IN_MODEL_RE = re.compile(r"@\s*([0-9.]+)\s*GHz", re.IGNORECASE)
# Mounts that are never a data disk: pseudo filesystems, boot partitions, snaps, container plumbing.
_IGNORED_MOUNT_PREFIXES = ("/boot", "/snap", "/proc", "/sys", "/dev", "/run", "/var/lib/docker")


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model name", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_mhz(model: str) -> int:
    """Rated clock: the "@ 2.40GHz" in the model name (what DBC's cpu_rate records), else psutil's."""
    match = _GHZ_IN_MODEL_RE.search(model)
    if match:
        return round(float(match.group(1)) * 1000)
    freq = psutil.cpu_freq()
    if freq is None:
        return 0
    return round(freq.max or freq.current or 0)


def data_disk_bytes() -> int:
    """Largest mounted filesystem on a device other than the one holding /, or 0."""
    try:
        root_dev = os.stat("/").st_dev
    except OSError:
        return 0
    sizes = [0]
    for part in psutil.disk_partitions(all=False):
        if part.mountpoint == "/" or part.mountpoint.startswith(_IGNORED_MOUNT_PREFIXES):
            continue
        try:
            if os.stat(part.mountpoint).st_dev == root_dev:
                continue
            sizes.append(psutil.disk_usage(part.mountpoint).total)
        except OSError:
            continue
    return max(sizes)


def os_name() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()


def collect_host() -> HostInfo:
    model = cpu_model()
    return HostInfo(
        cpu_model=model,
        cpu_cores=psutil.cpu_count(logical=True) or os.cpu_count() or 0,
        cpu_mhz=cpu_mhz(model),
        ram_bytes=psutil.virtual_memory().total,
        sys_disk_bytes=psutil.disk_usage("/").total,
        data_disk_bytes=data_disk_bytes(),
        os=os_name(),
        kernel=platform.release(),
    )
