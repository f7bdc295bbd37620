"""Compile a GPU executor's kernel source with the real NVRTC library (no GPU needed), as CuPy's
RawModule would, and say whether every kernel is exported.

    pip download --no-deps nvidia-cuda-nvrtc-cu12 -d /tmp/nvrtc && unzip -q /tmp/nvrtc/*.whl -d /tmp/nvrtc/x
    python scripts/nvrtc_check.py --lib /tmp/nvrtc/x/nvidia/cuda_nvrtc/lib/libnvrtc.so.12
    python scripts/nvrtc_check.py --lib ... --source capacity   # the capacity phase's kernels

Exit 0 when the build succeeds with an empty log and all kernels are in the PTX.
"""

from __future__ import annotations

import argparse
import ctypes
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "core"))

from gpuproof.protocol.capacity.kernels import SOURCE as CAPACITY_SOURCE
from gpuproof.protocol.proof.epilogue_kernels import ANCHOR_RECENTRE_PACK_SOURCE
from gpuproof.protocol.proof.sha256_kernels import SHA256_SOURCE
from gpuproof.protocol.proof.shake_kernels import SHAKE_ROWS_SOURCE

SOURCES = {
    "proof": (
        SHA256_SOURCE + SHAKE_ROWS_SOURCE + ANCHOR_RECENTRE_PACK_SOURCE,
        ("leaf_hashes", "node_hashes", "seeded_rows", "anchor_recentre_pack"),
    ),
    "capacity": (
        CAPACITY_SOURCE,
        (
            "seeded_rows",
            "cap_pairs",
            "cap_pair_epilogue",
            "cap_epilogue",
            "cap_subtree",
            "cap_nodes",
            "cap_answer_rows",
            "cap_sample_rows",
            "cap_answer_sampled",
            "cap_fingerprint",
            "cap_shift",
            "cap_slabs",
        ),
    ),
}


# What CuPy 14.2's NVRTC path adds to a RawModule's options (`_compile_with_cache_cuda`: -ftz=true;
# `_compile_using_nvrtc_no_warning`: the arch, --device-as-default-execution-space, and --pch from
# NVRTC 12.8 on).
CUPY_OPTIONS = ("-ftz=true", "--device-as-default-execution-space", "--pch")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lib", required=True, help="path to libnvrtc.so")
    parser.add_argument("--arch", default="compute_90", help="virtual architecture (H100/H200: compute_90)")
    parser.add_argument("--source", choices=sorted(SOURCES), default="proof", help="which executor's kernels")
    parser.add_argument(
        "--cupy-options",
        action="store_true",
        help="also the options CuPy 14's RawModule adds (cupy/cuda/compiler.py): " + " ".join(CUPY_OPTIONS),
    )
    args = parser.parse_args()
    text, kernels = SOURCES[args.source]
    nvrtc = ctypes.CDLL(args.lib)
    major, minor = ctypes.c_int(), ctypes.c_int()
    nvrtc.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    source = text.encode()
    program = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(program), source, b"gpuproof.cu", 0, None, None) != 0:
        print("nvrtcCreateProgram failed")
        return 1
    options = [b"--std=c++11", f"-arch={args.arch}".encode()]  # what the executor passes, plus the arch
    if args.cupy_options:
        options += [o.encode() for o in CUPY_OPTIONS]
    started = time.perf_counter()
    status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    compile_s = time.perf_counter() - started  # what a first run pays (CuPy caches the result)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    ptx_text = ""
    if status == 0 and args.arch.startswith("sm_"):  # a real architecture: NVRTC emits CUBIN (as CuPy
        nvrtc.nvrtcGetCUBINSize(program, ctypes.byref(size))  # asks for on a GPU it knows), no PTX
        kernels = ()
    elif status == 0:
        nvrtc.nvrtcGetPTXSize(program, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetPTX(program, ptx)
        ptx_text = ptx.value.decode()
    exported = {k: f".entry {k}" in ptx_text for k in kernels}
    print(
        f"NVRTC {major.value}.{minor.value}, {' '.join(o.decode() for o in options)}: status {status}, "
        f"compiled in {compile_s:.2f} s"
    )
    print(f"log: {log.value.decode().strip() or '(empty)'}")
    for kernel, ok in exported.items():
        print(f"  {kernel}: {'exported' if ok else 'MISSING'}")
    # --pch's note that it wrote its precompiled header is the one line of the log that is no warning
    warnings = [
        line for line in log.value.decode().splitlines() if line.strip() and "precompiled header" not in line
    ]
    return 0 if status == 0 and not warnings and all(exported.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
