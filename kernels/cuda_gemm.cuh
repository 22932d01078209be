// GEMM on checked device views through cublasGemmEx: f32, f16 or bf16
// operands, f32 accumulation (exact f32, no TF32), output in f32 or the
// operands' dtype. Views cuBLAS can read (unit stride in one dimension) are
// passed as they are, transposed views included; others are packed into
// scratch first.
#pragma once

#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "cuda_runtime.cuh"

namespace s2ft {
namespace cuda {

// c = alpha op(a) op(b) (+ c when accumulate). a and b share one dtype; c is
// f32 or that dtype. op(a) is [m, k], op(b) [k, n], c [m, n].
void gemm(Scratch &s, Op ta, const Matrix &a, Op tb, const Matrix &b, const Matrix &c, bool accumulate,
          float alpha = 1.0f);

// The cudaDataType of a dtype id.
cudaDataType_t cuda_dtype(int32_t dtype);

}  // namespace cuda
}  // namespace s2ft
