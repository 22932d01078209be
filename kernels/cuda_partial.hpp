// The CUDA path of S2FT's partial forward and backward (s2ft_forward_partial,
// s2ft_backward_partial) on views the core has already checked. Plain C++:
// no CUDA types.
#pragma once

#include "common/tensor.hpp"
#include "cuda_context.hpp"
#include "train/slice.hpp"

namespace s2ft {
namespace cuda {

// y = x W^T; x_saved (may be NULL) = x[:, S] for a column slice or a copy of
// x for a row slice, moving bytes (x_saved has x's dtype). x [T, in],
// w [out, in], y [T, out]. Queues the work on ctx's stream and returns.
void forward_partial(Context &ctx, const Lines &lines, const Matrix &x, const Matrix &w, const Matrix &y,
                     const Matrix *x_saved);

// dx (may be NULL) = dy W (+ dx when accumulate_dx);
// columns: dw = dy^T x_in (x_in = x_S, [T, k]);
// rows:    dw = dy[:, S]^T x_in (x_in = x, [T, in]); (+ dw when accumulate_dw).
// w, x_in, dy, dx share one dtype; dw is f32 or that dtype. Queues and returns.
void backward_partial(Context &ctx, const Lines &lines, const Matrix &w, const Matrix &x_in, const Matrix &dy,
                      const Matrix *dx, const Matrix &dw, bool accumulate_dx, bool accumulate_dw);

}  // namespace cuda
}  // namespace s2ft
