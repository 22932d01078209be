// The CUDA operations that need an SVD (cuda_svd.hpp), in double through
// cuSOLVER (cusolverDnDgesvd, cusolverDnDgeqrf/Dorgqr) and cuBLAS
// (cublasDgemm), following the CPU backend step by step.
//
// Layouts. cuSOLVER and cuBLAS are column-major; our weights are row-major.
// The row-major W [out, in] is, as it lies, the column-major W^T [in, out]
// with leading dimension in. The weight is first widened to doubles in
// scratch (a kernel that also finds the first non-finite value, which is
// refused as the CPU backend refuses it), either as they lie (W^T
// column-major) or transposed (W column-major).
//
// gesvd needs rows >= columns, so the matrix it factors is B = W^T [in, out]
// when in >= out, else B = W [out, in] ("b_is_w"). With p = min(out, in),
// B = Ub diag(s) VTb (Ub [m, p] ld m, VTb [p, p] ld p):
//   B = W^T:  U_W(i, k) = VTb(k, i) = vt[k + i * p],  V_W^T(k, j) = Ub(j, k) = u[j + k * in]
//   B = W:    U_W(i, k) = Ub(i, k) = u[i + k * out],  V_W^T(k, j) = VTb(k, j) = vt[k + j * p]
// The singular subspaces are unique where the spectrum has gaps, so the
// results agree with the CPU backend's (LAPACK dgesdd) to rounding; the
// signs of singular pairs differ between the two, and only SORSA's factors
// see them: their sign rule is applied on the host exactly as on the CPU.
//
// LIFT (s2ft_lift_select):
//   exact:       W_r = U_W,r diag(s_r) V_W,r^T, computed as the column-major
//                W_r^T [in, out] (= W_r row-major, W's flat indices) by one
//                DGEMM from the scaled first r columns of Ub and the first r
//                rows of VTb;
//   randomized:  the CPU backend's algorithm on A = W^T [m = in, n = out]
//                with the same sketch (backend/lift_common.hpp's Gaussian
//                samples from the seed): Y = A Omega; q times
//                Y = A orth(A^T orth(Y)); Q = orth(Y) (geqrf + orgqr);
//                B = Q^T A [l, n] is factored through its transpose
//                B^T = A^T Q [n, l] (n >= l, as gesvd needs):
//                B^T = U' S V'^T, so B = V' S U'^T and
//                A_r = (Q V'_r S_r) U'_r^T.
//   Then W_r is copied to the host and ranked there by the CPU backend's
//   own top-k (backend/lift_common.hpp, |W_r| as doubles), the simplest way
//   to get exactly its ties (to the lower flat index) and its order.
// SORSA (s2ft_sorsa_init): the SVD's factors are copied to the host, where
//   the CPU backend's sign rule and f32 rounding are applied; the f32
//   factors are uploaded into u, s, vt, and the residual
//   W - (U S) V^T is formed on the device in double (DGEMM) from the
//   rounded factors and rounded once to w's dtype, as on the CPU.
// Principal line norms: from the downloaded factors, on the host, by the
//   CPU backend's formula (a line's squared norm in W_r is the sum over
//   k < r of (U_W(i, k) s_k)^2 for rows, (V_W^T(k, j) s_k)^2 for columns).
//
// Memory (scratch): the weight in double, gesvd's U (as large) and VT
// (p * p) and workspace; the randomized method instead keeps two [., l]
// panels and a small SVD.
#include <algorithm>
#include <climits>
#include <cmath>
#include <string>
#include <vector>

#include "backend/lift_common.hpp"
#include "cuda_copy.cuh"
#include "cuda_elements.cuh"
#include "cuda_runtime.cuh"
#include "cuda_svd.hpp"

namespace s2ft {
namespace cuda {
namespace {

// cuSOLVER's and cuBLAS's dimensions are int.
int solver_int(int64_t v, const char *what) {
  if (v < 0 || v > INT_MAX)
    fail(S2FT_ERR_UNSUPPORTED, std::string("SVD on CUDA: ") + what + " " + std::to_string(v) +
                                   " exceeds cuSOLVER's integer range");
  return static_cast<int>(v);
}

// Widens w to doubles: transposed == false writes dst[i * cols + j] (W^T
// column-major, ld cols), else dst[i + j * rows] (W column-major, ld rows).
// The lowest row-major flat index of a non-finite value goes to *bad
// (atomicMin; it stays ULLONG_MAX when every value is finite).
template <typename T>
__global__ void to_double_kernel(View<const T> w, bool transposed, double *dst, unsigned long long *bad) {
  const int64_t n = w.rows * w.cols;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / w.cols, j = e % w.cols;
    const double v = static_cast<double>(to_f32<T>(w.at(i, j)));
    if (!(fabs(v) <= 1.7976931348623157e308)) atomicMin(bad, static_cast<unsigned long long>(e));
    dst[transposed ? i + j * w.rows : e] = v;
  }
}

// w as doubles in fresh scratch (layout as above); refuses a non-finite
// value as the CPU backend does (synchronises to know).
double *load_double(Scratch &sc, const Matrix &w, bool transposed) {
  Context &ctx = sc.ctx();
  double *a = sc.alloc_n<double>(w.rows * w.cols);
  auto *bad = sc.alloc_n<unsigned long long>(1);
  S2FT_CUDA_CHECK(cudaMemsetAsync(bad, 0xff, sizeof(unsigned long long), ctx.stream));
  dispatch_dtype(w.dtype, [&](auto t) {
    using T = decltype(t);
    to_double_kernel<T><<<grid_for(ctx, w.rows * w.cols), kThreads, 0, ctx.stream>>>(view_of<const T>(w), transposed,
                                                                                      a, bad);
  });
  S2FT_CUDA_CHECK_LAUNCH("to_double");
  unsigned long long first = 0;
  download_sync(ctx, &first, bad, sizeof first);
  if (first != ~0ull) {
    const int64_t e = static_cast<int64_t>(first);
    fail_arg("w holds a non-finite value at (" + std::to_string(e / w.cols) + ", " + std::to_string(e % w.cols) + ")");
  }
  return a;
}

// a[i + k * lda] *= s[k] for i < m, k < r (column-major).
__global__ void scale_columns_kernel(double *a, int64_t m, int64_t lda, int64_t r, const double *s) {
  const int64_t n = m * r;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e % m, k = e / m;
    a[i + k * lda] *= s[k];
  }
}

void scale_columns(Context &ctx, double *a, int64_t m, int64_t lda, int64_t r, const double *s) {
  if (m == 0 || r == 0) return;
  scale_columns_kernel<<<grid_for(ctx, m * r), kThreads, 0, ctx.stream>>>(a, m, lda, r, s);
  S2FT_CUDA_CHECK_LAUNCH("scale_columns");
}

// Column-major c [m, n] (ld ldc) = op(a) op(b), op(a) [m, k], op(b) [k, n].
void dgemm(Context &ctx, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const double *a, int lda,
           const double *b, int ldb, double *c, int ldc) {
  if (m == 0 || n == 0) return;
  const double one = 1.0, zero = 0.0;  // the context's pointer mode is HOST
  S2FT_CUBLAS_CHECK(cublasDgemm(ctx.blas, ta, tb, m, n, k, &one, a, lda, b, ldb, &zero, c, ldc));
}

// Reads a cuSOLVER routine's devInfo (synchronising) and turns a failure
// into S2FT_ERR_BACKEND.
void check_info(Context &ctx, const int *dev_info, const char *routine) {
  int info = 0;
  download_sync(ctx, &info, dev_info, sizeof info);
  if (info < 0)
    fail(S2FT_ERR_BACKEND, std::string(routine) + " rejected its argument " + std::to_string(-info) +
                               " (an error in libs2ft's CUDA backend)");
  if (info > 0)
    fail(S2FT_ERR_BACKEND, std::string(routine) + " did not converge (info " + std::to_string(info) +
                               "); the weight may be badly scaled");
}

// The thin SVD of the column-major a [m, n] (m >= n, ld m; destroyed):
// u [m, n] (ld m), s [n] (descending), vt [n, n] (ld n), in scratch.
struct DeviceSvd {
  double *u = nullptr, *s = nullptr, *vt = nullptr;
};

DeviceSvd gesvd(Scratch &sc, int m, int n, double *a) {
  Context &ctx = sc.ctx();
  if (m < n) fail(S2FT_ERR_INTERNAL, "gesvd called with fewer rows than columns");
  cusolverDnHandle_t h = solver(ctx);
  DeviceSvd d;
  d.u = sc.alloc_n<double>(static_cast<int64_t>(m) * n);
  d.s = sc.alloc_n<double>(n);
  d.vt = sc.alloc_n<double>(static_cast<int64_t>(n) * n);
  int lwork = 0;
  S2FT_CUSOLVER_CHECK(cusolverDnDgesvd_bufferSize(h, m, n, &lwork));
  double *work = sc.alloc_n<double>(lwork);
  double *rwork = sc.alloc_n<double>(n);  // min(m, n) - 1 used: unconverged superdiagonal
  int *info = sc.alloc_n<int>(1);
  const signed char job = 'S';  // the thin factors
  S2FT_CUSOLVER_CHECK(cusolverDnDgesvd(h, job, job, m, n, a, m, d.s, d.u, m, d.vt, n, work, lwork, rwork, info));
  check_info(ctx, info, "cusolverDnDgesvd");
  return d;
}

// A weight's thin SVD on the device (the layouts at the top of the file).
struct WeightFactors {
  int64_t out = 0, in = 0, p = 0;
  bool b_is_w = false;  // gesvd factored W [out, in] (out > in), else W^T [in, out]
  int m = 0, n = 0;     // B's shape: m = max(out, in) rows, n = p columns
  double *a = nullptr;  // B's storage, free for reuse after the SVD (m * n doubles)
  DeviceSvd d;
};

WeightFactors device_weight_svd(Scratch &sc, const Matrix &w) {
  WeightFactors f;
  f.out = w.rows;
  f.in = w.cols;
  f.p = std::min(w.rows, w.cols);
  f.b_is_w = w.rows > w.cols;
  f.m = solver_int(std::max(w.rows, w.cols), "the weight's larger dimension");
  f.n = solver_int(f.p, "the weight's smaller dimension");
  f.a = load_double(sc, w, f.b_is_w);
  f.d = gesvd(sc, f.m, f.n, f.a);
  return f;
}

// The factors on the host, read in W's terms.
struct HostFactors {
  int64_t out = 0, in = 0, p = 0;
  bool b_is_w = false;
  std::vector<double> s, u, vt;  // gesvd's outputs as they lie
  double U(int64_t i, int64_t k) const {
    return b_is_w ? u[static_cast<size_t>(i + k * out)] : vt[static_cast<size_t>(k + i * p)];
  }
  double Vt(int64_t k, int64_t j) const {
    return b_is_w ? vt[static_cast<size_t>(k + j * p)] : u[static_cast<size_t>(j + k * in)];
  }
};

HostFactors host_weight_svd(Scratch &sc, const Matrix &w) {
  const WeightFactors f = device_weight_svd(sc, w);
  HostFactors h;
  h.out = f.out;
  h.in = f.in;
  h.p = f.p;
  h.b_is_w = f.b_is_w;
  h.s.resize(static_cast<size_t>(f.n));
  h.u.resize(static_cast<size_t>(f.m) * static_cast<size_t>(f.n));
  h.vt.resize(static_cast<size_t>(f.n) * static_cast<size_t>(f.n));
  Context &ctx = sc.ctx();
  download_sync(ctx, h.s.data(), f.d.s, h.s.size() * sizeof(double));
  download_sync(ctx, h.u.data(), f.d.u, h.u.size() * sizeof(double));
  download_sync(ctx, h.vt.data(), f.d.vt, h.vt.size() * sizeof(double));
  return h;
}

// Orthonormal bases of the ranges of column-major panels [rows, l]
// (rows >= l) in place: geqrf then orgqr, with the workspace for panels of
// up to two heights allocated once.
class Orthonormalizer {
 public:
  Orthonormalizer(Scratch &sc, int rows_a, int rows_b, int l, double *panel_a, double *panel_b)
      : ctx_(sc.ctx()), h_(solver(sc.ctx())), l_(l) {
    tau_ = sc.alloc_n<double>(l);
    const int rows[2] = {rows_a, rows_b};
    double *const panels[2] = {panel_a, panel_b};
    int need = 0;
    for (int i = 0; i < 2; ++i) {
      int q = 0, g = 0;
      S2FT_CUSOLVER_CHECK(cusolverDnDgeqrf_bufferSize(h_, rows[i], l, panels[i], rows[i], &q));
      S2FT_CUSOLVER_CHECK(cusolverDnDorgqr_bufferSize(h_, rows[i], l, l, panels[i], rows[i], tau_, &g));
      need = std::max(need, std::max(q, g));
    }
    lwork_ = need;
    work_ = sc.alloc_n<double>(lwork_);
    info_ = sc.alloc_n<int>(1);
  }

  void operator()(int rows, double *panel) {
    S2FT_CUSOLVER_CHECK(cusolverDnDgeqrf(h_, rows, l_, panel, rows, tau_, work_, lwork_, info_));
    check_info(ctx_, info_, "cusolverDnDgeqrf");
    S2FT_CUSOLVER_CHECK(cusolverDnDorgqr(h_, rows, l_, l_, panel, rows, tau_, work_, lwork_, info_));
    check_info(ctx_, info_, "cusolverDnDorgqr");
  }

 private:
  Context &ctx_;
  cusolverDnHandle_t h_;
  int l_ = 0, lwork_ = 0;
  double *tau_ = nullptr, *work_ = nullptr;
  int *info_ = nullptr;
};

// The randomized method (see the top of the file) on A = W^T [m = in,
// n = out], column-major in `a` (ld m), which it overwrites with A_r.
void randomized_low_rank(Scratch &sc, int m, int n, const backend::LiftPlan &plan, double *a) {
  Context &ctx = sc.ctx();
  const int r = static_cast<int>(plan.rank);
  const int l = static_cast<int>(std::min<int64_t>(plan.rank + plan.oversampling, std::min(m, n)));
  // The CPU backend's sketch, bit for bit.
  const std::vector<double> omega_host = backend::lift_gaussian(plan.seed, static_cast<size_t>(n) * static_cast<size_t>(l));
  const double *omega = sc.upload(omega_host.data(), static_cast<int64_t>(omega_host.size()));
  double *y = sc.alloc_n<double>(static_cast<int64_t>(m) * l);  // [m, l], ld m
  double *z = sc.alloc_n<double>(static_cast<int64_t>(n) * l);  // [n, l], ld n
  Orthonormalizer orth(sc, m, n, l, y, z);
  dgemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, m, l, n, a, m, omega, n, y, m);  // Y = A Omega
  for (int64_t it = 0; it < plan.power_iterations; ++it) {
    orth(m, y);
    dgemm(ctx, CUBLAS_OP_T, CUBLAS_OP_N, n, l, m, a, m, y, m, z, n);  // Z = A^T Q
    orth(n, z);
    dgemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, m, l, n, a, m, z, n, y, m);  // Y = A Z
  }
  orth(m, y);                                                        // Q [m, l]
  dgemm(ctx, CUBLAS_OP_T, CUBLAS_OP_N, n, l, m, a, m, y, m, z, n);  // B^T = A^T Q [n, l]
  const DeviceSvd d = gesvd(sc, n, l, z);  // B^T = U' S V'^T: u [n, l] ld n, vt [l, l] ld l
  double *ur = sc.alloc_n<double>(static_cast<int64_t>(m) * r);
  // U_r = Q V'_r [m, r]: V'(i, k) = vt[k + i * l], so op(vt's first r rows) = T.
  dgemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, m, r, l, y, m, d.vt, l, ur, m);
  scale_columns(ctx, ur, m, m, r, d.s);  // U_r S_r
  // A_r = (U_r S_r) U'_r^T [m, n]: U'_r = u's first r columns [n, r], ld n.
  dgemm(ctx, CUBLAS_OP_N, CUBLAS_OP_T, m, n, r, ur, m, d.u, n, a, m);
}

}  // namespace

void lift_select(Context &ctx, const Matrix &w, const backend::LiftPlan &plan, std::vector<int64_t> *indices) {
  DeviceGuard guard(ctx);
  Scratch sc(ctx);
  const int64_t out = w.rows, in = w.cols, size = out * in;
  const int r = static_cast<int>(plan.rank);
  double *wr = nullptr;  // W_r, row-major [out, in] (= W_r^T column-major, ld in)
  if (plan.randomized) {
    const int m = solver_int(in, "the weight's column count"), n = solver_int(out, "the weight's row count");
    wr = load_double(sc, w, false);  // A = W^T, as the CPU backend's
    randomized_low_rank(sc, m, n, plan, wr);
  } else {
    const WeightFactors f = device_weight_svd(sc, w);
    const int inn = static_cast<int>(in), outn = static_cast<int>(out);
    scale_columns(ctx, f.d.u, f.m, f.m, r, f.d.s);  // Ub's first r columns times s
    wr = f.a;  // B's storage is free after the SVD and holds exactly out * in doubles
    if (!f.b_is_w) {
      // B = W^T [in, out] = A: A_r = (Ub_r S_r) VTb_r, VTb [p = out, out] ld p.
      dgemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, inn, outn, r, f.d.u, f.m, f.d.vt, f.n, wr, inn);
    } else {
      // B = W [out, in]: W_r = (Ub_r S_r) VTb_r, so W_r^T [in, out] = VTb_r^T (Ub_r S_r)^T,
      // VTb [p = in, in] ld p, Ub [out, p] ld out.
      dgemm(ctx, CUBLAS_OP_T, CUBLAS_OP_T, inn, outn, r, f.d.vt, f.n, f.d.u, f.m, wr, inn);
    }
  }
  // Ranked on the host by the CPU backend's code (ties to the lower index).
  std::vector<double> score(static_cast<size_t>(size));
  download_sync(ctx, score.data(), wr, score.size() * sizeof(double));
  for (double &v : score) v = std::fabs(v);
  *indices = backend::top_k(score.data(), size, plan.count, plan.largest);
}

namespace {

// w(i, j) = w(i, j) - prod[i * cols + j] in double, rounded once to w's dtype
// (prod row-major [rows, cols], compact).
template <typename T>
__global__ void residual_kernel(View<T> w, const double *prod) {
  const int64_t n = w.rows * w.cols;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = e / w.cols, j = e % w.cols;
    w.at(i, j) = from_f64<T>(static_cast<double>(to_f32<T>(w.at(i, j))) - prod[e]);
  }
}

}  // namespace

void sorsa_init(Context &ctx, const Matrix &w, const Matrix &u, const Matrix &s, const Matrix &vt) {
  DeviceGuard guard(ctx);
  Scratch sc(ctx);
  const HostFactors d = host_weight_svd(sc, w);
  const int64_t out = d.out, in = d.in, r = u.cols;
  // The CPU backend's factors (src/backend/cpu/sorsa.cpp), in f32, each
  // singular pair's sign fixed: the entry of largest magnitude of u's column
  // is positive (the first one on ties).
  std::vector<double> us(static_cast<size_t>(out * r)), vr(static_cast<size_t>(r * in));
  std::vector<float> uf(static_cast<size_t>(out * r)), sf(static_cast<size_t>(r)), vf(static_cast<size_t>(r * in));
  for (int64_t k = 0; k < r; ++k) {
    int64_t arg = 0;
    for (int64_t i = 1; i < out; ++i)
      if (std::fabs(d.U(i, k)) > std::fabs(d.U(arg, k))) arg = i;
    const double sign = d.U(arg, k) < 0.0 ? -1.0 : 1.0;
    sf[static_cast<size_t>(k)] = static_cast<float>(d.s[static_cast<size_t>(k)]);
    for (int64_t i = 0; i < out; ++i) uf[static_cast<size_t>(i * r + k)] = static_cast<float>(sign * d.U(i, k));
    for (int64_t j = 0; j < in; ++j) vf[static_cast<size_t>(k * in + j)] = static_cast<float>(sign * d.Vt(k, j));
  }
  // The residual from the rounded factors, in double: W - (U S) V^T.
  for (int64_t i = 0; i < out; ++i)
    for (int64_t k = 0; k < r; ++k)
      us[static_cast<size_t>(i * r + k)] =
          static_cast<double>(uf[static_cast<size_t>(i * r + k)]) * static_cast<double>(sf[static_cast<size_t>(k)]);
  for (size_t e = 0; e < vr.size(); ++e) vr[e] = vf[e];
  const double *us_dev = sc.upload(us.data(), static_cast<int64_t>(us.size()));
  const double *vr_dev = sc.upload(vr.data(), static_cast<int64_t>(vr.size()));
  // prod = (U S) V^T, row-major [out, in], is the column-major
  // prod^T [in, out] = vr^T us^T, with vr row-major [r, in] = column-major
  // vr^T [in, r] (ld in) and us row-major [out, r] = column-major us^T
  // [r, out] (ld r).
  double *prod = sc.alloc_n<double>(out * in);
  dgemm(ctx, CUBLAS_OP_N, CUBLAS_OP_N, solver_int(in, "the weight's column count"),
        solver_int(out, "the weight's row count"), static_cast<int>(r), vr_dev, static_cast<int>(in), us_dev,
        static_cast<int>(r), prod, static_cast<int>(in));
  // Nothing has been written so far: a failure above leaves every tensor as it was.
  dispatch_dtype(w.dtype, [&](auto t) {
    using T = decltype(t);
    residual_kernel<T><<<grid_for(ctx, out * in), kThreads, 0, ctx.stream>>>(view_of<T>(w), prod);
  });
  S2FT_CUDA_CHECK_LAUNCH("residual");
  const float *uf_dev = sc.upload(uf.data(), static_cast<int64_t>(uf.size()));
  const float *sf_dev = sc.upload(sf.data(), static_cast<int64_t>(sf.size()));
  const float *vf_dev = sc.upload(vf.data(), static_cast<int64_t>(vf.size()));
  copy(ctx, device_matrix(const_cast<float *>(uf_dev), S2FT_F32, out, r, ctx.device), u);
  copy(ctx, device_matrix(const_cast<float *>(sf_dev), S2FT_F32, 1, r, ctx.device), s);
  copy(ctx, device_matrix(const_cast<float *>(vf_dev), S2FT_F32, r, in, ctx.device), vt);
}

void principal_line_norms(Context &ctx, const Matrix &w, int64_t rank, bool by_columns, std::vector<double> *out) {
  DeviceGuard guard(ctx);
  Scratch sc(ctx);
  const HostFactors d = host_weight_svd(sc, w);
  // The CPU backend's formula (src/backend/cpu/sorsa.cpp).
  const int64_t lines = by_columns ? d.in : d.out;
  out->assign(static_cast<size_t>(lines), 0.0);
  for (int64_t l = 0; l < lines; ++l) {
    double acc = 0.0;
    for (int64_t k = 0; k < rank; ++k) {
      const double v = (by_columns ? d.Vt(k, l) : d.U(l, k)) * d.s[static_cast<size_t>(k)];
      acc += v * v;
    }
    (*out)[static_cast<size_t>(l)] = acc;
  }
}

}  // namespace cuda
}  // namespace s2ft
