"""The GPU executor's SHA-256 built for sm_90 (H100/H200) by the real NVRTC and ptxas, no GPU
needed: per kernel its registers, stack and spills, and the machine instructions of one
compression, so the device SHA-256 rate the estimates use is derived from the code we ship
instead of guessed. An ESTIMATE of a rate, not a measurement: `scripts/gpu_check.sh` measures it.

    pip download --no-deps nvidia-cuda-nvrtc-cu12==12.9.86 nvidia-cuda-nvcc-cu12==12.9.86 -d /tmp/cuda
    for w in /tmp/cuda/*.whl; do unzip -q -o "$w" -d /tmp/cuda/x; done
    python scripts/sha_static.py --nvrtc /tmp/cuda/x/nvidia/cuda_nvrtc/lib/libnvrtc.so.12 \
        --ptxas /tmp/cuda/x/nvidia/cuda_nvcc/bin/ptxas [--json out.json]

Method. Probe kernels call the shipped device functions (`sha256_block`, `sha256_block_at`,
`sha_word`) on data read from memory at run time, so nothing is folded: one and two chained
compressions, one and two whole blocks of aligned data (loads, byte permutations and the
compression), one and two first blocks behind a 1-byte head (a leaf's or a node's), and one block assembled word by word (the blocks that touch a head or the
padding: each word's inline paths, plus the out-of-line byte path `sha_word_bytes` for the at
most two words that straddle head | data and data | 0x80). sm_90 code is 16 bytes an instruction, so a kernel's `.text` section (from the cubin's
ELF section table) counts its instructions; the difference of the two-call and one-call probes is
one call's instructions, straight-line (every loop in them is unrolled: `SHA_UNROLL`). The
word-by-word block's count holds every inline path of each word, an upper bound on what runs.

Rate = SMs x 64 x clock x achieved / instructions: every instruction taken to issue at the
32-bit integer rate, 64 per SM per clock on compute capability 9.0 (CUDA C++ Programming Guide,
"Arithmetic Instructions" throughput table: add, shift, bitwise, compare; the slowest pipe any of
them uses, so issue limits nothing further), at the datasheet's boost clock with the reference
table's achieved fraction for int8 GEMM (0.70), the same convention as every other rate here.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "layers" / "core"))

from gpuproof.protocol.capacity.kernels import SOURCE as CAPACITY_SOURCE

SMS = 132  # H100 SXM5: 132 SMs (NVIDIA H100 Tensor Core GPU datasheet / whitepaper)
BOOST_HZ = 1.98e9  # its boost clock (67 FP32 TFLOPS = 132 x 128 x 2 x 1.98 GHz)
INT32_PER_SM_CLOCK = 64  # compute capability 9.0, 32-bit integer add/shift/bitwise
ACHIEVED = 0.70  # the reference table's int8_achieved_fraction (data/gpu_reference.csv)
BYTES_PER_INSTRUCTION = 16  # sm_90 (Volta and later): 128-bit instructions


@dataclass(frozen=True)
class BlockCounts:
    """sm_90 instructions of one compression and of each kind of block (`analyse`), and the rates
    they give under the module's assumptions."""

    compression: int
    block: int  # a block wholly inside aligned data
    head_block: int  # block 0 behind a 1-byte head
    edge_block: int  # a block that touches the padding (upper bound)

    def per_row(self, d: int) -> int:
        """A leaf (0x00 || d bytes: its head block, blocks [1, (1 + d) // 64) wholly inside the row,
        the rest touching the padding) and one node (0x01 || 64 bytes: its head block, then one
        block of padding): a tree has one node per leaf, less one."""
        blocks = (d + 1 + 8) // 64 + 1
        if d < 64:  # no block 0 behind the head (sha256_join needs 64 bytes of data for it)
            return blocks * self.edge_block + self.head_block + self.edge_block
        whole = (d + 1) // 64 - 1
        leaf = self.head_block + whole * self.block + (blocks - 1 - whole) * self.edge_block
        return leaf + self.head_block + self.edge_block

    @staticmethod
    def instructions_per_s() -> float:
        return SMS * BOOST_HZ * INT32_PER_SM_CLOCK * ACHIEVED

    def row_bytes_per_s(self, d: int) -> float:
        return d * self.instructions_per_s() / self.per_row(d)

    def compressions_per_s(self) -> float:
        return self.instructions_per_s() / self.compression


# This script's counts on 2026-12-03 (NVRTC + ptxas 12.9.86; docs/measurements.md), what the
# estimates use (scripts/probe_estimate.py) and gpu_check compares its measured rate with.
RECORDED = BlockCounts(compression=1400, block=1448, head_block=1416, edge_block=2576)

PROBES = r"""
#ifdef __CUDACC__
extern "C" __global__ void probe_c1(const u32_t* in, u32_t* out) {
  u32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  const u32_t* p = in + 40u * t;
  u32_t st[8], m[16];
  for (int k = 0; k < 8; ++k) st[k] = p[k];
  for (int k = 0; k < 16; ++k) m[k] = p[8 + k];
  sha256_block(st, m);
  for (int k = 0; k < 8; ++k) out[8u * t + k] = st[k];
}
extern "C" __global__ void probe_c2(const u32_t* in, u32_t* out) {
  u32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  const u32_t* p = in + 40u * t;
  u32_t st[8], m[16], m2[16];
  for (int k = 0; k < 8; ++k) st[k] = p[k];
  for (int k = 0; k < 16; ++k) m[k] = p[8 + k];
  for (int k = 0; k < 16; ++k) m2[k] = p[24 + k];
  sha256_block(st, m);
  sha256_block(st, m2);
  for (int k = 0; k < 8; ++k) out[8u * t + k] = st[k];
}
extern "C" __global__ void probe_a1(const u8_t* data, const u32_t* in, u32_t shift, u32_t sel, u32_t* out) {
  u32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  u32_t st[8];
  for (int k = 0; k < 8; ++k) st[k] = in[8u * t + k];
  sha256_block_at(st, data + 1024ull * t, shift, sel);
  for (int k = 0; k < 8; ++k) out[8u * t + k] = st[k];
}
extern "C" __global__ void probe_a2(const u8_t* data, const u32_t* in, u32_t shift, u32_t sel, u32_t* out) {
  u32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  u32_t st[8];
  for (int k = 0; k < 8; ++k) st[k] = in[8u * t + k];
  sha256_block_at(st, data + 1024ull * t, shift, sel);
  sha256_block_at(st, data + 1024ull * t + 64ull, shift, sel);
  for (int k = 0; k < 8; ++k) out[8u * t + k] = st[k];
}
extern "C" __global__ void probe_h1(const u8_t* data, const u32_t* in, u32_t first, u32_t sel, u32_t* out) {
  u32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  u32_t st[8];
  for (int k = 0; k < 8; ++k) st[k] = in[8u * t + k];
  sha256_block_head(st, first, data + 1024ull * t, sel);
  for (int k = 0; k < 8; ++k) out[8u * t + k] = st[k];
}
extern "C" __global__ void probe_h2(const u8_t* data, const u32_t* in, u32_t first, u32_t sel, u32_t* out) {
  u32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  u32_t st[8];
  for (int k = 0; k < 8; ++k) st[k] = in[8u * t + k];
  sha256_block_head(st, first, data + 1024ull * t, sel);
  sha256_block_head(st, first ^ st[0], data + 1024ull * t + 64ull, sel);
  for (int k = 0; k < 8; ++k) out[8u * t + k] = st[k];
}
extern "C" __global__ void probe_w1(const u8_t* head, u32_t hlen, const u8_t* data, u64_t dlen, u64_t end,
                                    u32_t b, u32_t fast, u32_t shift, u32_t sel, const u32_t* in, u32_t* out) {
  u32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  u32_t st[8], w[16];
  for (int k = 0; k < 8; ++k) st[k] = in[8u * t + k];
  const u8_t* row = data + 1024ull * t;
  SHA_UNROLL
  for (int k = 0; k < 16; ++k) w[k] = sha_word(head, hlen, row, dlen, end, 64ull * b + 4ull * k, fast != 0u, shift, sel);
  sha256_block(st, w);
  for (int k = 0; k < 8; ++k) out[8u * t + k] = st[k];
}
extern "C" __global__ void probe_b0(const u8_t* head, u32_t hlen, const u8_t* data, u64_t total, u32_t* out) {
  u32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  out[t] = (u32_t)head[t % hlen] ^ (u32_t)data[t] ^ (u32_t)total;
}
extern "C" __global__ void probe_b1(const u8_t* head, u32_t hlen, const u8_t* data, u64_t total, u32_t* out) {
  u32_t t = blockIdx.x * blockDim.x + threadIdx.x;
  out[t] = (u32_t)head[t % hlen] ^ (u32_t)data[t] ^ sha_word_bytes(head, hlen, data, total, 4ull * t);
}
#endif
"""

KERNELS = ("leaf_hashes", "node_hashes", "cap_subtree", "cap_nodes", "cap_answer_rows", "cap_answer_sampled")


def _nvrtc_ptx(lib: str, source: str) -> str:
    nvrtc = ctypes.CDLL(lib)
    program = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(program), source.encode(), b"sha.cu", 0, None, None) != 0:
        raise SystemExit("nvrtcCreateProgram failed")
    options = [b"--std=c++11", b"-arch=compute_90"]
    status = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    if status != 0:
        raise SystemExit(f"NVRTC status {status}:\n{log.value.decode()}")
    nvrtc.nvrtcGetPTXSize(program, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetPTX(program, ptx)
    return ptx.value.decode()


def text_sizes(cubin: bytes) -> dict[str, int]:
    """`.text.<function>` section sizes of an ELF64 little-endian cubin (its section header table)."""
    if cubin[:4] != b"\x7fELF" or cubin[4] != 2 or cubin[5] != 1:
        raise ValueError("not an ELF64 little-endian file")
    shoff = struct.unpack_from("<Q", cubin, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", cubin, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", cubin, shoff + k * shentsize) for k in range(shnum)]
    strtab_off = sections[shstrndx][4]

    def name(offset: int) -> str:
        end = cubin.index(b"\0", strtab_off + offset)
        return cubin[strtab_off + offset : end].decode()

    out = {}
    for sh in sections:
        label = name(sh[0])
        if label.startswith(".text."):
            out[label[len(".text.") :]] = int(sh[5])
    return out


RESOURCE = re.compile(
    r"Compiling entry function '(\w+)' for 'sm_90'.*?"
    r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads.*?Used (\d+) registers",
    re.S,
)


def analyse(nvrtc: str, ptxas: str) -> dict[str, object]:
    ptx = _nvrtc_ptx(nvrtc, CAPACITY_SOURCE + PROBES)
    with tempfile.TemporaryDirectory() as tmp:
        src, cubin = Path(tmp) / "sha.ptx", Path(tmp) / "sha.cubin"
        src.write_text(ptx)
        done = subprocess.run(
            [ptxas, "-arch=sm_90", "-O3", "-v", str(src), "-o", str(cubin)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise SystemExit(f"ptxas failed:\n{done.stderr[-4000:]}")
        sizes = {k: v // BYTES_PER_INSTRUCTION for k, v in text_sizes(cubin.read_bytes()).items()}
    resources = {
        m[0]: {
            "stack_bytes": int(m[1]),
            "spill_stores": int(m[2]),
            "spill_loads": int(m[3]),
            "registers": int(m[4]),
        }
        for m in RESOURCE.findall(done.stderr)
    }
    compression = sizes["probe_c2"] - sizes["probe_c1"]
    block = sizes["probe_a2"] - sizes["probe_a1"]
    head_block = sizes["probe_h2"] - sizes["probe_h1"]
    overhead = sizes["probe_c1"] - compression  # loads, stores, index arithmetic around one call
    # out of line: its code sits in each caller's section (whole-program cubin), once
    byte_word = sizes["probe_b1"] - sizes["probe_b0"]
    # a block that touches the head or the padding: every word's inline paths (an upper bound) and
    # at most two words byte by byte (the ones that straddle head | data and data | 0x80)
    edge = sizes["probe_w1"] - overhead + 2 * byte_word
    counts = BlockCounts(compression=compression, block=block, head_block=head_block, edge_block=edge)
    rows = {
        d: {"instructions_per_row": counts.per_row(d), "row_bytes_per_s": counts.row_bytes_per_s(d)}
        for d in (512, 1024, 4096)
    }
    return {
        "kernels": {k: resources.get(k) for k in KERNELS},
        "probes": {
            k: resources.get(k)
            for k in (
                "probe_c1",
                "probe_c2",
                "probe_a1",
                "probe_a2",
                "probe_h1",
                "probe_h2",
                "probe_w1",
                "probe_b1",
            )
        },
        "instructions": {k: sizes[k] for k in sorted(sizes) if k.startswith("probe_") or k in KERNELS},
        "compression_instructions": compression,
        "aligned_block_instructions": block,
        "head_block_instructions": head_block,
        "byte_word_instructions": byte_word,
        "edge_block_instructions_max": edge,
        "assumed": {
            "sms": SMS,
            "boost_hz": BOOST_HZ,
            "int32_per_sm_clock": INT32_PER_SM_CLOCK,
            "achieved": ACHIEVED,
        },
        "compressions_per_s": counts.compressions_per_s(),
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nvrtc", required=True, help="path to libnvrtc.so.12")
    parser.add_argument("--ptxas", required=True, help="path to ptxas (nvidia-cuda-nvcc-cu12)")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args()
    out = analyse(args.nvrtc, args.ptxas)
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
