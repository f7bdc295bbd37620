"""Check the CUDA TEST DOUBLE's slice of CuPy against a real CuPy, and the CUDA ABI numbers the GPU
code hard-codes against the CUDA headers (no GPU needed).

The GPU code (`benchmark_probe/backends/cupy.py`, the proof's `cupy_executor.py`, the capacity
phase's `cupy_prover.py`, `scripts/gpu_check.py`) has only ever run against
`benchmark_probe/cupy_double.py`. The double implements exactly what that code calls (a name it
lacks fails the tests), so checking the double against the real module checks the code's calls:

- **names**: every attribute the double offers as CuPy's (`cupy.X`, `cupy.cuda.X`,
  `cupy.cuda.runtime.X`, `cupy.cuda.cublas.X`, the classes' methods) exists in the real CuPy;
- **signatures**: where the real callable's signature can be read (`inspect`, or the first line of
  a Cython docstring), any call the double accepts the real one accepts too: the double requires
  at least as many positional arguments, takes no more, and every keyword it takes the real one
  names;
- **numbers**: the double's `cudaMemcpyKind` values equal CuPy's; every `CUDA_R_*`, `CUBLAS_*`
  constant of the GPU code and the double equals CuPy's export or, where CuPy exports none (CuPy
  14 has no `CUDA_R_32I`), the value in the CUDA headers (`--include`: folders holding
  `library_types.h` and `cublas_api.h`).

Needs the real CuPy importable (no GPU: CuPy imports without a driver) and cuBLAS's libraries on
`LD_LIBRARY_PATH` (CuPy loads them on first use of `cupy.cuda.cublas`):

    pip download --no-deps "cupy-cuda13x==14.2.0" cuda-pathfinder "nvidia-cublas==13.*" \
        "nvidia-cuda-runtime==13.*" -d /tmp/cupy && for w in /tmp/cupy/*.whl; do unzip -qo $w -d /tmp/cupy/site; done
    LD_LIBRARY_PATH=/tmp/cupy/site/nvidia/cu13/lib PYTHONPATH=/tmp/cupy/site \
        python scripts/cupy_surface_check.py --include /tmp/cupy/site/nvidia/cu13/include

Exit 0 when every check passes; each failure is printed on its own line.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "core")]

from benchmark_probe import cupy_double  # noqa: E402 - after the path is set
from benchmark_probe.cupy_double import CupyTestDouble  # noqa: E402
from benchmark_probe.double_surface import accepts, from_inspect, resolve, signature_of  # noqa: E402

# The double's own controls and records (not CuPy's): its dataclass fields are skipped too.
DOUBLE_ONLY = frozenset({"for_gpus", "spend"})
# Modules whose CUDA ABI numbers (`CUDA_R_*`, `CUBLAS_*`) are checked; the double's own spell them
# R_* / COMPUTE_* (library_types.h's cudaDataType_t, cublas_api.h's cublasComputeType_t).
CODE_MODULES = (
    "benchmark_probe.backends.cupy",
    "gpuproof.protocol.proof.cupy_executor",
    "gpuproof.protocol.capacity.cupy_prover",
)
DOUBLE_ABI = {"R_": "CUDA_R_", "COMPUTE_": "CUBLAS_COMPUTE_"}
# Instance attributes the code reads (not visible on the double's classes), looked up on an instance
# CuPy makes without a GPU where the class does not show them (`Stream.null`).
INSTANCE_ATTRIBUTES = {"cuda.Stream": ("ptr",), "cuda.Device": ("id",), "ndarray": ("data", "shape", "dtype")}
INSTANCES = {"cuda.Stream": "cuda.Stream.null"}
# What the double's callables return, checked against the real class they stand for.
RETURNED = {
    "cuda.MemoryPool": "_Pool",  # get_default_memory_pool()
    "cuda.PinnedMemoryPool": "_Pool",  # get_default_pinned_memory_pool()
    "cuda.function.Function": "_RawFunction",  # RawModule.get_function(name)
}
# Callables whose real signature cannot be read (a Cython method without an embedded signature),
# and what the double does instead.
OPAQUE = {
    "cuda.function.Function.__call__": "the double, like CuPy's source (cupy/cuda/function.pyx), "
    "takes (tuple grid, tuple block, args, shared_mem=0, stream=None) and refuses a grid or block "
    "that is not a tuple"
}


def surface(double: CupyTestDouble) -> Iterator[tuple[str, Any]]:
    """(dotted path under `cupy`, the double's object) for everything the double offers as CuPy's."""
    fields = {f.name for f in dataclasses.fields(double)}

    def walk(obj: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        names = vars(obj) if isinstance(obj, SimpleNamespace) else _own_names(obj)
        for name in sorted(names):
            if name.startswith("_") and name not in ("__enter__", "__exit__", "__call__"):
                continue
            if not prefix and (name in fields or name in DOUBLE_ONLY):
                continue
            value = getattr(obj, name)
            path = f"{prefix}{name}"
            yield path, value
            ours = inspect.isclass(value) and value.__module__ == cupy_double.__name__
            if ours or isinstance(value, (SimpleNamespace, cupy_double._Cublas)):
                yield from walk(value, f"{path}.")

    yield from walk(double, "")
    for real_class, mine in RETURNED.items():
        klass = getattr(cupy_double, mine)
        for name in _own_names(klass):
            if not name.startswith("_") or name == "__call__":
                yield f"{real_class}.{name}", getattr(klass, name)
    for cls, names in INSTANCE_ATTRIBUTES.items():
        for name in names:
            yield f"{INSTANCES.get(cls, cls)}.{name}", None


def _own_names(obj: Any) -> list[str]:
    """The public names an object of the double defines itself (not inherited from numpy or object)."""
    if isinstance(obj, CupyTestDouble):
        return [n for n in dir(obj) if not n.startswith("_")]
    if inspect.isclass(obj):
        own: set[str] = set()
        for klass in obj.__mro__:
            if klass.__module__ != cupy_double.__name__:
                continue
            own |= set(vars(klass))
        return sorted(own)
    return [n for n in dir(obj) if not n.startswith("_")]


def header_values(folders: list[Path]) -> dict[str, int]:
    """`NAME = value` enumerators of the CUDA headers in `folders` (library_types.h, cublas_api.h)."""
    found: dict[str, int] = {}
    for folder in folders:
        for name in ("library_types.h", "cublas_api.h", "driver_types.h"):
            path = folder / name
            if path.exists():
                text = path.read_text(errors="replace")
                for key, value in re.findall(r"\b((?:CUDA_R|CUBLAS)_\w+)\s*=\s*(-?\d+)", text):
                    found.setdefault(key, int(value))
    return found


def abi_constants() -> Iterator[tuple[str, str, int]]:
    """(where, CUDA name, value) for every CUDA_R_* / CUBLAS_* number the code and the double hold."""
    for module_name in CODE_MODULES:
        module = importlib.import_module(module_name)
        for name, value in vars(module).items():
            if re.fullmatch(r"(CUDA_R|CUBLAS)_\w+", name) and isinstance(value, int):
                yield module_name, name, value
    for name, value in vars(cupy_double).items():
        for prefix, cuda in DOUBLE_ABI.items():
            if name.startswith(prefix) and isinstance(value, int) and not isinstance(value, bool):
                yield cupy_double.__name__, cuda + name[len(prefix) :], value


def real_constant(cupy: ModuleType, name: str) -> int | None:
    for holder in ("cuda.runtime", "cuda.cublas"):
        ok, module = resolve(cupy, holder)
        if ok and isinstance(getattr(module, name, None), int):
            return int(getattr(module, name))
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--include", action="append", type=Path, default=[], help="CUDA header folder")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every name checked")
    args = parser.parse_args()
    import cupy

    print(f"CuPy {cupy.__version__} ({Path(cupy.__file__).parent}); the double: {cupy_double.__file__}")
    failures: list[str] = []
    checked = signed = 0
    double = CupyTestDouble.for_gpus([])
    for path, mine in surface(double):
        ok, real = resolve(cupy, path)
        checked += 1
        if args.verbose:
            print(f"  {path}")
        if not ok:
            failures.append(f"{path}: not in CuPy {cupy.__version__}")
            continue
        if isinstance(mine, int) and not isinstance(mine, bool) and isinstance(real, int):
            if mine != real:
                failures.append(f"{path}: the double's {mine}, CuPy's {real}")
            continue
        if mine is None or not callable(mine) or not callable(real):
            continue
        if inspect.isclass(mine) and issubclass(mine, BaseException):
            continue
        if path in OPAQUE:
            print(f"  {path}: not introspectable in CuPy; {OPAQUE[path]}")
            continue
        theirs, ours = signature_of(real), from_inspect(mine)
        if theirs is None or ours is None:
            print(f"  {path}: signature not readable ({'CuPy' if theirs is None else 'double'})")
            continue
        signed += 1
        failures += [f"{path}: {why}" for why in accepts(ours, theirs)]
    # Besides --include: the CUDA toolkit's headers and those of the pip-installed CUDA wheels.
    folders = [*args.include, Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "include"]
    folders += [Path(p) / "nvidia" / cu / "include" for p in sys.path if p for cu in ("cu13", "cu12")]
    headers = header_values([f for f in folders if f.is_dir()])
    numbers = 0
    for where, name, value in abi_constants():
        real = real_constant(cupy, name)
        source = f"CuPy {cupy.__version__}"
        if real is None and name in headers:
            real, source = headers[name], "the CUDA headers"
        if real is None:
            failures.append(f"{where}.{name} = {value}: neither CuPy nor the headers given define it")
            continue
        numbers += 1
        if real != value:
            failures.append(f"{where}.{name} = {value}, {source}: {real}")
    for line in failures:
        print(f"FAIL {line}")
    print(
        f"{checked} names checked, {signed} signatures compared, {numbers} ABI numbers checked: "
        f"{len(failures)} failure(s)"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
