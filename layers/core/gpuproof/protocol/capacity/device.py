"""The hardware boundary of the capacity phase: where a target's rows are held, and what reading
and computing them costs.

`SimulatedDevice` is a TEST DOUBLE of that boundary (named as such): a numpy store with a memory
limit, and a modelled clock, since timing tests must not depend on this machine's load. Every
computation is real (numpy); only the seconds it would take on the modelled device are charged
from its figures (scan bandwidth, per-row read latency, hash and GEMM rates). The real hardware
side is the GPU executor, `cupy_prover.py` (CUDA memory and host RAM, timed by the service's clock;
run so far only on the CUDA test double, benchmark_probe/cupy_double.py).
"""

from __future__ import annotations

from dataclasses import dataclass


class OutOfDeviceMemory(MemoryError):
    """An allocation beyond the device's capacity (the memory limit applied to the prover)."""


@dataclass
class SimulatedDevice:
    name: str
    capacity_bytes: int
    scan_bytes_per_s: float
    row_read_s: float
    hash_bytes_per_s: float
    gemm_ops_per_s: float
    extra_read_s: float = 0.0  # simulated added latency per row read (a slower store)
    used_bytes: int = 0
    busy_s: float = 0.0  # modelled seconds of work in the current phase

    def alloc(self, nbytes: int) -> None:
        if self.used_bytes + nbytes > self.capacity_bytes:
            raise OutOfDeviceMemory(
                f"{self.name}: {nbytes} bytes requested, {self.capacity_bytes - self.used_bytes} free"
            )
        self.used_bytes += nbytes

    def free(self, nbytes: int) -> None:
        self.used_bytes = max(0, self.used_bytes - nbytes)

    def charge(self, seconds: float) -> None:
        self.busy_s += seconds

    def scan(self, nbytes: int, rows: int) -> float:
        """Read `rows` rows (`nbytes` in all) in order and hash them."""
        return nbytes / self.scan_bytes_per_s + nbytes / self.hash_bytes_per_s + rows * self.extra_read_s

    def gather(self, nbytes: int, rows: int) -> float:
        """Read `rows` random rows and hash them."""
        return rows * (self.row_read_s + self.extra_read_s) + nbytes / self.hash_bytes_per_s

    def sweep(self, nbytes: int, rows: int, hashed_bytes: int) -> float:
        """One sweep of the bandwidth round: read `rows` rows (`nbytes`) in order, hash `hashed_bytes`."""
        return (
            nbytes / self.scan_bytes_per_s + hashed_bytes / self.hash_bytes_per_s + rows * self.extra_read_s
        )

    def gemm(self, ops: int) -> float:
        return ops / self.gemm_ops_per_s
