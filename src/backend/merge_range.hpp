// Whether merging an adapter line can overflow the weight's dtype: every
// backend refuses such a transition before writing anything, as fusing
// refuses a fused delta that overflows f32, instead of writing infinities.
// Per line the test is the bound max|W0| + |scale| * max|delta| against the
// dtype's largest finite value (conservative: values of opposite signs that
// would cancel are refused too; base values that are already infinite or
// NaN are left out, since merging does not make them so). It is made only
// when |scale| * max|delta| is above half the range (scaled_delta_is_large):
// below that, only base values above half the range could overflow, which
// no trained model has, and the common case costs no pass over the lines.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "s2ft/s2ft.h"

namespace s2ft {
namespace backend {

inline double largest_finite(int32_t dtype) {
  switch (dtype) {
    case S2FT_F16: return 65504.0;
    case S2FT_BF16: return 3.3895313892515355e38;
    default: return 3.4028234663852886e38;
  }
}

// max |delta| over line j of an entry's delta: [len, k] (by_columns) or [k, len].
inline double max_abs_delta(const std::vector<float> &delta, bool by_columns, int64_t len, int64_t k, int64_t j) {
  double m = 0.0;
  for (int64_t i = 0; i < len; ++i)
    m = std::max(m, std::fabs(static_cast<double>(delta[static_cast<size_t>(by_columns ? i * k + j : j * len + i)])));
  return m;
}

inline bool merge_may_overflow(int32_t dtype, double max_abs_w0, double scale, double max_abs_delta) {
  return max_abs_w0 + std::fabs(scale) * max_abs_delta > largest_finite(dtype);
}

// The fast test, from the entry's largest |delta| alone: false means no
// line of the entry can overflow unless a base value exceeds half the
// dtype's range, which the backends then need not look for. Only when it is
// true do they bound each line with its base values (merge_may_overflow).
inline bool scaled_delta_is_large(int32_t dtype, double scale, double entry_max_abs_delta) {
  return std::fabs(scale) * entry_max_abs_delta > largest_finite(dtype) / 2;
}

// The first base row of a low-rank delta b a (b [rows, k], a [k, cols],
// row-major f32) whose merge may overflow, or -1. Per row the bound is
// row_max(r) + |scale| * sum_j |b[r, j]| * max_c |a[j, c]|; only where that
// fails is the row's exact max |delta| (double sums, as the merge) tested.
// On a refusal *max_w0 and *max_delta hold the terms that failed.
template <typename RowMax>
int64_t low_rank_overflow_row(const float *b, const float *a, int64_t rows, int64_t cols, int64_t k, int32_t dtype,
                              double scale, RowMax row_max, double *max_w0, double *max_delta) {
  std::vector<double> a_max(static_cast<size_t>(k), 0.0);
  for (int64_t j = 0; j < k; ++j)
    for (int64_t c = 0; c < cols; ++c)
      a_max[static_cast<size_t>(j)] = std::max(a_max[static_cast<size_t>(j)], std::fabs(static_cast<double>(a[j * cols + c])));
  std::vector<double> d;
  for (int64_t r = 0; r < rows; ++r) {
    double bound = 0.0;
    for (int64_t j = 0; j < k; ++j) bound += std::fabs(static_cast<double>(b[r * k + j])) * a_max[static_cast<size_t>(j)];
    const double w0 = row_max(r);
    if (!merge_may_overflow(dtype, w0, scale, bound)) continue;
    d.assign(static_cast<size_t>(cols), 0.0);
    for (int64_t j = 0; j < k; ++j)
      for (int64_t c = 0; c < cols; ++c)
        d[static_cast<size_t>(c)] += static_cast<double>(b[r * k + j]) * static_cast<double>(a[j * cols + c]);
    double m = 0.0;
    for (double v : d) m = std::max(m, std::fabs(v));
    if (merge_may_overflow(dtype, w0, scale, m)) {
      *max_w0 = w0;
      *max_delta = m;
      return r;
    }
  }
  return -1;
}

}  // namespace backend
}  // namespace s2ft
