// Selection: statistics against float64 references, every strategy's
// ranking on crafted statistics, budgets, reproducibility, GQA
// granularities, the index/range/permutation accessors, selection files
// (round trip and hostile input), and one test per error path.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

constexpr int32_t O = S2FT_TARGET_O, V = S2FT_TARGET_V, DOWN = S2FT_TARGET_DOWN, UP = S2FT_TARGET_UP;
constexpr uint32_t ALL_TARGETS = 0xFu;

struct Stats {
  s2ft_statistics *stats = nullptr;
  Stats(s2ft_context *ctx, const s2ft_model_shape &shape) {
    EXPECT_EQ(s2ft_statistics_create(ctx, &shape, &stats), S2FT_OK) << s2ft_last_error();
  }
  ~Stats() { s2ft_statistics_destroy(stats); }
};

// Options with no budget set: the test sets exactly what it needs.
s2ft_select_options bare_options(uint32_t targets, int32_t strategy, int32_t granularity = S2FT_HEADS_BY_GROUP) {
  s2ft_select_options o;
  EXPECT_EQ(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION), S2FT_OK);
  for (int t = 0; t < S2FT_NUM_TARGETS; ++t) o.ratio[t] = 0.0, o.count[t] = 0;
  o.targets = targets;
  o.strategy = strategy;
  o.head_granularity = granularity;
  return o;
}

std::vector<int64_t> indices(const s2ft_selection *sel, int32_t layer, int32_t target, uint32_t flags) {
  int64_t n = -1;
  EXPECT_EQ(s2ft_selection_indices(sel, layer, target, flags, nullptr, 0, &n), S2FT_OK) << s2ft_last_error();
  std::vector<int64_t> v(static_cast<size_t>(n), -1);
  EXPECT_EQ(s2ft_selection_indices(sel, layer, target, flags, v.data(), n, &n), S2FT_OK) << s2ft_last_error();
  return v;
}

std::vector<int64_t> permutation(const s2ft_selection *sel, int32_t layer, int32_t kind) {
  int64_t n = -1;
  EXPECT_EQ(s2ft_selection_permutation(sel, layer, kind, nullptr, 0, &n), S2FT_OK);
  std::vector<int64_t> p(static_cast<size_t>(n), -1);
  EXPECT_EQ(s2ft_selection_permutation(sel, layer, kind, p.data(), n, &n), S2FT_OK);
  return p;
}

int64_t units_of(const s2ft_model_shape &s, int32_t t, int32_t gran) {
  if (t == O) return gran == S2FT_HEADS_BY_GROUP ? s.n_kv_heads : s.n_heads;
  if (t == V) return s.n_kv_heads;
  return s.d_ff;
}

// k = max(1, round half up(ratio * units)).
int64_t expected_k(double ratio, int64_t units) {
  return std::max<int64_t>(1, static_cast<int64_t>(std::floor(ratio * static_cast<double>(units) + 0.5 + 1e-9)));
}

// Selection units -> query heads for O under BY_GROUP.
std::vector<int64_t> to_query_heads(const s2ft_model_shape &s, int32_t gran, const std::vector<int64_t> &units) {
  if (gran == S2FT_HEADS_SINGLE) return units;
  const int64_t r = s.n_heads / s.n_kv_heads;
  std::vector<int64_t> h;
  for (int64_t g : units)
    for (int64_t j = 0; j < r; ++j) h.push_back(g * r + j);
  return h;
}

// ---- the permutation rules, written independently of the library ----------------

struct RefPerm {
  std::vector<int64_t> heads, kv, channels;
};

int pair_class(bool a, bool b) { return a && !b ? 0 : (a && b ? 1 : (!a && b ? 2 : 3)); }

RefPerm ref_permutation(const s2ft_model_shape &s, const std::set<int64_t> &o_heads, const std::set<int64_t> &v_groups,
                        const std::set<int64_t> &down, const std::set<int64_t> &up) {
  const int64_t r = s.n_heads / s.n_kv_heads;
  std::set<int64_t> o_groups;
  for (int64_t h : o_heads) o_groups.insert(h / r);
  RefPerm p;
  for (int c = 0; c < 4; ++c)
    for (int64_t g = 0; g < s.n_kv_heads; ++g)
      if (pair_class(o_groups.count(g) > 0, v_groups.count(g) > 0) == c) p.kv.push_back(g);
  for (int64_t g : p.kv) {
    for (int64_t j = 0; j < r; ++j)
      if (o_heads.count(g * r + j)) p.heads.push_back(g * r + j);
    for (int64_t j = 0; j < r; ++j)
      if (!o_heads.count(g * r + j)) p.heads.push_back(g * r + j);
  }
  for (int c = 0; c < 4; ++c)
    for (int64_t ch = 0; ch < s.d_ff; ++ch)
      if (pair_class(down.count(ch) > 0, up.count(ch) > 0) == c) p.channels.push_back(ch);
  return p;
}

std::set<int64_t> as_set(const std::vector<int64_t> &v) { return std::set<int64_t>(v.begin(), v.end()); }

// Checks every accessor of every (layer, target) against the rules.
void expect_consistent(const s2ft_selection *sel) {
  s2ft_model_shape s{};
  ASSERT_EQ(s2ft_selection_shape(sel, &s), S2FT_OK);
  const int64_t hd = s.head_dim, r = s.n_heads / s.n_kv_heads;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    SCOPED_TRACE("layer " + std::to_string(l));
    const std::vector<int64_t> ph = permutation(sel, l, S2FT_PERM_HEADS);
    const std::vector<int64_t> pk = permutation(sel, l, S2FT_PERM_KV_HEADS);
    const std::vector<int64_t> pc = permutation(sel, l, S2FT_PERM_CHANNELS);
    ASSERT_EQ(ph.size(), static_cast<size_t>(s.n_heads));
    ASSERT_EQ(pk.size(), static_cast<size_t>(s.n_kv_heads));
    ASSERT_EQ(pc.size(), static_cast<size_t>(s.d_ff));
    // Whole KV groups move together: position p reads KV position p / r.
    for (size_t p = 0; p < ph.size(); ++p) EXPECT_EQ(ph[p] / r, pk[p / static_cast<size_t>(r)]) << p;
    const RefPerm want = ref_permutation(s, as_set(indices(sel, l, O, S2FT_INDEX_UNITS)),
                                         as_set(indices(sel, l, V, S2FT_INDEX_UNITS)),
                                         as_set(indices(sel, l, DOWN, S2FT_INDEX_UNITS)),
                                         as_set(indices(sel, l, UP, S2FT_INDEX_UNITS)));
    EXPECT_EQ(ph, want.heads);
    EXPECT_EQ(pk, want.kv);
    EXPECT_EQ(pc, want.channels);

    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      SCOPED_TRACE(std::string("target ") + std::to_string(t));
      const std::vector<int64_t> &perm = t == O ? ph : (t == V ? pk : pc);
      const int64_t width = t == O || t == V ? hd : 1;
      std::vector<int64_t> pos(perm.size());
      for (size_t p = 0; p < perm.size(); ++p) pos[static_cast<size_t>(perm[p])] = static_cast<int64_t>(p);

      const std::vector<int64_t> ub = indices(sel, l, t, S2FT_INDEX_UNITS | S2FT_INDEX_BASE);
      const std::vector<int64_t> lb = indices(sel, l, t, S2FT_INDEX_LINES | S2FT_INDEX_BASE);
      const std::vector<int64_t> up = indices(sel, l, t, S2FT_INDEX_UNITS | S2FT_INDEX_PERMUTED);
      const std::vector<int64_t> lp = indices(sel, l, t, S2FT_INDEX_LINES | S2FT_INDEX_PERMUTED);
      EXPECT_TRUE(std::is_sorted(ub.begin(), ub.end()));
      std::vector<int64_t> want_lb, want_up, want_lp;
      for (int64_t u : ub) {
        for (int64_t j = 0; j < width; ++j) want_lb.push_back(u * width + j);
        want_up.push_back(pos[static_cast<size_t>(u)]);
      }
      std::sort(want_up.begin(), want_up.end());
      for (int64_t p : want_up)
        for (int64_t j = 0; j < width; ++j) want_lp.push_back(p * width + j);
      EXPECT_EQ(lb, want_lb);
      EXPECT_EQ(up, want_up);
      EXPECT_EQ(lp, want_lp);

      int64_t begin = -1, count = -1;
      const s2ft_status st = s2ft_selection_range(sel, l, t, &begin, &count);
      const bool contiguous = lp.empty() || lp.back() - lp.front() + 1 == static_cast<int64_t>(lp.size());
      if (contiguous) {
        ASSERT_EQ(st, S2FT_OK) << s2ft_last_error();
        EXPECT_EQ(count, static_cast<int64_t>(lp.size()));
        if (!lp.empty()) { EXPECT_EQ(begin, lp.front()); }
      } else {
        EXPECT_EQ(st, S2FT_ERR_STATE);
      }
    }
    // The promised ranges: DOWN from 0, UP right after the DOWN-only channels.
    const std::set<int64_t> d = as_set(indices(sel, l, DOWN, S2FT_INDEX_UNITS)), u = as_set(indices(sel, l, UP, S2FT_INDEX_UNITS));
    int64_t down_only = 0;
    for (int64_t c : d) down_only += u.count(c) ? 0 : 1;
    int64_t b = -1, n = -1;
    ASSERT_EQ(s2ft_selection_range(sel, l, DOWN, &b, &n), S2FT_OK);
    EXPECT_EQ(n, static_cast<int64_t>(d.size()));
    if (n > 0) { EXPECT_EQ(b, 0); }
    ASSERT_EQ(s2ft_selection_range(sel, l, UP, &b, &n), S2FT_OK);
    EXPECT_EQ(n, static_cast<int64_t>(u.size()));
    if (n > 0) { EXPECT_EQ(b, down_only); }
    ASSERT_EQ(s2ft_selection_range(sel, l, V, &b, &n), S2FT_OK) << "V rows are always contiguous";
  }
}

// ---- calibration data with float64 reference sums -------------------------------------

// Sum of squares per unit of `width` consecutive columns (by_columns) or rows.
std::vector<double> ref_unit_sums(const std::vector<double> &m, int64_t rows, int64_t cols, bool by_columns,
                                  int64_t width) {
  std::vector<double> s(static_cast<size_t>((by_columns ? cols : rows) / width), 0.0);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      const double v = m[static_cast<size_t>(i * cols + j)];
      s[static_cast<size_t>((by_columns ? j : i) / width)] += v * v;
    }
  return s;
}

struct WeightShape {
  int64_t out, in;
};
WeightShape weight_shape(const s2ft_model_shape &s, int32_t t) {
  const int64_t nq = int64_t{s.n_heads} * s.head_dim, nkv = int64_t{s.n_kv_heads} * s.head_dim;
  switch (t) {
    case O: return {s.d_model, nq};
    case V: return {nkv, s.d_model};
    case DOWN: return {s.d_model, s.d_ff};
    default: return {s.d_ff, s.d_model};
  }
}
bool column_target(int32_t t) { return t == O || t == DOWN; }
int64_t width_of(const s2ft_model_shape &s, int32_t t) { return t == O || t == V ? s.head_dim : 1; }

// Random weights, activations and gradients for every (layer, target) with
// the float64 sums the library must produce (per statistic unit: query
// heads for O). Units get different scales, so scores are well separated.
struct Calib {
  s2ft_model_shape shape;
  // [layer][target]
  std::vector<std::array<std::vector<double>, 4>> w, a, g;
  std::vector<std::array<HostMatrix, 4>> weights;
  std::vector<std::array<std::vector<HostMatrix>, 4>> act_x;              // O, DOWN only
  std::vector<std::array<std::vector<std::pair<HostMatrix, HostMatrix>>, 4>> grad_xdy;

  Calib(const s2ft_model_shape &s, uint64_t seed) : shape(s) {
    Random rng(seed);
    const size_t L = static_cast<size_t>(s.n_layers);
    w.resize(L), a.resize(L), g.resize(L), weights.resize(L), act_x.resize(L), grad_xdy.resize(L);
    for (size_t l = 0; l < L; ++l)
      for (int32_t t = 0; t < 4; ++t) {
        const WeightShape ws = weight_shape(s, t);
        const bool cols = column_target(t);
        const int64_t wd = width_of(s, t);
        // Weight with a per-unit scale.
        HostMatrix m(S2FT_F32, ws.out, ws.in);
        const int64_t nunits = (cols ? ws.in : ws.out) / wd;
        std::vector<double> scale(static_cast<size_t>(nunits));
        for (double &x : scale) x = rng.uniform(0.2, 3.0);
        for (int64_t i = 0; i < ws.out; ++i)
          for (int64_t j = 0; j < ws.in; ++j)
            m.set(i, j, static_cast<float>(rng.uniform() * scale[static_cast<size_t>((cols ? j : i) / wd)]));
        w[l][static_cast<size_t>(t)] = ref_unit_sums(m.to_double(), ws.out, ws.in, cols, wd);
        weights[l][static_cast<size_t>(t)] = m;

        // Two activation batches for O and DOWN.
        if (cols) {
          std::vector<double> sum(static_cast<size_t>(nunits), 0.0);
          for (int64_t T : {5, 3}) {
            HostMatrix x(S2FT_F32, T, ws.in);
            for (int64_t i = 0; i < T; ++i)
              for (int64_t j = 0; j < ws.in; ++j)
                x.set(i, j, static_cast<float>(rng.uniform() * scale[static_cast<size_t>(j / wd)] * 0.7 + 0.1));
            const std::vector<double> part = ref_unit_sums(x.to_double(), T, ws.in, true, wd);
            for (size_t u = 0; u < sum.size(); ++u) sum[u] += part[u];
            act_x[l][static_cast<size_t>(t)].push_back(x);
          }
          a[l][static_cast<size_t>(t)] = sum;
        }

        // Two gradient batches: dW = dy^T x in float64.
        std::vector<double> gsum(static_cast<size_t>(nunits), 0.0);
        for (int64_t T : {4, 6}) {
          HostMatrix x(S2FT_F32, T, ws.in), dy(S2FT_F32, T, ws.out);
          x.fill_random(rng);
          dy.fill_random(rng, 0.5);
          const std::vector<double> dw = ref_matmul(dy.to_double(), T, ws.out, true, x.to_double(), T, ws.in, false);
          const std::vector<double> part = ref_unit_sums(dw, ws.out, ws.in, cols, wd);
          for (size_t u = 0; u < gsum.size(); ++u) gsum[u] += part[u];
          grad_xdy[l][static_cast<size_t>(t)].emplace_back(x, dy);
        }
        g[l][static_cast<size_t>(t)] = gsum;
      }
    // V activations come from O's columns (per KV group), UP's from DOWN's.
    const int64_t r = s.n_heads / s.n_kv_heads;
    for (size_t l = 0; l < L; ++l) {
      std::vector<double> v(static_cast<size_t>(s.n_kv_heads), 0.0);
      for (int64_t h = 0; h < s.n_heads; ++h) v[static_cast<size_t>(h / r)] += a[l][O][static_cast<size_t>(h)];
      a[l][V] = v;
      a[l][UP] = a[l][DOWN];
    }
  }

  void feed(s2ft_statistics *st, bool weight, bool activation, bool gradient) {
    for (int32_t l = 0; l < shape.n_layers; ++l)
      for (int32_t t = 0; t < 4; ++t) {
        const size_t L = static_cast<size_t>(l), T = static_cast<size_t>(t);
        if (weight) { ASSERT_S2FT_OK(s2ft_statistics_add_weight(st, l, t, &weights[L][T].t)); }
        if (activation)
          for (auto &x : act_x[L][T]) ASSERT_S2FT_OK(s2ft_statistics_add_activation(st, l, t, &x.t));
        if (gradient)
          for (auto &p : grad_xdy[L][T]) ASSERT_S2FT_OK(s2ft_statistics_add_gradient(st, l, t, &p.first.t, &p.second.t));
      }
  }

  // Sums in selection units (KV groups for O under BY_GROUP).
  std::vector<double> sel_sums(const std::vector<double> &stat_sums, int32_t t, int32_t gran) const {
    if (t != O || gran == S2FT_HEADS_SINGLE) return stat_sums;
    const int64_t r = shape.n_heads / shape.n_kv_heads;
    std::vector<double> gs(static_cast<size_t>(shape.n_kv_heads), 0.0);
    for (size_t h = 0; h < stat_sums.size(); ++h) gs[h / static_cast<size_t>(r)] += stat_sums[h];
    return gs;
  }

  double score(int32_t strategy, int32_t l, int32_t t, int32_t gran, int64_t u) const {
    const size_t L = static_cast<size_t>(l), T = static_cast<size_t>(t), U = static_cast<size_t>(u);
    switch (strategy) {
      case S2FT_STRATEGY_WEIGHT: return std::sqrt(sel_sums(w[L][T], t, gran)[U]);
      case S2FT_STRATEGY_ACTIVATION: return std::sqrt(sel_sums(a[L][T], t, gran)[U]);
      case S2FT_STRATEGY_WEIGHT_ACT:
        return std::sqrt(sel_sums(w[L][T], t, gran)[U]) * std::sqrt(sel_sums(a[L][T], t, gran)[U]);
      default: return std::sqrt(sel_sums(g[L][T], t, gran)[U]);
    }
  }
};

const s2ft_model_shape kRankShape{3, 7, 6, 2, 3, 11};  // GQA with r = 3, odd sizes

// ---- options and defaults -----------------------------------------------------------------

TEST(SelectOptions, InitGivesDocumentedDefaults) {
  s2ft_select_options o;
  std::memset(&o, 0x5a, sizeof o);
  ASSERT_S2FT_OK(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION));
  EXPECT_EQ(o.version, S2FT_SELECT_OPTIONS_VERSION);
  EXPECT_EQ(o.targets, S2FT_TARGET_BIT(O) | S2FT_TARGET_BIT(DOWN));
  EXPECT_EQ(o.strategy, S2FT_STRATEGY_RANDOM);
  EXPECT_EQ(o.order, S2FT_ORDER_LARGEST);
  EXPECT_EQ(o.allocation, S2FT_ALLOCATE_PER_LAYER);
  EXPECT_EQ(o.head_granularity, S2FT_HEADS_BY_GROUP);
  EXPECT_EQ(o.seed, 0u);
  EXPECT_EQ(o.ratio[O], 0.05);
  EXPECT_EQ(o.ratio[DOWN], 0.02);
  EXPECT_EQ(o.ratio[V], 0.0);
  EXPECT_EQ(o.ratio[UP], 0.0);
  for (int t = 0; t < 4; ++t) EXPECT_EQ(o.count[t], 0);
}

TEST(SelectOptions, DefaultsSelectOnARealisticShape) {
  Context cx;
  const s2ft_model_shape s{4, 256, 32, 8, 8, 1000};
  s2ft_select_options o;
  ASSERT_S2FT_OK(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION));
  Selection sel;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, nullptr, &sel.sel));
  uint32_t targets = 0;
  ASSERT_S2FT_OK(s2ft_selection_targets(sel.sel, &targets));
  EXPECT_EQ(targets, S2FT_TARGET_BIT(O) | S2FT_TARGET_BIT(DOWN));
  for (int32_t l = 0; l < 4; ++l) {
    // 5% of 8 groups rounds to 0 -> at least 1 group = 4 query heads; 2% of 1000 = 20 channels.
    EXPECT_EQ(indices(sel.sel, l, O, S2FT_INDEX_UNITS).size(), 4u);
    EXPECT_EQ(indices(sel.sel, l, DOWN, S2FT_INDEX_UNITS).size(), 20u);
  }
  expect_consistent(sel.sel);
}

TEST(SelectOptions, InitNullOptions) {
  EXPECT_S2FT_ERROR(s2ft_select_options_init(nullptr, S2FT_SELECT_OPTIONS_VERSION), S2FT_ERR_INVALID_ARGUMENT, "opts");
}

TEST(SelectOptions, InitUnknownVersion) {
  s2ft_select_options o;
  EXPECT_S2FT_ERROR(s2ft_select_options_init(&o, 99), S2FT_ERR_INVALID_ARGUMENT, "version 99");
}

// ---- random strategy: reproducibility -------------------------------------------------------

TEST(SelectRandom, SameSeedSameResultDifferentSeedDifferent) {
  Context cx;
  const s2ft_model_shape s{4, 32, 8, 4, 4, 200};
  s2ft_select_options o = bare_options(ALL_TARGETS, S2FT_STRATEGY_RANDOM, S2FT_HEADS_SINGLE);
  o.ratio[O] = 0.25, o.ratio[V] = 0.5, o.ratio[DOWN] = 0.1, o.count[UP] = 7;
  auto run = [&](uint64_t seed) {
    o.seed = seed;
    Selection sel;
    EXPECT_EQ(s2ft_select(cx.ctx, &s, &o, nullptr, &sel.sel), S2FT_OK);
    std::vector<std::vector<int64_t>> all;
    for (int32_t l = 0; l < s.n_layers; ++l)
      for (int32_t t = 0; t < 4; ++t) all.push_back(indices(sel.sel, l, t, S2FT_INDEX_UNITS));
    return all;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
  EXPECT_NE(run(0), run(1));
  // Different layers draw from different streams.
  const auto r = run(7);
  EXPECT_NE(r[DOWN], r[4 + DOWN]);
}

TEST(SelectRandom, LargestAndSmallestAreComplementaryAtHalf) {
  Context cx;
  const s2ft_model_shape s{2, 8, 4, 4, 2, 10};
  s2ft_select_options o = bare_options(S2FT_TARGET_BIT(DOWN), S2FT_STRATEGY_RANDOM);
  o.count[DOWN] = 5;
  o.seed = 3;
  Selection a, b;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, nullptr, &a.sel));
  o.order = S2FT_ORDER_SMALLEST;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, nullptr, &b.sel));
  for (int32_t l = 0; l < 2; ++l) {
    std::set<int64_t> u = as_set(indices(a.sel, l, DOWN, S2FT_INDEX_UNITS));
    for (int64_t c : indices(b.sel, l, DOWN, S2FT_INDEX_UNITS)) EXPECT_TRUE(u.insert(c).second) << c;
    EXPECT_EQ(u.size(), 10u);
  }
}

TEST(SelectRandom, StatisticsAreNotNeededAndIgnored) {
  Context cx;
  const s2ft_model_shape s{2, 8, 4, 2, 2, 10};
  Stats empty(cx.ctx, s);
  s2ft_select_options o = bare_options(ALL_TARGETS, S2FT_STRATEGY_RANDOM);
  o.count[O] = 1, o.count[V] = 1, o.count[DOWN] = 2, o.count[UP] = 3;
  Selection a, b;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, nullptr, &a.sel));
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, empty.stats, &b.sel));
  for (int32_t l = 0; l < 2; ++l)
    for (int32_t t = 0; t < 4; ++t) EXPECT_EQ(indices(a.sel, l, t, 0), indices(b.sel, l, t, 0));
}

// ---- budgets ----------------------------------------------------------------------------------

struct BudgetCase {
  const char *name;
  s2ft_model_shape shape;
  int32_t granularity, allocation;
  double ratio[4];
  int64_t count[4];
};

class Budgets : public ::testing::TestWithParam<BudgetCase> {};

TEST_P(Budgets, MetExactly) {
  const BudgetCase c = GetParam();
  Context cx;
  uint32_t targets = 0;
  for (int t = 0; t < 4; ++t)
    if (c.ratio[t] != 0 || c.count[t] != 0) targets |= S2FT_TARGET_BIT(t);
  s2ft_select_options o = bare_options(targets, S2FT_STRATEGY_RANDOM, c.granularity);
  o.allocation = c.allocation;
  for (int t = 0; t < 4; ++t) o.ratio[t] = c.ratio[t], o.count[t] = c.count[t];
  for (uint64_t seed : {0u, 11u}) {
    o.seed = seed;
    Selection sel;
    ASSERT_S2FT_OK(s2ft_select(cx.ctx, &c.shape, &o, nullptr, &sel.sel));
    for (int32_t t = 0; t < 4; ++t) {
      if (!(targets & S2FT_TARGET_BIT(t))) {
        for (int32_t l = 0; l < c.shape.n_layers; ++l) EXPECT_TRUE(indices(sel.sel, l, t, 0).empty());
        continue;
      }
      const int64_t per_layer = units_of(c.shape, t, c.granularity);
      const int64_t avail = c.allocation == S2FT_ALLOCATE_GLOBAL ? per_layer * c.shape.n_layers : per_layer;
      const int64_t k = c.count[t] != 0 ? c.count[t] : expected_k(c.ratio[t], avail);
      const int64_t heads_per_unit = t == O && c.granularity == S2FT_HEADS_BY_GROUP ? c.shape.n_heads / c.shape.n_kv_heads : 1;
      int64_t total = 0;
      for (int32_t l = 0; l < c.shape.n_layers; ++l) {
        const int64_t n = static_cast<int64_t>(indices(sel.sel, l, t, S2FT_INDEX_UNITS).size()) / heads_per_unit;
        if (c.allocation == S2FT_ALLOCATE_PER_LAYER) { EXPECT_EQ(n, k) << "target " << t << " layer " << l; }
        EXPECT_GE(n, 0);
        EXPECT_LE(n, per_layer);
        total += n;
      }
      if (c.allocation == S2FT_ALLOCATE_GLOBAL) { EXPECT_EQ(total, k) << "target " << t; }
    }
    expect_consistent(sel.sel);
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, Budgets,
    ::testing::Values(
        BudgetCase{"ratio_per_layer", {3, 8, 8, 4, 2, 37}, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_PER_LAYER, {0.5, 0.25, 0.1, 0.3}, {0, 0, 0, 0}},
        BudgetCase{"count_per_layer", {3, 8, 8, 4, 2, 37}, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_PER_LAYER, {0, 0, 0, 0}, {3, 2, 5, 9}},
        BudgetCase{"k1_per_layer", {2, 8, 6, 3, 2, 9}, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_PER_LAYER, {0, 0, 0, 0}, {1, 1, 1, 1}},
        BudgetCase{"tiny_ratio_rounds_up_to_1", {2, 8, 6, 3, 2, 9}, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_PER_LAYER, {0.001, 0.001, 0.001, 0.001}, {0, 0, 0, 0}},
        BudgetCase{"k_all_ratio", {2, 8, 6, 3, 2, 9}, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_PER_LAYER, {1.0, 1.0, 1.0, 1.0}, {0, 0, 0, 0}},
        BudgetCase{"k_all_count", {2, 8, 6, 3, 2, 9}, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_PER_LAYER, {0, 0, 0, 0}, {6, 3, 9, 9}},
        BudgetCase{"half_rounds_up", {1, 8, 5, 5, 2, 5}, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_PER_LAYER, {0.5, 0.3, 0.7, 0.9}, {0, 0, 0, 0}},
        BudgetCase{"ratio_global", {5, 8, 8, 2, 2, 23}, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_GLOBAL, {0.2, 0.5, 0.07, 0.3}, {0, 0, 0, 0}},
        BudgetCase{"count_global", {5, 8, 8, 2, 2, 23}, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_GLOBAL, {0, 0, 0, 0}, {3, 1, 40, 115}},
        BudgetCase{"k1_global", {4, 8, 4, 4, 2, 7}, S2FT_HEADS_BY_GROUP, S2FT_ALLOCATE_GLOBAL, {0, 0, 0, 0}, {1, 1, 1, 1}},
        BudgetCase{"k_all_global", {4, 8, 4, 4, 2, 7}, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_GLOBAL, {1.0, 0, 1.0, 0}, {0, 16, 0, 28}},
        BudgetCase{"one_layer_global", {1, 8, 4, 1, 2, 7}, S2FT_HEADS_SINGLE, S2FT_ALLOCATE_GLOBAL, {0.5, 0, 0.5, 0}, {0, 0, 0, 0}}),
    [](const ::testing::TestParamInfo<BudgetCase> &i) { return std::string(i.param.name); });

TEST(Budgets, RatioRoundingHalfUpAndMinimumOne) {
  Context cx;
  const s2ft_model_shape s{1, 4, 2, 1, 2, 10};
  const struct {
    double ratio;
    size_t k;
  } cases[] = {{0.01, 1}, {0.04, 1}, {0.05, 1}, {0.14, 1}, {0.15, 2}, {0.25, 3}, {0.35, 4}, {0.45, 5}, {0.5, 5}, {0.94, 9}, {0.95, 10}, {1.0, 10}};
  for (const auto &c : cases) {
    s2ft_select_options o = bare_options(S2FT_TARGET_BIT(DOWN), S2FT_STRATEGY_RANDOM);
    o.ratio[DOWN] = c.ratio;
    Selection sel;
    ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, nullptr, &sel.sel));
    EXPECT_EQ(indices(sel.sel, 0, DOWN, 0).size(), c.k) << "ratio " << c.ratio;
  }
}

// ---- every strategy ranks as defined ------------------------------------------------------------

struct RankCase {
  int32_t strategy, order, allocation, granularity;
};

std::string rank_name(const ::testing::TestParamInfo<RankCase> &i) {
  const char *st[] = {"random", "weight", "activation", "weight_act", "gradient"};
  return std::string(st[i.param.strategy]) + (i.param.order == S2FT_ORDER_LARGEST ? "_largest" : "_smallest") +
         (i.param.allocation == S2FT_ALLOCATE_GLOBAL ? "_global" : "_per_layer") +
         (i.param.granularity == S2FT_HEADS_BY_GROUP ? "_by_group" : "_single");
}

class Ranking : public ::testing::TestWithParam<RankCase> {};

TEST_P(Ranking, PicksTheUnitsTheFloat64ScoresRank) {
  const RankCase c = GetParam();
  Context cx;
  const s2ft_model_shape &s = kRankShape;
  Calib cal(s, 1000 + static_cast<uint64_t>(c.strategy));
  Stats st(cx.ctx, s);
  const bool need_w = c.strategy == S2FT_STRATEGY_WEIGHT || c.strategy == S2FT_STRATEGY_WEIGHT_ACT;
  const bool need_a = c.strategy == S2FT_STRATEGY_ACTIVATION || c.strategy == S2FT_STRATEGY_WEIGHT_ACT;
  cal.feed(st.stats, need_w, need_a, c.strategy == S2FT_STRATEGY_GRADIENT);

  s2ft_select_options o = bare_options(ALL_TARGETS, c.strategy, c.granularity);
  o.order = c.order;
  o.allocation = c.allocation;
  o.seed = 5;
  o.ratio[O] = 0.5;
  o.count[V] = 1;
  o.ratio[DOWN] = 0.3;
  o.count[UP] = 4;
  Selection sel;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, st.stats, &sel.sel));

  for (int32_t t = 0; t < 4; ++t) {
    SCOPED_TRACE("target " + std::to_string(t));
    const int64_t per_layer = units_of(s, t, c.granularity);
    const bool global = c.allocation == S2FT_ALLOCATE_GLOBAL;
    const int64_t k = o.count[t] != 0 ? o.count[t] : expected_k(o.ratio[t], global ? per_layer * s.n_layers : per_layer);
    struct Item {
      double score;
      int32_t layer;
      int64_t unit;
    };
    std::vector<std::vector<int64_t>> want(static_cast<size_t>(s.n_layers));
    auto pick = [&](std::vector<Item> items) {
      std::sort(items.begin(), items.end(), [&](const Item &a, const Item &b) {
        return c.order == S2FT_ORDER_LARGEST ? a.score > b.score : a.score < b.score;
      });
      // The scores are distinct, so the reference needs no tie-break.
      if (static_cast<size_t>(k) < items.size()) { ASSERT_NE(items[static_cast<size_t>(k) - 1].score, items[static_cast<size_t>(k)].score); }
      for (int64_t i = 0; i < k; ++i) want[static_cast<size_t>(items[static_cast<size_t>(i)].layer)].push_back(items[static_cast<size_t>(i)].unit);
    };
    std::vector<Item> pool;
    for (int32_t l = 0; l < s.n_layers; ++l) {
      std::vector<Item> items;
      for (int64_t u = 0; u < per_layer; ++u) items.push_back({cal.score(c.strategy, l, t, c.granularity, u), l, u});
      if (global)
        pool.insert(pool.end(), items.begin(), items.end());
      else
        pick(items);
    }
    if (global) pick(pool);
    for (int32_t l = 0; l < s.n_layers; ++l) {
      std::vector<int64_t> w = want[static_cast<size_t>(l)];
      std::sort(w.begin(), w.end());
      if (t == O) w = to_query_heads(s, c.granularity, w);
      EXPECT_EQ(indices(sel.sel, l, t, S2FT_INDEX_UNITS | S2FT_INDEX_BASE), w) << "layer " << l;
    }
  }
  expect_consistent(sel.sel);
}

std::vector<RankCase> rank_cases() {
  std::vector<RankCase> v;
  for (int32_t st = S2FT_STRATEGY_WEIGHT; st <= S2FT_STRATEGY_GRADIENT; ++st)
    for (int32_t ord : {S2FT_ORDER_LARGEST, S2FT_ORDER_SMALLEST})
      for (int32_t al : {S2FT_ALLOCATE_PER_LAYER, S2FT_ALLOCATE_GLOBAL})
        for (int32_t g : {S2FT_HEADS_BY_GROUP, S2FT_HEADS_SINGLE}) v.push_back({st, ord, al, g});
  return v;
}

INSTANTIATE_TEST_SUITE_P(Strategies, Ranking, ::testing::ValuesIn(rank_cases()), rank_name);

TEST(Ranking, TiesAreBrokenBySeedDeterministically) {
  Context cx;
  const s2ft_model_shape s{2, 4, 2, 2, 2, 16};
  Stats st(cx.ctx, s);
  HostMatrix down(S2FT_F32, 4, 16);
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 16; ++j) down.set(i, j, (i + j) % 2 ? 0.5f : -0.5f);  // every column has the same norm
  for (int32_t l = 0; l < 2; ++l) ASSERT_S2FT_OK(s2ft_statistics_add_weight(st.stats, l, DOWN, &down.t));
  s2ft_select_options o = bare_options(S2FT_TARGET_BIT(DOWN), S2FT_STRATEGY_WEIGHT);
  o.count[DOWN] = 4;
  std::set<std::vector<int64_t>> seen;
  for (uint64_t seed = 0; seed < 8; ++seed) {
    o.seed = seed;
    Selection a, b;
    ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, st.stats, &a.sel));
    ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, st.stats, &b.sel));
    EXPECT_EQ(indices(a.sel, 0, DOWN, 0), indices(b.sel, 0, DOWN, 0));
    EXPECT_EQ(indices(a.sel, 0, DOWN, 0).size(), 4u);
    seen.insert(indices(a.sel, 0, DOWN, 0));
  }
  EXPECT_GT(seen.size(), 1u) << "ties must not always resolve to the lowest indices";
}

TEST(Ranking, GlobalAllocationFollowsScoresAcrossLayers) {
  Context cx;
  const s2ft_model_shape s{3, 5, 2, 1, 2, 6};
  Stats st(cx.ctx, s);
  Random rng(9);
  for (int32_t l = 0; l < 3; ++l) {
    HostMatrix down(S2FT_F32, 5, 6);
    down.fill_random(rng, l == 1 ? 10.0 : 1.0);  // layer 1 dominates
    ASSERT_S2FT_OK(s2ft_statistics_add_weight(st.stats, l, DOWN, &down.t));
  }
  s2ft_select_options o = bare_options(S2FT_TARGET_BIT(DOWN), S2FT_STRATEGY_WEIGHT);
  o.allocation = S2FT_ALLOCATE_GLOBAL;
  o.count[DOWN] = 6;
  Selection big, small;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, st.stats, &big.sel));
  EXPECT_TRUE(indices(big.sel, 0, DOWN, 0).empty());
  EXPECT_EQ(indices(big.sel, 1, DOWN, 0).size(), 6u);
  EXPECT_TRUE(indices(big.sel, 2, DOWN, 0).empty());
  uint32_t targets = 0;
  ASSERT_S2FT_OK(s2ft_selection_targets(big.sel, &targets));
  EXPECT_EQ(targets, S2FT_TARGET_BIT(DOWN));
  o.order = S2FT_ORDER_SMALLEST;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, st.stats, &small.sel));
  EXPECT_TRUE(indices(small.sel, 1, DOWN, 0).empty());
  EXPECT_EQ(indices(small.sel, 0, DOWN, 0).size() + indices(small.sel, 2, DOWN, 0).size(), 6u);
  expect_consistent(big.sel);
  expect_consistent(small.sel);
}

// ---- statistics against float64 references ----------------------------------------------------

std::vector<double> get_stat(const s2ft_statistics *st, int32_t l, int32_t t, int32_t kind) {
  int64_t n = -1;
  EXPECT_EQ(s2ft_statistics_get(st, l, t, kind, nullptr, 0, &n), S2FT_OK);
  std::vector<double> v(static_cast<size_t>(n), std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(s2ft_statistics_get(st, l, t, kind, v.data(), n, &n), S2FT_OK) << s2ft_last_error();
  return v;
}

TEST(Statistics, SumsMatchFloat64Reference) {
  Context cx;
  Calib cal(kRankShape, 77);
  Stats st(cx.ctx, kRankShape);
  cal.feed(st.stats, true, true, true);
  for (int32_t l = 0; l < kRankShape.n_layers; ++l)
    for (int32_t t = 0; t < 4; ++t) {
      SCOPED_TRACE("layer " + std::to_string(l) + " target " + std::to_string(t));
      const size_t L = static_cast<size_t>(l), T = static_cast<size_t>(t);
      EXPECT_LE(rel_error(get_stat(st.stats, l, t, S2FT_STAT_WEIGHT), cal.w[L][T]), 1e-12);
      EXPECT_LE(rel_error(get_stat(st.stats, l, t, S2FT_STAT_ACTIVATION), cal.a[L][T]), 1e-12);
      // The gradient GEMM runs in f32.
      const std::vector<double> g = get_stat(st.stats, l, t, S2FT_STAT_GRADIENT);
      ASSERT_EQ(g.size(), cal.g[L][T].size());
      for (size_t u = 0; u < g.size(); ++u) EXPECT_NEAR(g[u], cal.g[L][T][u], 1e-5 * cal.g[L][T][u]) << u;
    }
}

TEST(Statistics, UnitCounts) {
  Context cx;
  Stats st(cx.ctx, kRankShape);
  const int64_t want[4] = {6, 2, 11, 11};
  for (int32_t t = 0; t < 4; ++t)
    for (int32_t kind = 0; kind < 3; ++kind) {
      int64_t n = -1;
      ASSERT_S2FT_OK(s2ft_statistics_get(st.stats, 0, t, kind, nullptr, 0, &n));
      EXPECT_EQ(n, want[t]);
    }
}

TEST(Statistics, WeightIsReplacedActivationAndGradientAccumulate) {
  Context cx;
  const s2ft_model_shape s{1, 3, 2, 2, 2, 4};
  Stats st(cx.ctx, s);
  Random rng(4);
  HostMatrix w1(S2FT_F32, 3, 4), w2(S2FT_F32, 3, 4), x(S2FT_F32, 2, 4), dy(S2FT_F32, 2, 3);
  w1.fill_random(rng), w2.fill_random(rng), x.fill_random(rng), dy.fill_random(rng);
  ASSERT_S2FT_OK(s2ft_statistics_add_weight(st.stats, 0, DOWN, &w1.t));
  ASSERT_S2FT_OK(s2ft_statistics_add_weight(st.stats, 0, DOWN, &w2.t));
  EXPECT_LE(rel_error(get_stat(st.stats, 0, DOWN, S2FT_STAT_WEIGHT), ref_unit_sums(w2.to_double(), 3, 4, true, 1)), 1e-12);
  ASSERT_S2FT_OK(s2ft_statistics_add_activation(st.stats, 0, DOWN, &x.t));
  const std::vector<double> once = get_stat(st.stats, 0, DOWN, S2FT_STAT_ACTIVATION);
  ASSERT_S2FT_OK(s2ft_statistics_add_activation(st.stats, 0, DOWN, &x.t));
  std::vector<double> twice = once;
  for (double &v : twice) v *= 2;
  EXPECT_LE(rel_error(get_stat(st.stats, 0, DOWN, S2FT_STAT_ACTIVATION), twice), 1e-12);
  ASSERT_S2FT_OK(s2ft_statistics_add_gradient(st.stats, 0, DOWN, &x.t, &dy.t));
  const std::vector<double> g1 = get_stat(st.stats, 0, DOWN, S2FT_STAT_GRADIENT);
  ASSERT_S2FT_OK(s2ft_statistics_add_gradient(st.stats, 0, DOWN, &x.t, &dy.t));
  std::vector<double> g2 = g1;
  for (double &v : g2) v *= 2;
  EXPECT_LE(rel_error(get_stat(st.stats, 0, DOWN, S2FT_STAT_GRADIENT), g2), 1e-12);
  // UP activations are DOWN's; V activations are O's per KV group (none fed yet).
  EXPECT_EQ(get_stat(st.stats, 0, UP, S2FT_STAT_ACTIVATION), get_stat(st.stats, 0, DOWN, S2FT_STAT_ACTIVATION));
}

TEST(Statistics, Bf16WeightsAndStridedActivations) {
  Context cx;
  const s2ft_model_shape s{1, 5, 4, 2, 3, 6};
  Stats st(cx.ctx, s);
  Random rng(8);
  HostMatrix o(S2FT_BF16, 5, 12);
  o.fill_random(rng);
  ASSERT_S2FT_OK(s2ft_statistics_add_weight(st.stats, 0, O, &o.t));
  EXPECT_LE(rel_error(get_stat(st.stats, 0, O, S2FT_STAT_WEIGHT), ref_unit_sums(o.to_double(), 5, 12, true, 3)), 1e-12);
  // x [4, 12] as every other column of a [4, 25] buffer.
  HostMatrix wide(S2FT_F32, 4, 25);
  wide.fill_random(rng);
  s2ft_tensor x = wide.t;
  x.shape[1] = 12;
  x.strides[1] = 2;
  std::vector<double> xd;
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 12; ++j) xd.push_back(wide.get(i, 2 * j));
  ASSERT_S2FT_OK(s2ft_statistics_add_activation(st.stats, 0, O, &x));
  const std::vector<double> want = ref_unit_sums(xd, 4, 12, true, 3);
  EXPECT_LE(rel_error(get_stat(st.stats, 0, O, S2FT_STAT_ACTIVATION), want), 1e-12);
  // V activations: sums over each KV group's query heads (r = 2).
  EXPECT_LE(rel_error(get_stat(st.stats, 0, V, S2FT_STAT_ACTIVATION), {want[0] + want[1], want[2] + want[3]}), 1e-12);
}

// ---- GQA granularities, indices, ranges, permutations ----------------------------------------

TEST(SelectionIndices, ExplicitGqaSelectionByGroup) {
  // 8 query heads, 4 KV heads (r = 2), head_dim 3, 10 channels.
  const s2ft_model_shape s{1, 6, 8, 4, 3, 10};
  const int64_t o[] = {3, 1}, v[] = {1, 2}, d[] = {7, 2, 5}, u[] = {5, 9};
  const int64_t *units[4] = {o, v, d, u};
  const int64_t n[4] = {2, 2, 3, 2};
  Selection sel;
  ASSERT_S2FT_OK(s2ft_selection_create(&s, S2FT_HEADS_BY_GROUP, units, n, &sel.sel));
  // Groups: O-only {3}, both {1}, V-only {2}, rest {0}.
  EXPECT_EQ(permutation(sel.sel, 0, S2FT_PERM_KV_HEADS), (std::vector<int64_t>{3, 1, 2, 0}));
  EXPECT_EQ(permutation(sel.sel, 0, S2FT_PERM_HEADS), (std::vector<int64_t>{6, 7, 2, 3, 4, 5, 0, 1}));
  // Channels: DOWN-only {2, 7}, both {5}, UP-only {9}, rest.
  EXPECT_EQ(permutation(sel.sel, 0, S2FT_PERM_CHANNELS), (std::vector<int64_t>{2, 7, 5, 9, 0, 1, 3, 4, 6, 8}));
  EXPECT_EQ(indices(sel.sel, 0, O, S2FT_INDEX_UNITS), (std::vector<int64_t>{2, 3, 6, 7}));
  EXPECT_EQ(indices(sel.sel, 0, O, S2FT_INDEX_UNITS | S2FT_INDEX_PERMUTED), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(indices(sel.sel, 0, V, S2FT_INDEX_LINES), (std::vector<int64_t>{3, 4, 5, 6, 7, 8}));
  EXPECT_EQ(indices(sel.sel, 0, V, S2FT_INDEX_UNITS | S2FT_INDEX_PERMUTED), (std::vector<int64_t>{1, 2}));
  int64_t b = -1, c = -1;
  ASSERT_S2FT_OK(s2ft_selection_range(sel.sel, 0, O, &b, &c));
  EXPECT_EQ(b, 0);
  EXPECT_EQ(c, 12);
  ASSERT_S2FT_OK(s2ft_selection_range(sel.sel, 0, V, &b, &c));
  EXPECT_EQ(b, 3);
  EXPECT_EQ(c, 6);
  ASSERT_S2FT_OK(s2ft_selection_range(sel.sel, 0, DOWN, &b, &c));
  EXPECT_EQ(b, 0);
  EXPECT_EQ(c, 3);
  ASSERT_S2FT_OK(s2ft_selection_range(sel.sel, 0, UP, &b, &c));
  EXPECT_EQ(b, 2);
  EXPECT_EQ(c, 2);
  expect_consistent(sel.sel);
}

TEST(SelectionIndices, SingleHeadsUnderGqaAreNotContiguous) {
  const s2ft_model_shape s{1, 6, 8, 4, 3, 10};
  const int64_t o[] = {0, 5}, v[] = {2};
  const int64_t *units[4] = {o, v, nullptr, nullptr};
  const int64_t n[4] = {2, 1, 0, 0};
  Selection sel;
  ASSERT_S2FT_OK(s2ft_selection_create(&s, S2FT_HEADS_SINGLE, units, n, &sel.sel));
  // Groups 0 and 2 hold one O head each: heads 0,1 | 5,4 | 2,3 | 6,7.
  EXPECT_EQ(permutation(sel.sel, 0, S2FT_PERM_HEADS), (std::vector<int64_t>{0, 1, 5, 4, 2, 3, 6, 7}));
  EXPECT_EQ(indices(sel.sel, 0, O, S2FT_INDEX_UNITS | S2FT_INDEX_PERMUTED), (std::vector<int64_t>{0, 2}));
  int64_t b = -1, c = -1;
  EXPECT_S2FT_ERROR(s2ft_selection_range(sel.sel, 0, O, &b, &c), S2FT_ERR_STATE, "index path");
  // V and the untrained targets still have ranges.
  ASSERT_S2FT_OK(s2ft_selection_range(sel.sel, 0, V, &b, &c));
  EXPECT_EQ(b, 3);
  EXPECT_EQ(c, 3);
  ASSERT_S2FT_OK(s2ft_selection_range(sel.sel, 0, DOWN, &b, &c));
  EXPECT_EQ(c, 0);
  expect_consistent(sel.sel);
}

TEST(SelectionIndices, SingleHeadsFillingWholeGroupsAreContiguous) {
  const s2ft_model_shape s{1, 6, 8, 4, 3, 10};
  const int64_t o[] = {0, 1, 2};  // group 0 whole, plus head 2 of group 1 (the last O group in order)
  const int64_t *units[4] = {o, nullptr, nullptr, nullptr};
  const int64_t n[4] = {3, 0, 0, 0};
  Selection sel;
  ASSERT_S2FT_OK(s2ft_selection_create(&s, S2FT_HEADS_SINGLE, units, n, &sel.sel));
  int64_t b = -1, c = -1;
  ASSERT_S2FT_OK(s2ft_selection_range(sel.sel, 0, O, &b, &c));
  EXPECT_EQ(b, 0);
  EXPECT_EQ(c, 9);
  expect_consistent(sel.sel);
}

TEST(SelectionIndices, SelectedSelectionsAreConsistentForManyShapes) {
  Context cx;
  const s2ft_model_shape shapes[] = {{2, 5, 8, 4, 2, 13}, {3, 7, 6, 2, 4, 9}, {2, 4, 4, 4, 2, 5}, {1, 3, 8, 1, 2, 3}};
  for (const auto &s : shapes)
    for (int32_t g : {S2FT_HEADS_BY_GROUP, S2FT_HEADS_SINGLE})
      for (uint64_t seed = 0; seed < 4; ++seed) {
        s2ft_select_options o = bare_options(ALL_TARGETS, S2FT_STRATEGY_RANDOM, g);
        o.seed = seed;
        o.ratio[O] = 0.4, o.ratio[V] = 0.5, o.ratio[DOWN] = 0.3, o.ratio[UP] = 0.4;
        Selection sel;
        ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, nullptr, &sel.sel));
        expect_consistent(sel.sel);
        if (g == S2FT_HEADS_BY_GROUP)
          for (int32_t l = 0; l < s.n_layers; ++l) {
            int64_t b, c;
            for (int32_t t = 0; t < 4; ++t) EXPECT_EQ(s2ft_selection_range(sel.sel, l, t, &b, &c), S2FT_OK);
          }
      }
}

TEST(SelectionIndices, ShapeAndTargetsAccessors) {
  const s2ft_model_shape s{2, 6, 4, 2, 3, 10};
  const int64_t v[] = {1, 0};
  const int64_t *units[4] = {nullptr, v, nullptr, nullptr};
  const int64_t n[4] = {0, 1, 0, 0};
  Selection sel;
  ASSERT_S2FT_OK(s2ft_selection_create(&s, S2FT_HEADS_BY_GROUP, units, n, &sel.sel));
  s2ft_model_shape got{};
  ASSERT_S2FT_OK(s2ft_selection_shape(sel.sel, &got));
  EXPECT_EQ(0, std::memcmp(&got, &s, sizeof s));
  uint32_t targets = 0;
  ASSERT_S2FT_OK(s2ft_selection_targets(sel.sel, &targets));
  EXPECT_EQ(targets, S2FT_TARGET_BIT(V));
  EXPECT_EQ(indices(sel.sel, 0, V, 0), std::vector<int64_t>{1});
  EXPECT_EQ(indices(sel.sel, 1, V, 0), std::vector<int64_t>{0});
  EXPECT_TRUE(indices(sel.sel, 1, O, S2FT_INDEX_LINES).empty());
}

TEST(SelectionIndices, DestroyNullIsANoOp) {
  s2ft_selection_destroy(nullptr);
  s2ft_statistics_destroy(nullptr);
}

// ---- selection files ------------------------------------------------------------------------------

std::string temp_path(const std::string &name) {
  return ::testing::TempDir() + "s2ft_test_select_" + std::to_string(::getpid()) + "_" + name;
}

std::string read_text(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_text(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
}

void expect_same_selection(const s2ft_selection *a, const s2ft_selection *b) {
  s2ft_model_shape sa{}, sb{};
  ASSERT_S2FT_OK(s2ft_selection_shape(a, &sa));
  ASSERT_S2FT_OK(s2ft_selection_shape(b, &sb));
  ASSERT_EQ(0, std::memcmp(&sa, &sb, sizeof sa));
  uint32_t ta = 0, tb = 0;
  ASSERT_S2FT_OK(s2ft_selection_targets(a, &ta));
  ASSERT_S2FT_OK(s2ft_selection_targets(b, &tb));
  EXPECT_EQ(ta, tb);
  for (int32_t l = 0; l < sa.n_layers; ++l) {
    for (int32_t t = 0; t < 4; ++t)
      for (uint32_t f = 0; f < 4; ++f) EXPECT_EQ(indices(a, l, t, f), indices(b, l, t, f));
    for (int32_t k = 0; k < 3; ++k) EXPECT_EQ(permutation(a, l, k), permutation(b, l, k));
  }
}

TEST(SelectionFile, RoundTripIsExact) {
  Context cx;
  const s2ft_model_shape s{3, 9, 8, 4, 2, 17};
  for (int32_t g : {S2FT_HEADS_BY_GROUP, S2FT_HEADS_SINGLE}) {
    s2ft_select_options o = bare_options(ALL_TARGETS, S2FT_STRATEGY_RANDOM, g);
    o.seed = 0xFFFFFFFFFFFFFFFFull;  // the largest seed survives JSON
    o.ratio[O] = 0.3, o.count[V] = 2, o.ratio[DOWN] = 0.2, o.count[UP] = 3;
    Selection a;
    ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &o, nullptr, &a.sel));
    const std::string p1 = temp_path("rt1.json"), p2 = temp_path("rt2.json");
    ASSERT_S2FT_OK(s2ft_selection_save(a.sel, p1.c_str()));
    Selection b;
    ASSERT_S2FT_OK(s2ft_selection_load(p1.c_str(), &b.sel));
    expect_same_selection(a.sel, b.sel);
    ASSERT_S2FT_OK(s2ft_selection_save(b.sel, p2.c_str()));
    EXPECT_EQ(read_text(p1), read_text(p2));
    const nlohmann::json j = nlohmann::json::parse(read_text(p1));
    EXPECT_EQ(j["format"], "s2ft-selection");
    EXPECT_EQ(j["version"], 1);
    EXPECT_EQ(j["options"]["strategy"], "random");
    EXPECT_EQ(j["options"]["seed"].get<uint64_t>(), 0xFFFFFFFFFFFFFFFFull);
    std::remove(p1.c_str());
    std::remove(p2.c_str());
  }
}

TEST(SelectionFile, RoundTripOfExplicitSelectionHasNoOptions) {
  const s2ft_model_shape s{1, 6, 8, 4, 3, 10};
  const int64_t o[] = {0, 5}, d[] = {9};
  const int64_t *units[4] = {o, nullptr, d, nullptr};
  const int64_t n[4] = {2, 0, 1, 0};
  Selection a, b;
  ASSERT_S2FT_OK(s2ft_selection_create(&s, S2FT_HEADS_SINGLE, units, n, &a.sel));
  const std::string p = temp_path("explicit.json");
  ASSERT_S2FT_OK(s2ft_selection_save(a.sel, p.c_str()));
  ASSERT_S2FT_OK(s2ft_selection_load(p.c_str(), &b.sel));
  expect_same_selection(a.sel, b.sel);
  EXPECT_FALSE(nlohmann::json::parse(read_text(p)).contains("options"));
  std::remove(p.c_str());
}

// A valid file to mutate: 2 layers, GQA r = 2, by group.
std::string valid_file_text() {
  const s2ft_model_shape s{2, 6, 8, 4, 3, 10};
  const int64_t o[] = {1, 3}, v[] = {2, 0}, d[] = {7, 2, 0, 9}, u[] = {5, 1};
  const int64_t *units[4] = {o, v, d, u};
  const int64_t n[4] = {1, 1, 2, 1};
  Selection sel;
  EXPECT_EQ(s2ft_selection_create(&s, S2FT_HEADS_BY_GROUP, units, n, &sel.sel), S2FT_OK);
  const std::string p = temp_path("valid.json");
  EXPECT_EQ(s2ft_selection_save(sel.sel, p.c_str()), S2FT_OK);
  std::string t = read_text(p);
  std::remove(p.c_str());
  return t;
}

struct Hostile {
  const char *name;
  std::function<std::string(const std::string &)> make;
  const char *needle;
};

std::function<std::string(const std::string &)> edit(std::function<void(nlohmann::json &)> f) {
  return [f](const std::string &text) {
    nlohmann::json j = nlohmann::json::parse(text);
    f(j);
    return j.dump();
  };
}

std::string deep_nesting(const std::string &text) {
  nlohmann::json j = nlohmann::json::parse(text);
  j["options"] = nlohmann::json::object();
  std::string s = j.dump();
  const std::string nested = std::string(100000, '[') + std::string(100000, ']');
  s.replace(s.find("\"options\":{}"), std::string("\"options\":{}").size(), "\"options\":{\"x\":" + nested + "}");
  return s;
}

class HostileFile : public ::testing::TestWithParam<Hostile> {};

TEST_P(HostileFile, GivesFormatError) {
  const Hostile h = GetParam();
  const std::string p = temp_path(std::string("hostile_") + h.name + ".json");
  write_text(p, h.make(valid_file_text()));
  s2ft_selection *sel = reinterpret_cast<s2ft_selection *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_selection_load(p.c_str(), &sel), S2FT_ERR_FORMAT, h.needle);
  EXPECT_EQ(sel, nullptr);
  std::remove(p.c_str());
}

using J = nlohmann::json;
INSTANTIATE_TEST_SUITE_P(
    All, HostileFile,
    ::testing::Values(
        Hostile{"bad_json", [](const std::string &) { return std::string("{\"format\": \"s2ft-selection\", oops}"); }, "malformed JSON"},
        Hostile{"truncated", [](const std::string &t) { return t.substr(0, t.size() / 2); }, "malformed JSON"},
        Hostile{"empty", [](const std::string &) { return std::string(); }, "malformed JSON"},
        Hostile{"top_level_array", [](const std::string &) { return std::string("[1, 2]"); }, "top level"},
        Hostile{"wrong_format", edit([](J &j) { j["format"] = "s2ft-adapter"; }), "format"},
        Hostile{"missing_format", edit([](J &j) { j.erase("format"); }), "format"},
        Hostile{"version_2", edit([](J &j) { j["version"] = 2; }), "version"},
        Hostile{"version_string", edit([](J &j) { j["version"] = "1"; }), "version"},
        Hostile{"version_float", edit([](J &j) { j["version"] = 1.5; }), "version"},
        Hostile{"missing_shape", edit([](J &j) { j.erase("shape"); }), "shape"},
        Hostile{"shape_not_object", edit([](J &j) { j["shape"] = J::array({1, 2}); }), "shape"},
        Hostile{"shape_field_string", edit([](J &j) { j["shape"]["n_heads"] = "8"; }), "shape.n_heads"},
        Hostile{"shape_field_zero", edit([](J &j) { j["shape"]["d_ff"] = 0; }), "shape.d_ff"},
        Hostile{"shape_field_negative", edit([](J &j) { j["shape"]["n_layers"] = -2; }), "shape.n_layers"},
        Hostile{"shape_field_huge", edit([](J &j) { j["shape"]["d_model"] = int64_t{1} << 40; }), "shape.d_model"},
        // A claim the arrays do not back is refused before anything is sized by it
        // (this one made the reader allocate 24 GB first).
        Hostile{"shape_claims_huge_d_ff", edit([](J &j) { j["shape"]["d_ff"] = 2147483647; }),
                "perm_channels has 10 entries but the shape needs 2147483647"},
        Hostile{"shape_claims_huge_n_heads",
                edit([](J &j) {
                  j["shape"]["n_heads"] = 2147483646;
                  j["shape"]["n_kv_heads"] = 1;
                }),
                "perm_heads has 8 entries but the shape needs 2147483646"},
        Hostile{"shape_missing_field", edit([](J &j) { j["shape"].erase("head_dim"); }), "head_dim"},
        Hostile{"shape_heads_not_multiple", edit([](J &j) { j["shape"]["n_kv_heads"] = 3; }), "multiple"},
        Hostile{"bad_granularity", edit([](J &j) { j["head_granularity"] = "groups"; }), "head_granularity"},
        Hostile{"granularity_number", edit([](J &j) { j["head_granularity"] = 0; }), "head_granularity"},
        Hostile{"options_not_object", edit([](J &j) { j["options"] = "random"; }), "options"},
        Hostile{"layers_not_array", edit([](J &j) { j["layers"] = J::object(); }), "layers"},
        Hostile{"layers_too_few", edit([](J &j) { j["layers"].erase(1); }), "n_layers"},
        Hostile{"layer_not_object", edit([](J &j) { j["layers"][1] = 5; }), "layers[1]"},
        Hostile{"layer_missing_target", edit([](J &j) { j["layers"][0].erase("UP"); }), "UP"},
        Hostile{"units_not_array", edit([](J &j) { j["layers"][0]["O"] = 1; }), "layers[0].O"},
        Hostile{"index_float", edit([](J &j) { j["layers"][0]["DOWN"][0] = 2.0; }), "layers[0].DOWN[0]"},
        Hostile{"index_string", edit([](J &j) { j["layers"][1]["V"][0] = "0"; }), "layers[1].V[0]"},
        Hostile{"index_out_of_range", edit([](J &j) { j["layers"][0]["O"][0] = 4; }), "layers[0].O[0]"},
        Hostile{"index_negative", edit([](J &j) { j["layers"][1]["UP"][0] = -1; }), "layers[1].UP[0]"},
        Hostile{"index_huge_unsigned", edit([](J &j) { j["layers"][0]["DOWN"][0] = 18446744073709551615ull; }), "layers[0].DOWN[0]"},
        Hostile{"index_duplicate", edit([](J &j) { j["layers"][0]["DOWN"] = J::array({2, 2}); }), "appears twice"},
        Hostile{"too_many_indices", edit([](J &j) { j["layers"][0]["V"] = J::array({0, 1, 2, 3, 0}); }), "layers[0].V"},
        Hostile{"missing_perm", edit([](J &j) { j["layers"][0].erase("perm_heads"); }), "perm_heads"},
        Hostile{"perm_not_array", edit([](J &j) { j["layers"][0]["perm_channels"] = "identity"; }), "perm_channels"},
        Hostile{"perm_short", edit([](J &j) { j["layers"][1]["perm_heads"].erase(7); }), "layers[1].perm_heads"},
        Hostile{"perm_duplicate", edit([](J &j) { j["layers"][0]["perm_channels"][9] = j["layers"][0]["perm_channels"][8]; }), "not a permutation"},
        Hostile{"perm_out_of_range", edit([](J &j) { j["layers"][0]["perm_channels"][9] = 10; }), "layers[0].perm_channels[9]"},
        // A valid permutation of the untrained channels, but not the induced one.
        Hostile{"perm_inconsistent", edit([](J &j) { std::swap(j["layers"][0]["perm_channels"][8], j["layers"][0]["perm_channels"][9]); }), "induce"},
        // Swapping two query heads across KV groups would break attention.
        Hostile{"perm_splits_kv_group", edit([](J &j) { std::swap(j["layers"][0]["perm_heads"][1], j["layers"][0]["perm_heads"][2]); }), "induce"},
        Hostile{"deep_nesting", deep_nesting, "nesting"},
        // Every reader refuses duplicate keys (nlohmann would keep the last one).
        Hostile{"duplicate_key", [](const std::string &t) { return "{\"version\": 7, " + t.substr(t.find('{') + 1); },
                "JSON has the key \"version\" more than once"},
        Hostile{"duplicate_nested_key",
                [](const std::string &t) {
                  std::string s = t;
                  s.insert(s.find("\"n_layers\""), "\"d_ff\": 1, ");
                  return s;
                },
                "JSON has the key \"d_ff\" in \"shape\" more than once"}),
    [](const ::testing::TestParamInfo<Hostile> &i) { return std::string(i.param.name); });

TEST(SelectionFile, ValidFileFixtureLoads) {
  const std::string p = temp_path("fixture.json");
  write_text(p, valid_file_text());
  Selection sel;
  ASSERT_S2FT_OK(s2ft_selection_load(p.c_str(), &sel.sel));
  expect_consistent(sel.sel);
  // Unknown extra members are ignored (readers of later minor revisions).
  nlohmann::json j = nlohmann::json::parse(read_text(p));
  j["comment"] = "made by hand";
  write_text(p, j.dump());
  Selection sel2;
  ASSERT_S2FT_OK(s2ft_selection_load(p.c_str(), &sel2.sel));
  expect_same_selection(sel.sel, sel2.sel);
  std::remove(p.c_str());
}

TEST(SelectionFile, SaveNullSelection) {
  EXPECT_S2FT_ERROR(s2ft_selection_save(nullptr, "x.json"), S2FT_ERR_INVALID_ARGUMENT, "sel");
}

TEST(SelectionFile, SaveNullPath) {
  const s2ft_model_shape s{1, 2, 1, 1, 2, 2};
  const int64_t *units[4] = {nullptr, nullptr, nullptr, nullptr};
  const int64_t n[4] = {0, 0, 0, 0};
  Selection sel;
  ASSERT_S2FT_OK(s2ft_selection_create(&s, S2FT_HEADS_BY_GROUP, units, n, &sel.sel));
  EXPECT_S2FT_ERROR(s2ft_selection_save(sel.sel, nullptr), S2FT_ERR_INVALID_ARGUMENT, "path");
}

TEST(SelectionFile, SaveToMissingFolderIsIoError) {
  const s2ft_model_shape s{1, 2, 1, 1, 2, 2};
  const int64_t *units[4] = {nullptr, nullptr, nullptr, nullptr};
  const int64_t n[4] = {0, 0, 0, 0};
  Selection sel;
  ASSERT_S2FT_OK(s2ft_selection_create(&s, S2FT_HEADS_BY_GROUP, units, n, &sel.sel));
  const std::string p = temp_path("no_such_dir/sel.json");
  EXPECT_S2FT_ERROR(s2ft_selection_save(sel.sel, p.c_str()), S2FT_ERR_IO, "no_such_dir");
}

TEST(SelectionFile, LoadNullOut) {
  EXPECT_S2FT_ERROR(s2ft_selection_load("x.json", nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
}

TEST(SelectionFile, LoadNullPath) {
  s2ft_selection *sel = nullptr;
  EXPECT_S2FT_ERROR(s2ft_selection_load(nullptr, &sel), S2FT_ERR_INVALID_ARGUMENT, "path");
}

TEST(SelectionFile, LoadMissingFileIsIoError) {
  s2ft_selection *sel = nullptr;
  const std::string p = temp_path("does_not_exist.json");
  EXPECT_S2FT_ERROR(s2ft_selection_load(p.c_str(), &sel), S2FT_ERR_IO, "does_not_exist");
  EXPECT_EQ(sel, nullptr);
}

// ---- s2ft_select error paths ------------------------------------------------------------------------

class SelectErrors : public ::testing::Test {
 protected:
  Context cx;
  s2ft_model_shape shape{2, 8, 4, 2, 2, 10};
  s2ft_select_options o = bare_options(S2FT_TARGET_BIT(O) | S2FT_TARGET_BIT(DOWN), S2FT_STRATEGY_RANDOM);
  s2ft_selection *sel = nullptr;
  void SetUp() override { o.ratio[O] = 0.5, o.ratio[DOWN] = 0.2; }
  void TearDown() override { s2ft_selection_destroy(sel); }
  void expect(s2ft_status st, const char *needle, const s2ft_statistics *stats = nullptr) {
    sel = reinterpret_cast<s2ft_selection *>(0x1);
    EXPECT_S2FT_ERROR(s2ft_select(cx.ctx, &shape, &o, stats, &sel), st, needle);
    EXPECT_EQ(sel, nullptr);
  }
};

TEST_F(SelectErrors, BaselineSucceeds) { ASSERT_S2FT_OK(s2ft_select(cx.ctx, &shape, &o, nullptr, &sel)); }
TEST_F(SelectErrors, NullOut) {
  EXPECT_S2FT_ERROR(s2ft_select(cx.ctx, &shape, &o, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
}
TEST_F(SelectErrors, NullContext) {
  EXPECT_S2FT_ERROR(s2ft_select(nullptr, &shape, &o, nullptr, &sel), S2FT_ERR_INVALID_ARGUMENT, "ctx");
}
TEST_F(SelectErrors, NullShape) {
  EXPECT_S2FT_ERROR(s2ft_select(cx.ctx, nullptr, &o, nullptr, &sel), S2FT_ERR_INVALID_ARGUMENT, "shape");
}
TEST_F(SelectErrors, BadShape) {
  shape.head_dim = 0;
  expect(S2FT_ERR_INVALID_ARGUMENT, "shape->head_dim");
}
TEST_F(SelectErrors, NullOptions) {
  EXPECT_S2FT_ERROR(s2ft_select(cx.ctx, &shape, nullptr, nullptr, &sel), S2FT_ERR_INVALID_ARGUMENT, "opts");
}
TEST_F(SelectErrors, UninitialisedVersion) {
  o.version = 0;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->version");
}
TEST_F(SelectErrors, NoTargets) {
  o.targets = 0;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->targets");
}
TEST_F(SelectErrors, UnknownTargetBits) {
  o.targets |= 1u << 7;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->targets");
}
TEST_F(SelectErrors, BadStrategy) {
  o.strategy = 6;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->strategy");
}
TEST_F(SelectErrors, BadOrder) {
  o.order = -1;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->order");
}
TEST_F(SelectErrors, BadAllocation) {
  o.allocation = 2;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->allocation");
}
TEST_F(SelectErrors, BadGranularity) {
  o.head_granularity = 3;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->head_granularity");
}
TEST_F(SelectErrors, RatioAndCountBothSet) {
  o.count[DOWN] = 2;
  expect(S2FT_ERR_INVALID_ARGUMENT, "both set");
}
TEST_F(SelectErrors, NoBudgetForATarget) {
  o.targets |= S2FT_TARGET_BIT(UP);
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->ratio[UP]");
}
TEST_F(SelectErrors, RatioAboveOne) {
  o.ratio[O] = 1.5;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->ratio[O]");
}
TEST_F(SelectErrors, RatioNegative) {
  o.ratio[DOWN] = -0.1;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->ratio[DOWN]");
}
TEST_F(SelectErrors, RatioNaN) {
  o.ratio[DOWN] = std::numeric_limits<double>::quiet_NaN();
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->ratio[DOWN]");
}
TEST_F(SelectErrors, CountNegative) {
  o.ratio[DOWN] = 0;
  o.count[DOWN] = -3;
  expect(S2FT_ERR_INVALID_ARGUMENT, "opts->count[DOWN]");
}
TEST_F(SelectErrors, CountAboveUnitsPerLayer) {
  o.ratio[O] = 0;
  o.count[O] = 3;  // 2 KV groups per layer
  expect(S2FT_ERR_INVALID_ARGUMENT, "target O has only 2 units");
}
TEST_F(SelectErrors, CountAboveUnitsGlobal) {
  o.allocation = S2FT_ALLOCATE_GLOBAL;
  o.ratio[DOWN] = 0;
  o.count[DOWN] = 20;  // exactly all: fine
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &shape, &o, nullptr, &sel));
  s2ft_selection_destroy(sel);
  sel = nullptr;
  o.count[DOWN] = 21;
  expect(S2FT_ERR_INVALID_ARGUMENT, "target DOWN has only 20 units");
}
TEST_F(SelectErrors, StatisticsNullForScoredStrategy) {
  o.strategy = S2FT_STRATEGY_ACTIVATION;
  expect(S2FT_ERR_INVALID_ARGUMENT, "stats is NULL");
}
TEST_F(SelectErrors, StatisticsForAnotherShape) {
  s2ft_model_shape other = shape;
  other.d_ff = 11;
  Stats st(cx.ctx, other);
  o.strategy = S2FT_STRATEGY_WEIGHT;
  expect(S2FT_ERR_INVALID_ARGUMENT, "different model shape", st.stats);
}
TEST_F(SelectErrors, MissingWeightStatistics) {
  Calib cal(shape, 3);
  Stats st(cx.ctx, shape);
  cal.feed(st.stats, true, false, false);
  // Replace nothing for layer 1 DOWN: build fresh statistics without it.
  Stats partial(cx.ctx, shape);
  for (int32_t l = 0; l < 2; ++l)
    for (int32_t t : {O, DOWN})
      if (!(l == 1 && t == DOWN))
        ASSERT_S2FT_OK(s2ft_statistics_add_weight(partial.stats, l, t, &cal.weights[static_cast<size_t>(l)][static_cast<size_t>(t)].t));
  o.strategy = S2FT_STRATEGY_WEIGHT;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &shape, &o, st.stats, &sel));
  s2ft_selection_destroy(sel);
  sel = nullptr;
  expect(S2FT_ERR_INVALID_ARGUMENT, "no weight statistics for layer 1 target DOWN", partial.stats);
}
TEST_F(SelectErrors, MissingActivationStatisticsForV) {
  Calib cal(shape, 4);
  Stats st(cx.ctx, shape);
  cal.feed(st.stats, true, false, true);  // no activations
  o.strategy = S2FT_STRATEGY_WEIGHT_ACT;
  o.targets = S2FT_TARGET_BIT(V);
  o.count[V] = 1;
  expect(S2FT_ERR_INVALID_ARGUMENT, "no activation statistics for layer 0 target V (feed the o_proj input", st.stats);
}
TEST_F(SelectErrors, MissingGradientStatistics) {
  Calib cal(shape, 5);
  Stats st(cx.ctx, shape);
  cal.feed(st.stats, true, true, false);
  o.strategy = S2FT_STRATEGY_GRADIENT;
  expect(S2FT_ERR_INVALID_ARGUMENT, "no gradient statistics for layer 0 target O", st.stats);
}
TEST_F(SelectErrors, NonFiniteScore) {
  Stats st(cx.ctx, shape);
  Random rng(2);
  for (int32_t l = 0; l < 2; ++l) {
    HostMatrix ow(S2FT_F32, 8, 8), dw(S2FT_F32, 8, 10);
    ow.fill_random(rng), dw.fill_random(rng);
    if (l == 1) dw.set(3, 4, std::numeric_limits<float>::quiet_NaN());
    ASSERT_S2FT_OK(s2ft_statistics_add_weight(st.stats, l, O, &ow.t));
    ASSERT_S2FT_OK(s2ft_statistics_add_weight(st.stats, l, DOWN, &dw.t));
  }
  o.strategy = S2FT_STRATEGY_WEIGHT;
  expect(S2FT_ERR_INVALID_ARGUMENT, "unit 4 of layer 1 target DOWN is not finite", st.stats);
}

// ---- s2ft_selection_create and s2ft_model_shape_check error paths ------------------------------------

class CreateErrors : public ::testing::Test {
 protected:
  s2ft_model_shape shape{2, 8, 4, 2, 2, 10};
  int64_t o_units[2] = {1, 0};
  int64_t d_units[4] = {3, 9, 0, 3};
  const int64_t *units[4] = {o_units, nullptr, d_units, nullptr};
  int64_t n[4] = {1, 0, 2, 0};
  s2ft_selection *sel = nullptr;
  void TearDown() override { s2ft_selection_destroy(sel); }
  void expect(const char *needle, int32_t gran = S2FT_HEADS_BY_GROUP) {
    sel = reinterpret_cast<s2ft_selection *>(0x1);
    EXPECT_S2FT_ERROR(s2ft_selection_create(&shape, gran, units, n, &sel), S2FT_ERR_INVALID_ARGUMENT, needle);
    EXPECT_EQ(sel, nullptr);
  }
};

TEST_F(CreateErrors, BaselineSucceeds) {
  ASSERT_S2FT_OK(s2ft_selection_create(&shape, S2FT_HEADS_BY_GROUP, units, n, &sel));
  EXPECT_EQ(indices(sel, 1, DOWN, 0), (std::vector<int64_t>{0, 3}));
}
TEST_F(CreateErrors, NullOut) {
  EXPECT_S2FT_ERROR(s2ft_selection_create(&shape, 0, units, n, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
}
TEST_F(CreateErrors, NullShape) {
  EXPECT_S2FT_ERROR(s2ft_selection_create(nullptr, 0, units, n, &sel), S2FT_ERR_INVALID_ARGUMENT, "shape");
}
TEST_F(CreateErrors, BadShape) {
  shape.n_kv_heads = 3;
  expect("multiple of n_kv_heads");
}
TEST_F(CreateErrors, BadGranularity) { expect("head_granularity", 2); }
TEST_F(CreateErrors, NullUnits) {
  EXPECT_S2FT_ERROR(s2ft_selection_create(&shape, 0, nullptr, n, &sel), S2FT_ERR_INVALID_ARGUMENT, "units");
}
TEST_F(CreateErrors, NullCounts) {
  EXPECT_S2FT_ERROR(s2ft_selection_create(&shape, 0, units, nullptr, &sel), S2FT_ERR_INVALID_ARGUMENT, "n_units");
}
TEST_F(CreateErrors, NegativeCount) {
  n[V] = -1;
  expect("n_units[V]");
}
TEST_F(CreateErrors, CountAboveUnits) {
  n[O] = 3;
  expect("n_units[O] is 3 but must be in [0, 2]");
}
TEST_F(CreateErrors, NullUnitListWithCount) {
  n[UP] = 1;
  expect("units[UP] is NULL");
}
TEST_F(CreateErrors, IndexOutOfRange) {
  d_units[3] = 10;
  expect("units[DOWN] of layer 1: index 10 is out of range [0, 10)");
}
TEST_F(CreateErrors, NegativeIndex) {
  o_units[1] = -1;
  expect("units[O] of layer 1: index -1");
}
TEST_F(CreateErrors, GroupIndexOutOfRangeButValidHead) {
  o_units[0] = 3;  // a query head, not a KV group
  expect("units[O] of layer 0: index 3 is out of range [0, 2)");
  ASSERT_S2FT_OK(s2ft_selection_create(&shape, S2FT_HEADS_SINGLE, units, n, &sel));
}
TEST_F(CreateErrors, DuplicateIndex) {
  d_units[2] = 3;
  expect("units[DOWN] of layer 1: index 3 appears twice");
}

TEST(ModelShapeCheck, AcceptsValidShapes) {
  const s2ft_model_shape s{5, 64, 8, 4, 8, 172};
  EXPECT_EQ(s2ft_model_shape_check(&s), S2FT_OK);
}
TEST(ModelShapeCheck, Null) { EXPECT_S2FT_ERROR(s2ft_model_shape_check(nullptr), S2FT_ERR_INVALID_ARGUMENT, "shape"); }
TEST(ModelShapeCheck, EachFieldMustBePositive) {
  const char *names[] = {"n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff"};
  for (int f = 0; f < 6; ++f)
    for (int32_t bad : {0, -4}) {
      s2ft_model_shape s{5, 64, 8, 4, 8, 172};
      int32_t *fields[] = {&s.n_layers, &s.d_model, &s.n_heads, &s.n_kv_heads, &s.head_dim, &s.d_ff};
      *fields[f] = bad;
      EXPECT_S2FT_ERROR(s2ft_model_shape_check(&s), S2FT_ERR_INVALID_ARGUMENT, std::string("shape->") + names[f]);
    }
}
TEST(ModelShapeCheck, HeadsMultipleOfKvHeads) {
  const s2ft_model_shape s{5, 64, 8, 3, 8, 172};
  EXPECT_S2FT_ERROR(s2ft_model_shape_check(&s), S2FT_ERR_INVALID_ARGUMENT, "n_heads (8) must be a multiple");
}

// ---- accessor error paths ---------------------------------------------------------------------------

class AccessorErrors : public ::testing::Test {
 protected:
  s2ft_model_shape shape{2, 6, 8, 4, 3, 10};
  Selection s;
  int64_t buf[64];
  int64_t count = 0, begin = 0;
  void SetUp() override {
    const int64_t o[] = {0, 5, 1, 2}, d[] = {7, 2};
    const int64_t *units[4] = {o, nullptr, d, nullptr};
    const int64_t n[4] = {2, 0, 1, 0};
    ASSERT_S2FT_OK(s2ft_selection_create(&shape, S2FT_HEADS_SINGLE, units, n, &s.sel));
  }
};

TEST_F(AccessorErrors, ShapeNullSelection) {
  s2ft_model_shape out;
  EXPECT_S2FT_ERROR(s2ft_selection_shape(nullptr, &out), S2FT_ERR_INVALID_ARGUMENT, "sel");
}
TEST_F(AccessorErrors, ShapeNullOut) {
  EXPECT_S2FT_ERROR(s2ft_selection_shape(s.sel, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
}
TEST_F(AccessorErrors, TargetsNullSelection) {
  uint32_t t;
  EXPECT_S2FT_ERROR(s2ft_selection_targets(nullptr, &t), S2FT_ERR_INVALID_ARGUMENT, "sel");
}
TEST_F(AccessorErrors, TargetsNullOut) {
  EXPECT_S2FT_ERROR(s2ft_selection_targets(s.sel, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
}
TEST_F(AccessorErrors, IndicesNullSelection) {
  EXPECT_S2FT_ERROR(s2ft_selection_indices(nullptr, 0, O, 0, buf, 64, &count), S2FT_ERR_INVALID_ARGUMENT, "sel");
}
TEST_F(AccessorErrors, IndicesNullCount) {
  EXPECT_S2FT_ERROR(s2ft_selection_indices(s.sel, 0, O, 0, buf, 64, nullptr), S2FT_ERR_INVALID_ARGUMENT, "count");
}
TEST_F(AccessorErrors, IndicesBadLayer) {
  EXPECT_S2FT_ERROR(s2ft_selection_indices(s.sel, 2, O, 0, buf, 64, &count), S2FT_ERR_INVALID_ARGUMENT,
                    "layer 2 is out of range [0, 2)");
}
TEST_F(AccessorErrors, IndicesBadTarget) {
  EXPECT_S2FT_ERROR(s2ft_selection_indices(s.sel, 0, 4, 0, buf, 64, &count), S2FT_ERR_INVALID_ARGUMENT, "target 4");
}
TEST_F(AccessorErrors, IndicesBadFlags) {
  EXPECT_S2FT_ERROR(s2ft_selection_indices(s.sel, 0, O, 4u, buf, 64, &count), S2FT_ERR_INVALID_ARGUMENT, "flags");
}
TEST_F(AccessorErrors, IndicesCapacityTooSmall) {
  EXPECT_S2FT_ERROR(s2ft_selection_indices(s.sel, 0, O, S2FT_INDEX_LINES, buf, 5, &count), S2FT_ERR_INVALID_ARGUMENT,
                    "capacity 5 is below the 6");
}
TEST_F(AccessorErrors, RangeNullSelection) {
  EXPECT_S2FT_ERROR(s2ft_selection_range(nullptr, 0, DOWN, &begin, &count), S2FT_ERR_INVALID_ARGUMENT, "sel");
}
TEST_F(AccessorErrors, RangeNullBegin) {
  EXPECT_S2FT_ERROR(s2ft_selection_range(s.sel, 0, DOWN, nullptr, &count), S2FT_ERR_INVALID_ARGUMENT, "begin");
}
TEST_F(AccessorErrors, RangeNullCount) {
  EXPECT_S2FT_ERROR(s2ft_selection_range(s.sel, 0, DOWN, &begin, nullptr), S2FT_ERR_INVALID_ARGUMENT, "count");
}
TEST_F(AccessorErrors, RangeBadLayer) {
  EXPECT_S2FT_ERROR(s2ft_selection_range(s.sel, -1, DOWN, &begin, &count), S2FT_ERR_INVALID_ARGUMENT, "layer -1");
}
TEST_F(AccessorErrors, RangeBadTarget) {
  EXPECT_S2FT_ERROR(s2ft_selection_range(s.sel, 0, -1, &begin, &count), S2FT_ERR_INVALID_ARGUMENT, "target -1");
}
TEST_F(AccessorErrors, RangeNotContiguous) {
  EXPECT_S2FT_ERROR(s2ft_selection_range(s.sel, 0, O, &begin, &count), S2FT_ERR_STATE,
                    "layer 0 target O are not one contiguous range (single query heads");
}
TEST_F(AccessorErrors, PermutationNullSelection) {
  EXPECT_S2FT_ERROR(s2ft_selection_permutation(nullptr, 0, S2FT_PERM_HEADS, buf, 64, &count), S2FT_ERR_INVALID_ARGUMENT, "sel");
}
TEST_F(AccessorErrors, PermutationNullCount) {
  EXPECT_S2FT_ERROR(s2ft_selection_permutation(s.sel, 0, S2FT_PERM_HEADS, buf, 64, nullptr), S2FT_ERR_INVALID_ARGUMENT, "count");
}
TEST_F(AccessorErrors, PermutationBadLayer) {
  EXPECT_S2FT_ERROR(s2ft_selection_permutation(s.sel, 9, S2FT_PERM_HEADS, buf, 64, &count), S2FT_ERR_INVALID_ARGUMENT, "layer 9");
}
TEST_F(AccessorErrors, PermutationBadKind) {
  EXPECT_S2FT_ERROR(s2ft_selection_permutation(s.sel, 0, 3, buf, 64, &count), S2FT_ERR_INVALID_ARGUMENT, "kind 3");
}
TEST_F(AccessorErrors, PermutationCapacityTooSmall) {
  EXPECT_S2FT_ERROR(s2ft_selection_permutation(s.sel, 0, S2FT_PERM_CHANNELS, buf, 9, &count), S2FT_ERR_INVALID_ARGUMENT,
                    "capacity 9 is below the 10");
}

// ---- statistics error paths ---------------------------------------------------------------------

class StatisticsErrors : public ::testing::Test {
 protected:
  Context cx;
  s2ft_model_shape shape{2, 6, 4, 2, 3, 10};
  Stats st{cx.ctx, shape};
  HostMatrix o{S2FT_F32, 6, 12}, x_o{S2FT_F32, 3, 12}, dy_o{S2FT_F32, 3, 6}, x_down{S2FT_F32, 3, 10};
  double out[16];
  int64_t n = 0;
  void SetUp() override {
    Random rng(1);
    for (HostMatrix *m : {&o, &x_o, &dy_o, &x_down}) m->fill_random(rng);
  }
};

TEST_F(StatisticsErrors, CreateNullOut) {
  EXPECT_S2FT_ERROR(s2ft_statistics_create(cx.ctx, &shape, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
}
TEST_F(StatisticsErrors, CreateNullContext) {
  s2ft_statistics *s = reinterpret_cast<s2ft_statistics *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_statistics_create(nullptr, &shape, &s), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_EQ(s, nullptr);
}
TEST_F(StatisticsErrors, CreateNullShape) {
  s2ft_statistics *s = nullptr;
  EXPECT_S2FT_ERROR(s2ft_statistics_create(cx.ctx, nullptr, &s), S2FT_ERR_INVALID_ARGUMENT, "shape");
}
TEST_F(StatisticsErrors, CreateBadShape) {
  s2ft_statistics *s = nullptr;
  shape.d_ff = -1;
  EXPECT_S2FT_ERROR(s2ft_statistics_create(cx.ctx, &shape, &s), S2FT_ERR_INVALID_ARGUMENT, "shape->d_ff");
}
TEST_F(StatisticsErrors, AddWeightNullStats) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_weight(nullptr, 0, O, &o.t), S2FT_ERR_INVALID_ARGUMENT, "stats");
}
TEST_F(StatisticsErrors, AddWeightBadLayer) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_weight(st.stats, 2, O, &o.t), S2FT_ERR_INVALID_ARGUMENT, "layer 2");
}
TEST_F(StatisticsErrors, AddWeightBadTarget) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_weight(st.stats, 0, 7, &o.t), S2FT_ERR_INVALID_ARGUMENT, "target 7");
}
TEST_F(StatisticsErrors, AddWeightNullWeight) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_weight(st.stats, 0, O, nullptr), S2FT_ERR_INVALID_ARGUMENT, "weight");
}
TEST_F(StatisticsErrors, AddWeightWrongShape) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_weight(st.stats, 0, DOWN, &o.t), S2FT_ERR_SHAPE, "weight must be [6, 10]");
}
TEST_F(StatisticsErrors, AddWeightBadDtype) {
  s2ft_tensor t = o.t;
  t.dtype.bits = 64;
  EXPECT_S2FT_ERROR(s2ft_statistics_add_weight(st.stats, 0, O, &t), S2FT_ERR_DTYPE, "weight");
}
TEST_F(StatisticsErrors, AddWeightWrongDevice) {
  s2ft_tensor t = o.t;
  t.device = s2ft_device{S2FT_DEVICE_CUDA, 0};
  EXPECT_S2FT_ERROR(s2ft_statistics_add_weight(st.stats, 0, O, &t), S2FT_ERR_DEVICE, "weight");
}
TEST_F(StatisticsErrors, AddActivationNullStats) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(nullptr, 0, O, &x_o.t), S2FT_ERR_INVALID_ARGUMENT, "stats");
}
TEST_F(StatisticsErrors, AddActivationBadLayer) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, -1, O, &x_o.t), S2FT_ERR_INVALID_ARGUMENT, "layer -1");
}
TEST_F(StatisticsErrors, AddActivationBadTarget) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, 4, &x_o.t), S2FT_ERR_INVALID_ARGUMENT, "target 4");
}
TEST_F(StatisticsErrors, AddActivationRejectsV) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, V, &x_o.t), S2FT_ERR_INVALID_ARGUMENT,
                    "pass the o_proj input with S2FT_TARGET_O");
}
TEST_F(StatisticsErrors, AddActivationRejectsUp) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, UP, &x_down.t), S2FT_ERR_INVALID_ARGUMENT,
                    "pass the down_proj input with S2FT_TARGET_DOWN");
}
TEST_F(StatisticsErrors, AddActivationNullX) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, O, nullptr), S2FT_ERR_INVALID_ARGUMENT, "x is NULL");
}
TEST_F(StatisticsErrors, AddActivationWrongWidth) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, DOWN, &x_o.t), S2FT_ERR_SHAPE, "x must be [T, 10]");
}
TEST_F(StatisticsErrors, AddActivationNoTokens) {
  s2ft_tensor t = x_o.t;
  t.shape[0] = 0;
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, O, &t), S2FT_ERR_SHAPE, "x has no rows");
}
TEST_F(StatisticsErrors, AddGradientNullStats) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(nullptr, 0, O, &x_o.t, &dy_o.t), S2FT_ERR_INVALID_ARGUMENT, "stats");
}
TEST_F(StatisticsErrors, AddGradientBadLayer) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 5, O, &x_o.t, &dy_o.t), S2FT_ERR_INVALID_ARGUMENT, "layer 5");
}
TEST_F(StatisticsErrors, AddGradientBadTarget) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, -2, &x_o.t, &dy_o.t), S2FT_ERR_INVALID_ARGUMENT, "target -2");
}
TEST_F(StatisticsErrors, AddGradientNullX) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, O, nullptr, &dy_o.t), S2FT_ERR_INVALID_ARGUMENT, "x is NULL");
}
TEST_F(StatisticsErrors, AddGradientNullDy) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, O, &x_o.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "dy is NULL");
}
TEST_F(StatisticsErrors, AddGradientWrongXWidth) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, O, &x_down.t, &dy_o.t), S2FT_ERR_SHAPE, "x must be [T, 12]");
}
TEST_F(StatisticsErrors, AddGradientWrongDyWidth) {
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, O, &x_o.t, &x_o.t), S2FT_ERR_SHAPE, "dy must be [T, 6]");
}
TEST_F(StatisticsErrors, AddGradientTokenMismatch) {
  s2ft_tensor t = dy_o.t;
  t.shape[0] = 2;
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, O, &x_o.t, &t), S2FT_ERR_SHAPE, "x has 3 rows but dy has 2");
}
TEST_F(StatisticsErrors, AddGradientNoTokens) {
  s2ft_tensor x = x_o.t, dy = dy_o.t;
  x.shape[0] = dy.shape[0] = 0;
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, O, &x, &dy), S2FT_ERR_SHAPE, "no rows");
}
TEST_F(StatisticsErrors, AddGradientBadDtype) {
  s2ft_tensor t = dy_o.t;
  t.dtype.lanes = 2;
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, O, &x_o.t, &t), S2FT_ERR_DTYPE, "dy");
}
TEST_F(StatisticsErrors, GetNullStats) {
  EXPECT_S2FT_ERROR(s2ft_statistics_get(nullptr, 0, O, S2FT_STAT_WEIGHT, out, 16, &n), S2FT_ERR_INVALID_ARGUMENT, "stats");
}
TEST_F(StatisticsErrors, GetNullCount) {
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 0, O, S2FT_STAT_WEIGHT, out, 16, nullptr), S2FT_ERR_INVALID_ARGUMENT, "n_units");
}
TEST_F(StatisticsErrors, GetBadLayer) {
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 3, O, S2FT_STAT_WEIGHT, out, 16, &n), S2FT_ERR_INVALID_ARGUMENT, "layer 3");
}
TEST_F(StatisticsErrors, GetBadTarget) {
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 0, 9, S2FT_STAT_WEIGHT, out, 16, &n), S2FT_ERR_INVALID_ARGUMENT, "target 9");
}
TEST_F(StatisticsErrors, GetBadKind) {
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 0, O, 4, out, 16, &n), S2FT_ERR_INVALID_ARGUMENT, "kind 4");
}
TEST_F(StatisticsErrors, GetCapacityTooSmall) {
  ASSERT_S2FT_OK(s2ft_statistics_add_weight(st.stats, 0, O, &o.t));
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 0, O, S2FT_STAT_WEIGHT, out, 3, &n), S2FT_ERR_INVALID_ARGUMENT,
                    "capacity 3 is below the 4 units");
}
TEST_F(StatisticsErrors, GetNothingRecorded) {
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 1, DOWN, S2FT_STAT_GRADIENT, out, 16, &n), S2FT_ERR_STATE,
                    "no gradient statistics for layer 1 target DOWN");
  // V activations read O's, which are missing too.
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 0, V, S2FT_STAT_ACTIVATION, out, 16, &n), S2FT_ERR_STATE,
                    "no activation statistics for layer 0 target V");
}

}  // namespace
