"""SHA-256 leaf and node hashing as CUDA source for the GPU executor (also compiles as C++ on a host).

The same text is built by NVRTC (CuPy RawModule) on the GPU and by g++ in the unit tests, which
check it against hashlib: the hashing the GPU runs is tested even where no GPU is present.
"""

from __future__ import annotations

SHA256_SOURCE = r"""
#ifndef __CUDACC__
#define __device__
#define __constant__
#endif
typedef unsigned int u32_t;
typedef unsigned char u8_t;
typedef unsigned long long u64_t; /* no size_t: nothing is #included, under NVRTC or g++ */

__constant__ u32_t K256[64] = {
  0x428a2f98u,0x71374491u,0xb5c0fbcfu,0xe9b5dba5u,0x3956c25bu,0x59f111f1u,0x923f82a4u,0xab1c5ed5u,
  0xd807aa98u,0x12835b01u,0x243185beu,0x550c7dc3u,0x72be5d74u,0x80deb1feu,0x9bdc06a7u,0xc19bf174u,
  0xe49b69c1u,0xefbe4786u,0x0fc19dc6u,0x240ca1ccu,0x2de92c6fu,0x4a7484aau,0x5cb0a9dcu,0x76f988dau,
  0x983e5152u,0xa831c66du,0xb00327c8u,0xbf597fc7u,0xc6e00bf3u,0xd5a79147u,0x06ca6351u,0x14292967u,
  0x27b70a85u,0x2e1b2138u,0x4d2c6dfcu,0x53380d13u,0x650a7354u,0x766a0abbu,0x81c2c92eu,0x92722c85u,
  0xa2bfe8a1u,0xa81a664bu,0xc24b8b70u,0xc76c51a3u,0xd192e819u,0xd6990624u,0xf40e3585u,0x106aa070u,
  0x19a4c116u,0x1e376c08u,0x2748774cu,0x34b0bcb5u,0x391c0cb3u,0x4ed8aa4au,0x5b9cca4fu,0x682e6ff3u,
  0x748f82eeu,0x78a5636fu,0x84c87814u,0x8cc70208u,0x90befffau,0xa4506cebu,0xbef9a3f7u,0xc67178f2u};

__device__ inline u32_t rotr32(u32_t x, int n) { return (x >> n) | (x << (32 - n)); }

/* Byte j of the padded message  prefix || data[0..len)  (total L = len + 1 bytes). */
__device__ inline u32_t msg_byte(u8_t prefix, const u8_t* data, u32_t len, u32_t nblocks, u32_t j) {
  u32_t total = len + 1;
  if (j == 0) return prefix;
  if (j < total) return data[j - 1];
  if (j == total) return 0x80u;
  u32_t end = nblocks * 64u;
  if (j >= end - 4u) { /* low 32 bits of the bit length, big-endian; messages stay < 512 MiB */
    u32_t bits = total * 8u;
    return (bits >> (8u * (end - 1u - j))) & 0xffu;
  }
  return 0u;
}

/* One SHA-256 compression: w[0..16) holds the block's words; w[16..64) is expanded here. Shared by
   every kernel that hashes (sha256_prefixed here, the capacity kernels' cap_sha256_join). */
__device__ void sha256_block(u32_t* st, u32_t* w) {
  for (int t = 16; t < 64; ++t) {
    u32_t s0 = rotr32(w[t-15], 7) ^ rotr32(w[t-15], 18) ^ (w[t-15] >> 3);
    u32_t s1 = rotr32(w[t-2], 17) ^ rotr32(w[t-2], 19) ^ (w[t-2] >> 10);
    w[t] = w[t-16] + s0 + w[t-7] + s1;
  }
  u32_t a = st[0], bb = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
  for (int t = 0; t < 64; ++t) {
    u32_t S1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
    u32_t ch = (e & f) ^ (~e & g);
    u32_t t1 = h + S1 + ch + K256[t] + w[t];
    u32_t S0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
    u32_t mj = (a & bb) ^ (a & c) ^ (bb & c);
    u32_t t2 = S0 + mj;
    h = g; g = f; f = e; e = d + t1; d = c; c = bb; bb = a; a = t1 + t2;
  }
  st[0] += a; st[1] += bb; st[2] += c; st[3] += d; st[4] += e; st[5] += f; st[6] += g; st[7] += h;
}

/* out = SHA-256(prefix || data[0..len)) */
__device__ void sha256_prefixed(u8_t prefix, const u8_t* data, u32_t len, u8_t* out) {
  u32_t st[8] = {0x6a09e667u,0xbb67ae85u,0x3c6ef372u,0xa54ff53au,
                 0x510e527fu,0x9b05688cu,0x1f83d9abu,0x5be0cd19u};
  u32_t nblocks = (len + 1u + 8u) / 64u + 1u;
  u32_t w[64];
  for (u32_t b = 0; b < nblocks; ++b) {
    for (int t = 0; t < 16; ++t) {
      u32_t j = b * 64u + 4u * (u32_t)t;
      w[t] = (msg_byte(prefix, data, len, nblocks, j) << 24)
           | (msg_byte(prefix, data, len, nblocks, j + 1) << 16)
           | (msg_byte(prefix, data, len, nblocks, j + 2) << 8)
           | msg_byte(prefix, data, len, nblocks, j + 3);
    }
    sha256_block(st, w);
  }
  for (int k = 0; k < 8; ++k) {
    out[4*k] = (u8_t)(st[k] >> 24); out[4*k+1] = (u8_t)(st[k] >> 16);
    out[4*k+2] = (u8_t)(st[k] >> 8); out[4*k+3] = (u8_t)st[k];
  }
}

#ifdef __CUDACC__
/* One thread per row: leaf_i = SHA-256(0x00 || packed row i). */
extern "C" __global__ void leaf_hashes(const u8_t* rows, u32_t row_bytes, u32_t n, u8_t* out) {
  u32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) sha256_prefixed(0u, rows + (u64_t)i * row_bytes, row_bytes, out + (u64_t)i * 32u);
}
/* One thread per parent: node_k = SHA-256(0x01 || child 2k || child 2k+1). */
extern "C" __global__ void node_hashes(const u8_t* children, u32_t parents, u8_t* out) {
  u32_t k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k < parents) sha256_prefixed(1u, children + (u64_t)k * 64u, 64u, out + (u64_t)k * 32u);
}
#endif
"""
