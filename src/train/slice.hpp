// Validated form of an s2ft_slice: which lines (rows or columns) of a weight
// are trained, either a contiguous range or an explicit list of indices.
#pragma once

#include <cstdint>
#include <vector>

#include "common/tensor.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {

struct Lines {
  int32_t axis = S2FT_AXIS_COLUMNS;
  int64_t begin = 0;             // contiguous mode
  int64_t count = 0;
  std::vector<int64_t> indices;  // indexed mode when non-empty (caller's order)

  bool contiguous() const { return indices.empty(); }
  int64_t line(int64_t i) const { return contiguous() ? begin + i : indices[static_cast<size_t>(i)]; }
};

// Checks `slice` against a weight of shape [out, in]: axis known, count >= 1,
// range inside the axis, indices in range and distinct. `name` names the
// argument in messages.
Lines check_slice(const s2ft_slice *slice, const char *name, int64_t out, int64_t in);

// The columns (axis COLUMNS) or rows (axis ROWS) of m listed by `lines`, as a
// compact f32 copy in line order: [m.rows, count] or [count, m.cols].
std::vector<float> gather_lines(const Matrix &m, const Lines &lines, int32_t axis);

}  // namespace s2ft
