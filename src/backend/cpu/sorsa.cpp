// SORSA on the CPU (s2ft_sorsa_*; the arguments are checked in
// src/sorsa/sorsa.cpp), and the line norms of a weight's rank-r
// approximation behind LIFT's score for S2FT (s2ft_statistics_add_principal).
//
// The SVD is LAPACK's dgesdd in double, as for LIFT (lift.cpp). The
// row-major weight W [out, in] is, as stored, the column-major matrix
// A = W^T [m = in, n = out]; with A = Ua diag(s) Va^T (thin, p = min(m, n)),
// W = Va diag(s) Ua^T, and LAPACK's outputs are W's factors as they lie:
//   vta, column-major [p, out] with ld p  =  U_W, row-major [out, p]
//   ua,  column-major [in, p]  with ld in =  V_W^T, row-major [p, in]
// so U_W(i, k) = vta[i * p + k] and V_W^T(k, j) = ua[k * in + j].
//
// Forward and backward are f32 GEMMs (matmul.hpp) on f32 copies of 16-bit
// activations; their own temporaries live in the instance's scratch slot 3
// (matmul uses slots 0 to 2). The regularizer works in double (dgemm when
// the build has a BLAS, else loops): its r x r Gram matrices are compared
// with the identity, which f32 sums of `out` products would blur.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"
#include "common/error.hpp"

#ifdef S2FT_HAVE_LAPACK
extern "C" void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda, double *s, double *u,
                        const int *ldu, double *vt, const int *ldvt, double *work, const int *lwork, int *iwork,
                        int *info);
#endif
#ifdef S2FT_HAVE_BLAS
extern "C" void dgemm_(const char *transa, const char *transb, const int *m, const int *n, const int *k,
                       const double *alpha, const double *a, const int *lda, const double *b, const int *ldb,
                       const double *beta, double *c, const int *ldc);
#endif

namespace s2ft {
namespace cpu {
namespace {

[[maybe_unused]] int lapack_int(int64_t v, const char *what) {
  if (v < 0 || v > INT_MAX)
    fail(S2FT_ERR_UNSUPPORTED, std::string("SVD: ") + what + " " + std::to_string(v) + " exceeds LAPACK's integer range");
  return static_cast<int>(v);
}

// Row-major double C [m, n] = op(A) op(B), op(A) [m, k], op(B) [k, n];
// A is stored [m, k] (or [k, m] when ta), B [k, n] (or [n, k] when tb).
void dmatmul(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double *a, const double *b, double *c) {
  if (m == 0 || n == 0) return;
#ifdef S2FT_HAVE_BLAS
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T.
  const int M = lapack_int(n, "dimension"), N = lapack_int(m, "dimension"), K = lapack_int(k, "dimension");
  const int ldb = lapack_int(tb ? k : n, "leading dimension"), lda = lapack_int(ta ? m : k, "leading dimension");
  const char opb = tb ? 'T' : 'N', opa = ta ? 'T' : 'N';
  const double one = 1.0, zero = 0.0;
  if (k == 0) {
    std::fill(c, c + m * n, 0.0);
    return;
  }
  dgemm_(&opb, &opa, &M, &N, &K, &one, b, &ldb, a, &lda, &zero, c, &M);
#else
  std::fill(c, c + m * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t p = 0; p < k; ++p) {
      const double av = ta ? a[p * m + i] : a[i * k + p];
      if (av == 0.0) continue;
      double *cr = c + i * n;
      if (!tb) {
        const double *br = b + p * n;
        for (int64_t j = 0; j < n; ++j) cr[j] += av * br[j];
      } else {
        for (int64_t j = 0; j < n; ++j) cr[j] += av * b[j * k + p];
      }
    }
#endif
}

// Rounds d to f32 with round-to-odd (truncate, then set the last bit when
// anything was cut off), so that rounding the result to bf16 or f16 to
// nearest-even is the correct rounding of d: one rounding, not two.
float round_to_odd_f32(double d) {
  float f = static_cast<float>(d);
  if (!std::isfinite(d) || static_cast<double>(f) == d) return f;
  if (std::fabs(static_cast<double>(f)) > std::fabs(d)) f = std::nextafter(f, 0.0f);
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u |= 1u;
  std::memcpy(&f, &u, 4);
  return f;
}

// Stores the double d into element (i, j) of m, rounded once to m's dtype.
void store_rounded(const Matrix &m, int64_t i, int64_t j, double d) {
  m.set(i, j, m.dtype == S2FT_F32 ? static_cast<float>(d) : round_to_odd_f32(d));
}

#ifdef S2FT_HAVE_LAPACK

// The thin SVD of a weight, in W's terms (see the top of the file).
struct WeightSvd {
  int64_t out = 0, in = 0, p = 0;
  std::vector<double> s;    // [p], descending
  std::vector<double> u;    // U_W, row-major [out, p]
  std::vector<double> vt;   // V_W^T, row-major [p, in]
};

WeightSvd weight_svd(const Matrix &w) {
  WeightSvd d;
  d.out = w.rows;
  d.in = w.cols;
  int m = lapack_int(w.cols, "the weight's column count"), n = lapack_int(w.rows, "the weight's row count");
  const int p = std::min(m, n);
  d.p = p;
  std::vector<double> a(static_cast<size_t>(m) * static_cast<size_t>(n));  // A = W^T column-major = W row-major
  for (int64_t i = 0; i < w.rows; ++i)
    for (int64_t j = 0; j < w.cols; ++j) {
      const double v = w.get(i, j);
      if (!std::isfinite(v))
        fail_arg("w holds a non-finite value at (" + std::to_string(i) + ", " + std::to_string(j) + ")");
      a[static_cast<size_t>(i * w.cols + j)] = v;
    }
  d.s.resize(static_cast<size_t>(p));
  d.vt.resize(static_cast<size_t>(m) * static_cast<size_t>(p));  // Ua [m, p], ld m
  d.u.resize(static_cast<size_t>(p) * static_cast<size_t>(n));   // Va^T [p, n], ld p
  std::vector<int> iwork(static_cast<size_t>(8) * static_cast<size_t>(p));
  const char jobz = 'S';
  int lwork = -1, info = 0;
  double query = 0.0;
  auto check_info = [](int code) {
    if (code < 0) fail(S2FT_ERR_INTERNAL, "dgesdd rejected argument " + std::to_string(-code));
    if (code > 0)
      fail(S2FT_ERR_BACKEND, "dgesdd did not converge (info " + std::to_string(code) + "); the weight may be badly scaled");
  };
  dgesdd_(&jobz, &m, &n, a.data(), &m, d.s.data(), d.vt.data(), &m, d.u.data(), &p, &query, &lwork, iwork.data(),
          &info);
  check_info(info);
  lwork = lapack_int(static_cast<int64_t>(query) + 1, "workspace");
  std::vector<double> work(static_cast<size_t>(lwork));
  dgesdd_(&jobz, &m, &n, a.data(), &m, d.s.data(), d.vt.data(), &m, d.u.data(), &p, work.data(), &lwork,
          iwork.data(), &info);
  check_info(info);
  return d;
}

#endif  // S2FT_HAVE_LAPACK

[[noreturn, maybe_unused]] void no_lapack(const char *what) {
  fail(S2FT_ERR_UNSUPPORTED, std::string(what) + " needs LAPACK, and this build of libs2ft has none (build with OpenBLAS)");
}

// Consecutive f32 buffers carved from the instance's scratch slot 3, sized
// up front (growing the slot would move the buffers already handed out).
class Arena {
 public:
  Arena(Instance &inst, size_t floats) : next_(inst.scratch(3, std::max<size_t>(floats, 1))) {}
  Matrix take(int64_t rows, int64_t cols) {
    float *p = next_;
    next_ += static_cast<size_t>(rows * cols);
    return f32_view(p, rows, cols);
  }

 private:
  float *next_;
};

// m as an f32 view BLAS reads directly: m itself, or its f32 copy in `arena`.
Matrix f32_operand(const Matrix &m, Arena &arena) {
  if (m.blas_ready()) return m;
  Matrix c = arena.take(m.rows, m.cols);
  to_f32(m, c.f32());
  return c;
}

size_t floats_for_copy(const Matrix &m) { return m.blas_ready() ? 0 : static_cast<size_t>(m.rows * m.cols); }

// dst[t, k] = src(t, k) * s[k] (compact f32 [T, r]).
void scale_columns(const Matrix &src, const Matrix &s, const Matrix &dst) {
  for (int64_t t = 0; t < src.rows; ++t)
    for (int64_t k = 0; k < src.cols; ++k) dst.f32()[t * dst.cols + k] = src.get(t, k) * s.get(0, k);
}

}  // namespace

void sorsa_init(backend::Instance *, const Matrix &w, const Matrix &u, const Matrix &s, const Matrix &vt) {
#ifndef S2FT_HAVE_LAPACK
  (void)w;
  (void)u;
  (void)s;
  (void)vt;
  no_lapack("SORSA's initialisation (an SVD)");
#else
  const WeightSvd d = weight_svd(w);
  const int64_t out = d.out, in = d.in, p = d.p, r = u.cols;
  // The factors in f32, each singular pair's sign fixed: the entry of
  // largest magnitude of u's column is positive (the first one on ties).
  std::vector<double> us(static_cast<size_t>(out * r)), vr(static_cast<size_t>(r * in));
  std::vector<float> uf(static_cast<size_t>(out * r)), sf(static_cast<size_t>(r)), vf(static_cast<size_t>(r * in));
  for (int64_t k = 0; k < r; ++k) {
    int64_t arg = 0;
    for (int64_t i = 1; i < out; ++i)
      if (std::fabs(d.u[static_cast<size_t>(i * p + k)]) > std::fabs(d.u[static_cast<size_t>(arg * p + k)])) arg = i;
    const double sign = d.u[static_cast<size_t>(arg * p + k)] < 0.0 ? -1.0 : 1.0;
    sf[static_cast<size_t>(k)] = static_cast<float>(d.s[static_cast<size_t>(k)]);
    for (int64_t i = 0; i < out; ++i) uf[static_cast<size_t>(i * r + k)] = static_cast<float>(sign * d.u[static_cast<size_t>(i * p + k)]);
    for (int64_t j = 0; j < in; ++j) vf[static_cast<size_t>(k * in + j)] = static_cast<float>(sign * d.vt[static_cast<size_t>(k * in + j)]);
  }
  // The residual from the rounded factors, in double: W - (U S) V^T.
  for (int64_t i = 0; i < out; ++i)
    for (int64_t k = 0; k < r; ++k)
      us[static_cast<size_t>(i * r + k)] =
          static_cast<double>(uf[static_cast<size_t>(i * r + k)]) * static_cast<double>(sf[static_cast<size_t>(k)]);
  for (size_t e = 0; e < vr.size(); ++e) vr[e] = vf[e];
  std::vector<double> prod(static_cast<size_t>(out * in));
  dmatmul(false, false, out, in, r, us.data(), vr.data(), prod.data());
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j) prod[static_cast<size_t>(i * in + j)] = w.get(i, j) - prod[static_cast<size_t>(i * in + j)];
  // Nothing has been written so far: a failure above leaves every tensor as it was.
  for (int64_t i = 0; i < out; ++i)
    for (int64_t k = 0; k < r; ++k) u.set(i, k, uf[static_cast<size_t>(i * r + k)]);
  for (int64_t k = 0; k < r; ++k) s.set(0, k, sf[static_cast<size_t>(k)]);
  for (int64_t k = 0; k < r; ++k)
    for (int64_t j = 0; j < in; ++j) vt.set(k, j, vf[static_cast<size_t>(k * in + j)]);
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j) store_rounded(w, i, j, prod[static_cast<size_t>(i * in + j)]);
#endif
}

// Forward, with x [T, in], W_res [out, in], U [out, r], s [r], V^T [r, in]:
//   h = x V                 [T, in] x [in, r]     (saved for the backward)
//   y = x W_res^T           [T, in] x [in, out]
//   y += (h * s) U^T        [T, r] x [r, out]
// Only the residual's GEMM is T * out * in; the factors add 2 T r (in + out).
void sorsa_forward(backend::Instance *inst, const backend::SorsaFactors &f, const Matrix &x, const Matrix &y,
                   const Matrix *h_saved) {
  Instance &c = instance(inst);
  const int64_t T = x.rows, out = f.w.rows, r = f.u.cols;
  const bool y_direct = y.blas_ready();
  Arena arena(c, floats_for_copy(x) + static_cast<size_t>(T * r) * (h_saved != nullptr ? 1 : 2) +
                     (y_direct ? 0 : static_cast<size_t>(T * out)));
  const Matrix X = f32_operand(x, arena);
  const Matrix H = h_saved != nullptr ? *h_saved : arena.take(T, r);
  matmul(c, Op::N, X, Op::T, f.vt, H, false);
  const Matrix HS = arena.take(T, r);
  scale_columns(H, f.s, HS);
  const Matrix Y = y_direct ? y : arena.take(T, out);
  matmul(c, Op::N, X, Op::T, f.w, Y, false);
  matmul(c, Op::N, HS, Op::T, f.u, Y, true);
  if (!y_direct) from_f32(Y.f32(), y, false);
}

// Backward, with g = dy U and h = x V ([T, r]):
//   du  = dy^T (h * s)            [out, T] x [T, r]
//   ds  = colsum(g * h)           [r]            (summed in double)
//   dvt = (g * s)^T x             [r, T] x [T, in]
//   dx  = dy W_res + (g * s) V^T  [T, out] x [out, in] + [T, r] x [r, in]
// The weight-sized GEMM is dx's through the residual; the rest is O(T r (in + out)).
void sorsa_backward(backend::Instance *inst, const backend::SorsaFactors &f, const Matrix &x, const Matrix *h_saved,
                    const Matrix &dy, const Matrix *dx, const backend::SorsaGrads &g, bool accumulate_dx,
                    bool accumulate_grads) {
  Instance &c = instance(inst);
  const int64_t T = x.rows, in = f.w.cols, r = f.u.cols;
  const bool dx_direct = dx == nullptr || dx->blas_ready();
  Arena arena(c, floats_for_copy(x) + floats_for_copy(dy) + static_cast<size_t>(T * r) * (h_saved != nullptr ? 3 : 4) +
                     (dx_direct ? 0 : static_cast<size_t>(T * in)));
  const Matrix X = f32_operand(x, arena), DY = f32_operand(dy, arena);
  Matrix H;
  if (h_saved != nullptr) {
    H = *h_saved;
  } else {
    H = arena.take(T, r);
    matmul(c, Op::N, X, Op::T, f.vt, H, false);
  }
  const Matrix G = arena.take(T, r), GS = arena.take(T, r), HS = arena.take(T, r);
  matmul(c, Op::N, DY, Op::N, f.u, G, false);
  scale_columns(G, f.s, GS);
  scale_columns(H, f.s, HS);
  for (int64_t k = 0; k < r; ++k) {
    double acc = 0.0;
    for (int64_t t = 0; t < T; ++t)
      acc += static_cast<double>(G.f32()[t * r + k]) * static_cast<double>(H.get(t, k));
    g.ds.set(0, k, static_cast<float>(accumulate_grads ? acc + g.ds.get(0, k) : acc));
  }
  matmul(c, Op::T, DY, Op::N, HS, g.du, accumulate_grads);
  matmul(c, Op::T, GS, Op::N, X, g.dvt, accumulate_grads);
  if (dx == nullptr) return;
  const Matrix DX = dx_direct ? *dx : arena.take(T, in);
  if (!dx_direct && accumulate_dx) to_f32(*dx, DX.f32());
  matmul(c, Op::N, DY, Op::N, f.w, DX, accumulate_dx);
  matmul(c, Op::N, GS, Op::N, f.vt, DX, true);
  if (!dx_direct) from_f32(DX.f32(), *dx, false);
}

// The regularizer, in double. With U [out, r] and V^T [r, in]:
//   E_U = U^T U - I,  E_V = V^T V - I = (V^T)(V^T)^T - I      [r, r]
//   d||E_U||^2/dU = 4 U E_U,  d||E_V||^2/dV^T = 4 E_V V^T   (E symmetric)
//   d||E||/dX = (d||E||^2/dX) / (2 ||E||)
// The factors are read into double copies first, so du and dvt may be u
// and vt themselves (the decoupled step).
void sorsa_regularizer(backend::Instance *, const Matrix &u, const Matrix &vt, const backend::SorsaRegularizer &plan,
                       const Matrix *du, const Matrix *dvt, double norms[2]) {
  const int64_t out = u.rows, r = u.cols, in = vt.cols;
  std::vector<double> U(static_cast<size_t>(out * r)), V(static_cast<size_t>(r * in));
  for (int64_t i = 0; i < out; ++i)
    for (int64_t k = 0; k < r; ++k) U[static_cast<size_t>(i * r + k)] = u.get(i, k);
  for (int64_t k = 0; k < r; ++k)
    for (int64_t j = 0; j < in; ++j) V[static_cast<size_t>(k * in + j)] = vt.get(k, j);
  std::vector<double> EU(static_cast<size_t>(r * r)), EV(static_cast<size_t>(r * r));
  dmatmul(true, false, r, r, out, U.data(), U.data(), EU.data());  // U^T U
  dmatmul(false, true, r, r, in, V.data(), V.data(), EV.data());   // V^T V (as vt vt^T)
  double nu = 0.0, nv = 0.0;
  for (int64_t a = 0; a < r; ++a) {
    EU[static_cast<size_t>(a * r + a)] -= 1.0;
    EV[static_cast<size_t>(a * r + a)] -= 1.0;
  }
  for (size_t e = 0; e < EU.size(); ++e) {
    nu += EU[e] * EU[e];
    nv += EV[e] * EV[e];
  }
  nu = std::sqrt(nu);
  nv = std::sqrt(nv);
  if (norms != nullptr) {
    norms[0] = nu;
    norms[1] = nv;
  }
  auto coefficient = [&](double n) { return plan.squared ? 4.0 * plan.gamma : (n > 0.0 ? 2.0 * plan.gamma / n : 0.0); };
  auto write = [&](const Matrix &dst, const std::vector<double> &grad, double coef) {
    for (int64_t i = 0; i < dst.rows; ++i)
      for (int64_t j = 0; j < dst.cols; ++j) {
        const double v = coef * grad[static_cast<size_t>(i * dst.cols + j)];
        dst.set(i, j, static_cast<float>(plan.accumulate ? static_cast<double>(dst.get(i, j)) + v : v));
      }
  };
  if (du != nullptr) {
    std::vector<double> grad(static_cast<size_t>(out * r));
    dmatmul(false, false, out, r, r, U.data(), EU.data(), grad.data());  // U E_U
    write(*du, grad, coefficient(nu));
  }
  if (dvt != nullptr) {
    std::vector<double> grad(static_cast<size_t>(r * in));
    dmatmul(false, false, r, in, r, EV.data(), V.data(), grad.data());  // E_V V^T
    write(*dvt, grad, coefficient(nv));
  }
}

// Row i of W_r = U_r diag(s_r) V_r^T has squared norm sum_k (U(i, k) s_k)^2
// and column j sum_k (V(j, k) s_k)^2 (V_r and U_r have orthonormal columns).
void principal_line_norms(backend::Instance *, const Matrix &w, int64_t rank, bool by_columns,
                          std::vector<double> *out) {
#ifndef S2FT_HAVE_LAPACK
  (void)w;
  (void)rank;
  (void)by_columns;
  (void)out;
  no_lapack("the principal-weight score (an SVD)");
#else
  const WeightSvd d = weight_svd(w);
  const int64_t lines = by_columns ? d.in : d.out;
  out->assign(static_cast<size_t>(lines), 0.0);
  for (int64_t l = 0; l < lines; ++l) {
    double acc = 0.0;
    for (int64_t k = 0; k < rank; ++k) {
      const double v = (by_columns ? d.vt[static_cast<size_t>(k * d.in + l)] : d.u[static_cast<size_t>(l * d.p + k)]) *
                       d.s[static_cast<size_t>(k)];
      acc += v * v;
    }
    (*out)[static_cast<size_t>(l)] = acc;
  }
#endif
}

}  // namespace cpu
}  // namespace s2ft
