// SORSA (s2ft_sorsa_*) against float64 references of the test's own:
// the split of weights with a known spectrum (singular values, orthonormal
// factors, the residual reproducing the weight to one rounding, the sign
// rule), forward and backward against the math in double on odd shapes
// and dtypes (and the backward against finite differences of the double
// forward), the accumulate flags, the regularizer and its decoupled step
// against double references and finite differences, a training step
// through s2ft_optimizer, and every error path.
#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <string>
#include <vector>

#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

using Mat = std::vector<double>;  // row-major

size_t at(int64_t i, int64_t j, int64_t cols) { return static_cast<size_t>(i * cols + j); }

// Orthonormalises the columns of a [rows, cols] row-major matrix (modified
// Gram-Schmidt, twice).
void orthonormalize(Mat &a, int64_t rows, int64_t cols) {
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t p = 0; p < j; ++p) {
        double d = 0;
        for (int64_t i = 0; i < rows; ++i) d += a[at(i, p, cols)] * a[at(i, j, cols)];
        for (int64_t i = 0; i < rows; ++i) a[at(i, j, cols)] -= d * a[at(i, p, cols)];
      }
      double n = 0;
      for (int64_t i = 0; i < rows; ++i) n += a[at(i, j, cols)] * a[at(i, j, cols)];
      n = std::sqrt(n);
      for (int64_t i = 0; i < rows; ++i) a[at(i, j, cols)] /= n;
    }
}

Mat random_orthonormal(Random &rng, int64_t rows, int64_t cols) {
  Mat a(static_cast<size_t>(rows * cols));
  for (double &v : a) v = rng.uniform();
  orthonormalize(a, rows, cols);
  return a;
}

// W = Q diag(sv) P^T, Q [out, p], P [in, p] orthonormal, p = sv.size().
struct Spectrum {
  Mat w, q, p;
};
Spectrum spectrum_matrix(Random &rng, int64_t out, int64_t in, const std::vector<double> &sv) {
  const int64_t p = static_cast<int64_t>(sv.size());
  Spectrum s{Mat(static_cast<size_t>(out * in), 0.0), random_orthonormal(rng, out, p), random_orthonormal(rng, in, p)};
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j)
      for (int64_t k = 0; k < p; ++k) s.w[at(i, j, in)] += s.q[at(i, k, p)] * sv[static_cast<size_t>(k)] * s.p[at(j, k, p)];
  return s;
}

HostMatrix from_doubles(int32_t dtype, int64_t rows, int64_t cols, const Mat &v) {
  HostMatrix m(dtype, rows, cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) m.set(i, j, static_cast<float>(v[at(i, j, cols)]));
  return m;
}

HostMatrix random_matrix(Random &rng, int32_t dtype, int64_t rows, int64_t cols, double scale = 1.0) {
  HostMatrix m(dtype, rows, cols);
  m.fill_random(rng, scale);
  return m;
}

HostMatrix poisoned(int32_t dtype, int64_t rows, int64_t cols) {
  HostMatrix m(dtype, rows, cols);
  m.poison();
  return m;
}

// ---- the math in double ------------------------------------------------------------

struct Factors {
  Mat u, s, vt;  // [out, r], [r], [r, in]
  int64_t out, r, in;
};

Factors factors_of(const HostMatrix &u, const HostMatrix &s, const HostMatrix &vt) {
  return {u.to_double(), s.to_double(), vt.to_double(), u.rows, u.cols, vt.cols};
}

// y = x W^T + ((x V) * s) U^T
Mat ref_forward(const Mat &x, int64_t T, const Mat &w, const Factors &f, Mat *h_out = nullptr) {
  Mat y = ref_matmul(x, T, f.in, false, w, f.out, f.in, true);
  Mat h = ref_matmul(x, T, f.in, false, f.vt, f.r, f.in, true);
  Mat hs = h;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < f.r; ++k) hs[at(t, k, f.r)] *= f.s[static_cast<size_t>(k)];
  const Mat low = ref_matmul(hs, T, f.r, false, f.u, f.out, f.r, true);
  for (size_t e = 0; e < y.size(); ++e) y[e] += low[e];
  if (h_out != nullptr) *h_out = h;
  return y;
}

struct Grads {
  Mat du, ds, dvt, dx;
};

Grads ref_backward(const Mat &x, int64_t T, const Mat &w, const Factors &f, const Mat &dy) {
  Grads g;
  const Mat h = ref_matmul(x, T, f.in, false, f.vt, f.r, f.in, true);
  const Mat gu = ref_matmul(dy, T, f.out, false, f.u, f.out, f.r, false);  // dy U
  Mat hs = h, gs = gu;
  g.ds.assign(static_cast<size_t>(f.r), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < f.r; ++k) {
      hs[at(t, k, f.r)] *= f.s[static_cast<size_t>(k)];
      gs[at(t, k, f.r)] *= f.s[static_cast<size_t>(k)];
      g.ds[static_cast<size_t>(k)] += gu[at(t, k, f.r)] * h[at(t, k, f.r)];
    }
  g.du = ref_matmul(dy, T, f.out, true, hs, T, f.r, false);
  g.dvt = ref_matmul(gs, T, f.r, true, x, T, f.in, false);
  g.dx = ref_matmul(dy, T, f.out, false, w, f.out, f.in, false);
  const Mat low = ref_matmul(gs, T, f.r, false, f.vt, f.r, f.in, false);
  for (size_t e = 0; e < g.dx.size(); ++e) g.dx[e] += low[e];
  return g;
}

// R = ||U^T U - I||^2 + ||V^T V - I||^2 (or the plain norms), and its gradients.
struct Reg {
  double value;
  Mat du, dvt;
};
Reg ref_regularizer(const Mat &u, const Mat &vt, int64_t out, int64_t r, int64_t in, bool squared) {
  Mat eu = ref_matmul(u, out, r, true, u, out, r, false);
  Mat ev = ref_matmul(vt, r, in, false, vt, r, in, true);
  for (int64_t a = 0; a < r; ++a) {
    eu[at(a, a, r)] -= 1.0;
    ev[at(a, a, r)] -= 1.0;
  }
  double nu = 0, nv = 0;
  for (size_t e = 0; e < eu.size(); ++e) {
    nu += eu[e] * eu[e];
    nv += ev[e] * ev[e];
  }
  nu = std::sqrt(nu);
  nv = std::sqrt(nv);
  Reg g;
  g.value = squared ? nu * nu + nv * nv : nu + nv;
  g.du = ref_matmul(u, out, r, false, eu, r, r, false);
  g.dvt = ref_matmul(ev, r, r, false, vt, r, in, false);
  const double cu = squared ? 4.0 : (nu > 0 ? 2.0 / nu : 0.0), cv = squared ? 4.0 : (nv > 0 ? 2.0 / nv : 0.0);
  for (double &v : g.du) v *= cu;
  for (double &v : g.dvt) v *= cv;
  return g;
}

double max_abs(const Mat &v) {
  double m = 0;
  for (double e : v) m = std::max(m, std::fabs(e));
  return m;
}

// ---- the split -----------------------------------------------------------------------

struct InitCase {
  int64_t out, in, rank;
  int32_t dtype;
};

class SorsaInit : public ::testing::TestWithParam<InitCase> {};

TEST_P(SorsaInit, FactorsResidualAndSigns) {
  const InitCase c = GetParam();
  Random rng(0x501 + c.out * 7 + c.in * 3 + c.rank + c.dtype * 101);
  const int64_t p = std::min(c.out, c.in);
  std::vector<double> sv(static_cast<size_t>(p));
  for (int64_t k = 0; k < p; ++k) sv[static_cast<size_t>(k)] = 3.0 * std::pow(0.7, static_cast<double>(k)) + 0.05;
  const Spectrum sp = spectrum_matrix(rng, c.out, c.in, sv);
  HostMatrix w = from_doubles(c.dtype, c.out, c.in, sp.w);
  const Mat w0 = w.to_double();  // the weight as the library sees it
  HostMatrix u = poisoned(S2FT_F32, c.out, c.rank), s = poisoned(S2FT_F32, 1, c.rank),
             vt = poisoned(S2FT_F32, c.rank, c.in);
  Context cx;
  ASSERT_S2FT_OK(s2ft_sorsa_init(cx.ctx, &w.t, static_cast<int32_t>(c.rank), &u.t, &s.t, &vt.t));
  const Factors f = factors_of(u, s, vt);

  // Singular values: the known ones (rounded to the weight's dtype first,
  // so compare loosely for 16-bit weights), descending.
  const double sv_tol = c.dtype == S2FT_F32 ? 1e-5 : 2e-2;
  for (int64_t k = 0; k < c.rank; ++k) {
    EXPECT_NEAR(f.s[static_cast<size_t>(k)], sv[static_cast<size_t>(k)], sv_tol * sv[0]) << "k " << k;
    if (k > 0) {
      EXPECT_LE(f.s[static_cast<size_t>(k)], f.s[static_cast<size_t>(k - 1)]);
    }
  }
  // Orthonormal factors (f32 rounding of orthonormal doubles).
  const Mat utu = ref_matmul(f.u, c.out, c.rank, true, f.u, c.out, c.rank, false);
  const Mat vvt = ref_matmul(f.vt, c.rank, c.in, false, f.vt, c.rank, c.in, true);
  for (int64_t a = 0; a < c.rank; ++a)
    for (int64_t b = 0; b < c.rank; ++b) {
      EXPECT_NEAR(utu[at(a, b, c.rank)], a == b ? 1.0 : 0.0, 1e-6);
      EXPECT_NEAR(vvt[at(a, b, c.rank)], a == b ? 1.0 : 0.0, 1e-6);
    }
  // Sign rule: each column of u has its largest-magnitude entry positive.
  for (int64_t k = 0; k < c.rank; ++k) {
    int64_t arg = 0;
    for (int64_t i = 1; i < c.out; ++i)
      if (std::fabs(f.u[at(i, k, c.rank)]) > std::fabs(f.u[at(arg, k, c.rank)])) arg = i;
    EXPECT_GT(f.u[at(arg, k, c.rank)], 0.0) << "column " << k;
  }
  // For f32 weights the factors are the known singular vectors (up to sign).
  if (c.dtype == S2FT_F32)
    for (int64_t k = 0; k < c.rank; ++k) {
      double dq = 0, dp = 0;
      for (int64_t i = 0; i < c.out; ++i) dq += f.u[at(i, k, c.rank)] * sp.q[at(i, k, p)];
      for (int64_t j = 0; j < c.in; ++j) dp += f.vt[at(k, j, c.in)] * sp.p[at(j, k, p)];
      EXPECT_NEAR(std::fabs(dq), 1.0, 1e-5) << "k " << k;
      EXPECT_NEAR(dq * dp, 1.0, 1e-5) << "k " << k << ": u and vt flipped together";
    }
  // The residual is W - U diag(s) V^T from the returned f32 factors,
  // rounded once to the weight's dtype: it reproduces W to that rounding.
  Mat us = f.u;
  for (int64_t i = 0; i < c.out; ++i)
    for (int64_t k = 0; k < c.rank; ++k) us[at(i, k, c.rank)] *= f.s[static_cast<size_t>(k)];
  const Mat prod = ref_matmul(us, c.out, c.rank, false, f.vt, c.rank, c.in, false);
  const double half_ulp = c.dtype == S2FT_F32 ? std::ldexp(1.0, -24) : c.dtype == S2FT_BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
  const double wmax = max_abs(w0);
  double tail = 0;
  for (int64_t i = 0; i < c.out; ++i)
    for (int64_t j = 0; j < c.in; ++j) {
      const double exact = w0[at(i, j, c.in)] - prod[at(i, j, c.in)];
      const double got = w.get(i, j);
      EXPECT_LE(std::fabs(got - exact), half_ulp * std::fabs(exact) * 1.0001 + 1e-12 * wmax)
          << "(" << i << ", " << j << ") exact " << exact << " got " << got;
      EXPECT_LE(std::fabs(got + prod[at(i, j, c.in)] - w0[at(i, j, c.in)]),
                half_ulp * std::fabs(exact) * 1.0001 + 1e-12 * wmax);
      tail = std::max(tail, std::fabs(got));
    }
  // The residual carries only the spectrum's tail.
  if (c.rank == p) {
    EXPECT_LT(tail, 1e-5 * wmax);
  } else if (c.dtype == S2FT_F32) {
    EXPECT_LT(tail, 1.01 * sv[static_cast<size_t>(c.rank)]);
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SorsaInit,
                         ::testing::Values(InitCase{9, 5, 1, S2FT_F32}, InitCase{9, 5, 3, S2FT_F32},
                                           InitCase{5, 9, 5, S2FT_F32}, InitCase{13, 11, 4, S2FT_F32},
                                           InitCase{13, 11, 4, S2FT_BF16}, InitCase{7, 12, 7, S2FT_BF16},
                                           InitCase{16, 10, 3, S2FT_F16}, InitCase{1, 6, 1, S2FT_F32}),
                         [](const ::testing::TestParamInfo<InitCase> &i) {
                           return std::string(dtype_label(i.param.dtype)) + "_" + std::to_string(i.param.out) + "x" +
                                  std::to_string(i.param.in) + "_r" + std::to_string(i.param.rank);
                         });

// Strided outputs ([r] s, a transposed vt view) and a strided weight.
TEST(SorsaInitStrided, StridedViews) {
  Random rng(77);
  const int64_t out = 8, in = 6, r = 3;
  HostMatrix wbig = random_matrix(rng, S2FT_F32, out, in + 2);
  HostMatrix wref(S2FT_F32, out, in);
  for (int64_t i = 0; i < out; ++i)
    for (int64_t j = 0; j < in; ++j) wref.set(i, j, wbig.get(i, j));
  s2ft_tensor w = wbig.t;
  w.shape[1] = in;  // the first `in` columns, row stride in + 2
  std::vector<float> s1(static_cast<size_t>(r), NAN);
  s2ft_tensor s;
  const int64_t sshape[1] = {r};
  ASSERT_S2FT_OK(s2ft_tensor_init(&s, s1.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, sshape));
  HostMatrix u = poisoned(S2FT_F32, out, r), vtT = poisoned(S2FT_F32, in, r);  // vt stored transposed
  s2ft_tensor vt = vtT.t;
  vt.shape[0] = r;
  vt.shape[1] = in;
  vt.strides[0] = 1;
  vt.strides[1] = r;
  Context cx;
  ASSERT_S2FT_OK(s2ft_sorsa_init(cx.ctx, &w, static_cast<int32_t>(r), &u.t, &s, &vt));
  // Against the compact call on the same weight.
  HostMatrix u2 = poisoned(S2FT_F32, out, r), s2 = poisoned(S2FT_F32, 1, r), vt2 = poisoned(S2FT_F32, r, in);
  ASSERT_S2FT_OK(s2ft_sorsa_init(cx.ctx, &wref.t, static_cast<int32_t>(r), &u2.t, &s2.t, &vt2.t));
  for (int64_t k = 0; k < r; ++k) {
    EXPECT_EQ(s1[static_cast<size_t>(k)], s2.get(0, k));
    for (int64_t j = 0; j < in; ++j) EXPECT_EQ(vtT.get(j, k), vt2.get(k, j));
  }
  for (int64_t i = 0; i < out; ++i) {
    for (int64_t j = 0; j < in; ++j) EXPECT_EQ(wbig.get(i, j), wref.get(i, j));
    for (int64_t j = in; j < in + 2; ++j) EXPECT_FALSE(std::isnan(wbig.get(i, j)));  // padding untouched
  }
}

// ---- forward and backward -----------------------------------------------------------

struct LayerCase {
  int64_t T, out, in, r;
  int32_t dtype;
};

std::string layer_name(const ::testing::TestParamInfo<LayerCase> &i) {
  return std::string(dtype_label(i.param.dtype)) + "_T" + std::to_string(i.param.T) + "_o" +
         std::to_string(i.param.out) + "_i" + std::to_string(i.param.in) + "_r" + std::to_string(i.param.r);
}

struct Layer {
  HostMatrix x, w, u, s, vt, dy;
  Factors f;
  Mat xd, wd, dyd;
  Layer(const LayerCase &c, uint64_t seed) {
    Random rng(seed);
    x = random_matrix(rng, c.dtype, c.T, c.in);
    w = random_matrix(rng, c.dtype, c.out, c.in, 0.5);
    u = random_matrix(rng, S2FT_F32, c.out, c.r);
    s = random_matrix(rng, S2FT_F32, 1, c.r, 2.0);
    vt = random_matrix(rng, S2FT_F32, c.r, c.in);
    dy = random_matrix(rng, c.dtype, c.T, c.out);
    f = factors_of(u, s, vt);
    xd = x.to_double();
    wd = w.to_double();
    dyd = dy.to_double();
  }
};

class SorsaLayer : public ::testing::TestWithParam<LayerCase> {};

TEST_P(SorsaLayer, ForwardMatchesDouble) {
  const LayerCase c = GetParam();
  Layer L(c, 0xf0 + c.T * 3 + c.out * 5 + c.in * 7 + c.r * 11 + c.dtype);
  Mat h_ref;
  const Mat y_ref = ref_forward(L.xd, c.T, L.wd, L.f, &h_ref);
  Context cx;
  HostMatrix y = poisoned(c.dtype, c.T, c.out), h = poisoned(S2FT_F32, c.T, c.r);
  ASSERT_S2FT_OK(s2ft_sorsa_forward(cx.ctx, &L.x.t, &L.w.t, &L.u.t, &L.s.t, &L.vt.t, &y.t, &h.t));
  EXPECT_LT(rel_error(y.to_double(), y_ref), tolerance(c.dtype));
  EXPECT_LT(rel_error(h.to_double(), h_ref), 1e-5);
  // Without h_saved: the same y.
  HostMatrix y2 = poisoned(c.dtype, c.T, c.out);
  ASSERT_S2FT_OK(s2ft_sorsa_forward(cx.ctx, &L.x.t, &L.w.t, &L.u.t, &L.s.t, &L.vt.t, &y2.t, nullptr));
  EXPECT_EQ(y2.bytes, y.bytes);
}

TEST_P(SorsaLayer, BackwardMatchesDouble) {
  const LayerCase c = GetParam();
  Layer L(c, 0xb0 + c.T * 3 + c.out * 5 + c.in * 7 + c.r * 11 + c.dtype);
  const Grads g = ref_backward(L.xd, c.T, L.wd, L.f, L.dyd);
  Context cx;
  HostMatrix h(S2FT_F32, c.T, c.r), y(c.dtype, c.T, c.out);
  ASSERT_S2FT_OK(s2ft_sorsa_forward(cx.ctx, &L.x.t, &L.w.t, &L.u.t, &L.s.t, &L.vt.t, &y.t, &h.t));
  for (const bool saved : {true, false}) {
    SCOPED_TRACE(saved ? "h saved" : "h recomputed");
    HostMatrix dx = poisoned(c.dtype, c.T, c.in), du = poisoned(S2FT_F32, c.out, c.r),
               ds = poisoned(S2FT_F32, 1, c.r), dvt = poisoned(S2FT_F32, c.r, c.in);
    ASSERT_S2FT_OK(s2ft_sorsa_backward(cx.ctx, &L.x.t, &L.w.t, &L.u.t, &L.s.t, &L.vt.t, saved ? &h.t : nullptr,
                                       &L.dy.t, &dx.t, &du.t, &ds.t, &dvt.t, 0));
    // The factor gradients are f32 from f32 products of the (rounded) inputs.
    EXPECT_LT(rel_error(du.to_double(), g.du), 1e-5);
    EXPECT_LT(rel_error(ds.to_double(), g.ds), 1e-5);
    EXPECT_LT(rel_error(dvt.to_double(), g.dvt), 1e-5);
    EXPECT_LT(rel_error(dx.to_double(), g.dx), tolerance(c.dtype));
    // dx NULL: the same factor gradients.
    HostMatrix du2 = poisoned(S2FT_F32, c.out, c.r), ds2 = poisoned(S2FT_F32, 1, c.r),
               dvt2 = poisoned(S2FT_F32, c.r, c.in);
    ASSERT_S2FT_OK(s2ft_sorsa_backward(cx.ctx, &L.x.t, &L.w.t, &L.u.t, &L.s.t, &L.vt.t, saved ? &h.t : nullptr,
                                       &L.dy.t, nullptr, &du2.t, &ds2.t, &dvt2.t, 0));
    EXPECT_EQ(du2.bytes, du.bytes);
    EXPECT_EQ(ds2.bytes, ds.bytes);
    EXPECT_EQ(dvt2.bytes, dvt.bytes);
  }
}

TEST_P(SorsaLayer, AccumulateFlags) {
  const LayerCase c = GetParam();
  Layer L(c, 0xac + c.T * 3 + c.out * 5 + c.in * 7 + c.r * 11 + c.dtype);
  const Grads g = ref_backward(L.xd, c.T, L.wd, L.f, L.dyd);
  Context cx;
  const uint32_t sets[] = {S2FT_ACCUMULATE_DW, S2FT_ACCUMULATE_DX, S2FT_ACCUMULATE_DW | S2FT_ACCUMULATE_DX};
  for (const uint32_t flags : sets) {
    SCOPED_TRACE("flags " + std::to_string(flags));
    Random rng(flags);
    HostMatrix dx = random_matrix(rng, c.dtype, c.T, c.in), du = random_matrix(rng, S2FT_F32, c.out, c.r),
               ds = random_matrix(rng, S2FT_F32, 1, c.r), dvt = random_matrix(rng, S2FT_F32, c.r, c.in);
    const Mat dx0 = dx.to_double(), du0 = du.to_double(), ds0 = ds.to_double(), dvt0 = dvt.to_double();
    ASSERT_S2FT_OK(s2ft_sorsa_backward(cx.ctx, &L.x.t, &L.w.t, &L.u.t, &L.s.t, &L.vt.t, nullptr, &L.dy.t, &dx.t,
                                       &du.t, &ds.t, &dvt.t, flags));
    auto expect = [](const Mat &old, const Mat &add, bool acc) {
      Mat e = add;
      if (acc)
        for (size_t i = 0; i < e.size(); ++i) e[i] += old[i];
      return e;
    };
    const bool adw = flags & S2FT_ACCUMULATE_DW, adx = flags & S2FT_ACCUMULATE_DX;
    EXPECT_LT(rel_error(du.to_double(), expect(du0, g.du, adw)), 1e-5);
    EXPECT_LT(rel_error(ds.to_double(), expect(ds0, g.ds, adw)), 1e-5);
    EXPECT_LT(rel_error(dvt.to_double(), expect(dvt0, g.dvt, adw)), 1e-5);
    EXPECT_LT(rel_error(dx.to_double(), expect(dx0, g.dx, adx)), tolerance(c.dtype));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, SorsaLayer,
    ::testing::Values(LayerCase{1, 7, 5, 1, S2FT_F32}, LayerCase{1, 7, 5, 5, S2FT_F32}, LayerCase{3, 9, 13, 9, S2FT_F32},
                      LayerCase{17, 33, 21, 4, S2FT_F32}, LayerCase{5, 11, 6, 6, S2FT_BF16},
                      LayerCase{1, 13, 9, 1, S2FT_BF16}, LayerCase{23, 19, 31, 7, S2FT_BF16},
                      LayerCase{9, 15, 10, 3, S2FT_F16}, LayerCase{2, 5, 40, 5, S2FT_F16}),
    layer_name);

// Strided operands: a weight view with padded rows, x and dy column ranges,
// a column-major u, an [r] vector s and a padded dx.
TEST(SorsaStrided, ForwardBackwardOnViews) {
  Random rng(0x57);
  const int64_t T = 6, out = 10, in = 7, r = 3;
  HostMatrix xbig = random_matrix(rng, S2FT_F32, T, in + 3), wbig = random_matrix(rng, S2FT_F32, out, in + 1),
             uT = random_matrix(rng, S2FT_F32, r, out), vt = random_matrix(rng, S2FT_F32, r, in),
             dybig = random_matrix(rng, S2FT_F32, T, out + 2);
  std::vector<float> s1 = {1.5f, -0.5f, 2.0f};
  s2ft_tensor x = xbig.t, w = wbig.t, dy = dybig.t, u = uT.t, s;
  x.shape[1] = in;
  w.shape[1] = in;
  dy.shape[1] = out;
  u.shape[0] = out;
  u.shape[1] = r;
  u.strides[0] = 1;
  u.strides[1] = out;
  const int64_t sshape[1] = {r};
  ASSERT_S2FT_OK(s2ft_tensor_init(&s, s1.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, sshape));
  // Compact copies for the reference.
  HostMatrix xc(S2FT_F32, T, in), wc(S2FT_F32, out, in), uc(S2FT_F32, out, r), sc(S2FT_F32, 1, r), dyc(S2FT_F32, T, out);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < in; ++j) xc.set(t, j, xbig.get(t, j));
    for (int64_t i = 0; i < out; ++i) dyc.set(t, i, dybig.get(t, i));
  }
  for (int64_t i = 0; i < out; ++i) {
    for (int64_t j = 0; j < in; ++j) wc.set(i, j, wbig.get(i, j));
    for (int64_t k = 0; k < r; ++k) uc.set(i, k, uT.get(k, i));
  }
  for (int64_t k = 0; k < r; ++k) sc.set(0, k, s1[static_cast<size_t>(k)]);
  const Factors f = factors_of(uc, sc, vt);
  Context cx;
  HostMatrix y = poisoned(S2FT_F32, T, out);
  ASSERT_S2FT_OK(s2ft_sorsa_forward(cx.ctx, &x, &w, &u, &s, &vt.t, &y.t, nullptr));
  EXPECT_LT(rel_error(y.to_double(), ref_forward(xc.to_double(), T, wc.to_double(), f)), 1e-5);
  HostMatrix dxbig = poisoned(S2FT_F32, T, in + 4), du = poisoned(S2FT_F32, out, r), ds = poisoned(S2FT_F32, 1, r),
             dvt = poisoned(S2FT_F32, r, in);
  s2ft_tensor dx = dxbig.t;
  dx.shape[1] = in;
  ASSERT_S2FT_OK(s2ft_sorsa_backward(cx.ctx, &x, &w, &u, &s, &vt.t, nullptr, &dy, &dx, &du.t, &ds.t, &dvt.t, 0));
  const Grads g = ref_backward(xc.to_double(), T, wc.to_double(), f, dyc.to_double());
  Mat dxv;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < in; ++j) dxv.push_back(dxbig.get(t, j));
  EXPECT_LT(rel_error(dxv, g.dx), 1e-5);
  EXPECT_LT(rel_error(du.to_double(), g.du), 1e-5);
  EXPECT_LT(rel_error(ds.to_double(), g.ds), 1e-5);
  EXPECT_LT(rel_error(dvt.to_double(), g.dvt), 1e-5);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = in; j < in + 4; ++j) EXPECT_TRUE(std::isnan(dxbig.get(t, j))) << "padding written";
}

// The backward against central differences of the double forward of
// L = sum(dy * y) (so dL/dy = dy), on a tiny f32 case.
TEST(SorsaGradcheck, FiniteDifferences) {
  const LayerCase c{3, 5, 4, 2, S2FT_F32};
  Layer L(c, 0xfd);
  Context cx;
  HostMatrix dx(S2FT_F32, c.T, c.in), du(S2FT_F32, c.out, c.r), ds(S2FT_F32, 1, c.r), dvt(S2FT_F32, c.r, c.in);
  ASSERT_S2FT_OK(s2ft_sorsa_backward(cx.ctx, &L.x.t, &L.w.t, &L.u.t, &L.s.t, &L.vt.t, nullptr, &L.dy.t, &dx.t, &du.t,
                                     &ds.t, &dvt.t, 0));
  auto loss = [&](const Mat &x, const Factors &f) {
    const Mat y = ref_forward(x, c.T, L.wd, f);
    double l = 0;
    for (size_t e = 0; e < y.size(); ++e) l += y[e] * L.dyd[e];
    return l;
  };
  const double eps = 1e-6;
  auto check = [&](Mat &param, const HostMatrix &got, const char *what, const std::function<double()> &eval) {
    for (size_t e = 0; e < param.size(); ++e) {
      const double keep = param[e];
      param[e] = keep + eps;
      const double lp = eval();
      param[e] = keep - eps;
      const double lm = eval();
      param[e] = keep;
      const double fd = (lp - lm) / (2 * eps);
      const double g = got.get(static_cast<int64_t>(e) / got.cols, static_cast<int64_t>(e) % got.cols);
      EXPECT_NEAR(g, fd, 1e-5 * std::max(1.0, std::fabs(fd))) << what << "[" << e << "]";
    }
  };
  Factors f = L.f;
  Mat x = L.xd;
  check(f.u, du, "du", [&] { return loss(x, f); });
  check(f.s, ds, "ds", [&] { return loss(x, f); });
  check(f.vt, dvt, "dvt", [&] { return loss(x, f); });
  check(x, dx, "dx", [&] { return loss(x, f); });
}

// ---- the regularizer ---------------------------------------------------------------

struct RegCase {
  int64_t out, r, in;
  bool squared;
};

class SorsaRegularizer : public ::testing::TestWithParam<RegCase> {};

TEST_P(SorsaRegularizer, ValueAndGradient) {
  const RegCase c = GetParam();
  Random rng(0x7e + c.out + c.r * 13 + c.in * 17 + c.squared);
  // Near-orthonormal factors (as in training) and plainly random ones.
  for (const double noise : {1e-3, 0.3}) {
    SCOPED_TRACE("noise " + std::to_string(noise));
    Mat ud = random_orthonormal(rng, c.out, c.r), vd = random_orthonormal(rng, c.in, c.r);
    HostMatrix u(S2FT_F32, c.out, c.r), vt(S2FT_F32, c.r, c.in);
    for (int64_t i = 0; i < c.out; ++i)
      for (int64_t k = 0; k < c.r; ++k) u.set(i, k, static_cast<float>(ud[at(i, k, c.r)] + noise * rng.uniform()));
    for (int64_t k = 0; k < c.r; ++k)
      for (int64_t j = 0; j < c.in; ++j) vt.set(k, j, static_cast<float>(vd[at(j, k, c.r)] + noise * rng.uniform()));
    const Reg ref = ref_regularizer(u.to_double(), vt.to_double(), c.out, c.r, c.in, c.squared);
    const double gamma = 0.25;
    const uint32_t mode = c.squared ? 0u : S2FT_SORSA_UNSQUARED;
    Context cx;
    double value = NAN;
    HostMatrix du = poisoned(S2FT_F32, c.out, c.r), dvt = poisoned(S2FT_F32, c.r, c.in);
    ASSERT_S2FT_OK(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, gamma, &value, &du.t, &dvt.t, mode));
    EXPECT_NEAR(value, gamma * ref.value, 1e-9 * std::max(1.0, ref.value));
    Mat gu = ref.du, gv = ref.dvt;
    for (double &v : gu) v *= gamma;
    for (double &v : gv) v *= gamma;
    EXPECT_LT(rel_error(du.to_double(), gu), 1e-6);
    EXPECT_LT(rel_error(dvt.to_double(), gv), 1e-6);
    // Central differences of the double value.
    Mat uu = u.to_double(), vv = vt.to_double();
    const double eps = 1e-7;
    for (size_t e = 0; e < uu.size(); e += 3) {
      const double keep = uu[e];
      uu[e] = keep + eps;
      const double p = ref_regularizer(uu, vv, c.out, c.r, c.in, c.squared).value;
      uu[e] = keep - eps;
      const double m = ref_regularizer(uu, vv, c.out, c.r, c.in, c.squared).value;
      uu[e] = keep;
      EXPECT_NEAR(du.to_double()[e], gamma * (p - m) / (2 * eps), 1e-5 * std::max(1.0, std::fabs(gu[e])));
    }
    for (size_t e = 0; e < vv.size(); e += 3) {
      const double keep = vv[e];
      vv[e] = keep + eps;
      const double p = ref_regularizer(uu, vv, c.out, c.r, c.in, c.squared).value;
      vv[e] = keep - eps;
      const double m = ref_regularizer(uu, vv, c.out, c.r, c.in, c.squared).value;
      vv[e] = keep;
      EXPECT_NEAR(dvt.to_double()[e], gamma * (p - m) / (2 * eps), 1e-5 * std::max(1.0, std::fabs(gv[e])));
    }
    // Accumulating onto existing gradients; one of them NULL; value NULL.
    HostMatrix du2 = random_matrix(rng, S2FT_F32, c.out, c.r);
    const Mat du0 = du2.to_double();
    ASSERT_S2FT_OK(
        s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, gamma, nullptr, &du2.t, nullptr, mode | S2FT_ACCUMULATE_DW));
    Mat want = du0;
    for (size_t e = 0; e < want.size(); ++e) want[e] += gu[e];
    EXPECT_LT(rel_error(du2.to_double(), want), 1e-6);
    double v2 = NAN;
    ASSERT_S2FT_OK(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, gamma, &v2, nullptr, nullptr, mode));
    EXPECT_EQ(v2, value);
    // The decoupled step: u -= rate * dR/du, vt -= rate * dR/dvt (both at the old factors).
    const double rate = 0.01;
    HostMatrix us = u, vts = vt;
    double v3 = NAN;
    ASSERT_S2FT_OK(s2ft_sorsa_regularizer_step(cx.ctx, &us.t, &vts.t, rate, &v3, mode));
    EXPECT_NEAR(v3, rate * ref.value, 1e-9 * std::max(1.0, ref.value));
    Mat wu = u.to_double(), wv = vt.to_double();
    for (size_t e = 0; e < wu.size(); ++e) wu[e] -= rate * ref.du[e];
    for (size_t e = 0; e < wv.size(); ++e) wv[e] -= rate * ref.dvt[e];
    for (size_t e = 0; e < wu.size(); ++e) EXPECT_NEAR(us.to_double()[e], wu[e], 1e-6);
    for (size_t e = 0; e < wv.size(); ++e) EXPECT_NEAR(vts.to_double()[e], wv[e], 1e-6);
    // Steps shrink the regularizer (small rate, gradient descent on R).
    if (noise > 0.1) {
      double before = NAN, after = NAN;
      ASSERT_S2FT_OK(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, 1.0, &before, nullptr, nullptr, mode));
      ASSERT_S2FT_OK(s2ft_sorsa_regularizer(cx.ctx, &us.t, &vts.t, 1.0, &after, nullptr, nullptr, mode));
      EXPECT_LT(after, before);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, SorsaRegularizer,
                         ::testing::Values(RegCase{7, 1, 5, true}, RegCase{9, 4, 13, true}, RegCase{9, 4, 13, false},
                                           RegCase{20, 6, 11, true}, RegCase{20, 6, 11, false}),
                         [](const ::testing::TestParamInfo<RegCase> &i) {
                           return std::to_string(i.param.out) + "x" + std::to_string(i.param.in) + "_r" +
                                  std::to_string(i.param.r) + (i.param.squared ? "_squared" : "_unsquared");
                         });

// Factors straight from the split are orthonormal: R is f32 rounding, and
// the unsquared form's gradient still has the norm's scale.
TEST(SorsaRegularizerAtInit, NearZero) {
  Random rng(0x1a);
  HostMatrix w = random_matrix(rng, S2FT_F32, 24, 17), u(S2FT_F32, 24, 6), s(S2FT_F32, 1, 6), vt(S2FT_F32, 6, 17);
  Context cx;
  ASSERT_S2FT_OK(s2ft_sorsa_init(cx.ctx, &w.t, 6, &u.t, &s.t, &vt.t));
  double value = NAN;
  ASSERT_S2FT_OK(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, 1.0, &value, nullptr, nullptr, 0));
  EXPECT_LT(value, 1e-10);
  ASSERT_S2FT_OK(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, 0.0, &value, nullptr, nullptr, 0));
  EXPECT_EQ(value, 0.0);
  // An exactly orthonormal u (a permutation's columns): the unsquared term adds no gradient.
  HostMatrix e(S2FT_F32, 3, 2), et(S2FT_F32, 2, 4), de(S2FT_F32, 3, 2), det(S2FT_F32, 2, 4);
  e.set(0, 1, 1.0f);
  e.set(2, 0, 1.0f);
  et.set(0, 3, 1.0f);
  et.set(1, 0, 1.0f);
  de.poison();
  det.poison();
  ASSERT_S2FT_OK(s2ft_sorsa_regularizer(cx.ctx, &e.t, &et.t, 1.0, &value, &de.t, &det.t, S2FT_SORSA_UNSQUARED));
  EXPECT_EQ(value, 0.0);
  for (double v : de.to_double()) EXPECT_EQ(v, 0.0);
  for (double v : det.to_double()) EXPECT_EQ(v, 0.0);
}

// ---- training with the library's optimizer ------------------------------------------

// u, s ([1, r]) and vt as whole-tensor parameters of an AdamW optimizer:
// steps on L = 0.5 ||y - target||^2 plus the regularizer lower the loss,
// while the residual stays bit-identical.
TEST(SorsaTraining, OptimizerSteps) {
  Random rng(0x7a);
  const int64_t T = 16, out = 12, in = 10, r = 3;
  HostMatrix w = random_matrix(rng, S2FT_BF16, out, in), x = random_matrix(rng, S2FT_BF16, T, in);
  HostMatrix u(S2FT_F32, out, r), s(S2FT_F32, 1, r), vt(S2FT_F32, r, in);
  Context cx;
  ASSERT_S2FT_OK(s2ft_sorsa_init(cx.ctx, &w.t, static_cast<int32_t>(r), &u.t, &s.t, &vt.t));
  const HostMatrix w_res = w;
  HostMatrix target = random_matrix(rng, S2FT_F32, T, out);
  s2ft_optimizer_options o;
  ASSERT_S2FT_OK(s2ft_optimizer_options_init(&o, S2FT_OPTIMIZER_OPTIONS_VERSION));
  s2ft_optimizer *opt = nullptr;
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &opt));
  int64_t index = 0;
  const s2ft_slice su{S2FT_AXIS_COLUMNS, 0, r, nullptr}, svt{S2FT_AXIS_COLUMNS, 0, in, nullptr};
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt, &u.t, &su, &index));
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt, &s.t, &su, &index));
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt, &vt.t, &svt, &index));
  HostMatrix y(S2FT_BF16, T, out), h(S2FT_F32, T, r), dy(S2FT_BF16, T, out);
  HostMatrix grads[3] = {HostMatrix(S2FT_F32, out, r), HostMatrix(S2FT_F32, 1, r), HostMatrix(S2FT_F32, r, in)};
  s2ft_tensor g[3] = {grads[0].t, grads[1].t, grads[2].t};
  double first = -1, last = -1;
  for (int step = 0; step < 40; ++step) {
    ASSERT_S2FT_OK(s2ft_sorsa_forward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &y.t, &h.t));
    double loss = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < out; ++i) {
        const double d = y.get(t, i) - target.get(t, i);
        loss += 0.5 * d * d;
        dy.set(t, i, static_cast<float>(d));
      }
    if (step == 0) first = loss;
    last = loss;
    ASSERT_S2FT_OK(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, nullptr, &g[0], &g[1],
                                       &g[2], 0));
    ASSERT_S2FT_OK(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, 1e-3 / 1e-2, nullptr, &g[0], &g[2], S2FT_ACCUMULATE_DW));
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt, 1e-2, g, 3, nullptr));
  }
  EXPECT_LT(last, first * 0.9);
  EXPECT_EQ(w.bytes, w_res.bytes);
  s2ft_optimizer_destroy(opt);
}

// ---- errors ------------------------------------------------------------------------

class SorsaErrors : public ::testing::Test {
 protected:
  Context cx;
  Random rng{0xe0};
  const int64_t T = 4, out = 6, in = 5, r = 2;
  HostMatrix x = random_matrix(rng, S2FT_F32, T, in), w = random_matrix(rng, S2FT_F32, out, in),
             u = random_matrix(rng, S2FT_F32, out, r), s = random_matrix(rng, S2FT_F32, 1, r),
             vt = random_matrix(rng, S2FT_F32, r, in), y = HostMatrix(S2FT_F32, T, out),
             h = HostMatrix(S2FT_F32, T, r), dy = random_matrix(rng, S2FT_F32, T, out),
             dx = HostMatrix(S2FT_F32, T, in), du = HostMatrix(S2FT_F32, out, r), ds = HostMatrix(S2FT_F32, 1, r),
             dvt = HostMatrix(S2FT_F32, r, in);
  s2ft_status forward(const s2ft_tensor *xx, const s2ft_tensor *ww, const s2ft_tensor *uu, const s2ft_tensor *ss,
                      const s2ft_tensor *vv, s2ft_tensor *yy, s2ft_tensor *hh) {
    return s2ft_sorsa_forward(cx.ctx, xx, ww, uu, ss, vv, yy, hh);
  }
  s2ft_status backward(uint32_t flags = 0) {
    return s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &du.t, &ds.t, &dvt.t, flags);
  }
  std::deque<HostMatrix> keep;  // tensors made by with_dtype, alive for the test
  s2ft_tensor with_dtype(const HostMatrix &m, int32_t dtype) {
    keep.emplace_back(dtype, m.rows, m.cols);
    return keep.back().t;
  }
  static s2ft_tensor on_cuda(const HostMatrix &m) {
    s2ft_tensor t = m.t;
    t.device.type = S2FT_DEVICE_CUDA;
    return t;
  }
  static s2ft_tensor shaped(const HostMatrix &m, int64_t rows, int64_t cols) {
    s2ft_tensor t = m.t;
    t.shape[0] = rows;
    t.shape[1] = cols;
    t.strides[0] = cols;
    return t;
  }
};

TEST_F(SorsaErrors, InitArguments) {
  HostMatrix ww = w;
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(nullptr, &ww.t, 2, &u.t, &s.t, &vt.t), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, nullptr, 2, &u.t, &s.t, &vt.t), S2FT_ERR_INVALID_ARGUMENT, "w is NULL");
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, nullptr, &s.t, &vt.t), S2FT_ERR_INVALID_ARGUMENT, "u is NULL");
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, &u.t, nullptr, &vt.t), S2FT_ERR_INVALID_ARGUMENT, "s is NULL");
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, &u.t, &s.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "vt is NULL");
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 0, &u.t, &s.t, &vt.t), S2FT_ERR_INVALID_ARGUMENT,
                    "rank is 0; it must be in [1, min(out, in) = 5]");
  HostMatrix u6(S2FT_F32, out, 6), s6(S2FT_F32, 1, 6), vt6(S2FT_F32, 6, in);
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 6, &u6.t, &s6.t, &vt6.t), S2FT_ERR_INVALID_ARGUMENT, "rank is 6");
  HostMatrix u3(S2FT_F32, out, 3);
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, &u3.t, &s.t, &vt.t), S2FT_ERR_SHAPE, "u");
  HostMatrix s3(S2FT_F32, 1, 3);
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, &u.t, &s3.t, &vt.t), S2FT_ERR_SHAPE, "s must be [2]");
  HostMatrix vtb(S2FT_F32, r, in + 1);
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, &u.t, &s.t, &vtb.t), S2FT_ERR_SHAPE, "vt");
  s2ft_tensor ub = with_dtype(u, S2FT_BF16);
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, &ub, &s.t, &vt.t), S2FT_ERR_DTYPE,
                    "u must be f32");
  s2ft_tensor wc = on_cuda(ww);
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &wc, 2, &u.t, &s.t, &vt.t), S2FT_ERR_DEVICE, "w");
  // u overlapping s (s is u's first row).
  s2ft_tensor alias = u.t;
  alias.shape[0] = 1;
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, &u.t, &alias, &vt.t), S2FT_ERR_INVALID_ARGUMENT, "overlap");
  s2ft_tensor diag = u.t;  // elements (i, j) and (i + 1, j - 1) share memory
  diag.strides[0] = 1;
  diag.strides[1] = 1;
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, &diag, &s.t, &vt.t), S2FT_ERR_INVALID_ARGUMENT, "share memory");
  // A non-finite weight: an error, and w is left as it was.
  ww.set(3, 2, NAN);
  const HostMatrix before = ww;
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &ww.t, 2, &u.t, &s.t, &vt.t), S2FT_ERR_INVALID_ARGUMENT, "non-finite");
  EXPECT_EQ(ww.bytes, before.bytes);
  HostMatrix empty(S2FT_F32, 0, 4);
  EXPECT_S2FT_ERROR(s2ft_sorsa_init(cx.ctx, &empty.t, 1, &u.t, &s.t, &vt.t), S2FT_ERR_SHAPE, "must not be empty");
}

TEST_F(SorsaErrors, ForwardArguments) {
  EXPECT_S2FT_ERROR(s2ft_sorsa_forward(nullptr, &x.t, &w.t, &u.t, &s.t, &vt.t, &y.t, &h.t), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(forward(nullptr, &w.t, &u.t, &s.t, &vt.t, &y.t, &h.t), S2FT_ERR_INVALID_ARGUMENT, "x is NULL");
  EXPECT_S2FT_ERROR(forward(&x.t, nullptr, &u.t, &s.t, &vt.t, &y.t, &h.t), S2FT_ERR_INVALID_ARGUMENT, "w_res is NULL");
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, nullptr, &s.t, &vt.t, &y.t, &h.t), S2FT_ERR_INVALID_ARGUMENT, "u is NULL");
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, nullptr, &vt.t, &y.t, &h.t), S2FT_ERR_INVALID_ARGUMENT, "s is NULL");
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, &s.t, nullptr, &y.t, &h.t), S2FT_ERR_INVALID_ARGUMENT, "vt is NULL");
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, &s.t, &vt.t, nullptr, &h.t), S2FT_ERR_INVALID_ARGUMENT, "y is NULL");
  const s2ft_tensor xs = shaped(x, T, in - 1);
  EXPECT_S2FT_ERROR(forward(&xs, &w.t, &u.t, &s.t, &vt.t, &y.t, &h.t), S2FT_ERR_SHAPE, "x");
  const s2ft_tensor us = shaped(u, out - 1, r);
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &us, &s.t, &vt.t, &y.t, &h.t), S2FT_ERR_SHAPE, "u must be [out, r]");
  const s2ft_tensor ss = shaped(s, 1, r - 1);
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, &ss, &vt.t, &y.t, &h.t), S2FT_ERR_SHAPE, "s must be [2]");
  const s2ft_tensor vs = shaped(vt, r, in - 1);
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, &s.t, &vs, &y.t, &h.t), S2FT_ERR_SHAPE, "vt");
  s2ft_tensor ys = shaped(y, T, out - 1);
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, &s.t, &vt.t, &ys, &h.t), S2FT_ERR_SHAPE, "y");
  s2ft_tensor hs = shaped(h, T, r - 1);
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, &s.t, &vt.t, &y.t, &hs), S2FT_ERR_SHAPE, "h_saved");
  const s2ft_tensor xb = with_dtype(x, S2FT_BF16);
  EXPECT_S2FT_ERROR(forward(&xb, &w.t, &u.t, &s.t, &vt.t, &y.t, &h.t), S2FT_ERR_DTYPE, "x");
  s2ft_tensor yb = with_dtype(y, S2FT_BF16);
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, &s.t, &vt.t, &yb, &h.t), S2FT_ERR_DTYPE, "y");
  const s2ft_tensor ub = with_dtype(u, S2FT_F16);
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &ub, &s.t, &vt.t, &y.t, &h.t), S2FT_ERR_DTYPE, "u must be f32");
  s2ft_tensor hb = with_dtype(h, S2FT_BF16);
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, &s.t, &vt.t, &y.t, &hb), S2FT_ERR_DTYPE, "h_saved must be f32");
  const s2ft_tensor xc = on_cuda(x);
  EXPECT_S2FT_ERROR(forward(&xc, &w.t, &u.t, &s.t, &vt.t, &y.t, &h.t), S2FT_ERR_DEVICE, "x");
  // y over x; h over u.
  HostMatrix big(S2FT_F32, T, out + in);
  s2ft_tensor xa = shaped(big, T, in), ya = shaped(big, T, out);
  xa.strides[0] = ya.strides[0] = out + in;
  EXPECT_S2FT_ERROR(forward(&xa, &w.t, &u.t, &s.t, &vt.t, &ya, &h.t), S2FT_ERR_INVALID_ARGUMENT, "overlap");
  s2ft_tensor ha = u.t;
  ha.shape[0] = T;
  EXPECT_S2FT_ERROR(forward(&x.t, &w.t, &u.t, &s.t, &vt.t, &y.t, &ha), S2FT_ERR_INVALID_ARGUMENT, "overlap");
}

TEST_F(SorsaErrors, BackwardArguments) {
  EXPECT_S2FT_ERROR(backward(4u), S2FT_ERR_INVALID_ARGUMENT, "flags has unknown bits 0x4");
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, nullptr, &dx.t, &du.t, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "dy is NULL");
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, nullptr, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "du is NULL");
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &du.t, nullptr,
                                        &dvt.t, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "ds is NULL");
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &du.t, &ds.t,
                                        nullptr, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "dvt is NULL");
  const s2ft_tensor dys = shaped(dy, T - 1, out);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dys, &dx.t, &du.t, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_SHAPE, "dy");
  const s2ft_tensor hs = shaped(h, T + 1, r);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &hs, &dy.t, &dx.t, &du.t, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_SHAPE, "h_saved");
  s2ft_tensor dus = shaped(du, out, r + 1);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &dus, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_SHAPE, "du");
  s2ft_tensor dss = shaped(ds, 1, r + 1);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &du.t, &dss,
                                        &dvt.t, 0),
                    S2FT_ERR_SHAPE, "ds");
  s2ft_tensor dvs = shaped(dvt, r, in - 1);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &du.t, &ds.t,
                                        &dvs, 0),
                    S2FT_ERR_SHAPE, "dvt");
  s2ft_tensor dxs = shaped(dx, T, in - 1);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dxs, &du.t, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_SHAPE, "dx");
  s2ft_tensor dub = with_dtype(du, S2FT_BF16);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &dub, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_DTYPE, "du must be f32");
  const s2ft_tensor dyb = with_dtype(dy, S2FT_BF16);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dyb, &dx.t, &du.t, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_DTYPE, "dy");
  s2ft_tensor dxb = with_dtype(dx, S2FT_F16);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dxb, &du.t, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_DTYPE, "dx");
  const s2ft_tensor hb = with_dtype(h, S2FT_BF16);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &hb, &dy.t, &dx.t, &du.t, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_DTYPE, "h_saved must be f32");
  s2ft_tensor duc = on_cuda(du);
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &duc, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_DEVICE, "du");
  // du over dvt, dx over dy, ds over u.
  HostMatrix big(S2FT_F32, out, r + in);
  s2ft_tensor dua = shaped(big, out, r), dva = shaped(big, r, in);
  dua.strides[0] = dva.strides[0] = r + in;
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &dua, &ds.t,
                                        &dva, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "overlap");
  s2ft_tensor dxa = dy.t;
  dxa.shape[1] = in;
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dxa, &du.t, &ds.t,
                                        &dvt.t, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "overlap");
  s2ft_tensor dsa = u.t;
  dsa.shape[0] = 1;
  EXPECT_S2FT_ERROR(s2ft_sorsa_backward(cx.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &h.t, &dy.t, &dx.t, &du.t, &dsa,
                                        &dvt.t, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "overlap");
}

TEST_F(SorsaErrors, RegularizerArguments) {
  double v = 0;
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(nullptr, &u.t, &vt.t, 1.0, &v, &du.t, &dvt.t, 0), S2FT_ERR_INVALID_ARGUMENT,
                    "ctx");
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, nullptr, &vt.t, 1.0, &v, &du.t, &dvt.t, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "u is NULL");
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &u.t, nullptr, 1.0, &v, &du.t, &dvt.t, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "vt is NULL");
  for (const double bad : {-1.0, static_cast<double>(NAN), static_cast<double>(INFINITY)})
    EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, bad, &v, &du.t, &dvt.t, 0),
                      S2FT_ERR_INVALID_ARGUMENT, "gamma must be finite and >= 0");
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, 1.0, &v, &du.t, &dvt.t, S2FT_ACCUMULATE_DX),
                    S2FT_ERR_INVALID_ARGUMENT, "flags has unknown bits 0x2");
  HostMatrix vt3(S2FT_F32, 3, in);
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt3.t, 1.0, &v, nullptr, nullptr, 0), S2FT_ERR_SHAPE,
                    "vt must be [r, in] with r = 2");
  s2ft_tensor dus = shaped(du, out - 1, r);
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, 1.0, &v, &dus, &dvt.t, 0), S2FT_ERR_SHAPE, "du");
  s2ft_tensor dvs = shaped(dvt, r, in - 1);
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, 1.0, &v, &du.t, &dvs, 0), S2FT_ERR_SHAPE, "dvt");
  const s2ft_tensor ub = with_dtype(u, S2FT_BF16);
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &ub, &vt.t, 1.0, &v, &du.t, &dvt.t, 0), S2FT_ERR_DTYPE,
                    "u must be f32");
  s2ft_tensor dvb = with_dtype(dvt, S2FT_F16);
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, 1.0, &v, &du.t, &dvb, 0), S2FT_ERR_DTYPE,
                    "dvt must be f32");
  const s2ft_tensor vc = on_cuda(vt);
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vc, 1.0, &v, &du.t, &dvt.t, 0), S2FT_ERR_DEVICE, "vt");
  // The gradient over its own factor.
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer(cx.ctx, &u.t, &vt.t, 1.0, &v, &u.t, &dvt.t, 0), S2FT_ERR_INVALID_ARGUMENT,
                    "overlap");
  // The step.
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer_step(nullptr, &u.t, &vt.t, 0.1, &v, 0), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer_step(cx.ctx, &u.t, nullptr, 0.1, &v, 0), S2FT_ERR_INVALID_ARGUMENT,
                    "vt is NULL");
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer_step(cx.ctx, &u.t, &vt.t, -0.1, &v, 0), S2FT_ERR_INVALID_ARGUMENT,
                    "rate must be finite and >= 0");
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer_step(cx.ctx, &u.t, &vt.t, 0.1, &v, S2FT_ACCUMULATE_DW),
                    S2FT_ERR_INVALID_ARGUMENT, "flags has unknown bits 0x1");
  s2ft_tensor va = u.t;  // vt over u
  va.shape[0] = r;
  va.shape[1] = in - 3;
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer_step(cx.ctx, &u.t, &va, 0.1, &v, 0), S2FT_ERR_INVALID_ARGUMENT, "overlap");
  HostMatrix big(S2FT_F32, out + r, in);
  s2ft_tensor ua = shaped(big, out, r), vta = shaped(big, r, in);
  ua.strides[0] = in;
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer_step(cx.ctx, &ua, &vta, 0.1, &v, 0), S2FT_ERR_INVALID_ARGUMENT, "overlap");
  s2ft_tensor u0 = u.t;
  u0.strides[0] = 1;
  u0.strides[1] = 1;
  EXPECT_S2FT_ERROR(s2ft_sorsa_regularizer_step(cx.ctx, &u0, &vt.t, 0.1, &v, 0), S2FT_ERR_INVALID_ARGUMENT,
                    "share memory");
}

}  // namespace
