// The CUDA path of s2ft_adapter_forward_mixed: the shared base GEMM, one
// gathered batched-GEMV launch for the decode rows of every adapter, one
// grouped GEMM for the prefill segments on the dense path, and cuSPARSE SpMM
// for those on the sparse path. A plain C++ header (no CUDA types) for src/.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "common/tensor.hpp"
#include "cuda_context.hpp"

struct s2ft_adapter;
struct s2ft_selection;

namespace s2ft {

struct AdapterEntry;

namespace cuda {

// One adapter of the batch as the core resolved it (only those some group
// uses need to be filled in).
struct MixedAdapter {
  const s2ft_adapter *adapter = nullptr;
  const AdapterEntry *entry = nullptr;              // its (layer, target) entry, not empty
  const std::vector<int64_t> *positions = nullptr;  // the entry's lines as positions in w
  float scale = 1.0f;
};

// Consecutive rows [row, row + rows) of x and y that use adapters[adapter];
// groups are disjoint and rows > 0.
struct MixedGroup {
  int64_t row = 0, rows = 0;
  int32_t adapter = 0;
};

struct MixedCall {
  int32_t layer = 0, target = 0;
  bool columns = true;                     // O, DOWN (else V, UP)
  const s2ft_selection *perm = nullptr;    // NULL: w in base order
  int32_t delta_path = 0;                  // S2FT_DELTA_PATH_*
  std::shared_ptr<void> *state = nullptr;  // the context's cache (made on first use)
};

// y = x w^T, then every group's adapter term (checked device views of one
// dtype). Queued on ctx's stream. Synchronises only to upload an adapter
// the first time, to build or drop a cached CSR delta (SPARSE, AUTO), and
// when AUTO times the two paths for a shape it has not met yet.
void forward_mixed(Context &ctx, const MixedCall &call, const Matrix &x, const Matrix &w,
                   const std::vector<MixedAdapter> &adapters, const std::vector<MixedGroup> &groups, const Matrix &y);

}  // namespace cuda
}  // namespace s2ft
