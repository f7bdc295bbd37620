"""scripts/cupy_surface_check.py, the check of the CUDA TEST DOUBLE's CuPy surface against a real
CuPy, without one: its signature reading and comparison, the surface it walks, and the CUDA ABI
numbers the GPU code and the double hold agreeing with each other (a real CuPy and the CUDA headers
check them against the source in docs/measurements.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from benchmark_probe.cupy_double import CupyTestDouble
from benchmark_probe.double_surface import accepts, from_docstring, from_inspect

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cupy_surface_check.py"


@pytest.fixture(scope="module")
def check() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cupy_surface_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["cupy_surface_check"] = module
    spec.loader.exec_module(module)
    return module


class _Cython:
    """A stand-in carrying a Cython-style embedded signature."""

    def __init__(self, doc: str) -> None:
        self.__doc__ = doc


def test_cython_signatures_are_read_from_their_docstrings() -> None:
    gemm = from_docstring(_Cython("gemmEx(intptr_t handle, int transa, size_t alpha, int algo)"))
    assert [p.name for p in gemm.positional] == ["handle", "transa", "alpha", "algo"] and gemm.required == 4
    matmul = from_docstring(_Cython("matmul(x1, x2, /, out=None, \\*\\*kwargs)"))
    assert [(p.name, p.keyword, p.required) for p in matmul.params] == [
        ("x1", False, True),
        ("x2", False, True),
        ("out", True, False),
    ]
    assert matmul.any_keyword
    module = from_docstring(_Cython("RawModule(str code=None, *, str path=None, tuple options=())"))
    assert [p.name for p in module.positional] == ["code"]
    assert {p.name for p in module.params if not p.positional} == {"path", "options"}
    assert from_docstring(_Cython("Call self as a function.")) is None


def test_a_double_wider_than_the_real_callable_is_refused() -> None:
    real = from_docstring(_Cython("memsetAsync(intptr_t ptr, int value, size_t size, intptr_t stream)"))

    def same(ptr: int, value: int, size: int, stream: int) -> None: ...
    def extra(ptr: int, value: int, size: int, stream: int, flags: int = 0) -> None: ...
    def lax(ptr: int, value: int, size: int = 0, stream: int = 0) -> None: ...
    def renamed(dst: int, value: int, size: int, stream: int) -> None: ...

    assert accepts(from_inspect(same), real) == []
    assert any("at most 4" in why for why in accepts(from_inspect(extra), real))
    assert any("requires 2" in why for why in accepts(from_inspect(lax), real))
    assert any("'dst' is 'ptr'" in why for why in accepts(from_inspect(renamed), real))


def test_the_surface_is_cupys_names_not_the_doubles_controls(check: ModuleType) -> None:
    paths = {path for path, _ in check.surface(CupyTestDouble.for_gpus([]))}
    for name in (
        "cuda.cublas.gemmEx",
        "cuda.cublas.setStream",
        "cuda.runtime.memcpy2DAsync",
        "cuda.runtime.getDeviceProperties",
        "cuda.Stream.synchronize",
        "cuda.Stream.null.ptr",
        "RawModule.get_function",
        "cuda.function.Function.__call__",
        "cuda.MemoryPool.free_all_blocks",
        "empty",
        "asnumpy",
    ):
        assert name in paths, name
    assert not paths & {"spend", "for_gpus", "gpus", "log", "clock", "device_memory_bytes", "peak_bytes"}
    assert not [
        p
        for p in paths
        if p.split(".")[-1].startswith("_") and not p.endswith(("__enter__", "__exit__", "__call__"))
    ]


def test_the_gpu_codes_abi_numbers_agree_with_the_doubles(check: ModuleType) -> None:
    """Every CUDA_R_* / CUBLAS_* number the GPU code hard-codes is the one the double checks the
    calls with (the double's R_* / COMPUTE_* names); the script holds both to CuPy and the headers."""
    found: dict[str, set[int]] = {}
    for _where, name, value in check.abi_constants():
        found.setdefault(name, set()).add(value)
    assert {"CUDA_R_8I", "CUDA_R_32I", "CUBLAS_COMPUTE_32I", "CUBLAS_GEMM_DEFAULT"} <= set(found)
    assert {name: values for name, values in found.items() if len(values) > 1} == {}
