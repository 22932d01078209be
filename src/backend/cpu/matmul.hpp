// GEMM on checked views of any supported dtype and stride: f32 views that
// BLAS can read are passed through untouched; anything else (f16, bf16,
// column strides) is packed into compact f32 in the instance's scratch
// first, and the result is written back with rounding to the output's
// dtype. Arithmetic is f32.
#pragma once

#include "backend/cpu/cpu_backend.hpp"
#include "common/tensor.hpp"

namespace s2ft {
namespace cpu {

// c = op(a) op(b), or c += op(a) op(b) when accumulate.
void matmul(Instance &inst, Op ta, const Matrix &a, Op tb, const Matrix &b, const Matrix &c, bool accumulate);

}  // namespace cpu
}  // namespace s2ft
