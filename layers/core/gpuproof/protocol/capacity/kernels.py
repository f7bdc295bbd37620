"""CUDA source of the capacity phase's GPU executor (`cupy_prover.py`); also compiles as C++ on a host.

Appended to the proof's SHA-256 source (`proof/sha256_kernels.py`: K256, sha256_join, sha256_prefixed)
and its SHAKE-128 row source (`proof/shake_kernels.py`: `seeded_rows`, which maps bytes to
(b mod q) - q//2 and so makes X_0 and B of `fill.gen_rows` with q = 251). Kernels, one thread each:

- `cap_pairs`: the stage GEMM's pair operand, one row [X[a] | X[a + h]] per pair (a the lower row,
  K = 2d) of a group of rows closed under the stage's pairing: a plain copy, one 4-byte word per
  thread (the coefficients k_l = 1 and 6 are in the stage matrix, `cupy_prover.stage_matrix`; a
  lone row, whose mate is at or beyond the valid rows, is not in it: its GEMM reads the buffer);
- `cap_shift`: x + s mod 251 byte by byte (a descent's rows before an inverse stage, `reopen.py`);
- `cap_slabs`: a descent's slabs of X_L, in order, into its buffer (`reopen.py`);
- `cap_pair_epilogue` / `cap_epilogue`: X[i] = g_l(C) = ((C + l) mod 251) - 125 written back IN
  PLACE over both rows of each pair (the operand holds their copy) / over a range of lone rows (their
  product is read before any is written back);
- `cap_subtree`: roots of the 2^height-leaf subtrees of a buffer's rows (leaf = SHA-256(0x00 || row),
  leaves at or beyond v are EMPTY, `merkle.levels`' padding), one subtree per thread;
- `cap_nodes`: one level up (node = SHA-256(0x01 || left || right)); a last node without a right
  sibling is paired with the EMPTY subtree of its height, so padding is never materialised;
- `cap_answer_rows`: answer leaves SHA-256(ANSWER_DOMAIN || nonce || u32 target || u32 item ||
  rows) over consecutive items of `chunk` rows (`fill.answer_leaf`);
- `cap_sample_rows` / `cap_answer_sampled`: the sampled row of each item
  (u64le(SHA-256(SAMPLE_DOMAIN || nonce || u32 target || u32 item)[0:8]) mod N, `draws.sample_row`),
  and its answer leaf read straight from the device's rows;
- `cap_fingerprint`: the bandwidth round's F_s = (X_L . R_s) mod 251, 4 bytes per row
  (`sweep.fingerprints`); its leaves are `cap_answer_rows` over those 4-byte rows with the sweep
  leaf's head (`sweep.sweep_leaf`).

The unit tests build this text with g++ through the CUDA test double and compare every output
with the numpy prover's; NVRTC builds it on a GPU (no header is included).
"""

from __future__ import annotations

from gpuproof.protocol.proof.sha256_kernels import SHA256_SOURCE
from gpuproof.protocol.proof.shake_kernels import SHAKE_ROWS_SOURCE

MAX_SUBTREE_HEIGHT = 10
MAX_HEAD_BYTES = 120  # domain + nonce + target (+ the item's 4 bytes: 128 in all)

CAPACITY_SOURCE = r"""
#ifndef __CUDACC__
#define __device__
#endif
typedef signed char cs8_t;
#define CAP_MAX_HEIGHT 10
#define CAP_HEAD 128

/* head || u32le(item) into h (hlen + 4 <= CAP_HEAD) */
__device__ u32_t cap_head(const u8_t* head, u32_t hlen, u32_t item, u8_t* h) {
  for (u32_t q = 0; q < hlen; ++q) h[q] = head[q];
  for (u32_t q = 0; q < 4u; ++q) h[hlen + q] = (u8_t)((item >> (8u * q)) & 0xffu);
  return hlen + 4u;
}

__device__ u64_t cap_sample_row(const u8_t* head, u32_t hlen, u32_t item, u64_t n) {
  u8_t h[CAP_HEAD];
  u8_t digest[32];
  u32_t len = cap_head(head, hlen, item, h);
  sha256_join(h, len, h, 0ull, digest);
  u64_t r = 0ull;
  for (int q = 0; q < 8; ++q) r |= ((u64_t)digest[q]) << (8 * q);
  return r % n;
}

#ifdef __CUDACC__
/* The pair operand of a stage group: row p = [X[a] | X[a + h]], a = lo + (p / h) 2h + p % h the
   lower row of pair p (the rows of a group pair block by block, or its chunk with the partner chunk
   h rows on); a plain copy, one 4-byte word a thread: the coefficients live in the stage matrix. */
extern "C" __global__ void cap_pairs(const cs8_t* buf, u64_t d, u64_t lo, u64_t h, u64_t pairs, cs8_t* u) {
  u64_t words = d / 4ull;
  u64_t t = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (t >= pairs * 2ull * words) return;
  u64_t p = t / (2ull * words), j = t % (2ull * words);
  u64_t a = lo + (p / h) * 2ull * h + p % h;
  u64_t row = j < words ? a : a + h;
  ((u32_t*)(u + p * 2ull * d))[j] = ((const u32_t*)(buf + row * d))[j % words];
}

/* dst[t] = src[t] + s mod 251, centred, in place allowed (a descent's rows before an inverse stage:
   X_l + 125 - l undoes g_l's offset, reopen.py). */
extern "C" __global__ void cap_shift(const cs8_t* src, u64_t count, int s, cs8_t* dst) {
  u64_t t = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (t >= count) return;
  int r = ((int)src[t] + s + 125) % 251;
  if (r < 0) r += 251;
  dst[t] = (cs8_t)(r - 125);
}

/* A descent's rows (reopen.py): slab k (rows k 2^c + j0 .. + w - 1 of src, those below n) to rows
   k w .. of dst, k < 2^m, in order; one 4-byte word a thread. */
extern "C" __global__ void cap_slabs(const cs8_t* src, u64_t n, u64_t d, u64_t c, u64_t j0, u32_t m,
                                     u64_t w, cs8_t* dst) {
  u64_t words = d / 4ull;
  u64_t t = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (t >= (w << m) * words) return;
  u64_t j = t % words, row = t / words;
  u64_t o = row % w, k = row / w;
  u64_t s = (k << c) + j0 + o;
  if (s >= n) return;
  ((u32_t*)(dst + row * d))[j] = ((const u32_t*)(src + s * d))[j];
}

/* g_l over a pair product (pairs x 2d int32: the lower row's d entries, then the upper row's),
   written back IN PLACE over both rows of each pair (the operand holds a copy of them). */
extern "C" __global__ void cap_pair_epilogue(const int* c, u64_t d, u64_t lo, u64_t h, u64_t pairs, int stage,
                                             cs8_t* buf) {
  u64_t t = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (t >= pairs * 2ull * d) return;
  u64_t p = t / (2ull * d), j = t % (2ull * d);
  u64_t a = lo + (p / h) * 2ull * h + p % h;
  u64_t row = j < d ? a : a + h;
  int r = (c[t] + stage) % 251;
  if (r < 0) r += 251;
  buf[row * d + j % d] = (cs8_t)(r - 125);
}

/* g_l over a lone rows' product (rows x d int32), written back over rows first .. first + rows - 1. */
extern "C" __global__ void cap_epilogue(const int* c, u64_t d, u64_t first, u64_t rows, int stage,
                                        cs8_t* buf) {
  u64_t t = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (t >= rows * d) return;
  int r = (c[t] + stage) % 251;
  if (r < 0) r += 251;
  buf[first * d + t] = (cs8_t)(r - 125);
}

extern "C" __global__ void cap_subtree(const u8_t* rows, u32_t row_bytes, u64_t v, u32_t height,
                                       const u8_t* empty, u64_t nodes, u8_t* out) {
  u64_t t = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (t >= nodes || height > CAP_MAX_HEIGHT) return;
  u8_t stack[CAP_MAX_HEIGHT + 1][32];
  u32_t level[CAP_MAX_HEIGHT + 1];
  u8_t cur[32];
  alignas(16) u8_t pair[64];
  int sp = 0;
  u64_t width = 1ull << height;
  for (u64_t j = 0; j < width; ++j) {
    u64_t row = t * width + j;
    if (row < v) sha256_prefixed(0u, rows + row * (u64_t)row_bytes, row_bytes, cur);
    else for (int q = 0; q < 32; ++q) cur[q] = empty[q];
    u32_t lv = 0u;
    while (sp > 0 && level[sp - 1] == lv) {
      for (int q = 0; q < 32; ++q) { pair[q] = stack[sp - 1][q]; pair[32 + q] = cur[q]; }
      sha256_prefixed(1u, pair, 64u, cur);
      --sp;
      ++lv;
    }
    for (int q = 0; q < 32; ++q) stack[sp][q] = cur[q];
    level[sp] = lv;
    ++sp;
  }
  for (int q = 0; q < 32; ++q) out[t * 32ull + (u64_t)q] = stack[0][q];
}

extern "C" __global__ void cap_nodes(const u8_t* children, u64_t m, const u8_t* empty, u64_t parents,
                                     u8_t* out) {
  u64_t k = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (k >= parents) return;
  if (2ull * k + 1ull < m) {
    sha256_prefixed(1u, children + 64ull * k, 64u, out + 32ull * k);
    return;
  }
  alignas(16) u8_t pair[64];
  for (int q = 0; q < 32; ++q) { pair[q] = children[64ull * k + (u64_t)q]; pair[32 + q] = empty[q]; }
  sha256_prefixed(1u, pair, 64u, out + 32ull * k);
}

extern "C" __global__ void cap_answer_rows(const u8_t* head, u32_t hlen, const cs8_t* buf, u64_t v, u64_t d,
                                           u64_t chunk, u32_t first_item, u64_t items, u8_t* out) {
  u64_t t = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (t >= items) return;
  u8_t h[CAP_HEAD];
  u32_t len = cap_head(head, hlen, first_item + (u32_t)t, h);
  u64_t start = t * chunk;
  u64_t stop = start + chunk;
  if (stop > v) stop = v;
  sha256_join(h, len, (const u8_t*)(buf + start * d), (stop - start) * d, out + 32ull * t);
}

extern "C" __global__ void cap_sample_rows(const u8_t* head, u32_t hlen, u32_t first_item, u64_t items,
                                           u64_t n, u64_t* out) {
  u64_t t = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (t >= items) return;
  out[t] = cap_sample_row(head, hlen, first_item + (u32_t)t, n);
}

extern "C" __global__ void cap_answer_sampled(const u8_t* answer_head, u32_t alen, const u8_t* sample_head,
                                              u32_t slen, const cs8_t* buf, u64_t n, u64_t d,
                                              u32_t first_item, u64_t items, u8_t* out) {
  u64_t t = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (t >= items) return;
  u32_t item = first_item + (u32_t)t;
  u64_t row = cap_sample_row(sample_head, slen, item, n);
  u8_t h[CAP_HEAD];
  u32_t len = cap_head(answer_head, alen, item, h);
  sha256_join(h, len, (const u8_t*)(buf + row * d), d, out + 32ull * t);
}

/* The bandwidth round's fingerprints (sweep.fingerprints): out[i][j] = (X[i] . R[:, j]) mod 251 as
   0..250, R a d x 4 int8 matrix row-major; |sum| <= d 125^2 < 2^31 for d <= 8192. */
extern "C" __global__ void cap_fingerprint(const cs8_t* buf, u64_t v, u64_t d, const cs8_t* r, u8_t* out) {
  u64_t i = (u64_t)blockIdx.x * (u64_t)blockDim.x + (u64_t)threadIdx.x;
  if (i >= v) return;
  int acc[4] = {0, 0, 0, 0};
  const cs8_t* row = buf + i * d;
  for (u64_t k = 0; k < d; ++k) {
    int x = (int)row[k];
    for (int j = 0; j < 4; ++j) acc[j] += x * (int)r[k * 4ull + (u64_t)j];
  }
  for (int j = 0; j < 4; ++j) {
    int m = acc[j] % 251;
    if (m < 0) m += 251;
    out[i * 4ull + (u64_t)j] = (u8_t)m;
  }
}
#endif
"""

SOURCE = SHA256_SOURCE + SHAKE_ROWS_SOURCE + CAPACITY_SOURCE
