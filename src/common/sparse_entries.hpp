// The entries of an unstructured sparse set (s2ft_sparse_set): strictly
// ascending flat indices n = r * cols + c into a row-major [rows, cols]
// weight, and the row offsets that group them by row (CSR without values).
// Shared by the core (validation) and every backend (plans, uploads).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace s2ft {

struct SparseEntries {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> indices;      // strictly ascending, in [0, rows * cols)
  std::vector<int64_t> row_offsets;  // rows + 1: row r holds entries [row_offsets[r], row_offsets[r + 1])

  int64_t count() const { return static_cast<int64_t>(indices.size()); }
  int64_t row(int64_t n) const { return indices[static_cast<size_t>(n)] / cols; }
  int64_t col(int64_t n) const { return indices[static_cast<size_t>(n)] % cols; }
};

// Validates `count` caller indices (host memory, treated as hostile: nothing
// beyond indices[count - 1] is read) for a [rows, cols] weight: rows, cols
// >= 1 with rows * cols representable, 1 <= count <= rows * cols, every
// index in range and above the one before it. Throws
// S2FT_ERR_INVALID_ARGUMENT naming `name`'s first bad entry. Returns the
// entries with their row offsets.
SparseEntries checked_sparse_entries(int64_t rows, int64_t cols, const int64_t *indices, int64_t count,
                                     const char *name);

// The entries of already valid sorted indices (computes the row offsets).
SparseEntries make_sparse_entries(int64_t rows, int64_t cols, std::vector<int64_t> indices);

// For each entry of `next`, its position in `prev` or -1 (both sorted).
std::vector<int64_t> entry_sources(const std::vector<int64_t> &prev, const std::vector<int64_t> &next);

}  // namespace s2ft
