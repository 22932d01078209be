// The narrow interface between the core and a compute backend. The core
// validates arguments and plans the work; a backend only runs dense f32
// kernels on memory of its own device. The CPU backend wraps BLAS (or a
// portable loop nest when the build has no BLAS); the CUDA backend (kernels/)
// implements the same calls with cuBLAS and custom kernels.
#pragma once

#include <cstdint>
#include <memory>

namespace s2ft {

enum class Op { N, T };  // use a matrix as stored, or transposed

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char *name() const = 0;

  // C[m, n] = alpha * op(A) * op(B) + beta * C, all row-major f32 with leading
  // dimensions lda, ldb, ldc (elements between consecutive rows). op(A) is
  // [m, k] and op(B) is [k, n]. beta == 0 ignores C's old contents (NaN too).
  virtual void gemm_f32(Op ta, Op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc) = 0;
};

// threads > 0 asks the BLAS for that many threads (process-wide for OpenBLAS).
std::unique_ptr<Backend> make_cpu_backend(int32_t threads);

// True when the build links a BLAS; false means the portable fallback GEMM.
bool cpu_backend_has_blas();

}  // namespace s2ft
