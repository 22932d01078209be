// GEMM on checked views of any supported dtype and stride: f32 views that
// BLAS can read are passed through untouched; anything else (f16, bf16,
// column strides) is packed into compact f32 first, and the result is
// written back with rounding to the output's dtype. Arithmetic is f32.
#pragma once

#include "backend/backend.hpp"
#include "common/tensor.hpp"

namespace s2ft {

// c = op(a) op(b), or c += op(a) op(b) when accumulate.
void matmul(Backend &backend, Op ta, const Matrix &a, Op tb, const Matrix &b, const Matrix &c, bool accumulate);

}  // namespace s2ft
