// Unstructured sparse training: sparse sets, the SDDMM backward against a
// float64 dense reference (dW = dy^T x in double, gathered at the set), and
// the optimizers on sparse parameters (AdamW with and without per-entry age
// bias correction, SM3) against float64 formulas, reindexing, and state
// files; every error path of the new entry points.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include "io/safetensors.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

// `count` distinct flat indices of a [rows, cols] weight, ascending.
std::vector<int64_t> random_entries(Random &rng, int64_t rows, int64_t cols, int64_t count) {
  std::vector<int64_t> v = shuffled_lines(rng, rows * cols, count);
  std::sort(v.begin(), v.end());
  return v;
}

struct SparseSet {
  s2ft_sparse_set *set = nullptr;
  SparseSet() = default;
  SparseSet(s2ft_context *ctx, int64_t rows, int64_t cols, const std::vector<int64_t> &idx) {
    EXPECT_EQ(s2ft_sparse_set_create(ctx, rows, cols, idx.data(), static_cast<int64_t>(idx.size()), &set), S2FT_OK)
        << s2ft_last_error();
  }
  SparseSet(const SparseSet &) = delete;
  SparseSet &operator=(const SparseSet &) = delete;
  ~SparseSet() { s2ft_sparse_set_destroy(set); }
};

struct Optimizer {
  s2ft_optimizer *opt = nullptr;
  Optimizer() = default;
  Optimizer(const Optimizer &) = delete;
  Optimizer &operator=(const Optimizer &) = delete;
  ~Optimizer() { s2ft_optimizer_destroy(opt); }
};

// A rank-1 f32 vector of n elements with the given stride.
struct HostVector {
  std::vector<float> data;
  s2ft_tensor t{};
  int64_t n = 0, stride = 1;
  HostVector(int64_t n_, int64_t stride_ = 1) : n(n_), stride(stride_) {
    data.assign(static_cast<size_t>(std::max<int64_t>(1, n * stride)), 0.0f);
    const int64_t shape[1] = {n};
    EXPECT_EQ(s2ft_tensor_init(&t, data.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, shape), S2FT_OK);
    t.strides[0] = stride;
  }
  float &operator[](int64_t i) { return data[static_cast<size_t>(i * stride)]; }
  std::vector<double> to_double() const {
    std::vector<double> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = data[static_cast<size_t>(i * stride)];
    return v;
  }
  void poison() {
    for (int64_t i = 0; i < n; ++i) data[static_cast<size_t>(i * stride)] = std::nanf("");
  }
};

// ---- sparse sets ------------------------------------------------------------------------

TEST(SparseSet, CreateAndReadBack) {
  Context cx;
  const int64_t live = s2ft_live_handles();
  const std::vector<int64_t> idx = {0, 5, 6, 11, 34};
  {
    SparseSet s(cx.ctx, 5, 7, idx);
    EXPECT_EQ(s2ft_live_handles(), live + 1);
    int64_t count = -1, rows = -1, cols = -1;
    ASSERT_S2FT_OK(s2ft_sparse_set_count(s.set, &count));
    EXPECT_EQ(count, 5);
    ASSERT_S2FT_OK(s2ft_sparse_set_shape(s.set, &rows, &cols));
    EXPECT_EQ(rows, 5);
    EXPECT_EQ(cols, 7);
    ASSERT_S2FT_OK(s2ft_sparse_set_shape(s.set, nullptr, nullptr));
    std::vector<int64_t> back(6, -7);
    ASSERT_S2FT_OK(s2ft_sparse_set_indices(s.set, back.data(), 6));
    EXPECT_EQ(std::vector<int64_t>(back.begin(), back.begin() + 5), idx);
    EXPECT_EQ(back[5], -7);  // nothing written beyond the count
  }
  EXPECT_EQ(s2ft_live_handles(), live);
  s2ft_sparse_set_destroy(nullptr);
}

TEST(SparseSet, AllEntriesAndOneEntry) {
  Context cx;
  std::vector<int64_t> all(12);
  for (int64_t i = 0; i < 12; ++i) all[static_cast<size_t>(i)] = i;
  SparseSet a(cx.ctx, 3, 4, all), one(cx.ctx, 3, 4, {11});
  int64_t n = 0;
  ASSERT_S2FT_OK(s2ft_sparse_set_count(a.set, &n));
  EXPECT_EQ(n, 12);
  ASSERT_S2FT_OK(s2ft_sparse_set_count(one.set, &n));
  EXPECT_EQ(n, 1);
}

TEST(SparseSet, ErrorsNameTheArgument) {
  Context cx;
  s2ft_sparse_set *s = reinterpret_cast<s2ft_sparse_set *>(0x1);
  const int64_t good[3] = {1, 4, 9};
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 4, 4, good, 3, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(nullptr, 4, 4, good, 3, &s), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_EQ(s, nullptr);  // cleared on failure
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 4, 4, nullptr, 3, &s), S2FT_ERR_INVALID_ARGUMENT, "indices");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 0, 4, good, 3, &s), S2FT_ERR_INVALID_ARGUMENT, "rows");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 4, -1, good, 3, &s), S2FT_ERR_INVALID_ARGUMENT, "cols");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 4, 4, good, 0, &s), S2FT_ERR_INVALID_ARGUMENT, "count");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 1, 2, good, 3, &s), S2FT_ERR_INVALID_ARGUMENT, "count");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, int64_t{1} << 40, int64_t{1} << 40, good, 3, &s),
                    S2FT_ERR_INVALID_ARGUMENT, "overflows");
  const int64_t unsorted[3] = {1, 9, 4}, dup[3] = {1, 4, 4}, big[3] = {1, 4, 16}, neg[3] = {-1, 4, 9};
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 4, 4, unsorted, 3, &s), S2FT_ERR_INVALID_ARGUMENT,
                    "indices[2] = 4 is below indices[1] = 9");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 4, 4, dup, 3, &s), S2FT_ERR_INVALID_ARGUMENT,
                    "indices[2] = 4 repeats");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 4, 4, big, 3, &s), S2FT_ERR_INVALID_ARGUMENT,
                    "indices[2] = 16 is out of range");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_create(cx.ctx, 4, 4, neg, 3, &s), S2FT_ERR_INVALID_ARGUMENT,
                    "indices[0] = -1 is out of range");
  EXPECT_EQ(s, nullptr);

  SparseSet ok(cx.ctx, 4, 4, {1, 4, 9});
  int64_t n = 0, buf[3];
  EXPECT_S2FT_ERROR(s2ft_sparse_set_count(nullptr, &n), S2FT_ERR_INVALID_ARGUMENT, "set");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_count(ok.set, nullptr), S2FT_ERR_INVALID_ARGUMENT, "count");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_shape(nullptr, &n, &n), S2FT_ERR_INVALID_ARGUMENT, "set");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_indices(nullptr, buf, 3), S2FT_ERR_INVALID_ARGUMENT, "set");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_indices(ok.set, nullptr, 3), S2FT_ERR_INVALID_ARGUMENT, "out");
  EXPECT_S2FT_ERROR(s2ft_sparse_set_indices(ok.set, buf, 2), S2FT_ERR_INVALID_ARGUMENT, "capacity 2");
}

// ---- the SDDMM backward -----------------------------------------------------------------

struct BackwardCase {
  int64_t T, out, in;
  double density;  // 0: one entry
  int32_t dtype;
};

std::string backward_name(const ::testing::TestParamInfo<BackwardCase> &info) {
  const BackwardCase &c = info.param;
  const std::string d = c.density == 0.0 ? "one" : c.density >= 1.0 ? "all" : std::to_string(static_cast<int>(c.density * 1000)) + "permille";
  return std::string(dtype_label(c.dtype)) + "_T" + std::to_string(c.T) + "_o" + std::to_string(c.out) + "_i" +
         std::to_string(c.in) + "_" + d;
}

class SparseBackward : public ::testing::TestWithParam<BackwardCase> {};

TEST_P(SparseBackward, MatchesFloat64DenseReferenceGathered) {
  const BackwardCase c = GetParam();
  Random rng(77 + c.T * 13 + c.out * 7 + c.in * 3 + c.dtype + static_cast<uint64_t>(c.density * 1000));
  Context cx;
  const int64_t size = c.out * c.in;
  const int64_t count =
      c.density == 0.0 ? 1 : std::max<int64_t>(1, static_cast<int64_t>(std::llround(c.density * static_cast<double>(size))));
  const std::vector<int64_t> idx = random_entries(rng, c.out, c.in, count);
  SparseSet set(cx.ctx, c.out, c.in, idx);

  HostMatrix W(c.dtype, c.out, c.in), X(c.dtype, c.T, c.in), DY(c.dtype, c.T, c.out);
  W.fill_random(rng);
  X.fill_random(rng);
  DY.fill_random(rng);
  const auto w = W.to_double(), x = X.to_double(), dy = DY.to_double();
  const auto dw = ref_matmul(dy, c.T, c.out, true, x, c.T, c.in, false);  // the dense [out, in] reference
  std::vector<double> g_ref(static_cast<size_t>(count));
  double g_norm = 0.0;
  for (int64_t n = 0; n < count; ++n) {
    g_ref[static_cast<size_t>(n)] = dw[static_cast<size_t>(idx[static_cast<size_t>(n)])];
    g_norm += std::fabs(g_ref[static_cast<size_t>(n)]);
  }
  ASSERT_GT(g_norm, 0.0);  // never all-zero data
  const auto dx_ref = ref_matmul(dy, c.T, c.out, false, w, c.out, c.in, false);

  // [count] f32 gradient, dx poisoned.
  HostVector G(count);
  G.poison();
  HostMatrix DX(c.dtype, c.T, c.in);
  DX.poison();
  ASSERT_S2FT_OK(s2ft_backward_sparse(cx.ctx, set.set, &X.t, &DY.t, &W.t, &DX.t, &G.t, 0));
  EXPECT_LE(rel_error(G.to_double(), g_ref), 1e-5);
  EXPECT_LE(rel_error(DX.to_double(), dx_ref), tolerance(c.dtype));
  // Entry by entry too: a relative norm could hide one wrong entry among many.
  for (int64_t n = 0; n < count; ++n)
    ASSERT_NEAR(G[n], g_ref[static_cast<size_t>(n)], 1e-4 * (1.0 + std::fabs(g_ref[static_cast<size_t>(n)])))
        << "entry " << n << " at " << idx[static_cast<size_t>(n)];

  // Accumulate into both: grad += g, dx += dy W (f32 grad kept in a strided [1, count] view).
  std::vector<float> g2(static_cast<size_t>(2 * count), -3.0f);
  s2ft_tensor g2t;
  ASSERT_S2FT_OK(s2ft_tensor_cpu_f32_2d(&g2t, g2.data(), 1, count));
  g2t.strides[1] = 2;
  std::vector<double> g_before(static_cast<size_t>(count)), want(static_cast<size_t>(count));
  for (int64_t n = 0; n < count; ++n) {
    g2[static_cast<size_t>(2 * n)] = static_cast<float>(rng.uniform());
    g_before[static_cast<size_t>(n)] = g2[static_cast<size_t>(2 * n)];
    want[static_cast<size_t>(n)] = g_before[static_cast<size_t>(n)] + g_ref[static_cast<size_t>(n)];
  }
  HostMatrix DX2(c.dtype, c.T, c.in);
  DX2.fill_random(rng);
  const auto dx_before = DX2.to_double();
  std::vector<double> dx_want(dx_ref.size());
  for (size_t i = 0; i < dx_ref.size(); ++i) dx_want[i] = dx_before[i] + dx_ref[i];
  ASSERT_S2FT_OK(s2ft_backward_sparse(cx.ctx, set.set, &X.t, &DY.t, &W.t, &DX2.t, &g2t,
                                      S2FT_ACCUMULATE_DW | S2FT_ACCUMULATE_DX));
  std::vector<double> got(static_cast<size_t>(count));
  for (int64_t n = 0; n < count; ++n) {
    got[static_cast<size_t>(n)] = g2[static_cast<size_t>(2 * n)];
    ASSERT_EQ(g2[static_cast<size_t>(2 * n + 1)], -3.0f) << "the stride gap was written";
  }
  EXPECT_LE(rel_error(got, want), 1e-5);
  EXPECT_LE(rel_error(DX2.to_double(), dx_want), tolerance(c.dtype));

  // Gradient only (w and dx NULL): the same gradient as before, bit for bit.
  HostVector G3(count);
  G3.poison();
  ASSERT_S2FT_OK(s2ft_backward_sparse(cx.ctx, set.set, &X.t, &DY.t, nullptr, nullptr, &G3.t, 0));
  for (int64_t n = 0; n < count; ++n) ASSERT_EQ(G3[n], G[n]);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, SparseBackward,
    ::testing::Values(BackwardCase{1, 1, 1, 0.0, S2FT_F32}, BackwardCase{7, 5, 3, 1.0, S2FT_F32},
                      BackwardCase{37, 33, 70, 0.0, S2FT_F32}, BackwardCase{37, 33, 70, 0.01, S2FT_F32},
                      BackwardCase{37, 33, 70, 1.0, S2FT_F32}, BackwardCase{300, 65, 129, 1.0, S2FT_F32},
                      BackwardCase{300, 40, 600, 0.3, S2FT_F32}, BackwardCase{513, 31, 700, 0.05, S2FT_F32},
                      BackwardCase{19, 17, 23, 0.25, S2FT_BF16}, BackwardCase{300, 40, 600, 0.05, S2FT_BF16},
                      BackwardCase{19, 17, 23, 1.0, S2FT_F16}, BackwardCase{270, 9, 301, 0.01, S2FT_F16}),
    backward_name);

// An entry's gradient does not depend on which other entries the set has
// (how the CPU groups them), nor on the number of threads: bit for bit.
TEST(SparseBackward, EntryResultIndependentOfSetAndThreads) {
  Random rng(606);
  const int64_t T = 530, out = 48, in = 300;
  HostMatrix X(S2FT_F32, T, in), DY(S2FT_F32, T, out);
  X.fill_random(rng);
  DY.fill_random(rng);
  const std::vector<int64_t> all = random_entries(rng, out, in, 4000);
  std::vector<int64_t> some;
  for (size_t n = 0; n < all.size(); n += 3) some.push_back(all[n]);
  s2ft_context *one = nullptr, *two = nullptr;
  s2ft_context_options co;
  ASSERT_S2FT_OK(s2ft_context_options_init(&co, S2FT_CONTEXT_OPTIONS_VERSION));
  co.num_threads = 1;
  ASSERT_S2FT_OK(s2ft_context_create(&co, &one));
  co.num_threads = 2;
  ASSERT_S2FT_OK(s2ft_context_create(&co, &two));
  {
    SparseSet a1(one, out, in, all), a2(two, out, in, all), s1(one, out, in, some);
    HostVector ga1(static_cast<int64_t>(all.size())), ga2(static_cast<int64_t>(all.size())),
        gs1(static_cast<int64_t>(some.size()));
    ASSERT_S2FT_OK(s2ft_backward_sparse(one, a1.set, &X.t, &DY.t, nullptr, nullptr, &ga1.t, 0));
    ASSERT_S2FT_OK(s2ft_backward_sparse(two, a2.set, &X.t, &DY.t, nullptr, nullptr, &ga2.t, 0));
    ASSERT_S2FT_OK(s2ft_backward_sparse(one, s1.set, &X.t, &DY.t, nullptr, nullptr, &gs1.t, 0));
    EXPECT_EQ(ga1.data, ga2.data);
    for (size_t n = 0; n < some.size(); ++n) ASSERT_EQ(gs1[static_cast<int64_t>(n)], ga1[static_cast<int64_t>(3 * n)]) << n;
  }
  s2ft_context_destroy(one);
  s2ft_context_destroy(two);
}

TEST(SparseBackward, NoTokensGivesZeroGradient) {
  Context cx;
  SparseSet set(cx.ctx, 3, 4, {2, 7});
  HostMatrix X(S2FT_F32, 0, 4), DY(S2FT_F32, 0, 3);
  HostVector G(2);
  G.poison();
  ASSERT_S2FT_OK(s2ft_backward_sparse(cx.ctx, set.set, &X.t, &DY.t, nullptr, nullptr, &G.t, 0));
  EXPECT_EQ(G[0], 0.0f);
  EXPECT_EQ(G[1], 0.0f);
}

TEST(SparseBackward, ErrorsNameTheArgument) {
  Context cx;
  Random rng(5);
  SparseSet set(cx.ctx, 3, 4, {0, 5, 11});
  HostMatrix W(S2FT_F32, 3, 4), X(S2FT_F32, 2, 4), DY(S2FT_F32, 2, 3), DX(S2FT_F32, 2, 4);
  W.fill_random(rng);
  X.fill_random(rng);
  DY.fill_random(rng);
  HostVector G(3);
  auto call = [&](const s2ft_tensor *x, const s2ft_tensor *dy, const s2ft_tensor *w, s2ft_tensor *dx, s2ft_tensor *g,
                  uint32_t flags = 0, const s2ft_sparse_set *s = nullptr) {
    return s2ft_backward_sparse(cx.ctx, s != nullptr ? s : set.set, x, dy, w, dx, g, flags);
  };
  ASSERT_S2FT_OK(call(&X.t, &DY.t, &W.t, &DX.t, &G.t));
  EXPECT_S2FT_ERROR(s2ft_backward_sparse(nullptr, set.set, &X.t, &DY.t, &W.t, &DX.t, &G.t, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_backward_sparse(cx.ctx, nullptr, &X.t, &DY.t, &W.t, &DX.t, &G.t, 0),
                    S2FT_ERR_INVALID_ARGUMENT, "set is NULL");
  EXPECT_S2FT_ERROR(call(nullptr, &DY.t, &W.t, &DX.t, &G.t), S2FT_ERR_INVALID_ARGUMENT, "x is NULL");
  EXPECT_S2FT_ERROR(call(&X.t, nullptr, &W.t, &DX.t, &G.t), S2FT_ERR_INVALID_ARGUMENT, "dy is NULL");
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DX.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "grad is NULL");
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, nullptr, &DX.t, &G.t), S2FT_ERR_INVALID_ARGUMENT, "w is NULL but dx");
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DX.t, &G.t, 4u), S2FT_ERR_INVALID_ARGUMENT, "flags");
  // Shapes: x's columns and dy's columns come from the set's weight shape.
  HostMatrix X5(S2FT_F32, 2, 5), DY4(S2FT_F32, 3, 3), W43(S2FT_F32, 4, 3), DX5(S2FT_F32, 2, 5);
  EXPECT_S2FT_ERROR(call(&X5.t, &DY.t, &W.t, &DX.t, &G.t), S2FT_ERR_SHAPE, "x");
  EXPECT_S2FT_ERROR(call(&X.t, &DY4.t, &W.t, &DX.t, &G.t), S2FT_ERR_SHAPE, "dy");
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W43.t, &DX.t, &G.t), S2FT_ERR_SHAPE, "set was made for a [3, 4] weight but w is [4, 3]");
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DX5.t, &G.t), S2FT_ERR_SHAPE, "dx");
  HostVector G4(4);
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DX.t, &G4.t), S2FT_ERR_SHAPE, "grad must be [3] or [1, 3]");
  HostMatrix G23(S2FT_F32, 2, 3);
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DX.t, &G23.t), S2FT_ERR_SHAPE, "grad");
  // A set made for another weight shape: x and dy follow the set, so the weight is what differs.
  SparseSet other(cx.ctx, 4, 3, {0, 5, 11});
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, nullptr, nullptr, &G.t, 0, other.set), S2FT_ERR_SHAPE, "x");
  HostMatrix X3(S2FT_F32, 2, 3), DY4b(S2FT_F32, 2, 4), DX3(S2FT_F32, 2, 3);
  X3.fill_random(rng);
  DY4b.fill_random(rng);
  EXPECT_S2FT_ERROR(call(&X3.t, &DY4b.t, &W.t, &DX3.t, &G.t, 0, other.set), S2FT_ERR_SHAPE,
                    "set was made for a [4, 3] weight but w is [3, 4]");
  // Dtypes.
  HostMatrix Xb(S2FT_BF16, 2, 4), Gb(S2FT_BF16, 1, 3), DXb(S2FT_BF16, 2, 4), Wb(S2FT_BF16, 3, 4);
  EXPECT_S2FT_ERROR(call(&Xb.t, &DY.t, &W.t, &DX.t, &G.t), S2FT_ERR_DTYPE, "dy");
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DX.t, &Gb.t), S2FT_ERR_DTYPE, "grad must be f32");
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DXb.t, &G.t), S2FT_ERR_DTYPE, "dx");
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &Wb.t, &DX.t, &G.t), S2FT_ERR_DTYPE, "w");
  // Devices: a tensor on another device than the context.
  s2ft_tensor xg = X.t;
  xg.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(call(&xg, &DY.t, &W.t, &DX.t, &G.t), S2FT_ERR_DEVICE, "x");
  // Overlap: grad inside x, dx on dy.
  s2ft_tensor gx;
  const int64_t three[1] = {3};
  ASSERT_S2FT_OK(s2ft_tensor_init(&gx, X.bytes.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, three));
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DX.t, &gx), S2FT_ERR_INVALID_ARGUMENT, "grad");
  s2ft_tensor dxx = X.t;
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &dxx, &G.t), S2FT_ERR_INVALID_ARGUMENT, "dx");
  HostVector broadcast(3, 0);  // every entry on one float
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DX.t, &broadcast.t), S2FT_ERR_INVALID_ARGUMENT, "grad has a zero stride");
  s2ft_tensor g4d = G.t;
  g4d.ndim = 3;
  EXPECT_S2FT_ERROR(call(&X.t, &DY.t, &W.t, &DX.t, &g4d), S2FT_ERR_SHAPE, "grad must have rank 1");
}

// ---- optimizers on sparse parameters ------------------------------------------------------

// A float64 model of one optimizer parameter: its elements' weight
// positions, SM3 accumulator rows and columns, and state. State is rounded
// to f32 where the library keeps f32 (moments, buffers, accumulators), so
// the comparison is tight.
struct RefParam {
  std::vector<int64_t> wr, wc;    // weight row and column of each element
  std::vector<int64_t> ar, ac;    // SM3 accumulator row and column of each element
  int64_t acc_rows = 0, acc_cols = 0;
  std::vector<double> p;          // parameter values (the f32 master)
  std::vector<float> m, v, buf, age;
  std::vector<float> R, C;        // SM3 accumulators
  bool sparse = true;

  void zero_state(size_t n) {
    m.assign(n, 0.0f);
    v.assign(n, 0.0f);
    buf.assign(n, 0.0f);
    age.assign(n, 0.0f);
  }
};

// A sparse parameter over flat indices of a [rows, cols] weight.
RefParam ref_sparse(const HostMatrix &w, const std::vector<int64_t> &idx) {
  RefParam r;
  for (int64_t n : idx) {
    r.wr.push_back(n / w.cols);
    r.wc.push_back(n % w.cols);
    r.p.push_back(w.get(n / w.cols, n % w.cols));
  }
  r.ar = r.wr;
  r.ac = r.wc;
  r.acc_rows = w.rows;
  r.acc_cols = w.cols;
  r.zero_state(idx.size());
  r.R.assign(static_cast<size_t>(w.rows), 0.0f);
  r.C.assign(static_cast<size_t>(w.cols), 0.0f);
  return r;
}

// A column slice [rows, k] of w (elements row-major over the slice).
RefParam ref_columns(const HostMatrix &w, const std::vector<int64_t> &cols) {
  RefParam r;
  r.sparse = false;
  const int64_t k = static_cast<int64_t>(cols.size());
  for (int64_t i = 0; i < w.rows; ++i)
    for (int64_t j = 0; j < k; ++j) {
      r.wr.push_back(i);
      r.wc.push_back(cols[static_cast<size_t>(j)]);
      r.ar.push_back(i);
      r.ac.push_back(j);
      r.p.push_back(w.get(i, cols[static_cast<size_t>(j)]));
    }
  r.acc_rows = w.rows;
  r.acc_cols = k;
  r.zero_state(r.p.size());
  r.R.assign(static_cast<size_t>(w.rows), 0.0f);
  r.C.assign(static_cast<size_t>(k), 0.0f);
  return r;
}

// Reindexing: entries in both keep everything, new ones start from zero.
void ref_reindex(RefParam &r, const HostMatrix &w, const std::vector<int64_t> &old_idx, const std::vector<int64_t> &idx) {
  RefParam n = ref_sparse(w, idx);
  n.R = r.R;
  n.C = r.C;
  for (size_t e = 0; e < idx.size(); ++e) {
    const auto it = std::lower_bound(old_idx.begin(), old_idx.end(), idx[e]);
    if (it == old_idx.end() || *it != idx[e]) continue;
    const size_t o = static_cast<size_t>(it - old_idx.begin());
    n.p[e] = r.p[o];
    n.m[e] = r.m[o];
    n.v[e] = r.v[o];
    n.buf[e] = r.buf[o];
    n.age[e] = r.age[o];
  }
  r = n;
}

// One step of the documented rules over all parameters; returns the norm.
double ref_step(const s2ft_optimizer_options &o, int64_t t, double lr, std::vector<RefParam> &ps,
                const std::vector<std::vector<double>> &grads) {
  double total = 0.0;
  for (const auto &g : grads)
    for (double x : g) total += x * x;
  const double norm = std::sqrt(total);
  const double scale = o.max_grad_norm > 0.0 ? std::min(1.0, o.max_grad_norm / (norm + 1e-6)) : 1.0;
  for (size_t k = 0; k < ps.size(); ++k) {
    RefParam &r = ps[k];
    std::vector<float> newR(r.R.size(), -1.0f), newC(r.C.size(), -1.0f);
    for (size_t e = 0; e < r.p.size(); ++e) {
      const double g = grads[k][e] * scale;
      if (o.kind == S2FT_OPTIMIZER_ADAMW) {
        const double te = (o.age_bias_correction && r.sparse) ? static_cast<double>(r.age[e]) + 1.0 : static_cast<double>(t);
        double x = r.p[e] * (1.0 - lr * o.weight_decay);
        r.m[e] = static_cast<float>(o.beta1 * r.m[e] + (1.0 - o.beta1) * g);
        r.v[e] = static_cast<float>(o.beta2 * r.v[e] + (1.0 - o.beta2) * g * g);
        const double step_size = lr / (1.0 - std::pow(o.beta1, te));
        const double bc2 = std::sqrt(1.0 - std::pow(o.beta2, te));
        x -= step_size * r.m[e] / (std::sqrt(static_cast<double>(r.v[e])) / bc2 + o.eps);
        r.p[e] = static_cast<float>(x);
        r.age[e] = static_cast<float>(te);
      } else {  // SM3
        const size_t i = static_cast<size_t>(r.ar[e]), j = static_cast<size_t>(r.ac[e]);
        const double nu = static_cast<double>(std::min(r.R[i], r.C[j])) + g * g;
        double u = g / (std::sqrt(nu) + o.eps);
        if (o.momentum > 0.0) {
          r.buf[e] = static_cast<float>(o.momentum * r.buf[e] + (1.0 - o.momentum) * u);
          u = r.buf[e];
        }
        r.p[e] = static_cast<float>(r.p[e] * (1.0 - lr * o.weight_decay) - lr * u);
        newR[i] = std::max(newR[i], static_cast<float>(nu));
        newC[j] = std::max(newC[j], static_cast<float>(nu));
      }
    }
    for (size_t i = 0; i < r.R.size(); ++i)
      if (newR[i] >= 0.0f) r.R[i] = newR[i];
    for (size_t j = 0; j < r.C.size(); ++j)
      if (newC[j] >= 0.0f) r.C[j] = newC[j];
  }
  return norm;
}

// The weight elements of r against the reference (f32: exactly the f32
// rounding of the double result, up to one ulp).
void expect_weights(const HostMatrix &w, const RefParam &r, const std::string &what) {
  for (size_t e = 0; e < r.p.size(); ++e) {
    const double got = w.get(r.wr[e], r.wc[e]), want = r.p[e];
    const double tol = w.dtype == S2FT_F32 ? 2e-7 * std::fabs(want) + 1e-12 : 1e-2 * std::fabs(want) + 1e-3;
    ASSERT_NEAR(got, want, tol) << what << " element " << e << " at (" << r.wr[e] << ", " << r.wc[e] << ")";
  }
}

s2ft_optimizer_options opt_options(int32_t kind) {
  s2ft_optimizer_options o;
  EXPECT_EQ(s2ft_optimizer_options_init(&o, S2FT_OPTIMIZER_OPTIONS_VERSION), S2FT_OK);
  o.kind = kind;
  return o;
}

// Gradients for parameters of the given sizes (f32 vectors), values and descriptors.
struct Grads {
  std::vector<std::vector<float>> f;
  std::vector<s2ft_tensor> t;
  std::vector<std::vector<double>> d;
};
Grads make_grads(Random &rng, const std::vector<RefParam> &ps, const std::vector<int64_t> &slice_rows = {}) {
  Grads g;
  for (size_t k = 0; k < ps.size(); ++k) {
    const int64_t n = static_cast<int64_t>(ps[k].p.size());
    std::vector<float> v(static_cast<size_t>(n));
    for (float &x : v) x = static_cast<float>(rng.uniform());
    g.d.emplace_back(v.begin(), v.end());
    g.f.push_back(std::move(v));
  }
  for (size_t k = 0; k < ps.size(); ++k) {
    s2ft_tensor t;
    const int64_t n = static_cast<int64_t>(g.f[k].size());
    if (ps[k].sparse) {
      const int64_t shape[1] = {n};
      EXPECT_EQ(s2ft_tensor_init(&t, g.f[k].data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, shape), S2FT_OK);
    } else {
      const int64_t rows = slice_rows.at(k);
      EXPECT_EQ(s2ft_tensor_cpu_f32_2d(&t, g.f[k].data(), rows, n / rows), S2FT_OK);
    }
    g.t.push_back(t);
  }
  return g;
}

struct SparseAdamCase {
  bool age;
  double weight_decay, max_grad_norm;
  int32_t dtype;
};

class SparseAdamW : public ::testing::TestWithParam<SparseAdamCase> {};

// Two sparse parameters and a column slice (on another weight), several
// steps, a reindex of the first parameter, more steps: every trained weight
// element against the float64 rules; untrained elements never change.
TEST_P(SparseAdamW, MatchesFloat64RulesThroughAReindex) {
  const SparseAdamCase c = GetParam();
  Context cx;
  Random rng(900 + c.age + c.dtype * 3 + static_cast<uint64_t>(c.weight_decay * 100) + (c.max_grad_norm > 0));
  HostMatrix W1(c.dtype, 9, 14), W2(c.dtype, 6, 5);
  W1.fill_random(rng);
  W2.fill_random(rng);
  const HostMatrix W1_before = W1, W2_before = W2;
  const std::vector<int64_t> a = random_entries(rng, 9, 14, 30);
  const std::vector<int64_t> cols = {4, 1};  // a slice of W2's columns, disjoint from the sparse entries
  std::vector<int64_t> b_free;
  for (int64_t n : random_entries(rng, 6, 5, 12))
    if (n % 5 != 4 && n % 5 != 1 && b_free.size() < 4) b_free.push_back(n);
  SparseSet sa(cx.ctx, 9, 14, a), sb(cx.ctx, 6, 5, b_free);
  s2ft_optimizer_options o = opt_options(S2FT_OPTIMIZER_ADAMW);
  o.age_bias_correction = c.age ? 1 : 0;
  o.weight_decay = c.weight_decay;
  o.max_grad_norm = c.max_grad_norm;
  o.beta2 = 0.99;
  Optimizer opt;
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &opt.opt));
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.opt, &W1.t, sa.set, &index));
  EXPECT_EQ(index, 0);
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.opt, &W2.t, sb.set, &index));
  EXPECT_EQ(index, 1);
  const s2ft_slice slice{S2FT_AXIS_COLUMNS, 0, 2, cols.data()};
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt.opt, &W2.t, &slice, &index));
  EXPECT_EQ(index, 2);
  std::vector<RefParam> ref = {ref_sparse(W1, a), ref_sparse(W2, b_free), ref_columns(W2, cols)};
  const std::vector<int64_t> rows_of = {1, 1, 6};
  const double lr = 0.05;
  int64_t t = 0;
  auto step = [&](const std::string &when) {
    Grads g = make_grads(rng, ref, rows_of);
    double norm = -1.0;
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt.opt, lr, g.t.data(), 3, &norm));
    const double want = ref_step(o, ++t, lr, ref, g.d);
    EXPECT_NEAR(norm, want, 1e-12 * want);
    expect_weights(W1, ref[0], when + " W1 sparse");
    expect_weights(W2, ref[1], when + " W2 sparse");
    expect_weights(W2, ref[2], when + " W2 slice");
  };
  for (int s = 0; s < 3; ++s) step("before reindex, step " + std::to_string(s));
  // Reindex: keep every other entry, add new ones.
  std::vector<int64_t> a2;
  for (size_t e = 0; e < a.size(); e += 2) a2.push_back(a[e]);
  for (int64_t n : random_entries(rng, 9, 14, 20)) a2.push_back(n);
  std::sort(a2.begin(), a2.end());
  a2.erase(std::unique(a2.begin(), a2.end()), a2.end());
  SparseSet sa2(cx.ctx, 9, 14, a2);
  ASSERT_S2FT_OK(s2ft_optimizer_sparse_reindex(opt.opt, 0, sa2.set));
  ref_reindex(ref[0], W1, a, a2);
  for (int s = 0; s < 3; ++s) step("after reindex, step " + std::to_string(s));
  // Elements no parameter ever trained are unchanged, bit for bit.
  std::set<int64_t> trained1(a.begin(), a.end()), trained2(b_free.begin(), b_free.end());
  trained1.insert(a2.begin(), a2.end());
  for (int64_t n = 0; n < 9 * 14; ++n)
    if (!trained1.count(n)) {
      ASSERT_EQ(W1.get(n / 14, n % 14), W1_before.get(n / 14, n % 14)) << n;
    }
  for (int64_t n = 0; n < 30; ++n)
    if (!trained2.count(n) && n % 5 != 4 && n % 5 != 1) {
      ASSERT_EQ(W2.get(n / 5, n % 5), W2_before.get(n / 5, n % 5)) << n;
    }
}

INSTANTIATE_TEST_SUITE_P(Cases, SparseAdamW,
                         ::testing::Values(SparseAdamCase{false, 0.0, 0.0, S2FT_F32},
                                           SparseAdamCase{true, 0.0, 0.0, S2FT_F32},
                                           SparseAdamCase{true, 0.1, 0.0, S2FT_F32},
                                           SparseAdamCase{false, 0.1, 0.5, S2FT_F32},
                                           SparseAdamCase{true, 0.01, 0.5, S2FT_F32},
                                           SparseAdamCase{true, 0.0, 0.0, S2FT_BF16}),
                         [](const ::testing::TestParamInfo<SparseAdamCase> &i) {
                           return std::string(i.param.age ? "age" : "global") + "_wd" +
                                  std::to_string(static_cast<int>(i.param.weight_decay * 100)) +
                                  (i.param.max_grad_norm > 0 ? "_clip_" : "_") + dtype_label(i.param.dtype);
                         });

// Age correction changes exactly the entries that joined late: without a
// reindex every entry's age is the step count, so the two settings agree
// bit for bit.
TEST(SparseOptimizer, AgeCorrectionWithoutReindexEqualsGlobalSteps) {
  Context cx;
  Random rng(31);
  HostMatrix Wa(S2FT_F32, 8, 9);
  Wa.fill_random(rng);
  HostMatrix Wb = Wa;
  const std::vector<int64_t> idx = random_entries(rng, 8, 9, 20);
  SparseSet set(cx.ctx, 8, 9, idx);
  Optimizer oa, ob;
  s2ft_optimizer_options o = opt_options(S2FT_OPTIMIZER_ADAMW);
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &oa.opt));
  o.age_bias_correction = 1;
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &ob.opt));
  int64_t i = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(oa.opt, &Wa.t, set.set, &i));
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(ob.opt, &Wb.t, set.set, &i));
  for (int s = 0; s < 4; ++s) {
    HostVector g(20);
    for (int64_t e = 0; e < 20; ++e) g[e] = static_cast<float>(rng.uniform());
    ASSERT_S2FT_OK(s2ft_optimizer_step(oa.opt, 0.1, &g.t, 1, nullptr));
    ASSERT_S2FT_OK(s2ft_optimizer_step(ob.opt, 0.1, &g.t, 1, nullptr));
  }
  EXPECT_EQ(Wa.bytes, Wb.bytes);
}

struct Sm3Case {
  double momentum, weight_decay;
};

class Sm3 : public ::testing::TestWithParam<Sm3Case> {};

// A sparse parameter whose entries share rows and columns, and a dense
// column slice, over several steps (with a reindex between them).
TEST_P(Sm3, MatchesFloat64RulesOverSeveralSteps) {
  const Sm3Case c = GetParam();
  Context cx;
  Random rng(55 + static_cast<uint64_t>(c.momentum * 10));
  HostMatrix W(S2FT_F32, 5, 6), V(S2FT_F32, 4, 7);
  W.fill_random(rng);
  V.fill_random(rng);
  // Rows 1 and 3 and columns 2 and 4 hold several entries each; row 0 none.
  const std::vector<int64_t> idx = {6 + 2, 6 + 4, 6 + 5, 12 + 0, 18 + 2, 18 + 3, 18 + 4, 24 + 4};
  SparseSet set(cx.ctx, 5, 6, idx);
  const std::vector<int64_t> cols = {6, 0, 3};
  s2ft_optimizer_options o = opt_options(S2FT_OPTIMIZER_SM3);
  o.momentum = c.momentum;
  o.weight_decay = c.weight_decay;
  o.eps = 1e-6;
  Optimizer opt;
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &opt.opt));
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.opt, &W.t, set.set, &index));
  const s2ft_slice slice{S2FT_AXIS_COLUMNS, 0, 3, cols.data()};
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt.opt, &V.t, &slice, &index));
  std::vector<RefParam> ref = {ref_sparse(W, idx), ref_columns(V, cols)};
  int64_t t = 0;
  const double lr = 0.03;
  auto step = [&](int s) {
    Grads g = make_grads(rng, ref, {1, 4});
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt.opt, lr, g.t.data(), 2, nullptr));
    ref_step(o, ++t, lr, ref, g.d);
    expect_weights(W, ref[0], "sparse step " + std::to_string(s));
    expect_weights(V, ref[1], "slice step " + std::to_string(s));
  };
  for (int s = 0; s < 4; ++s) step(s);
  // Move to entries in new rows and columns (row 0 now; row 4 loses its entry): accumulators stay.
  const std::vector<int64_t> idx2 = {0 + 1, 6 + 2, 6 + 5, 18 + 3, 18 + 4};
  SparseSet set2(cx.ctx, 5, 6, idx2);
  ASSERT_S2FT_OK(s2ft_optimizer_sparse_reindex(opt.opt, 0, set2.set));
  ref_reindex(ref[0], W, idx, idx2);
  for (int s = 4; s < 7; ++s) step(s);
}

INSTANTIATE_TEST_SUITE_P(Cases, Sm3,
                         ::testing::Values(Sm3Case{0.0, 0.0}, Sm3Case{0.9, 0.0}, Sm3Case{0.5, 0.05}),
                         [](const ::testing::TestParamInfo<Sm3Case> &i) {
                           return "momentum" + std::to_string(static_cast<int>(i.param.momentum * 10)) + "_wd" +
                                  std::to_string(static_cast<int>(i.param.weight_decay * 100));
                         });

// ---- state files -------------------------------------------------------------------------

std::string temp_path(const std::string &name) {
  return ::testing::TempDir() + "s2ft_sparse_" + std::to_string(getpid()) + "_" + name;
}

std::vector<float> file_tensor(const s2ft::io::SafetensorsFile &f, const std::string &name) {
  const s2ft::io::TensorInfo *t = f.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (t == nullptr) return {};
  int64_t n = 1;
  for (int64_t d : t->shape) n *= d;
  std::vector<float> v(static_cast<size_t>(n));
  std::memcpy(v.data(), f.data(*t), v.size() * 4);
  return v;
}

// Reindexing keeps the state of surviving entries exactly (read back from
// saved files) and starts new entries at zero, with their master from the
// weight; a file saved for one set is refused for another; saving and
// loading resumes bit-exactly.
TEST(SparseOptimizer, ReindexKeepsStateExactlyAndSaveLoadResumes) {
  Context cx;
  Random rng(77);
  HostMatrix W(S2FT_BF16, 7, 8);
  W.fill_random(rng);
  const std::vector<int64_t> a = {1, 5, 9, 20, 33, 40, 41, 55}, b = {5, 8, 20, 41, 50};
  SparseSet sa(cx.ctx, 7, 8, a), sb(cx.ctx, 7, 8, b);
  s2ft_optimizer_options o = opt_options(S2FT_OPTIMIZER_ADAMW);
  o.age_bias_correction = 1;
  Optimizer opt;
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &opt.opt));
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.opt, &W.t, sa.set, &index));
  for (int s = 0; s < 3; ++s) {
    HostVector g(8);
    for (int64_t e = 0; e < 8; ++e) g[e] = static_cast<float>(rng.uniform());
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt.opt, 0.01, &g.t, 1, nullptr));
  }
  const std::string before = temp_path("before.safetensors"), after = temp_path("after.safetensors");
  ASSERT_S2FT_OK(s2ft_optimizer_save(opt.opt, before.c_str()));
  ASSERT_S2FT_OK(s2ft_optimizer_sparse_reindex(opt.opt, 0, sb.set));
  ASSERT_S2FT_OK(s2ft_optimizer_save(opt.opt, after.c_str()));
  {
    const auto f0 = s2ft::io::SafetensorsFile::read(before), f1 = s2ft::io::SafetensorsFile::read(after);
    EXPECT_EQ(f1.metadata().at("version"), "2");
    EXPECT_EQ(f1.metadata().at("param.0.axis"), "sparse");
    const s2ft::io::TensorInfo *ti = f1.find("param.0.indices");
    ASSERT_NE(ti, nullptr);
    EXPECT_EQ(ti->dtype, "I64");
    std::vector<int64_t> saved(b.size());
    std::memcpy(saved.data(), f1.data(*ti), saved.size() * 8);
    EXPECT_EQ(saved, b);
    for (const char *name : {"m", "v", "age", "master"}) {
      const std::vector<float> x0 = file_tensor(f0, std::string("param.0.") + name);
      const std::vector<float> x1 = file_tensor(f1, std::string("param.0.") + name);
      ASSERT_EQ(x1.size(), b.size()) << name;
      for (size_t e = 0; e < b.size(); ++e) {
        const auto it = std::find(a.begin(), a.end(), b[e]);
        if (it != a.end()) {
          EXPECT_EQ(x1[e], x0[static_cast<size_t>(it - a.begin())]) << name << " entry " << b[e] << " kept";
        } else if (std::string(name) == "master") {
          EXPECT_EQ(x1[e], W.get(b[e] / 8, b[e] % 8)) << "a new entry's master is the weight's value";
        } else {
          EXPECT_EQ(x1[e], 0.0f) << name << " entry " << b[e] << " is new";
        }
      }
      if (std::string(name) == "age") {
        for (float v : x0) EXPECT_EQ(v, 3.0f);
      }
    }
  }
  // Resume: a fresh optimizer on a copy of the weights, the same set, loads
  // the file and steps exactly like the original.
  HostMatrix W2 = W;
  Optimizer opt2;
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &opt2.opt));
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt2.opt, &W2.t, sb.set, &index));
  // The file of the old set is refused for this one, naming the difference.
  EXPECT_S2FT_ERROR(s2ft_optimizer_load(opt2.opt, before.c_str()), S2FT_ERR_FORMAT, "reindex to the saved set");
  ASSERT_S2FT_OK(s2ft_optimizer_load(opt2.opt, after.c_str()));
  int64_t steps = 0;
  ASSERT_S2FT_OK(s2ft_optimizer_step_count(opt2.opt, &steps));
  EXPECT_EQ(steps, 3);
  for (int s = 0; s < 3; ++s) {
    HostVector g(5);
    for (int64_t e = 0; e < 5; ++e) g[e] = static_cast<float>(rng.uniform());
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt.opt, 0.01, &g.t, 1, nullptr));
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt2.opt, 0.01, &g.t, 1, nullptr));
  }
  EXPECT_EQ(W.bytes, W2.bytes);
  std::remove(before.c_str());
  std::remove(after.c_str());
}

TEST(SparseOptimizer, Sm3SaveLoadResumesAndSliceOnlyFilesStayVersion1) {
  Context cx;
  Random rng(78);
  HostMatrix W(S2FT_F32, 6, 6), V(S2FT_F32, 5, 4);
  W.fill_random(rng);
  V.fill_random(rng);
  const std::vector<int64_t> idx = {0, 7, 8, 13, 30, 35};
  SparseSet set(cx.ctx, 6, 6, idx);
  const s2ft_slice slice{S2FT_AXIS_ROWS, 1, 3, nullptr};
  s2ft_optimizer_options o = opt_options(S2FT_OPTIMIZER_SM3);
  o.momentum = 0.8;
  auto build = [&](Optimizer &opt, HostMatrix &w, HostMatrix &v) {
    int64_t i = -1;
    ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &opt.opt));
    ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.opt, &w.t, set.set, &i));
    ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt.opt, &v.t, &slice, &i));
  };
  auto grads = [&](std::vector<float> &a, std::vector<float> &b, s2ft_tensor *t) {
    a.resize(6);
    b.resize(12);
    for (float &x : a) x = static_cast<float>(rng.uniform());
    for (float &x : b) x = static_cast<float>(rng.uniform());
    const int64_t n[1] = {6};
    ASSERT_S2FT_OK(s2ft_tensor_init(&t[0], a.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, n));
    ASSERT_S2FT_OK(s2ft_tensor_cpu_f32_2d(&t[1], b.data(), 3, 4));
  };
  Optimizer opt;
  build(opt, W, V);
  std::vector<float> ga, gb;
  s2ft_tensor g[2];
  for (int s = 0; s < 3; ++s) {
    grads(ga, gb, g);
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt.opt, 0.02, g, 2, nullptr));
  }
  const std::string path = temp_path("sm3.safetensors");
  ASSERT_S2FT_OK(s2ft_optimizer_save(opt.opt, path.c_str()));
  {
    const auto f = s2ft::io::SafetensorsFile::read(path);
    EXPECT_EQ(f.metadata().at("kind"), "sm3");
    EXPECT_EQ(file_tensor(f, "param.0.row_acc").size(), 6u);  // the whole weight's rows
    EXPECT_EQ(file_tensor(f, "param.0.col_acc").size(), 6u);
    EXPECT_EQ(file_tensor(f, "param.1.row_acc").size(), 3u);  // the slice's rows and columns
    EXPECT_EQ(file_tensor(f, "param.1.col_acc").size(), 4u);
    EXPECT_EQ(file_tensor(f, "param.0.momentum").size(), 6u);
    EXPECT_EQ(f.find("param.0.m"), nullptr);
  }
  HostMatrix W2 = W, V2 = V;
  Optimizer opt2;
  build(opt2, W2, V2);
  ASSERT_S2FT_OK(s2ft_optimizer_load(opt2.opt, path.c_str()));
  for (int s = 0; s < 3; ++s) {
    grads(ga, gb, g);
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt.opt, 0.02, g, 2, nullptr));
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt2.opt, 0.02, g, 2, nullptr));
  }
  EXPECT_EQ(W.bytes, W2.bytes);
  EXPECT_EQ(V.bytes, V2.bytes);
  // An AdamW file is refused by an SM3 optimizer.
  Optimizer adam;
  s2ft_optimizer_options oa = opt_options(S2FT_OPTIMIZER_ADAMW);
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &oa, &adam.opt));
  int64_t i = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(adam.opt, &V.t, &slice, &i));
  const std::string adam_path = temp_path("adam.safetensors");
  ASSERT_S2FT_OK(s2ft_optimizer_save(adam.opt, adam_path.c_str()));
  EXPECT_EQ(s2ft::io::SafetensorsFile::read(adam_path).metadata().at("version"), "1");  // nothing new used
  EXPECT_S2FT_ERROR(s2ft_optimizer_load(opt2.opt, adam_path.c_str()), S2FT_ERR_FORMAT, "\"adamw\"");
  std::remove(path.c_str());
  std::remove(adam_path.c_str());
}

// ---- options versions --------------------------------------------------------------------

TEST(OptimizerOptions, Version1StructsStayValid) {
  Context cx;
  // A version-1 caller's struct ends before age_bias_correction: init and
  // create must not touch or read anything beyond it.
  s2ft_optimizer_options o;
  std::memset(&o, 0x5a, sizeof o);
  ASSERT_S2FT_OK(s2ft_optimizer_options_init(&o, 1));
  EXPECT_EQ(o.version, 1u);
  EXPECT_EQ(o.kind, S2FT_OPTIMIZER_ADAMW);
  EXPECT_EQ(o.beta1, 0.9);
  int32_t sentinel;
  std::memset(&sentinel, 0x5a, sizeof sentinel);
  EXPECT_EQ(o.age_bias_correction, sentinel) << "init for version 1 wrote past the version-1 struct";
  Optimizer opt;
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &opt.opt));  // the garbage field is not read
  s2ft_optimizer_options v2;
  ASSERT_S2FT_OK(s2ft_optimizer_options_init(&v2, S2FT_OPTIMIZER_OPTIONS_VERSION));
  EXPECT_EQ(v2.version, 2u);
  EXPECT_EQ(v2.age_bias_correction, 0);
  EXPECT_S2FT_ERROR(s2ft_optimizer_options_init(&v2, 3), S2FT_ERR_INVALID_ARGUMENT, "version 3");
  v2.version = 3;
  Optimizer bad;
  EXPECT_S2FT_ERROR(s2ft_optimizer_create(cx.ctx, &v2, &bad.opt), S2FT_ERR_INVALID_ARGUMENT, "opts->version is 3");
  v2.version = 2;
  v2.kind = S2FT_OPTIMIZER_SM3;
  v2.momentum = 1.0;
  EXPECT_S2FT_ERROR(s2ft_optimizer_create(cx.ctx, &v2, &bad.opt), S2FT_ERR_INVALID_ARGUMENT, "opts->momentum");
  v2.kind = 3;
  EXPECT_S2FT_ERROR(s2ft_optimizer_create(cx.ctx, &v2, &bad.opt), S2FT_ERR_INVALID_ARGUMENT, "S2FT_OPTIMIZER_SM3");
}

// ---- errors of the sparse optimizer calls --------------------------------------------------

TEST(SparseOptimizer, ErrorsNameTheArgument) {
  Context cx;
  Random rng(90);
  HostMatrix W(S2FT_F32, 4, 5), U(S2FT_F32, 5, 4);
  W.fill_random(rng);
  U.fill_random(rng);
  SparseSet set(cx.ctx, 4, 5, {1, 6, 12}), other(cx.ctx, 5, 4, {0, 3}), overlap(cx.ctx, 4, 5, {2, 6});
  s2ft_optimizer_options o = opt_options(S2FT_OPTIMIZER_ADAMW);
  Optimizer opt;
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &o, &opt.opt));
  int64_t index = 5;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_sparse(nullptr, &W.t, set.set, &index), S2FT_ERR_INVALID_ARGUMENT, "opt");
  EXPECT_EQ(index, -1);
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_sparse(opt.opt, nullptr, set.set, &index), S2FT_ERR_INVALID_ARGUMENT, "weight");
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_sparse(opt.opt, &W.t, nullptr, &index), S2FT_ERR_INVALID_ARGUMENT, "set");
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_sparse(opt.opt, &W.t, set.set, nullptr), S2FT_ERR_INVALID_ARGUMENT, "index");
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_sparse(opt.opt, &W.t, other.set, &index), S2FT_ERR_SHAPE,
                    "set was made for a [5, 4] weight but weight is [4, 5]");
  s2ft_tensor wd = W.t;
  wd.dtype.bits = 8;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_sparse(opt.opt, &wd, set.set, &index), S2FT_ERR_DTYPE, "weight");
  s2ft_tensor wg = W.t;
  wg.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_sparse(opt.opt, &wg, set.set, &index), S2FT_ERR_DEVICE, "weight");
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.opt, &W.t, set.set, &index));
  EXPECT_EQ(index, 0);
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_sparse(opt.opt, &W.t, overlap.set, &index), S2FT_ERR_INVALID_ARGUMENT,
                    "set overlaps parameter 0 (both train (1, 1)");
  const int64_t col1[1] = {1};
  const s2ft_slice crossing{S2FT_AXIS_COLUMNS, 0, 1, col1};
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_param(opt.opt, &W.t, &crossing, &index), S2FT_ERR_INVALID_ARGUMENT,
                    "slice overlaps parameter 0 (both train (0, 1)");
  const s2ft_slice rows{S2FT_AXIS_ROWS, 0, 2, nullptr};
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt.opt, &U.t, &rows, &index));
  EXPECT_EQ(index, 1);
  // Reindex errors.
  EXPECT_S2FT_ERROR(s2ft_optimizer_sparse_reindex(nullptr, 0, set.set), S2FT_ERR_INVALID_ARGUMENT, "opt");
  EXPECT_S2FT_ERROR(s2ft_optimizer_sparse_reindex(opt.opt, 2, set.set), S2FT_ERR_INVALID_ARGUMENT, "index 2");
  EXPECT_S2FT_ERROR(s2ft_optimizer_sparse_reindex(opt.opt, -1, set.set), S2FT_ERR_INVALID_ARGUMENT, "index -1");
  EXPECT_S2FT_ERROR(s2ft_optimizer_sparse_reindex(opt.opt, 1, set.set), S2FT_ERR_INVALID_ARGUMENT,
                    "parameter 1 is a slice");
  EXPECT_S2FT_ERROR(s2ft_optimizer_sparse_reindex(opt.opt, 0, nullptr), S2FT_ERR_INVALID_ARGUMENT, "new_set");
  EXPECT_S2FT_ERROR(s2ft_optimizer_sparse_reindex(opt.opt, 0, other.set), S2FT_ERR_SHAPE, "new_set was made for");
  // Gradient shapes of a sparse parameter.
  std::vector<float> g3(3, 0.1f), g4(4, 0.1f), g2x2(4, 0.1f), gu(8, 0.1f);
  s2ft_tensor grads[2];
  const int64_t three[1] = {3}, four[1] = {4};
  ASSERT_S2FT_OK(s2ft_tensor_cpu_f32_2d(&grads[1], gu.data(), 2, 4));
  ASSERT_S2FT_OK(s2ft_tensor_init(&grads[0], g4.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, four));
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt.opt, 0.1, grads, 2, nullptr), S2FT_ERR_SHAPE, "grads[0] must be [3] or [1, 3]");
  ASSERT_S2FT_OK(s2ft_tensor_cpu_f32_2d(&grads[0], g2x2.data(), 3, 1));
  EXPECT_S2FT_ERROR(s2ft_optimizer_step(opt.opt, 0.1, grads, 2, nullptr), S2FT_ERR_SHAPE, "grads[0]");
  ASSERT_S2FT_OK(s2ft_tensor_init(&grads[0], g3.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, three));
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt.opt, 0.1, grads, 2, nullptr));
  // After the first step: no new parameters, but reindexing is fine.
  EXPECT_S2FT_ERROR(s2ft_optimizer_add_sparse(opt.opt, &U.t, other.set, &index), S2FT_ERR_STATE, "before the first step");
  ASSERT_S2FT_OK(s2ft_optimizer_sparse_reindex(opt.opt, 0, overlap.set));
}

}  // namespace
