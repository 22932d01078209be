// Row-major GEMM for the example's model: C = alpha op(A) op(B) + beta C.
// Uses the system BLAS when the build found one (FT_HAVE_BLAS), else a plain
// loop nest; float64 goes through the same path so that the finite-
// difference tests exercise exactly the code that trains.
#pragma once

#include <cstdint>

#ifdef FT_HAVE_BLAS
extern "C" {
void sgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k, const float *alpha,
            const float *a, const int *lda, const float *b, const int *ldb, const float *beta, float *c,
            const int *ldc);
void dgemm_(const char *ta, const char *tb, const int *m, const int *n, const int *k, const double *alpha,
            const double *a, const int *lda, const double *b, const int *ldb, const double *beta, double *c,
            const int *ldc);
}
#endif

namespace ft {

// op(A) is [M, K] (A stored [K, M] when ta), op(B) is [K, N] (B stored [N, K]
// when tb), C is [M, N]; leading dimensions are the stored row lengths.
template <typename T>
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, T alpha, const T *A, int64_t lda, const T *B,
          int64_t ldb, T beta, T *C, int64_t ldc) {
  if (M == 0 || N == 0) return;
#ifdef FT_HAVE_BLAS
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
  const char ca = ta ? 'T' : 'N', cb = tb ? 'T' : 'N';
  const int m = static_cast<int>(N), n = static_cast<int>(M), k = static_cast<int>(K);
  const int ia = static_cast<int>(lda), ib = static_cast<int>(ldb), ic = static_cast<int>(ldc);
  if constexpr (sizeof(T) == 4)
    sgemm_(&cb, &ca, &m, &n, &k, &alpha, B, &ib, A, &ia, &beta, C, &ic);
  else
    dgemm_(&cb, &ca, &m, &n, &k, &alpha, B, &ib, A, &ia, &beta, C, &ic);
#else
  for (int64_t i = 0; i < M; ++i) {
    T *c = C + i * ldc;
    for (int64_t j = 0; j < N; ++j) c[j] = beta == T(0) ? T(0) : beta * c[j];
    for (int64_t p = 0; p < K; ++p) {
      const T a = alpha * (ta ? A[p * lda + i] : A[i * lda + p]);
      if (a == T(0)) continue;
      for (int64_t j = 0; j < N; ++j) c[j] += a * (tb ? B[j * ldb + p] : B[p * ldb + j]);
    }
  }
#endif
}

// y[n, out] = x[n, in] W^T (+ y when accumulate), W [out, in]: nn.Linear.
template <typename T>
void linear_forward(const T *x, const T *w, T *y, int64_t n, int64_t in, int64_t out, bool accumulate = false) {
  gemm<T>(false, true, n, out, in, T(1), x, in, w, in, accumulate ? T(1) : T(0), y, out);
}

// dx[n, in] = dy[n, out] W (+ dx when accumulate).
template <typename T>
void linear_backward_input(const T *dy, const T *w, T *dx, int64_t n, int64_t in, int64_t out,
                           bool accumulate = false) {
  gemm<T>(false, false, n, in, out, T(1), dy, out, w, in, accumulate ? T(1) : T(0), dx, in);
}

// dW[out, in] += dy^T x.
template <typename T>
void linear_backward_weight(const T *dy, const T *x, T *dw, int64_t n, int64_t in, int64_t out) {
  gemm<T>(true, false, out, in, n, T(1), dy, out, x, in, T(1), dw, in);
}

}  // namespace ft
