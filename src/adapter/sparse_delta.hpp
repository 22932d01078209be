// Unstructured sparse deltas (s2ft_sparse_delta): a weight delta D [rows,
// cols] in CSR form on a context's device, and the CSR of an adapter entry,
// which the CUDA mixed-adapter forward also uses for its SPARSE delta path.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/live_handles.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {

struct AdapterEntry;

namespace cuda {
struct DeviceCsr;  // kernels/cuda_sparse.hpp
}

// A CSR matrix in host memory: offsets has rows + 1 entries from 0 to nnz,
// indices ascend strictly within a row, values are finite.
struct HostCsr {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> offsets, indices;
  std::vector<float> values;
  int64_t nnz() const { return static_cast<int64_t>(indices.size()); }
};

// Validates host CSR arrays as s2ft_sparse_delta_create() documents them
// (treating them as hostile: nothing is read beyond rows + 1 offsets and nnz
// indices and values) and copies them. Throws S2FT_ERR_INVALID_ARGUMENT
// naming the first bad entry.
HostCsr checked_csr(int64_t rows, int64_t cols, const int64_t *row_offsets, const int64_t *col_indices,
                    const float *values, int64_t nnz);

// The CSR of one adapter entry over the full [out, in] weight shape of
// `target` (shape from the adapter's model shape), with the entry's line j
// at positions[j] (its base line, or where a permutation put it). A column
// target gives every row k entries at the sorted positions; a row target
// gives the rows at the positions all `in` columns. An empty entry gives
// nnz 0.
HostCsr entry_csr(int64_t out, int64_t in, int32_t axis, const AdapterEntry &entry,
                  const std::vector<int64_t> &positions);

}  // namespace s2ft

struct s2ft_sparse_delta {
  s2ft::LiveHandle live;  // counted by s2ft_live_handles()
  s2ft_device device{S2FT_DEVICE_CPU, 0};
  int64_t rows = 0, cols = 0, nnz = 0;
  s2ft::HostCsr host;                               // CPU contexts
  std::shared_ptr<const s2ft::cuda::DeviceCsr> dev;  // CUDA contexts
};
