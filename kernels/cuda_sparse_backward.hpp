// Unstructured sparse training on CUDA (s2ft_sparse_set_create,
// s2ft_backward_sparse) on arguments the core has already checked. Plain
// C++: no CUDA types.
#pragma once

#include <cstdint>
#include <memory>

#include "common/sparse_entries.hpp"
#include "common/tensor.hpp"
#include "cuda_context.hpp"

namespace s2ft {
namespace cuda {

// A set's device copy: its flat indices and row offsets.
struct DeviceSparseSet;

// Copies the entries to the device (allocates: may synchronise).
std::shared_ptr<DeviceSparseSet> upload_sparse_set(Context &ctx, const SparseEntries &entries);

// dx (may be NULL) = dy W (+ dx); grad[0, n] (+)= sum_t dy[t, r_n] x[t, c_n].
// x [T, in], dy [T, out], w [out, in] (NULL iff dx is), grad f32 [1, count].
// Queues the work on ctx's stream and returns.
void backward_sparse(Context &ctx, const DeviceSparseSet &set, const Matrix &x, const Matrix &dy, const Matrix *w,
                     const Matrix *dx, const Matrix &grad, bool accumulate_dx, bool accumulate_grad);

// SpIEL-AG's candidate sums: with g the SDDMM gradient at the set (as
// above), sums[n] += g[n] and sums[count + n] += g[n]^2 in double (`sums`:
// device memory of 2 * count doubles). Queued.
void add_sparse_gradient_sums(Context &ctx, const DeviceSparseSet &set, const Matrix &x, const Matrix &dy,
                              double *sums);

}  // namespace cuda
}  // namespace s2ft
