"""SHAKE-128 row generation as CUDA source for the GPU executor (also compiles as C++ on a host).

Row r of a seeded matrix is SHAKE-128(ROW_DOMAIN || seed || tag || u32le(r)) squeezed to d bytes,
each byte b mapped to (b mod q) - q//2 (`matrices.gen_rows`). On the host that is ~10 us per
4 KiB row and holds the GIL, so an H100-size A_0 (2**18 rows) would take seconds of the timed
proof; one GPU thread per row makes it milliseconds. The executor checks sampled rows of B and
A_0 against hashlib before it commits; the unit tests check the kernel against hashlib through the
CUDA test double, which builds this same text with g++.
"""

from __future__ import annotations

RATE_BYTES = 168  # SHAKE-128's rate: the whole message (prefix + 4-byte counter) must fit one block

SHAKE_ROWS_SOURCE = r"""
#ifndef __CUDACC__
#define __device__
#define __constant__
#endif
typedef unsigned long long k64_t;
typedef unsigned int k32_t;
typedef unsigned char k8_t;

__constant__ k64_t KECCAK_RC[24] = {
  0x0000000000000001ull, 0x0000000000008082ull, 0x800000000000808aull, 0x8000000080008000ull,
  0x000000000000808bull, 0x0000000080000001ull, 0x8000000080008081ull, 0x8000000000008009ull,
  0x000000000000008aull, 0x0000000000000088ull, 0x0000000080008009ull, 0x000000008000000aull,
  0x000000008000808bull, 0x800000000000008bull, 0x8000000000008089ull, 0x8000000000008003ull,
  0x8000000000008002ull, 0x8000000000000080ull, 0x000000000000800aull, 0x800000008000000aull,
  0x8000000080008081ull, 0x8000000000008080ull, 0x0000000080000001ull, 0x8000000080008008ull};
__constant__ int KECCAK_ROTC[24] = {1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14,
                                   27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20, 44};
__constant__ int KECCAK_PILN[24] = {10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4,
                                   15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1};

__device__ inline k64_t rotl64(k64_t x, int n) { return (x << n) | (x >> (64 - n)); }

__device__ void keccak_f1600(k64_t* st) {
  k64_t bc[5];
  for (int round = 0; round < 24; ++round) {
    for (int i = 0; i < 5; ++i) bc[i] = st[i] ^ st[i + 5] ^ st[i + 10] ^ st[i + 15] ^ st[i + 20];
    for (int i = 0; i < 5; ++i) {
      k64_t t = bc[(i + 4) % 5] ^ rotl64(bc[(i + 1) % 5], 1);
      for (int j = 0; j < 25; j += 5) st[j + i] ^= t;
    }
    k64_t t = st[1];
    for (int i = 0; i < 24; ++i) {
      int j = KECCAK_PILN[i];
      k64_t keep = st[j];
      st[j] = rotl64(t, KECCAK_ROTC[i]);
      t = keep;
    }
    for (int j = 0; j < 25; j += 5) {
      for (int i = 0; i < 5; ++i) bc[i] = st[j + i];
      for (int i = 0; i < 5; ++i) st[j + i] ^= (~bc[(i + 1) % 5]) & bc[(i + 2) % 5];
    }
    st[0] ^= KECCAK_RC[round];
  }
}

#ifdef __CUDACC__
/* One thread per row: out[r] = map(SHAKE-128(prefix || u32le(first + r))[0..d)), prefix_len + 4 < 168. */
extern "C" __global__ void seeded_rows(const k8_t* prefix, k32_t prefix_len, k32_t first, k32_t rows,
                                       k32_t d, k32_t q, signed char* out) {
  k32_t r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r >= rows) return;
  k64_t st[25];
  for (int i = 0; i < 25; ++i) st[i] = 0ull;
  k32_t row = first + r;
  for (k32_t j = 0; j < prefix_len; ++j) st[j >> 3] ^= (k64_t)prefix[j] << (8u * (j & 7u));
  for (k32_t j = 0; j < 4u; ++j) {
    k32_t p = prefix_len + j;
    st[p >> 3] ^= (k64_t)((row >> (8u * j)) & 0xffu) << (8u * (p & 7u));
  }
  k32_t len = prefix_len + 4u;
  st[len >> 3] ^= 0x1full << (8u * (len & 7u));       /* SHAKE domain bits and first pad bit */
  st[167u >> 3] ^= 0x80ull << (8u * (167u & 7u));      /* last pad bit of the 168-byte block */
  keccak_f1600(st);
  signed char* dst = out + (k64_t)r * (k64_t)d;
  int h = (int)(q / 2u);
  for (k32_t j = 0, k = 0; j < d; ++j, ++k) {
    if (k == 168u) { keccak_f1600(st); k = 0; }
    k32_t b = (k32_t)((st[k >> 3] >> (8u * (k & 7u))) & 0xffull);
    dst[j] = (signed char)((int)(b % q) - h);
  }
}
#endif
"""
