"""The chain step's epilogue as one CUDA kernel: recentre C_t into A_t and pack the leaf bytes.

A_t = g_t(C_t) = ((C_t + t) mod q) - q//2 (`matrices.recentre`) written as fp16 bit patterns, and
the leaf bytes u[2k] | u[2k+1] << 4 with u = A_t + q//2 (`matrices.pack_rows`), in one pass over
C_t: 4 bytes read, 2 + 0.5 written per entry. fp16 bits are built by hand for these small
integers, so no header (cuda_fp16.h) is needed under NVRTC or g++ (the CUDA test double).
"""

from __future__ import annotations

MAX_Q = 16  # two residues per byte

RECENTRE_PACK_SOURCE = r"""
#ifndef __CUDACC__
#define __device__
#endif
typedef unsigned long long e64_t;
typedef unsigned short e16_t;
typedef unsigned char e8_t;

/* IEEE fp16 bits of an integer v with |v| < 2048 (exact). */
__device__ inline e16_t half_of_small_int(int v) {
  if (v == 0) return (e16_t)0;
  e16_t sign = v < 0 ? (e16_t)0x8000u : (e16_t)0u;
  unsigned m = (unsigned)(v < 0 ? -v : v);
  int e = 0;
  while ((m >> (e + 1)) != 0u) ++e; /* floor(log2 m) */
  return (e16_t)(sign | (e16_t)((e + 15) << 10) | (e16_t)((m << (10 - e)) & 0x3ffu));
}

#ifdef __CUDACC__
/* One thread per pair of entries (rows have even length d, so pairs never straddle rows). */
extern "C" __global__ void recentre_pack(const float* c, e64_t pairs, int step, int q,
                                         e16_t* a, e8_t* packed) {
  e64_t k = (e64_t)blockIdx.x * (e64_t)blockDim.x + (e64_t)threadIdx.x;
  if (k >= pairs) return;
  int h = q / 2;
  int r0 = ((int)c[2 * k] + step) % q;
  if (r0 < 0) r0 += q;
  int r1 = ((int)c[2 * k + 1] + step) % q;
  if (r1 < 0) r1 += q;
  a[2 * k] = half_of_small_int(r0 - h);
  a[2 * k + 1] = half_of_small_int(r1 - h);
  packed[k] = (e8_t)(r0 | (r1 << 4));
}
#endif
"""
