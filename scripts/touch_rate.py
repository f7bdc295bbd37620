"""First-touch rate of fresh host memory, as the capacity phase's host RAM reservation touches it
(`cupy_prover._Touch`: slices of 256 MiB written with zeros, in parallel): with the huge pages numpy
asks for (`np.empty`, madvise(MADV_HUGEPAGE) where transparent huge pages are enabled) and with
4 KiB pages (an anonymous map advised MADV_NOHUGEPAGE). No GPU needed.

`python scripts/touch_rate.py [GiB] [threads ...]` prints GB/s per run (the first run of a fresh VM
also pays the hypervisor's own faults: the median of the later runs is the figure).
"""

from __future__ import annotations

import mmap
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

SLICE = 256 << 20  # cupy_prover.TOUCH_BYTES


def _touch(array: npt.NDArray[np.int8], threads: int) -> float:
    start = time.perf_counter()

    def one(first: int) -> None:
        array[first : first + SLICE] = 0

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(one, range(0, array.size, SLICE)))
    return time.perf_counter() - start


def _small_pages(size: int) -> npt.NDArray[np.int8]:
    region = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    region.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(region, dtype=np.int8)


def main() -> None:
    gib = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    counts = [int(a) for a in sys.argv[2:]] or [1, 2]
    size = gib << 30
    kinds: list[tuple[str, Callable[[int], npt.NDArray[np.int8]]]] = [
        ("huge pages (np.empty)", lambda n: np.empty(n, dtype=np.int8)),
        ("4 KiB pages", _small_pages),
    ]
    for label, make in kinds:
        for threads in counts:
            rates = []
            for _ in range(4):
                array = make(size)
                rates.append(size / _touch(array, threads) / 1e9)
                del array
            later = statistics.median(rates[1:])
            print(
                f"{label}, {threads} thread(s): {', '.join(f'{r:.2f}' for r in rates)} GB/s; median of the later runs {later:.2f}"
            )


if __name__ == "__main__":
    main()
