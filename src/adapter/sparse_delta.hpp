// Unstructured sparse deltas (s2ft_sparse_delta): a weight delta D [rows,
// cols] in CSR form, held by the backend of the context that made it.
#pragma once

#include <cstdint>

#include "adapter/csr.hpp"
#include "backend/backend.hpp"
#include "common/live_handles.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {

// Validates host CSR arrays as s2ft_sparse_delta_create() documents them
// (treating them as hostile: nothing is read beyond rows + 1 offsets and nnz
// indices and values) and copies them. Throws S2FT_ERR_INVALID_ARGUMENT
// naming the first bad entry.
HostCsr checked_csr(int64_t rows, int64_t cols, const int64_t *row_offsets, const int64_t *col_indices,
                    const float *values, int64_t nnz);

}  // namespace s2ft

struct s2ft_sparse_delta {
  s2ft::LiveHandle<s2ft::HandleKind::sparse_delta> live;  // first: counted, and tagged while alive
  s2ft_device device{S2FT_DEVICE_CPU, 0};
  int64_t rows = 0, cols = 0, nnz = 0;
  s2ft::backend::Object csr;  // the backend's copy of the CSR arrays
};
