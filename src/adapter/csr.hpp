// CSR matrices in host memory, and the CSR form of an adapter entry.
#pragma once

#include <cstdint>
#include <vector>

namespace s2ft {

struct AdapterEntry;

// A CSR matrix in host memory: offsets has rows + 1 entries from 0 to nnz,
// indices ascend strictly within a row, values are finite.
struct HostCsr {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> offsets, indices;
  std::vector<float> values;
  int64_t nnz() const { return static_cast<int64_t>(indices.size()); }
};

// The CSR of one adapter entry over the full [out, in] weight shape of
// `target` (shape from the adapter's model shape), with the entry's line j
// at positions[j] (its base line, or where a permutation put it). A column
// target gives every row k entries at the sorted positions; a row target
// gives the rows at the positions all `in` columns. An empty entry gives
// nnz 0.
HostCsr entry_csr(int64_t out, int64_t in, int32_t axis, const AdapterEntry &entry,
                  const std::vector<int64_t> &positions);

// The CSR of unstructured sparse entries over [out, in]: value j at flat
// position positions[j] = r * in + c (distinct, any order: a permuted
// model's positions are not sorted).
HostCsr sparse_csr(int64_t out, int64_t in, const std::vector<int64_t> &positions, const std::vector<float> &values);

// a + b for two CSR matrices of one shape (entries in both are summed in f32).
HostCsr add_csr(const HostCsr &a, const HostCsr &b);

}  // namespace s2ft
