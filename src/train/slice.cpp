#include "train/slice.hpp"

#include <string>

#include "common/error.hpp"

namespace s2ft {

Lines check_slice(const s2ft_slice *slice, const char *name, int64_t out, int64_t in) {
  const std::string n(name);
  if (slice == nullptr) fail_arg(n + " is NULL");
  Lines l;
  l.axis = slice->axis;
  if (l.axis != S2FT_AXIS_COLUMNS && l.axis != S2FT_AXIS_ROWS)
    fail_arg(n + "->axis must be S2FT_AXIS_COLUMNS or S2FT_AXIS_ROWS, got " + std::to_string(slice->axis));
  const int64_t extent = l.axis == S2FT_AXIS_COLUMNS ? in : out;
  const char *what = l.axis == S2FT_AXIS_COLUMNS ? "columns" : "rows";
  l.count = slice->count;
  if (l.count < 1 || l.count > extent)
    fail_arg(n + "->count is " + std::to_string(l.count) + "; it must be in [1, " + std::to_string(extent) +
             "] (the weight has " + std::to_string(extent) + " " + what + ")");
  if (slice->indices == nullptr) {
    l.begin = slice->begin;
    if (l.begin < 0 || l.begin > extent - l.count)  // extent - count >= 0: no overflow
      fail_arg(n + " range [" + std::to_string(l.begin) + ", " + std::to_string(l.begin) + " + " +
               std::to_string(l.count) + ") is outside the weight's " + std::to_string(extent) + " " + what);
    return l;
  }
  l.indices.assign(slice->indices, slice->indices + l.count);
  std::vector<char> seen(static_cast<size_t>(extent), 0);
  for (int64_t i = 0; i < l.count; ++i) {
    const int64_t v = l.indices[static_cast<size_t>(i)];
    if (v < 0 || v >= extent)
      fail_arg(n + "->indices[" + std::to_string(i) + "] = " + std::to_string(v) + " is out of range [0, " +
               std::to_string(extent) + ")");
    if (seen[static_cast<size_t>(v)]) fail_arg(n + "->indices has " + std::to_string(v) + " twice");
    seen[static_cast<size_t>(v)] = 1;
  }
  return l;
}

std::vector<float> gather_lines(const Matrix &m, const Lines &lines, int32_t axis) {
  const int64_t k = lines.count;
  if (axis == S2FT_AXIS_COLUMNS) {
    std::vector<float> out(static_cast<size_t>(m.rows * k));
    for (int64_t i = 0; i < m.rows; ++i)
      for (int64_t j = 0; j < k; ++j) out[static_cast<size_t>(i * k + j)] = m.get(i, lines.line(j));
    return out;
  }
  std::vector<float> out(static_cast<size_t>(k * m.cols));
  for (int64_t i = 0; i < k; ++i)
    for (int64_t j = 0; j < m.cols; ++j) out[static_cast<size_t>(i * m.cols + j)] = m.get(lines.line(i), j);
  return out;
}

}  // namespace s2ft
