// The CUDA operations that need an SVD, through cuSOLVER in double:
// LIFT's principal weights (s2ft_lift_select, and so s2ft_lift_refresh),
// SORSA's split (s2ft_sorsa_init) and the principal line norms behind
// s2ft_statistics_add_principal. Each matches the CPU backend's definition
// (src/backend/cpu/lift.cpp, src/backend/cpu/sorsa.cpp). Plain C++: no
// CUDA types. All three synchronise (their results, or the factors' signs,
// are settled on the host).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "cuda_context.hpp"

namespace s2ft {
namespace cuda {

// The plan's k flat indices of w (backend.hpp's lift_select), ascending.
void lift_select(Context &ctx, const Matrix &w, const backend::LiftPlan &plan, std::vector<int64_t> *indices);

// u, s, vt (f32) = the top u.cols singular triplets of w (signs as the CPU
// backend's), w = w - u diag(s) vt in double, rounded once to w's dtype.
void sorsa_init(Context &ctx, const Matrix &w, const Matrix &u, const Matrix &s, const Matrix &vt);

// The squared norms of the lines (columns when by_columns, else rows) of
// w's rank-`rank` truncated SVD.
void principal_line_norms(Context &ctx, const Matrix &w, int64_t rank, bool by_columns, std::vector<double> *out);

}  // namespace cuda
}  // namespace s2ft
