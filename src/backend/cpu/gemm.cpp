// CPU backend: GEMM through the Fortran BLAS interface (sgemm_), which every
// BLAS provides (OpenBLAS, reference BLAS, BLIS, MKL), or through a portable
// blocked loop nest when the build has no BLAS (S2FT_HAVE_BLAS undefined).
#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "backend/cpu/gemm.hpp"
#include "common/error.hpp"

#ifdef S2FT_HAVE_BLAS
extern "C" {
void sgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k, const float *alpha,
            const float *a, const int *lda, const float *b, const int *ldb, const float *beta, float *c,
            const int *ldc);
// OpenBLAS only; weak so that other BLAS libraries link too.
void openblas_set_num_threads(int) __attribute__((weak));
}
#endif

namespace s2ft {
namespace cpu {
namespace {

[[maybe_unused]] int to_blas_int(int64_t v, const char *what) {
  if (v < 0 || v > INT_MAX) fail(S2FT_ERR_UNSUPPORTED, std::string("GEMM ") + what + " exceeds the BLAS integer range");
  return static_cast<int>(v);
}

#ifndef S2FT_HAVE_BLAS
// Portable GEMM: row-major, i-k-j loop order so the inner loop streams rows of
// op(B) and C; op(A) elements are read once per (i, k).
void gemm_portable(Op ta, Op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  std::vector<float> acc(static_cast<size_t>(n));
  for (int64_t i = 0; i < m; ++i) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t p = 0; p < k; ++p) {
      const float av = ta == Op::N ? a[i * lda + p] : a[p * lda + i];
      if (av == 0.0f) continue;
      if (tb == Op::N) {
        const float *bp = b + p * ldb;
        for (int64_t j = 0; j < n; ++j) acc[static_cast<size_t>(j)] += av * bp[j];
      } else {
        for (int64_t j = 0; j < n; ++j) acc[static_cast<size_t>(j)] += av * b[j * ldb + p];
      }
    }
    float *cr = c + i * ldc;
    for (int64_t j = 0; j < n; ++j)
      cr[j] = beta == 0.0f ? alpha * acc[static_cast<size_t>(j)] : alpha * acc[static_cast<size_t>(j)] + beta * cr[j];
  }
}
#endif

}  // namespace

bool has_blas() {
#ifdef S2FT_HAVE_BLAS
  return true;
#else
  return false;
#endif
}

void set_gemm_threads(int32_t threads) {
#ifdef S2FT_HAVE_BLAS
  if (threads > 0 && openblas_set_num_threads != nullptr) openblas_set_num_threads(threads);
#else
  (void)threads;
#endif
}

void gemm_f32(Op ta, Op tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
              const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS leaves C alone when k == 0 only if beta == 1; be explicit
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
    return;
  }
#ifdef S2FT_HAVE_BLAS
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the
  // operands and keep each one's transpose flag.
  const int im = to_blas_int(m, "rows"), in = to_blas_int(n, "columns"), ik = to_blas_int(k, "depth");
  const int ilda = to_blas_int(std::max<int64_t>(lda, 1), "lda"), ildb = to_blas_int(std::max<int64_t>(ldb, 1), "ldb");
  const int ildc = to_blas_int(std::max<int64_t>(ldc, 1), "ldc");
  const char tra = ta == Op::N ? 'N' : 'T', trb = tb == Op::N ? 'N' : 'T';
  sgemm_(&trb, &tra, &in, &im, &ik, &alpha, b, &ildb, a, &ilda, &beta, c, &ildc);
#else
  gemm_portable(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
#endif
}

}  // namespace cpu
}  // namespace s2ft
