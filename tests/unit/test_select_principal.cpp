// LIFT's principal-weight score as an S2FT selection strategy
// (s2ft_statistics_add_principal, S2FT_STRATEGY_PRINCIPAL): weights built
// as W = Q_r diag(s_r) P_r^T + Q_t diag(s_t) P_t^T from one orthonormal
// basis, so that W_r (the top r terms) and every unit's norm in it are
// known exactly; the statistics against those norms, selections largest
// and smallest per layer and global, KV groups and single heads under GQA,
// a ranking that differs from the weight strategy's, W_r = W at full rank,
// 16-bit weights, the selection file's options, and the error paths.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <numeric>
#include <string>
#include <unistd.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

constexpr int32_t O = S2FT_TARGET_O, V = S2FT_TARGET_V, DOWN = S2FT_TARGET_DOWN, UP = S2FT_TARGET_UP;
using Mat = std::vector<double>;

// 2 layers, d_model 12, 4 query heads over 2 KV heads (head_dim 3), 10 channels.
const s2ft_model_shape kShape{2, 12, 4, 2, 3, 10};
const int64_t kRank = 3;

void weight_shape(int32_t t, int64_t *rows, int64_t *cols) {
  const int64_t d = kShape.d_model, hq = kShape.n_heads * kShape.head_dim, hkv = kShape.n_kv_heads * kShape.head_dim;
  switch (t) {
    case O: *rows = d, *cols = hq; return;
    case V: *rows = hkv, *cols = d; return;
    case DOWN: *rows = d, *cols = kShape.d_ff; return;
    default: *rows = kShape.d_ff, *cols = d; return;
  }
}

Mat random_orthonormal(Random &rng, int64_t n) {  // [n, n]
  Mat a(static_cast<size_t>(n * n));
  for (double &v : a) v = rng.uniform();
  for (int pass = 0; pass < 2; ++pass)
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t p = 0; p < j; ++p) {
        double d = 0;
        for (int64_t i = 0; i < n; ++i) d += a[static_cast<size_t>(i * n + p)] * a[static_cast<size_t>(i * n + j)];
        for (int64_t i = 0; i < n; ++i) a[static_cast<size_t>(i * n + j)] -= d * a[static_cast<size_t>(i * n + p)];
      }
      double s = 0;
      for (int64_t i = 0; i < n; ++i) s += a[static_cast<size_t>(i * n + j)] * a[static_cast<size_t>(i * n + j)];
      for (int64_t i = 0; i < n; ++i) a[static_cast<size_t>(i * n + j)] /= std::sqrt(s);
    }
  return a;
}

// A weight with singular values 8, 7, 6 and then a tail below
// tail_scale (< 6), and the squared norms of the lines of its rank-kRank
// part (the first kRank terms).
struct Crafted {
  int64_t rows = 0, cols = 0;
  Mat w, row_sq, col_sq, full_row_sq, full_col_sq;
};

Crafted craft(Random &rng, int64_t rows, int64_t cols, double tail_scale) {
  Crafted c;
  c.rows = rows;
  c.cols = cols;
  const int64_t p = std::min(rows, cols);
  const Mat Q = random_orthonormal(rng, rows), P = random_orthonormal(rng, cols);
  std::vector<double> sv(static_cast<size_t>(p));
  for (int64_t k = 0; k < p; ++k) sv[static_cast<size_t>(k)] = k < kRank ? 8.0 - k : tail_scale * (1.0 - 0.1 * k / p);
  c.w.assign(static_cast<size_t>(rows * cols), 0.0);
  c.row_sq.assign(static_cast<size_t>(rows), 0.0);
  c.col_sq.assign(static_cast<size_t>(cols), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j)
      for (int64_t k = 0; k < p; ++k)
        c.w[static_cast<size_t>(i * cols + j)] +=
            Q[static_cast<size_t>(i * rows + k)] * sv[static_cast<size_t>(k)] * P[static_cast<size_t>(j * cols + k)];
  for (int64_t k = 0; k < kRank; ++k) {
    const double s2 = sv[static_cast<size_t>(k)] * sv[static_cast<size_t>(k)];
    for (int64_t i = 0; i < rows; ++i) c.row_sq[static_cast<size_t>(i)] += s2 * std::pow(Q[static_cast<size_t>(i * rows + k)], 2);
    for (int64_t j = 0; j < cols; ++j) c.col_sq[static_cast<size_t>(j)] += s2 * std::pow(P[static_cast<size_t>(j * cols + k)], 2);
  }
  return c;
}

HostMatrix to_host(const Crafted &c, int32_t dtype = S2FT_F32) {
  HostMatrix m(dtype, c.rows, c.cols);
  for (int64_t i = 0; i < c.rows; ++i)
    for (int64_t j = 0; j < c.cols; ++j) m.set(i, j, static_cast<float>(c.w[static_cast<size_t>(i * c.cols + j)]));
  return m;
}

struct Stats {
  s2ft_statistics *stats = nullptr;
  explicit Stats(s2ft_context *ctx) {
    EXPECT_EQ(s2ft_statistics_create(ctx, &kShape, &stats), S2FT_OK) << s2ft_last_error();
  }
  ~Stats() { s2ft_statistics_destroy(stats); }
};

std::vector<double> get(const s2ft_statistics *st, int32_t l, int32_t t, int32_t kind) {
  int64_t n = 0;
  EXPECT_EQ(s2ft_statistics_get(st, l, t, kind, nullptr, 0, &n), S2FT_OK);
  std::vector<double> v(static_cast<size_t>(n));
  EXPECT_EQ(s2ft_statistics_get(st, l, t, kind, v.data(), n, &n), S2FT_OK) << s2ft_last_error();
  return v;
}

// Per statistic unit (query heads for O): sums of the unit's lines.
std::vector<double> unit_sums(int32_t t, const Crafted &c) {
  const bool cols = t == O || t == DOWN;
  const Mat &lines = cols ? c.col_sq : c.row_sq;
  const int64_t width = (t == O || t == V) ? kShape.head_dim : 1;
  std::vector<double> s(lines.size() / static_cast<size_t>(width), 0.0);
  for (size_t l = 0; l < lines.size(); ++l) s[l / static_cast<size_t>(width)] += lines[l];
  return s;
}

// The same per selection unit (KV groups for O under BY_GROUP).
std::vector<double> selection_scores(int32_t t, const Crafted &c, int32_t gran) {
  std::vector<double> s = unit_sums(t, c);
  if (t == O && gran == S2FT_HEADS_BY_GROUP) {
    const size_t r = static_cast<size_t>(kShape.n_heads / kShape.n_kv_heads);
    std::vector<double> g(s.size() / r, 0.0);
    for (size_t h = 0; h < s.size(); ++h) g[h / r] += s[h];
    s = g;
  }
  for (double &v : s) v = std::sqrt(v);
  return s;
}

struct Model {
  Crafted w[2][S2FT_NUM_TARGETS];
  explicit Model(uint64_t seed, double tail = 5.0) {
    Random rng(seed);
    for (int32_t l = 0; l < 2; ++l)
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        int64_t rows = 0, cols = 0;
        weight_shape(t, &rows, &cols);
        w[l][t] = craft(rng, rows, cols, tail);
      }
  }
  void feed(s2ft_statistics *st, bool principal, bool weight, int32_t rank = static_cast<int32_t>(kRank)) const {
    for (int32_t l = 0; l < 2; ++l)
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        HostMatrix h = to_host(w[l][t]);
        if (principal) ASSERT_S2FT_OK(s2ft_statistics_add_principal(st, l, t, &h.t, rank));
        if (weight) ASSERT_S2FT_OK(s2ft_statistics_add_weight(st, l, t, &h.t));
      }
  }
};

std::vector<int64_t> selected(const s2ft_selection *sel, int32_t l, int32_t t) {
  int64_t n = 0;
  EXPECT_EQ(s2ft_selection_indices(sel, l, t, S2FT_INDEX_UNITS, nullptr, 0, &n), S2FT_OK);
  std::vector<int64_t> v(static_cast<size_t>(n));
  EXPECT_EQ(s2ft_selection_indices(sel, l, t, S2FT_INDEX_UNITS, v.data(), n, &n), S2FT_OK);
  return v;
}

// Selection units as s2ft_selection_indices reports them: O's are query
// heads whatever the granularity (a KV group g stands for its r heads).
std::vector<int64_t> as_reported(int32_t t, int32_t gran, const std::vector<int64_t> &units) {
  if (t != O || gran != S2FT_HEADS_BY_GROUP) return units;
  const int64_t r = kShape.n_heads / kShape.n_kv_heads;
  std::vector<int64_t> heads;
  for (int64_t g : units)
    for (int64_t j = 0; j < r; ++j) heads.push_back(g * r + j);
  return heads;
}

// The k best of `scores` (indices ascending); the boundary must be clear.
std::vector<int64_t> best(const std::vector<double> &scores, int64_t k, bool largest) {
  std::vector<int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return largest ? scores[static_cast<size_t>(a)] > scores[static_cast<size_t>(b)]
                   : scores[static_cast<size_t>(a)] < scores[static_cast<size_t>(b)];
  });
  if (k < static_cast<int64_t>(order.size())) {
    EXPECT_GT(std::fabs(scores[static_cast<size_t>(order[static_cast<size_t>(k - 1)])] -
                        scores[static_cast<size_t>(order[static_cast<size_t>(k)])]),
              1e-6)
        << "the crafted scores tie at the boundary";
  }
  order.resize(static_cast<size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

s2ft_select_options options(int32_t order, int32_t gran, int32_t allocation, int32_t strategy = S2FT_STRATEGY_PRINCIPAL) {
  s2ft_select_options o;
  EXPECT_EQ(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION), S2FT_OK);
  o.targets = 0xFu;
  o.strategy = strategy;
  o.order = order;
  o.head_granularity = gran;
  o.allocation = allocation;
  const int64_t per_layer[S2FT_NUM_TARGETS] = {gran == S2FT_HEADS_BY_GROUP ? 1 : 2, 1, 4, 3};
  for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
    o.ratio[t] = 0.0;
    o.count[t] = allocation == S2FT_ALLOCATE_GLOBAL ? 2 * per_layer[t] : per_layer[t];
  }
  return o;
}

// ---- the statistics ----------------------------------------------------------------

TEST(PrincipalStatistics, KnownLineNorms) {
  const Model m(0x91);
  Context cx;
  Stats st(cx.ctx);
  m.feed(st.stats, true, false);
  for (int32_t l = 0; l < 2; ++l)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      SCOPED_TRACE("layer " + std::to_string(l) + " target " + std::to_string(t));
      const std::vector<double> want = unit_sums(t, m.w[l][t]), got = get(st.stats, l, t, S2FT_STAT_PRINCIPAL);
      ASSERT_EQ(got.size(), want.size());
      // Exact up to the f32 rounding of the weight (relative ~1e-7 of the largest).
      for (size_t u = 0; u < want.size(); ++u) EXPECT_NEAR(got[u], want[u], 1e-5 * 64.0) << "unit " << u;
    }
}

// At full rank W_r = W: the principal sums are the weight sums.
TEST(PrincipalStatistics, FullRankIsTheWeight) {
  const Model m(0x92);
  Context cx;
  for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
    Stats st(cx.ctx);
    int64_t rows = 0, cols = 0;
    weight_shape(t, &rows, &cols);
    HostMatrix h = to_host(m.w[0][t]);
    ASSERT_S2FT_OK(s2ft_statistics_add_principal(st.stats, 0, t, &h.t, static_cast<int32_t>(std::min(rows, cols))));
    ASSERT_S2FT_OK(s2ft_statistics_add_weight(st.stats, 0, t, &h.t));
    const std::vector<double> p = get(st.stats, 0, t, S2FT_STAT_PRINCIPAL), w = get(st.stats, 0, t, S2FT_STAT_WEIGHT);
    ASSERT_EQ(p.size(), w.size());
    for (size_t u = 0; u < p.size(); ++u) EXPECT_NEAR(p[u], w[u], 1e-10 * std::max(1.0, w[u])) << "target " << t;
  }
}

// A bf16 weight scores as its values do in f32 (the SVD reads values).
TEST(PrincipalStatistics, SixteenBitWeights) {
  const Model m(0x93);
  Context cx;
  for (const int32_t dtype : {S2FT_BF16, S2FT_F16}) {
    Stats a(cx.ctx), b(cx.ctx);
    HostMatrix h16 = to_host(m.w[1][DOWN], dtype), h32(S2FT_F32, h16.rows, h16.cols);
    for (int64_t i = 0; i < h16.rows; ++i)
      for (int64_t j = 0; j < h16.cols; ++j) h32.set(i, j, h16.get(i, j));
    ASSERT_S2FT_OK(s2ft_statistics_add_principal(a.stats, 1, DOWN, &h16.t, 2));
    ASSERT_S2FT_OK(s2ft_statistics_add_principal(b.stats, 1, DOWN, &h32.t, 2));
    EXPECT_EQ(get(a.stats, 1, DOWN, S2FT_STAT_PRINCIPAL), get(b.stats, 1, DOWN, S2FT_STAT_PRINCIPAL));
  }
}

// A second record for the same (layer, target) replaces the first.
TEST(PrincipalStatistics, Replaces) {
  const Model m(0x94);
  Context cx;
  Stats st(cx.ctx);
  HostMatrix a = to_host(m.w[0][UP]), b = to_host(m.w[1][UP]);
  ASSERT_S2FT_OK(s2ft_statistics_add_principal(st.stats, 0, UP, &a.t, 3));
  ASSERT_S2FT_OK(s2ft_statistics_add_principal(st.stats, 0, UP, &b.t, 3));
  const std::vector<double> want = unit_sums(UP, m.w[1][UP]), got = get(st.stats, 0, UP, S2FT_STAT_PRINCIPAL);
  for (size_t u = 0; u < want.size(); ++u) EXPECT_NEAR(got[u], want[u], 1e-3);
}

// ---- the strategy ------------------------------------------------------------------

struct SelectCase {
  int32_t order, granularity, allocation;
};

class PrincipalSelect : public ::testing::TestWithParam<SelectCase> {};

TEST_P(PrincipalSelect, PicksByPrincipalNorm) {
  const SelectCase c = GetParam();
  const bool largest = c.order == S2FT_ORDER_LARGEST;
  const Model m(0xa0 + static_cast<uint64_t>(c.order * 4 + c.granularity * 2 + c.allocation));
  Context cx;
  Stats st(cx.ctx);
  m.feed(st.stats, true, false);
  const s2ft_select_options o = options(c.order, c.granularity, c.allocation);
  Selection sel;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &kShape, &o, st.stats, &sel.sel));
  for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
    SCOPED_TRACE("target " + std::to_string(t));
    if (c.allocation == S2FT_ALLOCATE_PER_LAYER) {
      for (int32_t l = 0; l < 2; ++l)
        EXPECT_EQ(selected(sel.sel, l, t),
                  as_reported(t, c.granularity, best(selection_scores(t, m.w[l][t], c.granularity), o.count[t], largest)))
            << "layer " << l;
    } else {
      std::vector<double> all;  // layer-major
      const std::vector<double> s0 = selection_scores(t, m.w[0][t], c.granularity),
                                s1 = selection_scores(t, m.w[1][t], c.granularity);
      all.insert(all.end(), s0.begin(), s0.end());
      all.insert(all.end(), s1.begin(), s1.end());
      const std::vector<int64_t> picked = best(all, o.count[t], largest);
      std::vector<int64_t> l0, l1;
      for (int64_t i : picked) (i < static_cast<int64_t>(s0.size()) ? l0 : l1).push_back(i < static_cast<int64_t>(s0.size()) ? i : i - static_cast<int64_t>(s0.size()));
      EXPECT_EQ(selected(sel.sel, 0, t), as_reported(t, c.granularity, l0));
      EXPECT_EQ(selected(sel.sel, 1, t), as_reported(t, c.granularity, l1));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Orders, PrincipalSelect,
    ::testing::Values(SelectCase{S2FT_ORDER_LARGEST, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_PER_LAYER},
                      SelectCase{S2FT_ORDER_SMALLEST, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_PER_LAYER},
                      SelectCase{S2FT_ORDER_LARGEST, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_PER_LAYER},
                      SelectCase{S2FT_ORDER_SMALLEST, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_PER_LAYER},
                      SelectCase{S2FT_ORDER_LARGEST, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_GLOBAL},
                      SelectCase{S2FT_ORDER_SMALLEST, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_GLOBAL}),
    [](const ::testing::TestParamInfo<SelectCase> &i) {
      return std::string(i.param.order == S2FT_ORDER_LARGEST ? "largest" : "smallest") +
             (i.param.granularity == S2FT_HEADS_BY_GROUP ? "_groups" : "_single") +
             (i.param.allocation == S2FT_ALLOCATE_GLOBAL ? "_global" : "_per_layer");
    });

// With a heavy spectral tail, the whole weight's norms rank the channels
// differently from their norms in W_r: the two strategies disagree, and
// the principal one follows W_r.
TEST(PrincipalSelectVsWeight, DifferentRanking) {
  const Model m(0xb7, 5.8);
  Context cx;
  Stats st(cx.ctx);
  m.feed(st.stats, true, true);
  s2ft_select_options op = options(S2FT_ORDER_LARGEST, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_PER_LAYER);
  s2ft_select_options ow = options(S2FT_ORDER_LARGEST, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_PER_LAYER, S2FT_STRATEGY_WEIGHT);
  Selection sp, sw;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &kShape, &op, st.stats, &sp.sel));
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &kShape, &ow, st.stats, &sw.sel));
  int differ = 0;
  for (int32_t l = 0; l < 2; ++l)
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      EXPECT_EQ(selected(sp.sel, l, t), best(selection_scores(t, m.w[l][t], S2FT_HEADS_SINGLE), op.count[t], true));
      differ += selected(sp.sel, l, t) != selected(sw.sel, l, t);
    }
  EXPECT_GT(differ, 0);
}

// The selection file names the strategy and the rank used; mixed ranks
// leave the rank out.
TEST(PrincipalSelectFile, OptionsRecordTheRank) {
  const Model m(0xc1);
  Context cx;
  char dir[] = "/tmp/s2ft-principal-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/sel.json";
  for (const bool mixed : {false, true}) {
    Stats st(cx.ctx);
    m.feed(st.stats, true, false);
    if (mixed) {
      HostMatrix h = to_host(m.w[1][V]);
      ASSERT_S2FT_OK(s2ft_statistics_add_principal(st.stats, 1, V, &h.t, 2));
    }
    const s2ft_select_options o = options(S2FT_ORDER_LARGEST, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_PER_LAYER);
    Selection sel;
    ASSERT_S2FT_OK(s2ft_select(cx.ctx, &kShape, &o, st.stats, &sel.sel));
    ASSERT_S2FT_OK(s2ft_selection_save(sel.sel, path.c_str()));
    std::ifstream f(path);
    const nlohmann::json j = nlohmann::json::parse(f);
    EXPECT_EQ(j["options"]["strategy"], "principal");
    if (mixed) {
      EXPECT_FALSE(j["options"].contains("principal_rank"));
    } else {
      EXPECT_EQ(j["options"]["principal_rank"], kRank);
    }
    Selection back;
    ASSERT_S2FT_OK(s2ft_selection_load(path.c_str(), &back.sel));
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) EXPECT_EQ(selected(back.sel, 1, t), selected(sel.sel, 1, t));
  }
  std::remove(path.c_str());
  rmdir(dir);
}

// ---- errors ------------------------------------------------------------------------

TEST(PrincipalErrors, AddPrincipal) {
  const Model m(0xd0);
  Context cx;
  Stats st(cx.ctx);
  HostMatrix o = to_host(m.w[0][O]);
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(nullptr, 0, O, &o.t, 2), S2FT_ERR_INVALID_ARGUMENT, "stats");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(st.stats, 2, O, &o.t, 2), S2FT_ERR_INVALID_ARGUMENT, "layer 2");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(st.stats, 0, 7, &o.t, 2), S2FT_ERR_INVALID_ARGUMENT, "target 7");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(st.stats, 0, O, nullptr, 2), S2FT_ERR_INVALID_ARGUMENT,
                    "weight is NULL");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(st.stats, 0, DOWN, &o.t, 2), S2FT_ERR_SHAPE, "weight");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(st.stats, 0, O, &o.t, 0), S2FT_ERR_INVALID_ARGUMENT,
                    "rank is 0; it must be in [1, min(rows, cols) = 12]");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(st.stats, 0, O, &o.t, 13), S2FT_ERR_INVALID_ARGUMENT, "rank is 13");
  s2ft_tensor bad = o.t;
  bad.dtype.bits = 64;
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(st.stats, 0, O, &bad, 2), S2FT_ERR_DTYPE, "weight");
  s2ft_tensor cuda = o.t;
  cuda.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(st.stats, 0, O, &cuda, 2), S2FT_ERR_DEVICE, "weight");
  o.set(2, 5, INFINITY);
  EXPECT_S2FT_ERROR(s2ft_statistics_add_principal(st.stats, 0, O, &o.t, 2), S2FT_ERR_INVALID_ARGUMENT, "non-finite");
  // Nothing was recorded by the failed calls.
  double out[4];
  int64_t n = 0;
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 0, O, S2FT_STAT_PRINCIPAL, out, 4, &n), S2FT_ERR_STATE,
                    "no principal statistics for layer 0 target O (record the weight with "
                    "s2ft_statistics_add_principal");
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 0, O, 4, out, 4, &n), S2FT_ERR_INVALID_ARGUMENT, "kind 4");
}

TEST(PrincipalErrors, SelectWithoutRecords) {
  const Model m(0xd1);
  Context cx;
  Stats st(cx.ctx);
  m.feed(st.stats, false, true);  // weight statistics only
  const s2ft_select_options o = options(S2FT_ORDER_LARGEST, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_PER_LAYER);
  s2ft_selection *sel = nullptr;
  EXPECT_S2FT_ERROR(s2ft_select(cx.ctx, &kShape, &o, st.stats, &sel), S2FT_ERR_INVALID_ARGUMENT,
                    "no principal statistics for layer 0 target O");
  EXPECT_EQ(sel, nullptr);
  EXPECT_S2FT_ERROR(s2ft_select(cx.ctx, &kShape, &o, nullptr, &sel), S2FT_ERR_INVALID_ARGUMENT,
                    "stats is NULL but the principal strategy");
  s2ft_select_options bad = o;
  bad.strategy = 6;
  EXPECT_S2FT_ERROR(s2ft_select(cx.ctx, &kShape, &bad, st.stats, &sel), S2FT_ERR_INVALID_ARGUMENT, "opts->strategy 6");
}

}  // namespace
