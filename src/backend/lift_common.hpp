// What the CPU backend (src/backend/cpu/lift.cpp) and the CUDA backend
// (kernels/cuda_svd.cu) share for s2ft_lift_select, so that both draw the
// same randomized sketch and select the same entries from the same scores:
// the sketch's Gaussian samples, and the top-k (the flat indices of the k
// largest (or smallest) of n non-negative scores, ascending, ties to the
// lower index), which the CUDA backend runs on the host over the device's
// |W_r|.
//
// The top-k's k-th value tau is found by a radix select over the bits of the
// doubles (non-negative doubles order like their bit patterns), every entry
// beyond tau is taken, and the entries equal to tau by ascending index until
// k are taken. So no sort or index array of n is needed.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "common/rng.hpp"

namespace s2ft {
namespace backend {

// The k-th largest (or smallest) of n non-negative doubles, by a radix
// select on their bit patterns, 16 bits per pass.
inline double kth_value(const double *v, int64_t n, int64_t k, bool largest) {
  uint64_t prefix = 0, mask = 0;
  int64_t rank = k;  // the rank still to find among the entries matching prefix
  std::vector<int64_t> counts(65536);
  for (int shift = 48; shift >= 0; shift -= 16) {
    std::fill(counts.begin(), counts.end(), 0);
    for (int64_t i = 0; i < n; ++i) {
      uint64_t b;
      std::memcpy(&b, &v[i], 8);
      if ((b & mask) == prefix) ++counts[static_cast<size_t>((b >> shift) & 0xffffu)];
    }
    for (int d = 0; d < 65536; ++d) {
      const int digit = largest ? 65535 - d : d;
      const int64_t c = counts[static_cast<size_t>(digit)];
      if (rank <= c) {
        prefix |= static_cast<uint64_t>(digit) << shift;
        break;
      }
      rank -= c;
    }
    mask |= uint64_t{0xffff} << shift;
  }
  double out;
  std::memcpy(&out, &prefix, 8);
  return out;
}

// The flat indices of the k largest (smallest) scores, ascending; ties to the lower index.
inline std::vector<int64_t> top_k(const double *score, int64_t n, int64_t k, bool largest) {
  const double tau = kth_value(score, n, k, largest);
  int64_t beyond = 0;  // strictly better than tau: all taken
  for (int64_t i = 0; i < n; ++i) beyond += largest ? score[i] > tau : score[i] < tau;
  int64_t ties = k - beyond;  // entries equal to tau to take, lowest indices first
  std::vector<int64_t> out;
  out.reserve(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) {
    const bool better = largest ? score[i] > tau : score[i] < tau;
    if (better || (score[i] == tau && ties-- > 0)) out.push_back(i);
  }
  return out;
}

// Standard normal samples (Box-Muller over the library's generator).
inline std::vector<double> lift_gaussian(uint64_t seed, size_t count) {
  Rng rng(seed);
  std::vector<double> v(count);
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (size_t i = 0; i < count; i += 2) {
    const double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();  // u1 in (0, 1]
    const double radius = std::sqrt(-2.0 * std::log(u1));
    v[i] = radius * std::cos(kTwoPi * u2);
    if (i + 1 < count) v[i + 1] = radius * std::sin(kTwoPi * u2);
  }
  return v;
}

}  // namespace backend
}  // namespace s2ft
