// The narrow interface between the core and a compute backend. The core
// validates arguments and plans the work; a backend only runs dense f32
// kernels on memory of its own device. The CPU backend wraps BLAS (or a
// portable loop nest when the build has no BLAS); the CUDA backend (kernels/)
// implements the same calls with cuBLAS and custom kernels.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace s2ft {

enum class Op { N, T };  // use a matrix as stored, or transposed

class Backend {
 public:
  virtual ~Backend() = default;

  // Grow-only scratch memory owned by the backend (the context's workspace),
  // so per-call packing of 16-bit or strided operands does not allocate and
  // page-fault every call. Slot s keeps its buffer until the backend dies;
  // contents are undefined on return.
  static constexpr int kScratchSlots = 4;
  float *scratch(int slot, size_t n) {
    Scratch &s = scratch_[slot];
    if (s.size < n) {
      s.data.reset(new float[n]);
      s.size = n;
    }
    return s.data.get();
  }

  virtual const char *name() const = 0;

  // C[m, n] = alpha * op(A) * op(B) + beta * C, all row-major f32 with leading
  // dimensions lda, ldb, ldc (elements between consecutive rows). op(A) is
  // [m, k] and op(B) is [k, n]. beta == 0 ignores C's old contents (NaN too).
  virtual void gemm_f32(Op ta, Op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc) = 0;

 private:
  struct Scratch {
    std::unique_ptr<float[]> data;
    size_t size = 0;
  };
  Scratch scratch_[kScratchSlots];
};

// threads > 0 asks the BLAS for that many threads (process-wide for OpenBLAS).
std::unique_ptr<Backend> make_cpu_backend(int32_t threads);

// True when the build links a BLAS; false means the portable fallback GEMM.
bool cpu_backend_has_blas();

}  // namespace s2ft
