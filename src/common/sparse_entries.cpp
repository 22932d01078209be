#include "common/sparse_entries.hpp"

#include <limits>
#include <string>
#include <utility>

#include "common/error.hpp"

namespace s2ft {

SparseEntries checked_sparse_entries(int64_t rows, int64_t cols, const int64_t *indices, int64_t count,
                                     const char *name) {
  const std::string n(name);
  if (rows < 1) fail_arg("rows is " + std::to_string(rows) + "; it must be >= 1");
  if (cols < 1) fail_arg("cols is " + std::to_string(cols) + "; it must be >= 1");
  if (rows > std::numeric_limits<int64_t>::max() / cols)
    fail_arg("rows * cols = " + std::to_string(rows) + " * " + std::to_string(cols) + " overflows 64 bits");
  const int64_t size = rows * cols;
  if (count < 1 || count > size)
    fail_arg("count is " + std::to_string(count) + "; it must be in [1, rows * cols = " + std::to_string(size) + "]");
  require_not_null(indices, name);
  std::vector<int64_t> v(indices, indices + count);
  for (int64_t i = 0; i < count; ++i) {
    const int64_t x = v[static_cast<size_t>(i)];
    if (x < 0 || x >= size)
      fail_arg(n + "[" + std::to_string(i) + "] = " + std::to_string(x) + " is out of range [0, rows * cols = " +
               std::to_string(size) + ")");
    if (i > 0 && x <= v[static_cast<size_t>(i - 1)])
      fail_arg(n + "[" + std::to_string(i) + "] = " + std::to_string(x) +
               (x == v[static_cast<size_t>(i - 1)] ? " repeats " : " is below ") + n + "[" + std::to_string(i - 1) +
               "] = " + std::to_string(v[static_cast<size_t>(i - 1)]) + " (indices must ascend strictly)");
  }
  return make_sparse_entries(rows, cols, std::move(v));
}

SparseEntries make_sparse_entries(int64_t rows, int64_t cols, std::vector<int64_t> indices) {
  SparseEntries e;
  e.rows = rows;
  e.cols = cols;
  e.indices = std::move(indices);
  e.row_offsets.assign(static_cast<size_t>(rows + 1), 0);
  for (int64_t x : e.indices) ++e.row_offsets[static_cast<size_t>(x / cols + 1)];
  for (int64_t r = 0; r < rows; ++r) e.row_offsets[static_cast<size_t>(r + 1)] += e.row_offsets[static_cast<size_t>(r)];
  return e;
}

std::vector<int64_t> entry_sources(const std::vector<int64_t> &prev, const std::vector<int64_t> &next) {
  std::vector<int64_t> src(next.size(), -1);
  size_t i = 0;
  for (size_t j = 0; j < next.size(); ++j) {
    while (i < prev.size() && prev[i] < next[j]) ++i;
    if (i < prev.size() && prev[i] == next[j]) src[j] = static_cast<int64_t>(i);
  }
  return src;
}

}  // namespace s2ft
