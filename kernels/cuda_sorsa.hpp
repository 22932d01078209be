// SORSA on CUDA (s2ft_sorsa_forward, s2ft_sorsa_backward,
// s2ft_sorsa_regularizer(_step)) on views the core has already checked.
// Plain C++: no CUDA types. The split (s2ft_sorsa_init) and the principal
// line norms need an SVD: cuda_svd.hpp.
#pragma once

#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "cuda_context.hpp"

namespace s2ft {
namespace cuda {

// y = x w^T + ((x vt^T) * s) u^T; h_saved (may be NULL, f32) = x vt^T.
// Queues the work on ctx's stream and returns.
void sorsa_forward(Context &ctx, const backend::SorsaFactors &f, const Matrix &x, const Matrix &y,
                   const Matrix *h_saved);

// The backward (backend.hpp's sorsa_backward). Queues and returns.
void sorsa_backward(Context &ctx, const backend::SorsaFactors &f, const Matrix &x, const Matrix *h_saved,
                    const Matrix &dy, const Matrix *dx, const backend::SorsaGrads &g, bool accumulate_dx,
                    bool accumulate_grads);

// The regularizer (backend.hpp's sorsa_regularizer); synchronises only
// when norms is not NULL.
void sorsa_regularizer(Context &ctx, const Matrix &u, const Matrix &vt, const backend::SorsaRegularizer &plan,
                       const Matrix *du, const Matrix *dvt, double norms[2]);

}  // namespace cuda
}  // namespace s2ft
