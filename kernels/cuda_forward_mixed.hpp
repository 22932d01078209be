// The CUDA path of s2ft_adapter_forward_mixed: the shared base GEMM, one
// gathered batched-GEMV launch for the decode rows of every adapter, one
// grouped GEMM for the prefill segments on the dense path, and cuSPARSE SpMM
// for those on the sparse path. A plain C++ header (no CUDA types).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "cuda_context.hpp"

struct s2ft_adapter;
struct s2ft_selection;

namespace s2ft {

struct AdapterEntry;

namespace cuda {

using backend::MixedAdapter;
using backend::MixedCall;
using backend::MixedGroup;

// y = x w^T, then every group's adapter term (checked device views of one
// dtype). Queued on ctx's stream. Synchronises only to upload an adapter
// the first time, to build or drop a cached CSR delta (SPARSE, AUTO), and
// when AUTO times the two paths for a shape it has not met yet.
// `state` is the context's cache (made on first use): the path AUTO chose per
// shape and the device CSR deltas it built.
void forward_mixed(Context &ctx, std::shared_ptr<void> &state, const MixedCall &call, const Matrix &x,
                   const Matrix &w, const std::vector<MixedAdapter> &adapters, const std::vector<MixedGroup> &groups,
                   const Matrix &y);

}  // namespace cuda
}  // namespace s2ft
