// SpIEL's operations on a CUDA context (s2ft_spiel_*; plain C++, no CUDA
// types): the one dense weight gradient of an accumulation window, brought
// to the host for the core's candidate choice, and reading and writing a
// weight's elements at flat indices (base values, resets to base). The
// candidate sums are add_sparse_gradient_sums (cuda_sparse_backward.hpp).
#pragma once

#include <cstdint>
#include <vector>

#include "common/tensor.hpp"
#include "cuda_context.hpp"

namespace s2ft {
namespace cuda {

// host[out * in] = dW = dy^T x (f32, row-major) for checked device views
// x [T, in], dy [T, out] of one dtype: cuBLAS on tiles of rows of dW (the
// device scratch stays bounded), each copied to the host (synchronising).
void dense_gradient_to_host(Context &ctx, const Matrix &x, const Matrix &dy, float *host);

// host[i] = the bytes of w's element at flat[i] = r * w.cols + c
// (synchronising), and the reverse (queued; `host` may be reused on return).
void read_weight_entries(Context &ctx, const Matrix &w, const std::vector<int64_t> &flat, void *host);
void write_weight_entries(Context &ctx, const Matrix &w, const std::vector<int64_t> &flat, const void *host);

}  // namespace cuda
}  // namespace s2ft
