// LIFT's principal weights on the CPU (s2ft_lift_select; the arguments are
// checked and k worked out in src/train/lift.cpp), in double through
// LAPACK's Fortran interface (dgesdd_, dgeqrf_, dorgqr_) and BLAS (dgemm_),
// which OpenBLAS provides; without LAPACK the operation is unsupported.
//
// The row-major weight W [rows, cols] is, as stored, the column-major
// matrix A = W^T [m = cols, n = rows] with leading dimension cols, and the
// column-major offset i + j * cols of A(i, j) is W's flat index j * cols + i.
// The rank-r approximation is transposed with it (A_r = W_r^T), so W_r's
// entries are computed in place of A's, at their flat indices:
//   exact:       A = U S V^T (dgesdd, thin), A_r = (U_r S_r) V_r^T
//   randomized:  (Halko, Martinsson and Tropp, 2011) l = min(r + p, m, n),
//                Omega [n, l] Gaussian from the library's generator,
//                Y = A Omega; q times: Y = A orth(A^T orth(Y));
//                Q = orth(Y) [m, l], B = Q^T A [l, n] = Ub S V^T (dgesdd),
//                A_r = (Q Ub_r S_r) V_r^T
// Then the k entries of largest (or smallest) |W_r| (backend/lift_common.hpp,
// shared with the CUDA backend): the k-th value tau is found by a radix
// select over the bits of the doubles, every entry beyond tau is taken,
// and the entries equal to tau by ascending index until k are taken. So
// ties go to the lower index and no sort or index array of rows * cols is
// needed. Memory: the weight in double, plus U (exact: m * min(m, n)
// doubles) and LAPACK's workspace.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/lift_common.hpp"
#include "common/error.hpp"

#ifdef S2FT_HAVE_LAPACK
extern "C" {
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s, double *u,
             const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork, int *iwork, int *info);
void dgeqrf_(const int *m, const int *n, double *a, const int *lda, double *tau, double *work, const int *lwork,
             int *info);
void dorgqr_(const int *m, const int *n, const int *k, double *a, const int *lda, const double *tau, double *work,
             const int *lwork, int *info);
void dgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k, const double *alpha,
            const double *a, const int *lda, const double *b, const int *ldb, const double *beta, double *c,
            const int *ldc);
}
#endif

namespace s2ft {
namespace cpu {
namespace {

#ifdef S2FT_HAVE_LAPACK

int lapack_int(int64_t v, const char *what) {
  if (v < 0 || v > INT_MAX)
    fail(S2FT_ERR_UNSUPPORTED, std::string("LIFT: ") + what + " " + std::to_string(v) + " exceeds LAPACK's integer range");
  return static_cast<int>(v);
}

void check_info(int info, const char *routine) {
  if (info < 0) fail(S2FT_ERR_INTERNAL, std::string(routine) + " rejected argument " + std::to_string(-info));
  if (info > 0)
    fail(S2FT_ERR_BACKEND, std::string(routine) + " did not converge (info " + std::to_string(info) +
                               "); the weight may be badly scaled");
}

// C [m, n] = op(A) op(B), column-major, ld = the row counts.
void gemm(char ta, char tb, int m, int n, int k, const double *a, int lda, const double *b, int ldb, double *c,
          int ldc) {
  const double one = 1.0, zero = 0.0;
  if (m == 0 || n == 0) return;
  dgemm_(&ta, &tb, &m, &n, &k, &one, a, &lda, b, &ldb, &zero, c, &ldc);
}

// Thin SVD of the column-major a [m, n] (destroyed): u [m, p], s [p], vt [p, n], p = min(m, n).
void svd(int m, int n, double *a, std::vector<double> &s, std::vector<double> &u, std::vector<double> &vt) {
  const int p = std::min(m, n);
  s.resize(static_cast<size_t>(p));
  u.resize(static_cast<size_t>(m) * static_cast<size_t>(p));
  vt.resize(static_cast<size_t>(p) * static_cast<size_t>(n));
  std::vector<int> iwork(static_cast<size_t>(8) * static_cast<size_t>(p));
  int lwork = -1, info = 0;
  double query = 0.0;
  const char jobz = 'S';
  dgesdd_(&jobz, &m, &n, a, &m, s.data(), u.data(), &m, vt.data(), &p, &query, &lwork, iwork.data(), &info);
  check_info(info, "dgesdd");
  lwork = lapack_int(static_cast<int64_t>(query) + 1, "workspace");
  std::vector<double> work(static_cast<size_t>(lwork));
  dgesdd_(&jobz, &m, &n, a, &m, s.data(), u.data(), &m, vt.data(), &p, work.data(), &lwork, iwork.data(), &info);
  check_info(info, "dgesdd");
}

// Replaces the column-major y [m, l] (m >= l) by an orthonormal basis of its range.
void orthonormalize(int m, int l, double *y) {
  std::vector<double> tau(static_cast<size_t>(l));
  int lwork = -1, info = 0;
  double query = 0.0;
  dgeqrf_(&m, &l, y, &m, tau.data(), &query, &lwork, &info);
  check_info(info, "dgeqrf");
  double query2 = 0.0;
  dorgqr_(&m, &l, &l, y, &m, tau.data(), &query2, &lwork, &info);
  check_info(info, "dorgqr");
  lwork = lapack_int(static_cast<int64_t>(std::max(query, query2)) + 1, "workspace");
  std::vector<double> work(static_cast<size_t>(lwork));
  dgeqrf_(&m, &l, y, &m, tau.data(), work.data(), &lwork, &info);
  check_info(info, "dgeqrf");
  dorgqr_(&m, &l, &l, y, &m, tau.data(), work.data(), &lwork, &info);
  check_info(info, "dorgqr");
}

// a [m, n] <- A_r = (left [m, r] diag(s)) vt_r, vt having p >= r rows.
void low_rank(int m, int n, int r, const double *left, const std::vector<double> &s, const std::vector<double> &vt,
              int p, double *a) {
  std::vector<double> us(left, left + static_cast<size_t>(m) * static_cast<size_t>(r));
  for (int k = 0; k < r; ++k)
    for (int i = 0; i < m; ++i) us[static_cast<size_t>(k) * static_cast<size_t>(m) + static_cast<size_t>(i)] *= s[static_cast<size_t>(k)];
  gemm('N', 'N', m, n, r, us.data(), m, vt.data(), p, a, m);
}

// A (column-major [m, n], in `a`) <- A_r by the randomized method.
void randomized_low_rank(int m, int n, const backend::LiftPlan &plan, double *a) {
  const int r = static_cast<int>(plan.rank);
  const int l = static_cast<int>(std::min<int64_t>(plan.rank + plan.oversampling, std::min(m, n)));
  const std::vector<double> omega = backend::lift_gaussian(plan.seed, static_cast<size_t>(n) * static_cast<size_t>(l));
  std::vector<double> y(static_cast<size_t>(m) * static_cast<size_t>(l)), z(static_cast<size_t>(n) * static_cast<size_t>(l));
  gemm('N', 'N', m, l, n, a, m, omega.data(), n, y.data(), m);  // Y = A Omega
  for (int64_t it = 0; it < plan.power_iterations; ++it) {
    orthonormalize(m, l, y.data());
    gemm('T', 'N', n, l, m, a, m, y.data(), m, z.data(), n);  // Z = A^T Q
    orthonormalize(n, l, z.data());
    gemm('N', 'N', m, l, n, a, m, z.data(), n, y.data(), m);  // Y = A Z
  }
  orthonormalize(m, l, y.data());  // Q
  std::vector<double> b(static_cast<size_t>(l) * static_cast<size_t>(n));
  gemm('T', 'N', l, n, m, y.data(), m, a, m, b.data(), l);  // B = Q^T A
  std::vector<double> s, ub, vt;
  svd(l, n, b.data(), s, ub, vt);  // ub [l, l], vt [l, n]
  std::vector<double> u(static_cast<size_t>(m) * static_cast<size_t>(r));
  gemm('N', 'N', m, r, l, y.data(), m, ub.data(), l, u.data(), m);  // U_r = Q Ub_r
  low_rank(m, n, r, u.data(), s, vt, l, a);
}

#endif  // S2FT_HAVE_LAPACK

}  // namespace

void lift_select(backend::Instance *, const Matrix &w, const backend::LiftPlan &plan, std::vector<int64_t> *indices) {
#ifndef S2FT_HAVE_LAPACK
  (void)w;
  (void)plan;
  (void)indices;
  fail(S2FT_ERR_UNSUPPORTED, "LIFT selection needs LAPACK, and this build of libs2ft has none (build with OpenBLAS)");
#else
  const int m = lapack_int(w.cols, "the weight's column count"), n = lapack_int(w.rows, "the weight's row count");
  const size_t size = static_cast<size_t>(m) * static_cast<size_t>(n);
  std::vector<double> a(size);  // A = W^T column-major = W row-major
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      const double v = w.get(j, i);
      if (!std::isfinite(v))
        fail_arg("w holds a non-finite value at (" + std::to_string(j) + ", " + std::to_string(i) + ")");
      a[static_cast<size_t>(j) * static_cast<size_t>(m) + static_cast<size_t>(i)] = v;
    }
  const int r = static_cast<int>(plan.rank);
  if (plan.randomized) {
    randomized_low_rank(m, n, plan, a.data());
  } else {
    std::vector<double> s, u, vt;
    svd(m, n, a.data(), s, u, vt);  // destroys A; A_r takes its place
    low_rank(m, n, r, u.data(), s, vt, std::min(m, n), a.data());
  }
  for (double &v : a) v = std::fabs(v);
  *indices = backend::top_k(a.data(), static_cast<int64_t>(size), plan.count, plan.largest);
#endif
}

}  // namespace cpu
}  // namespace s2ft
