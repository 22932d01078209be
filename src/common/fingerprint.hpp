// The base-line fingerprint (adapter format 2): 64-bit FNV-1a over, for
// each element of the line in order, the two little-endian bytes of its
// value rounded to bfloat16 (the value widened exactly to f32, rounded to
// nearest even; every NaN as 0x7fc0). Hashing bf16-rounded values rather
// than the stored bytes makes an f32 base and its bf16 copy (made by
// rounding to nearest even, as PyTorch does) give the same fingerprints,
// so an adapter trained on one applies to the other; a base whose values
// differ at bf16 precision still gives other fingerprints. 0 means
// "unknown", so a hash of 0 is stored as 1.
//
// One definition for every implementation: the host (line_fingerprint, the
// CPU backend's batch of lines) and the CUDA kernel include this header.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define S2FT_HOST_DEVICE __host__ __device__
#else
#define S2FT_HOST_DEVICE
#endif

namespace s2ft {
namespace fingerprint {

constexpr uint64_t kOffset = 0xcbf29ce484222325ull;  // FNV-1a 64 offset basis
constexpr uint64_t kPrime = 0x100000001b3ull;        // FNV-1a 64 prime

// The bfloat16 bits a value contributes, from its f32 bits.
S2FT_HOST_DEVICE inline uint16_t word(uint32_t f32_bits) {
  if ((f32_bits & 0x7fffffffu) > 0x7f800000u) return 0x7fc0u;  // NaN, any payload
  f32_bits += 0x7fffu + ((f32_bits >> 16) & 1u);
  return static_cast<uint16_t>(f32_bits >> 16);
}

// h after one more element.
S2FT_HOST_DEVICE inline uint64_t mix(uint64_t h, uint16_t w) {
  h = (h ^ (w & 0xffu)) * kPrime;
  return (h ^ (w >> 8)) * kPrime;
}

// The stored fingerprint of a finished hash.
S2FT_HOST_DEVICE inline uint64_t finish(uint64_t h) { return h == 0 ? 1 : h; }

// h after the 8 little-endian bytes of v. The whole-weight fingerprint of
// an adapter's sparse entries is finish() of kOffset mixed with the row
// fingerprints of the base-order weight, rows in order (the line
// fingerprints along rows), so it is as independent of f32 vs bf16 as they are.
S2FT_HOST_DEVICE inline uint64_t mix_u64(uint64_t h, uint64_t v) {
  for (int b = 0; b < 8; ++b) h = (h ^ ((v >> (8 * b)) & 0xffu)) * kPrime;
  return h;
}

}  // namespace fingerprint
}  // namespace s2ft
