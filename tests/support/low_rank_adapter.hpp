// Test-side helpers for adapters with low-rank entries, written
// independently of the library: a random rank-k entry on a test adapter
// (sparse_adapter.hpp) whose dense float64 delta b a is summed over k in
// order, and a standard adapter with low-rank entries beside lines and
// sparse entries of other weights.
#pragma once

#include <array>
#include <cstdint>

#include "support/sparse_adapter.hpp"
#include "support/test_util.hpp"

namespace s2ft_test {

// The factors of a low-rank entry as the test made them.
struct Factors {
  HostMatrix b, a;
};

// Sets a random rank-k entry on (l, w) of `ta` (whose test entry there must
// be empty) and records its delta b a in float64, summed over k in order.
inline Factors add_low_rank(TestAdapter &ta, int32_t l, int32_t w, int64_t k, uint64_t seed, const AllWeights *base,
                            double scale = 0.5) {
  TestEntry &te = ta.at(l, w);
  EXPECT_TRUE(te.lines.empty() && te.indices.empty());
  Random rng(seed);
  Factors f{HostMatrix(S2FT_F32, te.rows, k), HostMatrix(S2FT_F32, k, te.cols)};
  f.b.fill_random(rng, scale);
  f.a.fill_random(rng, 1.0);
  for (int64_t r = 0; r < te.rows; ++r)
    for (int64_t c = 0; c < te.cols; ++c) {
      double s = 0.0;
      for (int64_t j = 0; j < k; ++j) s += static_cast<double>(f.b.get(r, j)) * static_cast<double>(f.a.get(j, c));
      te.dense[static_cast<size_t>(r * te.cols + c)] = s;
      te.touched[static_cast<size_t>(r * te.cols + c)] = 1;
    }
  if (base != nullptr) te.fingerprint = weight_fingerprint(base->at(l, w));
  EXPECT_EQ(s2ft_adapter_set_low_rank(ta.a, l, w, &f.b.t, &f.a.t, base ? &base->at(l, w).t : nullptr), S2FT_OK)
      << s2ft_last_error();
  return f;
}

// Adapter specs: lines on V and UP, a sparse entry on K (the low-rank
// entries go on Q, O, DOWN and GATE).
inline std::array<WeightSpec, 7> beside_specs() {
  std::array<WeightSpec, 7> s;
  s[S2FT_WEIGHT_V].lines = {1};
  s[S2FT_WEIGHT_UP].lines = {2, 8, 6};
  s[S2FT_WEIGHT_K].density = 0.2;
  return s;
}

// A test adapter with low-rank entries on Q, O, DOWN and GATE of every
// layer (ranks 1, 3, 2, 5) beside the entries of `specs`.
inline void make_low_rank_adapter(TestAdapter &ta, const AllWeights &base, uint64_t seed, const char *name,
                                  const std::array<WeightSpec, 7> &specs = beside_specs(), double scale = 0.5) {
  make_test_adapter(ta, base.shape, specs, &base, seed, name);
  const int32_t weights[4] = {S2FT_WEIGHT_Q, S2FT_WEIGHT_O, S2FT_WEIGHT_DOWN, S2FT_WEIGHT_GATE};
  const int64_t ranks[4] = {1, 3, 2, 5};
  for (int32_t l = 0; l < base.shape.n_layers; ++l)
    for (int i = 0; i < 4; ++i)
      add_low_rank(ta, l, weights[i], ranks[i], seed * 100 + static_cast<uint64_t>(l * 7 + i), &base, scale);
}

}  // namespace s2ft_test
