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

}  // namespace backend
}  // namespace s2ft
