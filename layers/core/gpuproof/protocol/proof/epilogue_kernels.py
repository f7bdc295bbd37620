"""The v2 chain step's epilogue as one CUDA kernel: anchor, recentre and pack.

C_t = (A_{t-1} . B_t) + A_0 (the int32 GEMM output plus the int8 anchor), A_t = g_t(C_t) =
((C_t + t) mod 17) - 8 (`matrices.recentre`), written as int8 (the next GEMM's operand), and the
leaf bytes: 8 entries u = A_t + 8 in 5 bytes, group value sum u[8g+k] << 5k little-endian
(`matrices.pack_rows`). One thread per group of 8 entries (rows have d % 8 == 0, so groups never
straddle rows): 32 bytes of C and 8 of A_0 read, 8 + 5 written. No header is needed, under NVRTC
or g++ (the CUDA test double).
"""

from __future__ import annotations

Q = 17

ANCHOR_RECENTRE_PACK_SOURCE = r"""
#ifndef __CUDACC__
#define __device__
#endif
typedef unsigned long long e64_t;
typedef unsigned char e8_t;
typedef signed char e8s_t;

#ifdef __CUDACC__
extern "C" __global__ void anchor_recentre_pack(const int* c, const e8s_t* a0, e64_t groups, int step,
                                                e8s_t* a, e8_t* packed) {
  e64_t g = (e64_t)blockIdx.x * (e64_t)blockDim.x + (e64_t)threadIdx.x;
  if (g >= groups) return;
  e64_t value = 0ull;
  for (int k = 0; k < 8; ++k) {
    e64_t j = 8ull * g + (e64_t)k;
    int r = (c[j] + (int)a0[j] + step) % 17;
    if (r < 0) r += 17;
    a[j] = (e8s_t)(r - 8);
    value |= ((e64_t)r) << (5 * k);
  }
  for (int b = 0; b < 5; ++b) packed[5ull * g + (e64_t)b] = (e8_t)((value >> (8 * b)) & 0xffull);
}
#endif
"""
