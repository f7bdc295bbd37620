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

/* Under NVRTC (__CUDA_ARCH__): forced inlining, full unrolling (the schedule's 16 words and the
   constants stay in registers), PRMT for the byte order. Elsewhere (g++: the unit tests, the CUDA
   test double) the same code as plain C++. */
#ifdef __CUDA_ARCH__
#define SHA_INLINE __forceinline__
#define SHA_UNROLL _Pragma("unroll")
#define SHA_NOINLINE __noinline__
__device__ __forceinline__ u32_t sha_perm(u32_t lo, u32_t hi, u32_t sel) { return __byte_perm(lo, hi, sel); }
__device__ __forceinline__ u32_t sha_load32(const u8_t* p) { return *(const u32_t*)p; }
#else
#define SHA_INLINE inline
#define SHA_UNROLL
#define SHA_NOINLINE
/* __byte_perm: byte n of the result is byte (sel >> 4n) & 7 of hi:lo */
inline u32_t sha_perm(u32_t lo, u32_t hi, u32_t sel) {
  u64_t v = ((u64_t)hi << 32) | (u64_t)lo;
  u32_t r = 0u;
  for (int n = 0; n < 4; ++n) r |= (u32_t)((v >> (8u * ((sel >> (4 * n)) & 7u))) & 0xffu) << (8 * n);
  return r;
}
inline u32_t sha_load32(const u8_t* p) { u32_t v; __builtin_memcpy(&v, p, 4); return v; }
#endif

__device__ SHA_INLINE u32_t rotr32(u32_t x, int n) { return (x >> n) | (x << (32 - n)); }

/* One SHA-256 compression of the block m[0..16) (big-endian words) into st; the schedule is
   expanded in a ring of 16 words. Shared by every kernel that hashes (through sha256_join). */
__device__ SHA_INLINE void sha256_block(u32_t* st, const u32_t* m) {
  u32_t w[16];
  SHA_UNROLL
  for (int t = 0; t < 16; ++t) w[t] = m[t];
  u32_t a = st[0], bb = st[1], c = st[2], d = st[3], e = st[4], f = st[5], g = st[6], h = st[7];
  SHA_UNROLL
  for (int t = 0; t < 64; ++t) {
    u32_t wt;
    if (t < 16) {
      wt = w[t];
    } else {
      u32_t x = w[(t + 1) & 15], y = w[(t + 14) & 15];
      u32_t s0 = rotr32(x, 7) ^ rotr32(x, 18) ^ (x >> 3);
      u32_t s1 = rotr32(y, 17) ^ rotr32(y, 19) ^ (y >> 10);
      wt = w[t & 15] + s0 + w[(t + 9) & 15] + s1;
      w[t & 15] = wt;
    }
    u32_t S1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
    u32_t ch = (e & f) ^ (~e & g);
    u32_t t1 = h + S1 + ch + K256[t] + wt;
    u32_t S0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
    u32_t mj = (a & bb) ^ (a & c) ^ (bb & c);
    u32_t t2 = S0 + mj;
    h = g; g = f; f = e; e = d + t1; d = c; c = bb; bb = a; a = t1 + t2;
  }
  st[0] += a; st[1] += bb; st[2] += c; st[3] += d; st[4] += e; st[5] += f; st[6] += g; st[7] += h;
}

/* The word at byte j assembled byte by byte (only the words that straddle the head, data and the
   0x80 byte take it: at most two a block; out of line, so each call site stays small). */
__device__ SHA_NOINLINE u32_t sha_word_bytes(const u8_t* head, u32_t hlen, const u8_t* data, u64_t total,
                                             u64_t j) {
  u32_t word = 0u;
  for (int k = 0; k < 4; ++k) {
    u64_t q = j + (u64_t)k;
    u32_t byte;
    if (q < (u64_t)hlen) byte = head[q];
    else if (q < total) byte = data[q - (u64_t)hlen];
    else if (q == total) byte = 0x80u;
    else byte = 0u;
    word = (word << 8) | byte;
  }
  return word;
}

/* Big-endian word at byte j (a multiple of 4) of the padded message
   head[0..hlen) || data[0..dlen) || 0x80 || 0.. || u64be(8 (hlen + dlen)), `end` bytes in all.
   A word past the 0x80 byte is zero or the length. `fast` (data 4-byte aligned, dlen a multiple
   of 4): a word wholly inside data is two aligned loads and one byte permutation (`shift` = its
   offset in the aligned word, `sel` the selector). The rest: byte by byte. */
__device__ SHA_INLINE u32_t sha_word(const u8_t* head, u32_t hlen, const u8_t* data, u64_t dlen, u64_t end,
                                     u64_t j, bool fast, u32_t shift, u32_t sel) {
  u64_t total = (u64_t)hlen + dlen;
  if (j > total) { /* the length's 8 bytes are the last; the 0x80 byte is before them */
    u64_t bits = total * 8ull;
    if (j == end - 8ull) return (u32_t)(bits >> 32);
    if (j == end - 4ull) return (u32_t)bits;
    return 0u;
  }
  if (fast && j >= (u64_t)hlen && j + 4ull <= total) {
    const u8_t* p = data + (j - (u64_t)hlen - (u64_t)shift);
    u32_t lo = sha_load32(p);
    u32_t hi = shift ? sha_load32(p + 4) : 0u; /* in data: dlen is a multiple of 4 */
    return sha_perm(lo, hi, sel);
  }
  return sha_word_bytes(head, hlen, data, total, j);
}

/* One block wholly inside aligned data: its 16 words from the 4-byte words at p (aligned, `shift`
   bytes before the block's first byte), two loads and one permutation each. */
__device__ SHA_INLINE void sha256_block_at(u32_t* st, const u8_t* p, u32_t shift, u32_t sel) {
  u32_t w[16];
  u32_t next = sha_load32(p);
  SHA_UNROLL
  for (int t = 0; t < 16; ++t) {
    u32_t cur = next;
    next = (t < 15 || shift) ? sha_load32(p + 4 * (t + 1)) : 0u; /* past the block only if shift > 0 */
    w[t] = sha_perm(cur, next, sel);
  }
  sha256_block(st, w);
}

/* Block 0 of a 1..3-byte head || aligned data (a leaf's 0x00, a node's 0x01): `first` holds the
   head's bytes where an aligned word before data would hold them, so the block is 16 loads and
   16 permutations like any other. */
__device__ SHA_INLINE void sha256_block_head(u32_t* st, u32_t first, const u8_t* data, u32_t sel) {
  u32_t w[16];
  u32_t cur = first;
  SHA_UNROLL
  for (int t = 0; t < 16; ++t) {
    u32_t next = sha_load32(data + 4 * t);
    w[t] = sha_perm(cur, next, sel);
    cur = next;
  }
  sha256_block(st, w);
}

/* out = SHA-256(head[0..hlen) || data[0..dlen)) */
__device__ void sha256_join(const u8_t* head, u32_t hlen, const u8_t* data, u64_t dlen, u8_t* out) {
  u32_t st[8] = {0x6a09e667u,0xbb67ae85u,0x3c6ef372u,0xa54ff53au,
                 0x510e527fu,0x9b05688cu,0x1f83d9abu,0x5be0cd19u};
  u64_t total = (u64_t)hlen + dlen;
  u64_t nblocks = (total + 8ull) / 64ull + 1ull;
  u64_t end = nblocks * 64ull;
  bool fast = ((((u64_t)data) | dlen) & 3ull) == 0ull;
  u32_t shift = (0u - hlen) & 3u;
  u32_t sel = (shift << 12) | ((shift + 1u) << 8) | ((shift + 2u) << 4) | (shift + 3u);
  /* blocks [lo, hi) lie wholly inside data: on the fast path, no word of theirs is checked */
  u64_t lo = ((u64_t)hlen + 63ull) / 64ull, hi = total / 64ull;
  if (!fast || hi < lo) { lo = nblocks; hi = nblocks; }
  u64_t first_block = 0;
  if (fast && hlen >= 1u && hlen <= 3u && dlen >= 64ull) {
    u32_t first = 0u;
    for (u32_t i = 0; i < hlen; ++i) first |= (u32_t)head[i] << (8u * (shift + i));
    sha256_block_head(st, first, data, sel);
    first_block = 1;
  }
  for (u64_t b = first_block; b < nblocks; ++b) {
    u32_t w[16];
    if (b == lo) {
      for (; b < hi; ++b) sha256_block_at(st, data + (b * 64ull - (u64_t)hlen - (u64_t)shift), shift, sel);
      if (b == nblocks) break;
    }
    SHA_UNROLL
    for (int t = 0; t < 16; ++t)
      w[t] = sha_word(head, hlen, data, dlen, end, b * 64ull + 4ull * (u64_t)t, fast, shift, sel);
    sha256_block(st, w);
  }
  for (int k = 0; k < 8; ++k) {
    out[4*k] = (u8_t)(st[k] >> 24); out[4*k+1] = (u8_t)(st[k] >> 16);
    out[4*k+2] = (u8_t)(st[k] >> 8); out[4*k+3] = (u8_t)st[k];
  }
}

/* out = SHA-256(prefix || data[0..len)) */
__device__ SHA_INLINE void sha256_prefixed(u8_t prefix, const u8_t* data, u32_t len, u8_t* out) {
  sha256_join(&prefix, 1u, data, (u64_t)len, out);
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
