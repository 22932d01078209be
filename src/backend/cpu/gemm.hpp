// The CPU backend's one GEMM: BLAS (sgemm_) or a portable loop nest.
#pragma once

#include <cstdint>

#include "backend/backend.hpp"

namespace s2ft {
namespace cpu {

// C[m, n] = alpha * op(A) * op(B) + beta * C, all row-major f32 with leading
// dimensions lda, ldb, ldc (elements between consecutive rows). op(A) is
// [m, k] and op(B) is [k, n]. beta == 0 ignores C's old contents (NaN too).
void gemm_f32(Op ta, Op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

// Asks the BLAS for `threads` threads (process-wide for OpenBLAS; 0: leave it).
void set_gemm_threads(int32_t threads);

// True when the build links a BLAS; false means the portable fallback GEMM.
bool has_blas();

}  // namespace cpu
}  // namespace s2ft
