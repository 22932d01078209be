// LIFT's selection (s2ft_lift_select) against float64 references of the
// test's own: weights with a known spectrum (U diag(s) V^T, plus small
// noise), whose rank-r approximation the test computes by subspace
// iteration in double; exact index sets wherever the k-th and (k+1)-th
// magnitudes are clearly apart. Largest and smallest order, count and
// density, the randomized method, and every error path.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

using Mat = std::vector<double>;  // row-major

// Orthonormalises the columns of a [rows, cols] row-major matrix in place
// (modified Gram-Schmidt, twice for stability).
void orthonormalize(Mat &a, int64_t rows, int64_t cols) {
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t p = 0; p < j; ++p) {
        double d = 0;
        for (int64_t i = 0; i < rows; ++i) d += a[i * cols + p] * a[i * cols + j];
        for (int64_t i = 0; i < rows; ++i) a[i * cols + j] -= d * a[i * cols + p];
      }
      double n = 0;
      for (int64_t i = 0; i < rows; ++i) n += a[i * cols + j] * a[i * cols + j];
      n = std::sqrt(n);
      for (int64_t i = 0; i < rows; ++i) a[i * cols + j] /= n;
    }
}

Mat random_orthonormal(Random &rng, int64_t rows, int64_t cols) {
  Mat a(static_cast<size_t>(rows * cols));
  for (double &v : a) v = rng.uniform();
  orthonormalize(a, rows, cols);
  return a;
}

// W = U diag(s) V^T + noise * uniform(-1, 1), U [rows, r], V [cols, r].
Mat spectrum_matrix(Random &rng, int64_t rows, int64_t cols, const std::vector<double> &s, double noise) {
  const int64_t r = static_cast<int64_t>(s.size());
  const Mat U = random_orthonormal(rng, rows, r), V = random_orthonormal(rng, cols, r);
  Mat w(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double v = 0;
      for (int64_t k = 0; k < r; ++k) v += U[i * r + k] * s[static_cast<size_t>(k)] * V[j * r + k];
      w[static_cast<size_t>(i * cols + j)] = v + noise * rng.uniform();
    }
  return w;
}

// W_r by subspace iteration in double: Q spans the top-r left singular
// vectors, W_r = Q Q^T W.
Mat reference_low_rank(const Mat &w, int64_t rows, int64_t cols, int64_t r, Random &rng) {
  Mat v = random_orthonormal(rng, cols, r), u(static_cast<size_t>(rows * r));
  for (int it = 0; it < 300; ++it) {
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t k = 0; k < r; ++k) {
        double d = 0;
        for (int64_t j = 0; j < cols; ++j) d += w[i * cols + j] * v[j * r + k];
        u[i * r + k] = d;
      }
    orthonormalize(u, rows, r);
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t k = 0; k < r; ++k) {
        double d = 0;
        for (int64_t i = 0; i < rows; ++i) d += w[i * cols + j] * u[i * r + k];
        v[j * r + k] = d;
      }
    orthonormalize(v, cols, r);
  }
  Mat qtw(static_cast<size_t>(r * cols), 0.0), wr(static_cast<size_t>(rows * cols), 0.0);
  for (int64_t k = 0; k < r; ++k)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) qtw[k * cols + j] += u[i * r + k] * w[i * cols + j];
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t k = 0; k < r; ++k)
      for (int64_t j = 0; j < cols; ++j) wr[i * cols + j] += u[i * r + k] * qtw[k * cols + j];
  return wr;
}

// Entries ordered by |score| (largest or smallest first), ties to the lower index.
std::vector<int64_t> ranked(const Mat &score, bool largest) {
  std::vector<int64_t> order(score.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    const double x = std::fabs(score[static_cast<size_t>(a)]), y = std::fabs(score[static_cast<size_t>(b)]);
    return largest ? x > y : x < y;
  });
  return order;
}

// A k near `want` whose boundary magnitudes differ by at least `margin`
// (relative to the largest magnitude): a selection that the reference and
// the library must agree on exactly.
int64_t clear_k(const Mat &score, const std::vector<int64_t> &order, int64_t want, double margin) {
  double top = 0;
  for (double v : score) top = std::max(top, std::fabs(v));
  for (int64_t d = 0; d < static_cast<int64_t>(order.size()); ++d)
    for (int64_t k : {want + d, want - d})
      if (k >= 1 && k < static_cast<int64_t>(order.size()) &&
          std::fabs(std::fabs(score[static_cast<size_t>(order[k - 1])]) - std::fabs(score[static_cast<size_t>(order[k])])) >
              margin * top)
        return k;
  return -1;
}

std::vector<int64_t> sorted_first(const std::vector<int64_t> &order, int64_t k) {
  std::vector<int64_t> v(order.begin(), order.begin() + k);
  std::sort(v.begin(), v.end());
  return v;
}

s2ft_lift_options lift_options(int32_t rank, int64_t count, double density = 0.0) {
  s2ft_lift_options o;
  EXPECT_EQ(s2ft_lift_options_init(&o, S2FT_LIFT_OPTIONS_VERSION), S2FT_OK);
  o.rank = rank;
  o.count = count;
  o.density = density;
  return o;
}

// The library's selection (skips the test in builds without LAPACK).
#define LIFT_SELECT(ctx, w, opts, out)                                                                      \
  do {                                                                                                      \
    int64_t n_ = 0;                                                                                         \
    ASSERT_S2FT_OK(s2ft_lift_select((ctx), (w), (opts), nullptr, 0, &n_));                                 \
    (out).assign(static_cast<size_t>(n_), -1);                                                              \
    const s2ft_status st_ = s2ft_lift_select((ctx), (w), (opts), (out).data(), n_, &n_);                   \
    if (st_ == S2FT_ERR_UNSUPPORTED) GTEST_SKIP() << s2ft_last_error();                                     \
    ASSERT_EQ(st_, S2FT_OK) << s2ft_last_error();                                                           \
  } while (0)

HostMatrix to_host(const Mat &w, int64_t rows, int64_t cols, int32_t dtype = S2FT_F32) {
  HostMatrix h(dtype, rows, cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) h.set(i, j, static_cast<float>(w[static_cast<size_t>(i * cols + j)]));
  return h;
}

TEST(Lift, ExactlyLowRankWeightSelectsItsLargestEntries) {
  Context cx;
  Random rng(11);
  const int64_t rows = 37, cols = 53, r = 3;
  const HostMatrix W = to_host(spectrum_matrix(rng, rows, cols, {9.0, 5.0, 2.0}, 0.0), rows, cols);
  const Mat w = W.to_double();  // W_r = W up to W's f32 rounding
  const std::vector<int64_t> order = ranked(w, true);
  const int64_t k = clear_k(w, order, 100, 1e-5);
  ASSERT_GT(k, 0);
  s2ft_lift_options o = lift_options(static_cast<int32_t>(r), k);
  std::vector<int64_t> got;
  LIFT_SELECT(cx.ctx, &W.t, &o, got);
  EXPECT_EQ(got, sorted_first(order, k));
  EXPECT_TRUE(std::is_sorted(got.begin(), got.end()));
}

struct SpectrumCase {
  int64_t rows, cols, rank;
  int32_t dtype;
};

class LiftSpectrum : public ::testing::TestWithParam<SpectrumCase> {};

TEST_P(LiftSpectrum, MatchesFloat64ReferenceLargestAndSmallest) {
  const SpectrumCase c = GetParam();
  Context cx;
  Random rng(100 + c.rows + c.cols + c.rank + c.dtype);
  std::vector<double> s;
  for (int64_t k = 0; k < c.rank; ++k) s.push_back(10.0 - 6.0 * static_cast<double>(k) / static_cast<double>(c.rank));
  for (int64_t k = 0; k < 3; ++k) s.push_back(0.05 / static_cast<double>(k + 1));  // the tail below the gap
  const HostMatrix W = to_host(spectrum_matrix(rng, c.rows, c.cols, s, 1e-3), c.rows, c.cols, c.dtype);
  const Mat wr = reference_low_rank(W.to_double(), c.rows, c.cols, c.rank, rng);
  for (bool largest : {true, false}) {
    const std::vector<int64_t> order = ranked(wr, largest);
    const int64_t k = clear_k(wr, order, c.rows * c.cols / 20 + 1, 1e-6);
    ASSERT_GT(k, 0);
    for (int32_t method : {S2FT_LIFT_EXACT, S2FT_LIFT_RANDOMIZED}) {
      s2ft_lift_options o = lift_options(static_cast<int32_t>(c.rank), k);
      o.order = largest ? S2FT_ORDER_LARGEST : S2FT_ORDER_SMALLEST;
      o.method = method;
      o.seed = 7;
      std::vector<int64_t> got;
      LIFT_SELECT(cx.ctx, &W.t, &o, got);
      EXPECT_EQ(got, sorted_first(order, k)) << (largest ? "largest" : "smallest") << " k " << k << " method "
                                              << method;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, LiftSpectrum,
                         ::testing::Values(SpectrumCase{24, 40, 2, S2FT_F32}, SpectrumCase{61, 29, 4, S2FT_F32},
                                           SpectrumCase{50, 50, 1, S2FT_F32}, SpectrumCase{33, 47, 3, S2FT_BF16},
                                           SpectrumCase{40, 31, 5, S2FT_F16}),
                         [](const ::testing::TestParamInfo<SpectrumCase> &i) {
                           return std::string(dtype_label(i.param.dtype)) + "_" + std::to_string(i.param.rows) + "x" +
                                  std::to_string(i.param.cols) + "_r" + std::to_string(i.param.rank);
                         });

TEST(Lift, DensityIsCountOfRoundedFraction) {
  Context cx;
  Random rng(3);
  const HostMatrix W = to_host(spectrum_matrix(rng, 20, 30, {4.0, 1.0}, 1e-3), 20, 30);
  s2ft_lift_options by_density = lift_options(2, 0, 0.1), by_count = lift_options(2, 60);
  int64_t n = 0;
  ASSERT_S2FT_OK(s2ft_lift_select(cx.ctx, &W.t, &by_density, nullptr, 0, &n));
  EXPECT_EQ(n, 60);
  std::vector<int64_t> a, b;
  LIFT_SELECT(cx.ctx, &W.t, &by_density, a);
  LIFT_SELECT(cx.ctx, &W.t, &by_count, b);
  EXPECT_EQ(a, b);
  // A tiny density still selects one entry; density 1 selects everything.
  s2ft_lift_options tiny = lift_options(1, 0, 1e-9), all = lift_options(1, 0, 1.0);
  ASSERT_S2FT_OK(s2ft_lift_select(cx.ctx, &W.t, &tiny, nullptr, 0, &n));
  EXPECT_EQ(n, 1);
  LIFT_SELECT(cx.ctx, &W.t, &all, a);
  ASSERT_EQ(a.size(), 600u);
  for (int64_t i = 0; i < 600; ++i) EXPECT_EQ(a[static_cast<size_t>(i)], i);
}

TEST(Lift, TiesGoToTheLowerIndex) {
  Context cx;
  // A full-rank diagonal weight: its SVD is exact (signed permutations), so
  // W_r = W and magnitudes tie exactly: two entries of 2, one of 1, nine 0s.
  const Mat w = {2, 0, 0, 0, 0, -2, 0, 0, 0, 0, 1, 0};
  const HostMatrix W = to_host(w, 3, 4);
  s2ft_lift_options o = lift_options(3, 1);
  std::vector<int64_t> got;
  LIFT_SELECT(cx.ctx, &W.t, &o, got);
  EXPECT_EQ(got, (std::vector<int64_t>{0}));  // |2| at 0 and at 5: the lower index
  o.count = 3;
  LIFT_SELECT(cx.ctx, &W.t, &o, got);
  EXPECT_EQ(got, (std::vector<int64_t>{0, 5, 10}));
  o.order = S2FT_ORDER_SMALLEST;
  LIFT_SELECT(cx.ctx, &W.t, &o, got);
  EXPECT_EQ(got, (std::vector<int64_t>{1, 2, 3}));  // nine zeros: the three lowest indices
}

TEST(Lift, SelectionMakesASparseSet) {
  Context cx;
  Random rng(8);
  const int64_t rows = 16, cols = 24;
  const HostMatrix W = to_host(spectrum_matrix(rng, rows, cols, {3.0, 2.0}, 1e-2), rows, cols);
  s2ft_lift_options o = lift_options(2, 0, 0.05);
  std::vector<int64_t> idx;
  LIFT_SELECT(cx.ctx, &W.t, &o, idx);
  s2ft_sparse_set *set = nullptr;
  ASSERT_S2FT_OK(s2ft_sparse_set_create(cx.ctx, rows, cols, idx.data(), static_cast<int64_t>(idx.size()), &set));
  int64_t n = 0;
  EXPECT_EQ(s2ft_sparse_set_count(set, &n), S2FT_OK);
  EXPECT_EQ(n, static_cast<int64_t>(idx.size()));
  s2ft_sparse_set_destroy(set);
}

TEST(Lift, CountForLoraRank) {
  EXPECT_EQ(s2ft_lift_count_for_lora_rank(4096, 11008, 16), (4096 + 11008) * 16);
  EXPECT_EQ(s2ft_lift_count_for_lora_rank(3, 4, 5), 12);  // clipped to rows * cols
  EXPECT_EQ(s2ft_lift_count_for_lora_rank(0, 4, 5), 0);
  EXPECT_EQ(s2ft_lift_count_for_lora_rank(3, 4, 0), 0);
  EXPECT_EQ(s2ft_lift_count_for_lora_rank(int64_t{1} << 40, int64_t{1} << 40, 1), 0);  // rows * cols overflows
  EXPECT_EQ(s2ft_lift_count_for_lora_rank(int64_t{1} << 31, int64_t{1} << 31, int64_t{1} << 40),
            int64_t{1} << 62);  // (rows + cols) * r overflows: clipped
}

TEST(Lift, ErrorsNameTheArgument) {
  Context cx;
  Random rng(4);
  const HostMatrix W = to_host(spectrum_matrix(rng, 6, 8, {2.0, 1.0}, 1e-2), 6, 8);
  int64_t out[48], n = 0;
  s2ft_lift_options o = lift_options(2, 5);
  ASSERT_S2FT_OK(s2ft_lift_select(cx.ctx, &W.t, &o, nullptr, 0, &n));
  EXPECT_EQ(n, 5);
  EXPECT_S2FT_ERROR(s2ft_lift_options_init(nullptr, S2FT_LIFT_OPTIONS_VERSION), S2FT_ERR_INVALID_ARGUMENT, "opts");
  s2ft_lift_options bad;
  EXPECT_S2FT_ERROR(s2ft_lift_options_init(&bad, 99), S2FT_ERR_INVALID_ARGUMENT, "version 99");
  EXPECT_S2FT_ERROR(s2ft_lift_select(nullptr, &W.t, &o, out, 48, &n), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_lift_select(cx.ctx, nullptr, &o, out, 48, &n), S2FT_ERR_INVALID_ARGUMENT, "w is NULL");
  EXPECT_S2FT_ERROR(s2ft_lift_select(cx.ctx, &W.t, nullptr, out, 48, &n), S2FT_ERR_INVALID_ARGUMENT, "opts");
  EXPECT_S2FT_ERROR(s2ft_lift_select(cx.ctx, &W.t, &o, out, 48, nullptr), S2FT_ERR_INVALID_ARGUMENT, "count");
  EXPECT_S2FT_ERROR(s2ft_lift_select(cx.ctx, &W.t, &o, out, 4, &n), S2FT_ERR_INVALID_ARGUMENT, "capacity 4");
  auto expect_bad = [&](s2ft_lift_options x, int32_t status, const char *needle) {
    EXPECT_S2FT_ERROR(s2ft_lift_select(cx.ctx, &W.t, &x, out, 48, &n), status, needle);
  };
  s2ft_lift_options x = o;
  x.version = 7;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "s2ft_lift_options_init");
  x = o;
  x.rank = 0;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->rank is 0");
  x.rank = 7;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->rank is 7; it must be in [1, min(rows, cols) = 6]");
  x = o;
  x.density = 0.5;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "both set");
  x = o;
  x.count = 0;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "neither opts->count nor opts->density");
  x.density = 1.5;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->density must be in (0, 1]");
  x.density = -0.1;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->density");
  x = o;
  x.count = 49;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->count is 49");
  x.count = -2;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->count is -2");
  x = o;
  x.order = 2;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->order");
  x = o;
  x.method = 5;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->method");
  x = o;
  x.oversampling = -1;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->oversampling");
  x = o;
  x.power_iterations = 65;
  expect_bad(x, S2FT_ERR_INVALID_ARGUMENT, "opts->power_iterations");
  // The weight: rank, dtype, device, values.
  s2ft_tensor t3 = W.t;
  t3.ndim = 3;
  EXPECT_S2FT_ERROR(s2ft_lift_select(cx.ctx, &t3, &o, out, 48, &n), S2FT_ERR_SHAPE, "w must have rank 2");
  s2ft_tensor td = W.t;
  td.dtype.bits = 64;
  EXPECT_S2FT_ERROR(s2ft_lift_select(cx.ctx, &td, &o, out, 48, &n), S2FT_ERR_DTYPE, "w");
  s2ft_tensor tg = W.t;
  tg.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_lift_select(cx.ctx, &tg, &o, out, 48, &n), S2FT_ERR_DEVICE, "w");
  HostMatrix empty(S2FT_F32, 0, 8);
  EXPECT_S2FT_ERROR(s2ft_lift_select(cx.ctx, &empty.t, &o, out, 48, &n), S2FT_ERR_SHAPE, "empty");
  HostMatrix nan = W;
  nan.set(2, 3, std::nanf(""));
  const s2ft_status st = s2ft_lift_select(cx.ctx, &nan.t, &o, out, 48, &n);
  if (st != S2FT_ERR_UNSUPPORTED) {
    EXPECT_EQ(st, S2FT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(s2ft_last_error()).find("non-finite value at (2, 3)"), std::string::npos) << s2ft_last_error();
  }
}

}  // namespace
