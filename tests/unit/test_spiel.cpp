// SpIEL's schedule (s2ft_spiel_*) and LIFT's mask refresh
// (s2ft_lift_refresh) on crafted data whose right answer is known:
//  - AG: a dense gradient with known top entries picks the candidates, and
//    the sums over the window (not the last step) decide what regrows; an
//    entry both dropped and regrown stays; moments are seeded as the
//    reference seeds them (with and without per-entry ages);
//  - MA: x and dy (or SM3 accumulators) that rank known entries first,
//    ties to the lower flat index, zero scores, and a random cross-check
//    of the row x column search against brute force;
//  - the decay formulas, the reselection steps, the dense-gradient count;
//  - dropped entries get their base bytes back exactly, surviving entries
//    keep their optimizer state exactly, regrown entries start at zero;
//  - f32 and bf16 weights, k = 1 and k = all, and every error path.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <string>
#include <vector>

#include "support/test_util.hpp"
#include "train/optimizer.hpp"

using namespace s2ft_test;
using s2ft::backend::StateTensor;

namespace {

struct Set {
  s2ft_sparse_set *s = nullptr;
  Set() = default;
  Set(s2ft_context *ctx, int64_t rows, int64_t cols, const std::vector<int64_t> &idx) {
    EXPECT_EQ(s2ft_sparse_set_create(ctx, rows, cols, idx.data(), static_cast<int64_t>(idx.size()), &s), S2FT_OK)
        << s2ft_last_error();
  }
  Set(const Set &) = delete;
  Set &operator=(const Set &) = delete;
  ~Set() { s2ft_sparse_set_destroy(s); }
  void reset(s2ft_sparse_set *n) {
    s2ft_sparse_set_destroy(s);
    s = n;
  }
};

struct Opt {
  s2ft_optimizer *o = nullptr;
  Opt() = default;
  Opt(const Opt &) = delete;
  Opt &operator=(const Opt &) = delete;
  ~Opt() { s2ft_optimizer_destroy(o); }
};

struct Spiel {
  s2ft_spiel *s = nullptr;
  Spiel() = default;
  Spiel(const Spiel &) = delete;
  Spiel &operator=(const Spiel &) = delete;
  ~Spiel() { s2ft_spiel_destroy(s); }
};

s2ft_optimizer_options optimizer_options(int32_t kind, bool ages) {
  s2ft_optimizer_options o;
  EXPECT_EQ(s2ft_optimizer_options_init(&o, S2FT_OPTIMIZER_OPTIONS_VERSION), S2FT_OK);
  o.kind = kind;
  o.age_bias_correction = ages ? 1 : 0;
  if (kind == S2FT_OPTIMIZER_SM3) o.momentum = 0.5;
  return o;
}

s2ft_spiel_options spiel_options(int32_t regrow, int64_t N, int64_t M, int64_t T, double p0, bool first_full) {
  s2ft_spiel_options o;
  EXPECT_EQ(s2ft_spiel_options_init(&o, S2FT_SPIEL_OPTIONS_VERSION), S2FT_OK);
  o.regrow = regrow;
  o.reselect_interval = N;
  o.accumulation_steps = M;
  o.total_steps = T;
  o.initial_rate = p0;
  o.first_full = first_full ? 1 : 0;
  return o;
}

s2ft_spiel_stats stats_of(const s2ft_spiel *s) {
  s2ft_spiel_stats st{};
  st.version = S2FT_SPIEL_STATS_VERSION;
  EXPECT_EQ(s2ft_spiel_stats_get(s, &st), S2FT_OK) << s2ft_last_error();
  return st;
}

std::vector<int64_t> indices_of(const s2ft_sparse_set *s) {
  int64_t n = 0;
  EXPECT_EQ(s2ft_sparse_set_count(s, &n), S2FT_OK);
  std::vector<int64_t> v(static_cast<size_t>(n));
  EXPECT_EQ(s2ft_sparse_set_indices(s, v.data(), n), S2FT_OK);
  return v;
}

std::vector<int64_t> current_entries(const s2ft_spiel *sp, s2ft_context *ctx) {
  Set s;
  EXPECT_EQ(s2ft_spiel_current_set(sp, ctx, &s.s), S2FT_OK) << s2ft_last_error();
  return s.s == nullptr ? std::vector<int64_t>{} : indices_of(s.s);
}

// The bytes of element f of h.
std::vector<uint8_t> bytes_at(const HostMatrix &h, int64_t f) {
  const size_t e = h.elem();
  return std::vector<uint8_t>(h.bytes.begin() + static_cast<std::ptrdiff_t>(f * static_cast<int64_t>(e)),
                              h.bytes.begin() + static_cast<std::ptrdiff_t>((f + 1) * static_cast<int64_t>(e)));
}

// Per-entry optimizer state of parameter `index` by flat index (white box).
struct EntryState {
  std::vector<int64_t> lines;
  std::vector<float> t[s2ft::backend::kStateTensors];
  float at(StateTensor which, int64_t flat) const {
    const auto it = std::lower_bound(lines.begin(), lines.end(), flat);
    EXPECT_TRUE(it != lines.end() && *it == flat) << flat;
    return t[static_cast<int>(which)][static_cast<size_t>(it - lines.begin())];
  }
};

EntryState state_of(const s2ft_optimizer *opt, int64_t index) {
  EntryState s;
  const s2ft::OptimizerParam &p = opt->params[static_cast<size_t>(index)];
  s.lines = p.lines;
  for (int k = 0; k < s2ft::backend::kStateTensors; ++k) {
    const StateTensor which = static_cast<StateTensor>(k);
    if (s2ft::has_state(opt->options, p, which)) s.t[k] = s2ft::read_param_state(*opt, index, which);
  }
  return s;
}

// Sets the trained value of entry `flat` of parameter `index` to `value`:
// the weight, and the optimizer's master for 16-bit weights.
void set_trained(s2ft_optimizer *opt, int64_t index, HostMatrix &W, int64_t flat, float value) {
  W.set(flat / W.cols, flat % W.cols, value);
  const s2ft::OptimizerParam &p = opt->params[static_cast<size_t>(index)];
  if (!p.has_master()) return;
  std::vector<float> m = s2ft::read_param_state(*opt, index, StateTensor::master);
  const size_t e = static_cast<size_t>(std::lower_bound(p.lines.begin(), p.lines.end(), flat) - p.lines.begin());
  m[e] = value;
  s2ft::write_param_state(*opt, index, StateTensor::master, m);
}

// A training loop for one sparse parameter of W driven by the test.
struct Loop {
  Context cx;
  HostMatrix W;
  Set set;
  Opt opt;
  Spiel sp;
  int64_t index = -1;
  std::vector<float> grad;

  Loop(int32_t dtype, int64_t rows, int64_t cols, uint64_t seed) : W(dtype, rows, cols) {
    Random rng(seed);
    W.fill_random(rng);
  }
  void start(const std::vector<int64_t> &entries, const s2ft_optimizer_options &oo, const s2ft_spiel_options &so,
             int warmup_steps = 0) {
    ASSERT_S2FT_OK(s2ft_sparse_set_create(cx.ctx, W.rows, W.cols, entries.data(),
                                          static_cast<int64_t>(entries.size()), &set.s));
    ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &oo, &opt.o));
    ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.o, &W.t, set.s, &index));
    for (int i = 0; i < warmup_steps; ++i) {
      HostMatrix g(S2FT_F32, 1, static_cast<int64_t>(entries.size()));
      for (int64_t e = 0; e < g.cols; ++e) g.set(0, e, 0.25f * static_cast<float>(e + 1));
      ASSERT_S2FT_OK(s2ft_optimizer_step(opt.o, 0.0, &g.t, 1, nullptr));
    }
    ASSERT_S2FT_OK(s2ft_spiel_create(cx.ctx, opt.o, index, &W.t, &so, &sp.s));
  }
  // One training step with lr 0 (the weights change only where the test
  // says): backward, observe, optimizer step. The caller then calls finish().
  void train(const HostMatrix &x, const HostMatrix &dy, bool observe = true) {
    int64_t k = 0;
    ASSERT_S2FT_OK(s2ft_sparse_set_count(set.s, &k));
    HostMatrix g(S2FT_F32, 1, k);
    ASSERT_S2FT_OK(s2ft_backward_sparse(cx.ctx, set.s, &x.t, &dy.t, nullptr, nullptr, &g.t, 0));
    if (observe) ASSERT_S2FT_OK(s2ft_spiel_observe(sp.s, cx.ctx, &x.t, &dy.t));
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt.o, 0.0, &g.t, 1, nullptr));
  }
  int32_t finish() {
    int32_t resel = -1;
    EXPECT_EQ(s2ft_spiel_step(sp.s, cx.ctx, &W.t, &resel), S2FT_OK) << s2ft_last_error();
    if (resel == 1) {
      s2ft_sparse_set *n = nullptr;
      EXPECT_EQ(s2ft_spiel_current_set(sp.s, cx.ctx, &n), S2FT_OK) << s2ft_last_error();
      set.reset(n);
    }
    return resel;
  }
};

// x = values (a [rows, cols] f32 matrix) and dy = I (rows x rows): then
// dW = dy^T x = x exactly, and the SDDMM gradient at (r, c) is x[r, c].
HostMatrix identity(int64_t n) {
  HostMatrix m(S2FT_F32, n, n);
  for (int64_t i = 0; i < n; ++i) m.set(i, i, 1.0f);
  return m;
}

HostMatrix gradient_matrix(int64_t rows, int64_t cols, const std::vector<std::pair<int64_t, float>> &big,
                           float small_scale) {
  HostMatrix m(S2FT_F32, rows, cols);
  for (int64_t f = 0; f < rows * cols; ++f) m.set(f / cols, f % cols, small_scale * static_cast<float>((f % 7) + 1) / 7.0f);
  for (const auto &b : big) m.set(b.first / cols, b.first % cols, b.second);
  return m;
}

// ---- options and the schedule -------------------------------------------------------------

TEST(Spiel, OptionsDefaultsAreTheReferences) {
  s2ft_spiel_options o;
  ASSERT_S2FT_OK(s2ft_spiel_options_init(&o, S2FT_SPIEL_OPTIONS_VERSION));
  EXPECT_EQ(o.version, static_cast<uint32_t>(S2FT_SPIEL_OPTIONS_VERSION));
  EXPECT_EQ(o.regrow, S2FT_SPIEL_AG);
  EXPECT_EQ(o.reselect_interval, 20);
  EXPECT_EQ(o.accumulation_steps, 5);
  EXPECT_EQ(o.total_steps, 0);
  EXPECT_EQ(o.initial_rate, 0.2);
  EXPECT_EQ(o.decay, S2FT_SPIEL_DECAY_LINEAR);
  EXPECT_EQ(o.first_full, 1);
  EXPECT_EQ(o.candidates, 0);
  EXPECT_EQ(o.seed_moments, 1);
  EXPECT_EQ(o.ma_source, S2FT_SPIEL_MA_OPTIMIZER);
  EXPECT_EQ(o.observations_per_step, 1);
}

TEST(Spiel, RateFollowsTheDecayFormulas) {
  const double pi = 3.14159265358979323846;
  s2ft_spiel_options o = spiel_options(S2FT_SPIEL_AG, 20, 5, 1000, 0.2, true);
  double p = -1;
  ASSERT_S2FT_OK(s2ft_spiel_rate(&o, 5, &p));
  EXPECT_EQ(p, 1.0);  // the first reselection replaces everything
  for (int64_t t : {1, 4, 6, 25, 45, 500, 999, 1000}) {
    ASSERT_S2FT_OK(s2ft_spiel_rate(&o, t, &p));
    EXPECT_DOUBLE_EQ(p, 0.2 * (1.0 - static_cast<double>(t) / 1000.0)) << t;
  }
  ASSERT_S2FT_OK(s2ft_spiel_rate(&o, 1001, &p));
  EXPECT_EQ(p, 0.0);
  o.first_full = 0;
  ASSERT_S2FT_OK(s2ft_spiel_rate(&o, 5, &p));
  EXPECT_DOUBLE_EQ(p, 0.2 * (1.0 - 5.0 / 1000.0));
  o.decay = S2FT_SPIEL_DECAY_COSINE;
  for (int64_t t : {1, 5, 25, 250, 500, 750, 1000}) {
    ASSERT_S2FT_OK(s2ft_spiel_rate(&o, t, &p));
    EXPECT_DOUBLE_EQ(p, 0.2 * (1.0 + std::cos(pi * static_cast<double>(t) / 1000.0)) / 2.0) << t;
  }
  o.first_full = 1;
  ASSERT_S2FT_OK(s2ft_spiel_rate(&o, 5, &p));
  EXPECT_EQ(p, 1.0);
}

// Reselections happen after steps M + j N (j >= 0, up to T) with
// n = floor(p k), and the stats say so step by step.
TEST(Spiel, ReselectsAtTheScheduledStepsWithTheScheduledCounts) {
  Loop L(S2FT_F32, 6, 7, 1);
  Random rng(2);
  std::vector<int64_t> entries;
  for (int64_t f = 0; f < 42; f += 3) entries.push_back(f);  // k = 14
  s2ft_spiel_options so = spiel_options(S2FT_SPIEL_MA, 4, 2, 15, 0.5, true);
  so.ma_source = S2FT_SPIEL_MA_ACTIVATIONS;
  L.start(entries, optimizer_options(S2FT_OPTIMIZER_ADAMW, true), so);
  const std::vector<int64_t> expected_steps = {2, 6, 10, 14};
  int64_t reselections = 0;
  for (int64_t t = 1; t <= 18; ++t) {
    EXPECT_EQ(stats_of(L.sp.s).next_reselection, t <= 2 ? 2 : t <= 6 ? 6 : t <= 10 ? 10 : t <= 14 ? 14 : 0) << t;
    HostMatrix x(S2FT_F32, 3, 7), dy(S2FT_F32, 3, 6);
    x.fill_random(rng);
    dy.fill_random(rng);
    L.train(x, dy);
    L.finish();
    const s2ft_spiel_stats st = stats_of(L.sp.s);
    EXPECT_EQ(st.steps, t);
    EXPECT_EQ(st.count, 14);
    const bool now = std::find(expected_steps.begin(), expected_steps.end(), t) != expected_steps.end();
    if (now) ++reselections;
    EXPECT_EQ(st.reselections, reselections) << t;
    if (now) {
      double p = 0;
      ASSERT_S2FT_OK(s2ft_spiel_rate(&so, t, &p));
      EXPECT_EQ(st.last_step, t);
      EXPECT_EQ(st.last_rate, p);
      EXPECT_EQ(st.last_target, static_cast<int64_t>(std::floor(p * 14.0))) << t;
      EXPECT_EQ(st.last_target, t == 2 ? 14 : t == 6 ? 4 : t == 10 ? 2 : 0);
      EXPECT_EQ(st.last_dropped, st.last_target);  // 42 - 14 entries outside: always enough to regrow
      EXPECT_EQ(st.last_regrown, st.last_target);
    }
    // Observations: only inside windows (steps 1-2, 5-6, 9-10, 13-14).
    const int64_t in_windows = std::min<int64_t>(t, 2) + std::max<int64_t>(0, std::min<int64_t>(t, 6) - 4) +
                               std::max<int64_t>(0, std::min<int64_t>(t, 10) - 8) +
                               std::max<int64_t>(0, std::min<int64_t>(t, 14) - 12);
    EXPECT_EQ(st.observations, in_windows) << t;
    EXPECT_EQ(st.dense_gradients, 0);  // MA forms none
    EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx).size(), 14u);
  }
}

// ---- AG --------------------------------------------------------------------------------------

struct AgCase {
  int32_t dtype;
  bool ages;
  bool seed;
  bool overlap;  // an entry to drop is the best candidate: it stays
};

class SpielAg : public ::testing::TestWithParam<AgCase> {};

// rows 4, cols 5, k = 4 entries {0, 1, 2, 3}; window of 2 steps (N 4,
// M 2, T 100, p0 0.6: n = floor(0.588 * 4) = 2 at step 2). dy = I, so the
// step-1 dense gradient is x1 and the SDDMM gradients are x's values.
//  - candidates (5 of largest |x1|): {0, 7, 9, 13, 18} (overlap: {2, 0, 7, 9, 13});
//  - sums over the window: 7: 9 - 9 = 0; 9: 8 + 1 = 9; 13: 7 + 5 = 12;
//    18: 6 + 0 = 6; (overlap: 2: 11 + 0); x2 puts 100 at entry 5, which
//    is not a candidate (the window's first step chose them);
//  - deltas: 0: 0.5, 1: 0.1, 2: -0.05, 3: 0.3, so 2 then 1 are dropped;
//  - regrown: 13 and 9 (overlap: 13 and 2, and 2 stays: only 1 leaves).
TEST_P(SpielAg, DropsSmallestDeltasAndRegrowsByWindowSums) {
  const AgCase c = GetParam();
  Loop L(c.dtype, 4, 5, 10 + c.dtype);
  const HostMatrix W0 = L.W;
  s2ft_spiel_options so = spiel_options(S2FT_SPIEL_AG, 4, 2, 100, 0.6, false);
  so.candidates = 5;
  so.seed_moments = c.seed ? 1 : 0;
  L.start({0, 1, 2, 3}, optimizer_options(S2FT_OPTIMIZER_ADAMW, c.ages), so, /*warmup_steps=*/3);
  std::vector<std::pair<int64_t, float>> big1 = {{0, 10.0f}, {7, 9.0f}, {9, 8.0f}, {13, 7.0f}, {18, 6.0f}};
  if (c.overlap) big1.push_back({2, 11.0f});
  const HostMatrix x1 = gradient_matrix(4, 5, big1, 0.1f);
  const HostMatrix x2 = gradient_matrix(4, 5, {{7, -9.0f}, {9, 1.0f}, {13, 5.0f}, {18, 0.0f}, {5, 100.0f}, {2, 0.0f}},
                                        0.1f);
  const HostMatrix I = identity(4);
  L.train(x1, I);
  EXPECT_EQ(L.finish(), 0);
  EXPECT_EQ(stats_of(L.sp.s).dense_gradients, 1);
  L.train(x2, I);
  EXPECT_EQ(stats_of(L.sp.s).dense_gradients, 1);  // only the window's first step formed one
  const float base[4] = {W0.get(0, 0), W0.get(0, 1), W0.get(0, 2), W0.get(0, 3)};
  const float delta[4] = {0.5f, 0.1f, -0.05f, 0.3f};
  for (int64_t f = 0; f < 4; ++f) set_trained(L.opt.o, L.index, L.W, f, base[f] + delta[f]);
  const HostMatrix before = L.W;
  const EntryState s0 = state_of(L.opt.o, L.index);

  EXPECT_EQ(L.finish(), 1);
  const std::vector<int64_t> want =
      c.overlap ? std::vector<int64_t>{0, 2, 3, 13} : std::vector<int64_t>{0, 3, 9, 13};
  const std::vector<int64_t> dropped = c.overlap ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 2};
  const std::vector<int64_t> regrown = c.overlap ? std::vector<int64_t>{13} : std::vector<int64_t>{9, 13};
  EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), want);
  EXPECT_EQ(indices_of(L.set.s), want);
  EXPECT_EQ(L.opt.o->params[0].lines, want);
  const s2ft_spiel_stats st = stats_of(L.sp.s);
  EXPECT_EQ(st.reselections, 1);
  EXPECT_EQ(st.last_step, 2);
  EXPECT_EQ(st.last_target, 2);
  EXPECT_EQ(st.last_dropped, static_cast<int64_t>(dropped.size()));
  EXPECT_EQ(st.last_regrown, static_cast<int64_t>(regrown.size()));
  EXPECT_EQ(st.observations, 2);
  EXPECT_EQ(st.dense_gradients, 1);
  // The weight: dropped entries hold their base bytes again, every other
  // element is as it was (surviving deltas, untouched base values).
  for (int64_t f = 0; f < 20; ++f) {
    const bool was_dropped = std::find(dropped.begin(), dropped.end(), f) != dropped.end();
    EXPECT_EQ(bytes_at(L.W, f), bytes_at(was_dropped ? W0 : before, f)) << "element " << f;
  }
  // Optimizer state: survivors exactly as before; regrown entries zero or seeded.
  const EntryState s1 = state_of(L.opt.o, L.index);
  for (int64_t f : want) {
    if (std::find(regrown.begin(), regrown.end(), f) != regrown.end()) continue;
    for (StateTensor w : {StateTensor::m, StateTensor::v, StateTensor::age, StateTensor::master}) {
      if (s0.t[static_cast<int>(w)].empty()) continue;
      EXPECT_EQ(s1.at(w, f), s0.at(w, f)) << "state " << static_cast<int>(w) << " of surviving entry " << f;
    }
  }
  const double b1 = 0.9, b2 = 0.999;
  const double a = c.ages ? 2.0 : 5.0;  // the window's 2 steps, or the optimizer's 3 + 2
  for (int64_t f : regrown) {
    const double g1 = x1.get(f / 5, f % 5), g2 = x2.get(f / 5, f % 5);
    const double s1m = g1 + g2, s2m = g1 * g1 + g2 * g2;
    if (c.seed) {
      EXPECT_FLOAT_EQ(s1.at(StateTensor::m, f), static_cast<float>(s1m / 2.0 * (1.0 - std::pow(b1, a)))) << f;
      EXPECT_FLOAT_EQ(s1.at(StateTensor::v, f), static_cast<float>(s2m / 2.0 * (1.0 - std::pow(b2, a)))) << f;
      EXPECT_NE(s1.at(StateTensor::m, f), 0.0f);
    } else {
      EXPECT_EQ(s1.at(StateTensor::m, f), 0.0f) << f;
      EXPECT_EQ(s1.at(StateTensor::v, f), 0.0f) << f;
    }
    if (c.ages) {
      EXPECT_EQ(s1.at(StateTensor::age, f), c.seed ? 2.0f : 0.0f) << f;
    }
    if (c.dtype != S2FT_F32) {
      EXPECT_EQ(s1.at(StateTensor::master, f), W0.get(f / 5, f % 5)) << f;
    }
  }
  if (c.ages) {
    EXPECT_EQ(s1.at(StateTensor::age, 0), 5.0f);  // survivors keep their age
  }

  // The schedule goes on: the next window (steps 5, 6) forms one more dense
  // gradient, on its first step only.
  for (int t = 3; t <= 6; ++t) {
    L.train(x1, I);
    L.finish();
  }
  EXPECT_EQ(stats_of(L.sp.s).dense_gradients, 2);
  EXPECT_EQ(stats_of(L.sp.s).observations, 4);
  EXPECT_EQ(stats_of(L.sp.s).reselections, 2);
}

INSTANTIATE_TEST_SUITE_P(Cases, SpielAg,
                         ::testing::Values(AgCase{S2FT_F32, true, true, false}, AgCase{S2FT_F32, false, true, false},
                                           AgCase{S2FT_F32, true, false, false}, AgCase{S2FT_F32, true, true, true},
                                           AgCase{S2FT_BF16, true, true, false}, AgCase{S2FT_BF16, false, true, true}),
                         [](const ::testing::TestParamInfo<AgCase> &i) {
                           return std::string(dtype_label(i.param.dtype)) + (i.param.ages ? "_ages" : "_global") +
                                  (i.param.seed ? "_seeded" : "_zero") + (i.param.overlap ? "_overlap" : "");
                         });

// Gradient accumulation: two observe calls (micro-batches) per step. The
// window's first call forms the dense gradient; both calls of both steps
// add to the sums; the seeded age is 4 calls / 2 per step = 2.
TEST(Spiel, MicroBatchesCountAsOneStep) {
  Loop L(S2FT_F32, 4, 5, 20);
  s2ft_spiel_options so = spiel_options(S2FT_SPIEL_AG, 4, 2, 100, 0.6, false);
  so.candidates = 5;
  so.observations_per_step = 2;
  L.start({0, 1, 2, 3}, optimizer_options(S2FT_OPTIMIZER_ADAMW, true), so);
  const HostMatrix xa = gradient_matrix(4, 5, {{7, 9.0f}, {9, 8.0f}, {13, 7.0f}, {18, 6.0f}, {19, 5.0f}}, 0.1f);
  const HostMatrix xb = gradient_matrix(4, 5, {{7, -1.0f}, {9, 3.0f}, {13, 2.0f}, {18, 0.5f}, {6, 50.0f}}, 0.1f);
  const HostMatrix I = identity(4);
  for (int t = 1; t <= 2; ++t) {
    L.train(xa, I);
    ASSERT_S2FT_OK(s2ft_spiel_observe(L.sp.s, L.cx.ctx, &xb.t, &I.t));  // the step's second micro-batch
    EXPECT_EQ(stats_of(L.sp.s).dense_gradients, 1);
    if (t == 2) {
      for (int64_t f = 0; f < 4; ++f) L.W.set(0, f, L.W.get(0, f) + 0.1f * static_cast<float>(f + 1));
    }
    L.finish();
  }
  EXPECT_EQ(stats_of(L.sp.s).observations, 4);
  // Sums: 7: 2 * 8 = 16, 9: 22, 13: 18, 18: 13, 19: 10 + 2 small: 9 and 13 regrow.
  EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), (std::vector<int64_t>{2, 3, 9, 13}));
  const EntryState st = state_of(L.opt.o, L.index);
  for (int64_t f : {9, 13}) {
    const double ga = xa.get(f / 5, f % 5), gb = xb.get(f / 5, f % 5);
    EXPECT_EQ(st.at(StateTensor::age, f), 2.0f);
    EXPECT_FLOAT_EQ(st.at(StateTensor::m, f), static_cast<float>(2.0 * (ga + gb) / 4.0 * (1.0 - std::pow(0.9, 2.0))));
    EXPECT_FLOAT_EQ(st.at(StateTensor::v, f),
                    static_cast<float>(2.0 * (ga * ga + gb * gb) / 4.0 * (1.0 - std::pow(0.999, 2.0))));
  }
}

// The default candidate count is k, and with first_full the first
// reselection replaces the set by the best k candidates of the window.
TEST(Spiel, AgFirstFullReselectionTakesTheBestCandidates) {
  Loop L(S2FT_F32, 4, 5, 30);
  const HostMatrix W0 = L.W;
  L.start({0, 1, 2, 3}, optimizer_options(S2FT_OPTIMIZER_ADAMW, true),
          spiel_options(S2FT_SPIEL_AG, 10, 1, 100, 0.2, true));
  // Candidates: the 4 largest |x|: 19, 6, 1, 12; entry 1 is trained (and
  // dropped with the others: p = 1), so it stays.
  const HostMatrix x = gradient_matrix(4, 5, {{19, -4.0f}, {6, 3.5f}, {1, 3.0f}, {12, -2.5f}}, 0.5f);
  L.train(x, identity(4));
  for (int64_t f = 0; f < 4; ++f) L.W.set(0, f, W0.get(0, f) + 0.01f * static_cast<float>(f + 1));
  EXPECT_EQ(L.finish(), 1);
  EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), (std::vector<int64_t>{1, 6, 12, 19}));
  const s2ft_spiel_stats st = stats_of(L.sp.s);
  EXPECT_EQ(st.last_rate, 1.0);
  EXPECT_EQ(st.last_target, 4);
  EXPECT_EQ(st.last_dropped, 3);
  EXPECT_EQ(bytes_at(L.W, 0), bytes_at(W0, 0));
  EXPECT_EQ(bytes_at(L.W, 2), bytes_at(W0, 2));
  EXPECT_EQ(bytes_at(L.W, 3), bytes_at(W0, 3));
  EXPECT_EQ(L.W.get(0, 1), W0.get(0, 1) + 0.02f);  // stayed, with its value
}

// k = all: nothing is outside the set, so nothing regrows (AG: every
// candidate is a dropped entry and stays; MA: no entry to score).
TEST(Spiel, AllEntriesTrainedHasNothingToRegrow) {
  for (int32_t regrow : {S2FT_SPIEL_AG, S2FT_SPIEL_MA}) {
    Loop L(S2FT_F32, 3, 4, 40);
    const HostMatrix W0 = L.W;
    std::vector<int64_t> all(12);
    for (int64_t f = 0; f < 12; ++f) all[static_cast<size_t>(f)] = f;
    s2ft_spiel_options so = spiel_options(regrow, 2, 1, 10, 0.5, true);
    so.ma_source = S2FT_SPIEL_MA_ACTIVATIONS;
    L.start(all, optimizer_options(S2FT_OPTIMIZER_ADAMW, true), so);
    Random rng(41);
    HostMatrix x(S2FT_F32, 5, 4), dy(S2FT_F32, 5, 3);
    x.fill_random(rng);
    dy.fill_random(rng);
    for (int64_t f = 0; f < 12; ++f) L.W.set(f / 4, f % 4, W0.get(f / 4, f % 4) + 0.1f);
    const HostMatrix before = L.W;
    L.train(x, dy);
    EXPECT_EQ(L.finish(), 0) << regrow;
    const s2ft_spiel_stats st = stats_of(L.sp.s);
    EXPECT_EQ(st.reselections, 1);
    EXPECT_EQ(st.last_target, 12);
    EXPECT_EQ(st.last_dropped, 0);
    EXPECT_EQ(st.last_regrown, 0);
    EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), all);
    EXPECT_EQ(L.W.bytes, before.bytes);
  }
}

// k = 1: p = 0.2 gives n = 0 (nothing happens) except at the first full
// reselection, which moves the one entry to the best candidate.
TEST(Spiel, OneEntry) {
  Loop L(S2FT_BF16, 3, 4, 50);
  const HostMatrix W0 = L.W;
  L.start({5}, optimizer_options(S2FT_OPTIMIZER_ADAMW, true), spiel_options(S2FT_SPIEL_AG, 3, 1, 30, 0.2, true));
  HostMatrix xs(S2FT_F32, 3, 4);  // dy = I: dW = xs
  for (int64_t f = 0; f < 12; ++f) xs.set(f / 4, f % 4, 0.01f * static_cast<float>(f));
  xs.set(2, 3, -3.0f);  // entry 11 is the best candidate
  L.train(xs, identity(3));
  set_trained(L.opt.o, L.index, L.W, 5, W0.get(1, 1) + 0.25f);
  EXPECT_EQ(L.finish(), 1);
  EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), (std::vector<int64_t>{11}));
  EXPECT_EQ(bytes_at(L.W, 5), bytes_at(W0, 5));
  EXPECT_EQ(L.W.bytes, W0.bytes);  // entry 5 reset, entry 11 untouched
  for (int t = 2; t <= 8; ++t) {  // reselections at 4 and 7: n = floor(0.2 * (1 - t / 30)) = 0
    L.train(xs, identity(3));
    EXPECT_EQ(L.finish(), 0) << t;
  }
  const s2ft_spiel_stats st = stats_of(L.sp.s);
  EXPECT_EQ(st.reselections, 3);
  EXPECT_EQ(st.last_target, 0);
  EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), (std::vector<int64_t>{11}));
}

// ---- MA --------------------------------------------------------------------------------------

// The row x column score from activations: R = per-row sums of dy^2,
// C = per-column sums of x^2 over the window; the best entries outside
// the set regrow, ties to the lower flat index, and no dense gradient.
TEST(Spiel, MaFromActivationsRanksTheRowColumnProduct) {
  // dy [2, 4]: R = [0, 1, 9, 4]; x [2, 5]: C = [1, 0, 0, 4, 0.25].
  // Outside {0, 1, 2, 3}: 13 (36), 18 (16), 10 (9), then a tie at 4
  // between 8 and 15 (8 first), then 14 (2.25) ...
  HostMatrix dy(S2FT_F32, 2, 4), x(S2FT_F32, 2, 5);
  dy.set(0, 2, 3.0f);
  dy.set(1, 1, 1.0f);
  dy.set(1, 3, 2.0f);
  x.set(0, 0, 1.0f);
  x.set(0, 3, 2.0f);
  x.set(1, 4, 0.5f);
  struct Want {
    double p0;
    bool full;
    std::vector<int64_t> set;
  };
  for (const Want &w : {Want{0.6, false, {0, 3, 13, 18}},  // n = 2: drop 1 and 2 (smallest deltas)
                        Want{0.2, true, {8, 10, 13, 18}}}) {  // n = 4: the tie at 4 goes to 8
    Loop L(S2FT_F32, 4, 5, 60);
    const HostMatrix W0 = L.W;
    s2ft_spiel_options so = spiel_options(S2FT_SPIEL_MA, 3, 1, 50, w.p0, w.full);
    so.ma_source = S2FT_SPIEL_MA_ACTIVATIONS;
    L.start({0, 1, 2, 3}, optimizer_options(S2FT_OPTIMIZER_ADAMW, false), so);
    L.train(x, dy);
    const float delta[4] = {0.4f, -0.1f, 0.2f, 0.3f};
    for (int64_t f = 0; f < 4; ++f) L.W.set(0, f, W0.get(0, f) + delta[f]);
    EXPECT_EQ(L.finish(), 1);
    EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), w.set);
    EXPECT_EQ(stats_of(L.sp.s).dense_gradients, 0);
    for (int64_t f = 0; f < 4; ++f)
      if (!std::binary_search(w.set.begin(), w.set.end(), f)) {
        EXPECT_EQ(bytes_at(L.W, f), bytes_at(W0, f)) << f;
      }
  }
}

// Zero scores: entries outside the rows and columns with evidence come
// last, in flat order.
TEST(Spiel, MaZeroScoresGoInFlatOrder) {
  HostMatrix dy(S2FT_F32, 1, 4), x(S2FT_F32, 1, 5);
  dy.set(0, 3, 1.0f);
  x.set(0, 4, 1.0f);  // only (3, 4) = 19 scores above 0
  Loop L(S2FT_F32, 4, 5, 61);
  s2ft_spiel_options so = spiel_options(S2FT_SPIEL_MA, 3, 1, 50, 0.2, true);
  so.ma_source = S2FT_SPIEL_MA_ACTIVATIONS;
  L.start({0, 2, 4}, optimizer_options(S2FT_OPTIMIZER_ADAMW, false), so);
  L.train(x, dy);
  EXPECT_EQ(L.finish(), 1);
  EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), (std::vector<int64_t>{1, 3, 19}));
}

// Brute force over every entry against the library's row x column search,
// on random data (many sizes and counts; no ties in practice).
TEST(Spiel, MaMatchesBruteForce) {
  Random rng(62);
  for (int trial = 0; trial < 12; ++trial) {
    const int64_t rows = 3 + rng.below(9), cols = 3 + rng.below(9), size = rows * cols;
    const int64_t k = 1 + rng.below(size / 2);
    std::vector<int64_t> entries = shuffled_lines(rng, size, k);
    std::sort(entries.begin(), entries.end());
    const int64_t T = 1 + rng.below(6);
    HostMatrix x(S2FT_F32, T, cols), dy(S2FT_F32, T, rows);
    x.fill_random(rng);
    dy.fill_random(rng);
    if (trial % 3 == 0) {  // some empty rows and columns: zero scores
      for (int64_t t = 0; t < T; ++t) {
        dy.set(t, 0, 0.0f);
        x.set(t, cols - 1, 0.0f);
      }
    }
    Loop L(S2FT_F32, rows, cols, 70 + static_cast<uint64_t>(trial));
    const HostMatrix W0 = L.W;
    const double p0 = 0.1 + 0.8 * rng.uniform(0.0, 1.0);
    s2ft_spiel_options so = spiel_options(S2FT_SPIEL_MA, 5, 1, 1000, p0, trial % 2 == 0);
    so.ma_source = S2FT_SPIEL_MA_ACTIVATIONS;
    L.start(entries, optimizer_options(S2FT_OPTIMIZER_ADAMW, false), so);
    L.train(x, dy);
    std::vector<double> delta(static_cast<size_t>(k));
    for (int64_t e = 0; e < k; ++e) {
      const int64_t f = entries[static_cast<size_t>(e)];
      const float d = static_cast<float>(rng.uniform());
      L.W.set(f / cols, f % cols, W0.get(f / cols, f % cols) + d);
      delta[static_cast<size_t>(e)] = std::fabs(static_cast<double>(L.W.get(f / cols, f % cols)) -
                                                static_cast<double>(W0.get(f / cols, f % cols)));
    }
    L.finish();
    // Reference: n, the drop order, the scores, the regrow order.
    double p = 0;
    ASSERT_S2FT_OK(s2ft_spiel_rate(&so, 1, &p));
    const int64_t n = static_cast<int64_t>(std::floor(p * static_cast<double>(k)));
    std::vector<double> R(static_cast<size_t>(rows), 0.0), C(static_cast<size_t>(cols), 0.0);
    for (int64_t t = 0; t < T; ++t) {
      for (int64_t r = 0; r < rows; ++r) R[static_cast<size_t>(r)] += double(dy.get(t, r)) * double(dy.get(t, r));
      for (int64_t c = 0; c < cols; ++c) C[static_cast<size_t>(c)] += double(x.get(t, c)) * double(x.get(t, c));
    }
    std::vector<int64_t> outside;
    for (int64_t f = 0; f < size; ++f)
      if (!std::binary_search(entries.begin(), entries.end(), f)) outside.push_back(f);
    std::stable_sort(outside.begin(), outside.end(), [&](int64_t a, int64_t b) {
      return R[static_cast<size_t>(a / cols)] * C[static_cast<size_t>(a % cols)] >
             R[static_cast<size_t>(b / cols)] * C[static_cast<size_t>(b % cols)];
    });
    const int64_t moved = std::min<int64_t>(n, static_cast<int64_t>(outside.size()));
    std::vector<int64_t> order(static_cast<size_t>(k));
    for (int64_t e = 0; e < k; ++e) order[static_cast<size_t>(e)] = e;
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return delta[static_cast<size_t>(a)] < delta[static_cast<size_t>(b)]; });
    std::vector<int64_t> want;
    for (int64_t i = moved; i < k; ++i) want.push_back(entries[static_cast<size_t>(order[static_cast<size_t>(i)])]);
    want.insert(want.end(), outside.begin(), outside.begin() + moved);
    std::sort(want.begin(), want.end());
    EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), want) << "trial " << trial;
    EXPECT_EQ(stats_of(L.sp.s).last_regrown, moved);
  }
}

// MA from the SM3 optimizer's accumulators (the reference's way): one SM3
// step on the diagonal entries with gradients 1, 2, 3, 4 makes R = C =
// [1, 4, 9, 16] (C[4] = 0). Outside the diagonal: 13 and 17 tie at 144
// (13 first), then 8 and 16 at 64. Momentum buffers of survivors are
// kept, new ones start at zero, and the accumulators are kept.
TEST(Spiel, MaFromSm3Accumulators) {
  for (int32_t dtype : {S2FT_F32, S2FT_BF16}) {
    Loop L(dtype, 4, 5, 80);
    const HostMatrix W0 = L.W;
    s2ft_spiel_options so = spiel_options(S2FT_SPIEL_MA, 3, 1, 50, 0.8, false);  // n = floor(0.784 * 4) = 3
    L.start({0, 6, 12, 18}, optimizer_options(S2FT_OPTIMIZER_SM3, false), so);
    HostMatrix x(S2FT_F32, 4, 5);
    for (int64_t i = 0; i < 4; ++i) x.set(i, i, static_cast<float>(i + 1));
    L.train(x, identity(4));
    const EntryState s0 = state_of(L.opt.o, L.index);
    const std::vector<float> R0 = s2ft::read_param_state(*L.opt.o, L.index, StateTensor::row_acc);
    const std::vector<float> C0 = s2ft::read_param_state(*L.opt.o, L.index, StateTensor::col_acc);
    EXPECT_EQ(R0, (std::vector<float>{1, 4, 9, 16}));
    EXPECT_EQ(C0, (std::vector<float>{1, 4, 9, 16, 0}));
    // lr 0: no deltas; the drop order is the flat order (ties): 0, 6, 12 go.
    EXPECT_EQ(L.finish(), 1);
    EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), (std::vector<int64_t>{8, 13, 17, 18}));
    const EntryState s1 = state_of(L.opt.o, L.index);
    EXPECT_EQ(s1.at(StateTensor::momentum, 18), s0.at(StateTensor::momentum, 18));
    EXPECT_NE(s1.at(StateTensor::momentum, 18), 0.0f);
    for (int64_t f : {8, 13, 17}) EXPECT_EQ(s1.at(StateTensor::momentum, f), 0.0f);
    EXPECT_EQ(s2ft::read_param_state(*L.opt.o, L.index, StateTensor::row_acc), R0);
    EXPECT_EQ(s2ft::read_param_state(*L.opt.o, L.index, StateTensor::col_acc), C0);
    EXPECT_EQ(L.W.bytes, W0.bytes);
    EXPECT_EQ(stats_of(L.sp.s).observations, 0);  // the optimizer's state needs no observations
  }
}

// The entries of another sparse parameter of the same weight never regrow.
TEST(Spiel, OtherParametersOfTheWeightAreNotRegrown) {
  Loop L(S2FT_F32, 4, 5, 90);
  HostMatrix dy(S2FT_F32, 2, 4), x(S2FT_F32, 2, 5);
  dy.set(0, 2, 3.0f);
  dy.set(1, 1, 1.0f);
  dy.set(1, 3, 2.0f);
  x.set(0, 0, 1.0f);
  x.set(0, 3, 2.0f);
  x.set(1, 4, 0.5f);  // best outside {0, 1, 2, 3}: 13, 18, 10, 8
  s2ft_spiel_options so = spiel_options(S2FT_SPIEL_MA, 3, 1, 50, 0.6, false);
  so.ma_source = S2FT_SPIEL_MA_ACTIVATIONS;
  Set other(L.cx.ctx, 4, 5, {13, 19});
  ASSERT_S2FT_OK(s2ft_sparse_set_create(L.cx.ctx, 4, 5, std::vector<int64_t>{0, 1, 2, 3}.data(), 4, &L.set.s));
  const s2ft_optimizer_options oo = optimizer_options(S2FT_OPTIMIZER_ADAMW, false);
  ASSERT_S2FT_OK(s2ft_optimizer_create(L.cx.ctx, &oo, &L.opt.o));
  int64_t i0 = -1, i1 = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(L.opt.o, &L.W.t, L.set.s, &i0));
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(L.opt.o, &L.W.t, other.s, &i1));
  L.index = i0;
  ASSERT_S2FT_OK(s2ft_spiel_create(L.cx.ctx, L.opt.o, i0, &L.W.t, &so, &L.sp.s));
  HostMatrix g0(S2FT_F32, 1, 4), g1(S2FT_F32, 1, 2);
  ASSERT_S2FT_OK(s2ft_spiel_observe(L.sp.s, L.cx.ctx, &x.t, &dy.t));
  const s2ft_tensor grads[2] = {g0.t, g1.t};
  ASSERT_S2FT_OK(s2ft_optimizer_step(L.opt.o, 0.0, grads, 2, nullptr));
  EXPECT_EQ(L.finish(), 1);
  EXPECT_EQ(current_entries(L.sp.s, L.cx.ctx), (std::vector<int64_t>{2, 3, 10, 18}));  // drops 0, 1 (ties)
}

// ---- errors ----------------------------------------------------------------------------------

TEST(Spiel, ErrorsNameTheArgument) {
  Context cx;
  HostMatrix W(S2FT_F32, 4, 5), V(S2FT_F32, 4, 5);
  Random rng(100);
  W.fill_random(rng);
  Set set(cx.ctx, 4, 5, {0, 1, 2, 3});
  Opt opt, sm3;
  const s2ft_optimizer_options oo = optimizer_options(S2FT_OPTIMIZER_ADAMW, true);
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &oo, &opt.o));
  int64_t index = -1, slice_index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.o, &W.t, set.s, &index));
  const s2ft_slice slice{S2FT_AXIS_ROWS, 0, 2, nullptr};
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt.o, &V.t, &slice, &slice_index));
  const s2ft_spiel_options so = spiel_options(S2FT_SPIEL_AG, 4, 2, 100, 0.2, true);
  s2ft_spiel *sp = nullptr;

  // options_init, rate
  EXPECT_S2FT_ERROR(s2ft_spiel_options_init(nullptr, S2FT_SPIEL_OPTIONS_VERSION), S2FT_ERR_INVALID_ARGUMENT, "opts");
  s2ft_spiel_options bad;
  EXPECT_S2FT_ERROR(s2ft_spiel_options_init(&bad, 9), S2FT_ERR_INVALID_ARGUMENT, "version 9");
  double p = 0;
  EXPECT_S2FT_ERROR(s2ft_spiel_rate(nullptr, 1, &p), S2FT_ERR_INVALID_ARGUMENT, "opts is NULL");
  EXPECT_S2FT_ERROR(s2ft_spiel_rate(&so, 1, nullptr), S2FT_ERR_INVALID_ARGUMENT, "rate is NULL");
  EXPECT_S2FT_ERROR(s2ft_spiel_rate(&so, 0, &p), S2FT_ERR_INVALID_ARGUMENT, "step must be >= 1");

  // create: arguments
  EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, opt.o, index, &W.t, &so, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
  EXPECT_S2FT_ERROR(s2ft_spiel_create(nullptr, opt.o, index, &W.t, &so, &sp), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_EQ(sp, nullptr);
  EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, nullptr, index, &W.t, &so, &sp), S2FT_ERR_INVALID_ARGUMENT, "opt");
  EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, opt.o, index, nullptr, &so, &sp), S2FT_ERR_INVALID_ARGUMENT,
                    "weight is NULL");
  EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, opt.o, index, &W.t, nullptr, &sp), S2FT_ERR_INVALID_ARGUMENT, "opts");
  EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, opt.o, 7, &W.t, &so, &sp), S2FT_ERR_INVALID_ARGUMENT,
                    "param_index 7 is out of range");
  EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, opt.o, slice_index, &V.t, &so, &sp), S2FT_ERR_INVALID_ARGUMENT,
                    "is a slice");
  EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, opt.o, index, &V.t, &so, &sp), S2FT_ERR_INVALID_ARGUMENT,
                    "weight is not the weight of optimizer parameter 0");
  s2ft_tensor wt = W.t;
  wt.strides[0] = 6;
  EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, opt.o, index, &wt, &so, &sp), S2FT_ERR_INVALID_ARGUMENT,
                    "weight is not the weight");
  s2ft_tensor wc = W.t;
  wc.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, opt.o, index, &wc, &so, &sp), S2FT_ERR_DEVICE, "weight");
  // create: options
  auto expect_bad = [&](s2ft_spiel_options x, const char *needle) {
    s2ft_spiel *q = nullptr;
    EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, opt.o, index, &W.t, &x, &q), S2FT_ERR_INVALID_ARGUMENT, needle);
    EXPECT_EQ(q, nullptr);
    s2ft_spiel_destroy(q);
  };
  s2ft_spiel_options x = so;
  x.version = 3;
  expect_bad(x, "s2ft_spiel_options_init");
  x = so;
  x.regrow = 2;
  expect_bad(x, "opts->regrow");
  x = so;
  x.reselect_interval = 0;
  expect_bad(x, "opts->reselect_interval must be >= 1");
  x = so;
  x.accumulation_steps = 0;
  expect_bad(x, "opts->accumulation_steps must be in [1, reselect_interval = 4]");
  x.accumulation_steps = 5;
  expect_bad(x, "opts->accumulation_steps must be in [1, reselect_interval = 4], got 5");
  x = so;
  x.total_steps = 0;
  expect_bad(x, "opts->total_steps must be >= 1");
  x = so;
  x.initial_rate = 1.5;
  expect_bad(x, "opts->initial_rate must be in [0, 1]");
  x.initial_rate = std::nan("");
  expect_bad(x, "opts->initial_rate");
  x = so;
  x.decay = 4;
  expect_bad(x, "opts->decay");
  x = so;
  x.candidates = -1;
  expect_bad(x, "opts->candidates must be >= 0");
  x.candidates = 21;
  expect_bad(x, "opts->candidates is 21 but the weight has only rows * cols = 20");
  x = so;
  x.ma_source = 5;
  expect_bad(x, "opts->ma_source");
  x = so;
  x.observations_per_step = 0;
  expect_bad(x, "opts->observations_per_step");
  x = so;
  x.regrow = S2FT_SPIEL_MA;
  expect_bad(x, "is not S2FT_OPTIMIZER_SM3 (use S2FT_SPIEL_MA_ACTIVATIONS)");
  // A slice of the same weight in the optimizer.
  {
    Opt o2;
    ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &oo, &o2.o));
    int64_t i0 = -1, i1 = -1;
    Set s2(cx.ctx, 4, 5, {15, 16});
    ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(o2.o, &W.t, s2.s, &i0));
    ASSERT_S2FT_OK(s2ft_optimizer_add_param(o2.o, &W.t, &slice, &i1));
    EXPECT_S2FT_ERROR(s2ft_spiel_create(cx.ctx, o2.o, i0, &W.t, &so, &sp), S2FT_ERR_INVALID_ARGUMENT,
                      "parameter 1 is a slice of the same weight");
  }

  // A live schedule.
  const int64_t live = s2ft_live_handles();
  Spiel s;
  ASSERT_S2FT_OK(s2ft_spiel_create(cx.ctx, opt.o, index, &W.t, &so, &s.s));
  EXPECT_EQ(s2ft_live_handles(), live + 1);
  HostMatrix xx(S2FT_F32, 3, 5), dy(S2FT_F32, 3, 4), xb(S2FT_BF16, 3, 5), x4(S2FT_F32, 3, 4), dy2(S2FT_F32, 2, 4);
  EXPECT_S2FT_ERROR(s2ft_spiel_observe(nullptr, cx.ctx, &xx.t, &dy.t), S2FT_ERR_INVALID_ARGUMENT, "spiel is NULL");
  EXPECT_S2FT_ERROR(s2ft_spiel_observe(s.s, nullptr, &xx.t, &dy.t), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_spiel_observe(s.s, cx.ctx, nullptr, &dy.t), S2FT_ERR_INVALID_ARGUMENT, "x is NULL");
  EXPECT_S2FT_ERROR(s2ft_spiel_observe(s.s, cx.ctx, &xx.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "dy is NULL");
  EXPECT_S2FT_ERROR(s2ft_spiel_observe(s.s, cx.ctx, &x4.t, &dy.t), S2FT_ERR_SHAPE, "x");
  EXPECT_S2FT_ERROR(s2ft_spiel_observe(s.s, cx.ctx, &xx.t, &dy2.t), S2FT_ERR_SHAPE, "dy");
  EXPECT_S2FT_ERROR(s2ft_spiel_observe(s.s, cx.ctx, &xb.t, &dy.t), S2FT_ERR_DTYPE, "dy");
  s2ft_tensor xc = xx.t;
  xc.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_spiel_observe(s.s, cx.ctx, &xc, &dy.t), S2FT_ERR_DEVICE, "x");
  EXPECT_EQ(stats_of(s.s).observations, 0);  // nothing was observed by the failing calls

  int32_t resel = 7;
  EXPECT_S2FT_ERROR(s2ft_spiel_step(nullptr, cx.ctx, &W.t, &resel), S2FT_ERR_INVALID_ARGUMENT, "spiel is NULL");
  EXPECT_EQ(resel, 0);
  EXPECT_S2FT_ERROR(s2ft_spiel_step(s.s, nullptr, &W.t, &resel), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_spiel_step(s.s, cx.ctx, nullptr, &resel), S2FT_ERR_INVALID_ARGUMENT, "weight is NULL");
  EXPECT_S2FT_ERROR(s2ft_spiel_step(s.s, cx.ctx, &V.t, &resel), S2FT_ERR_INVALID_ARGUMENT, "weight is not the weight");
  // Step 1 (no reselection), then step 2 reselects without any observe call.
  ASSERT_S2FT_OK(s2ft_spiel_step(s.s, cx.ctx, &W.t, nullptr));
  EXPECT_S2FT_ERROR(s2ft_spiel_step(s.s, cx.ctx, &W.t, &resel), S2FT_ERR_STATE,
                    "s2ft_spiel_observe was not called during its accumulation window (steps 1 to 2)");
  EXPECT_EQ(stats_of(s.s).steps, 1);  // not counted
  // A reindex behind the schedule's back.
  Set moved(cx.ctx, 4, 5, {0, 1, 2, 4});
  ASSERT_S2FT_OK(s2ft_optimizer_sparse_reindex(opt.o, index, moved.s));
  EXPECT_S2FT_ERROR(s2ft_spiel_step(s.s, cx.ctx, &W.t, &resel), S2FT_ERR_STATE, "was reindexed outside the schedule");
  ASSERT_S2FT_OK(s2ft_optimizer_sparse_reindex(opt.o, index, set.s));

  s2ft_sparse_set *cs = nullptr;
  EXPECT_S2FT_ERROR(s2ft_spiel_current_set(nullptr, cx.ctx, &cs), S2FT_ERR_INVALID_ARGUMENT, "spiel is NULL");
  EXPECT_S2FT_ERROR(s2ft_spiel_current_set(s.s, nullptr, &cs), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_spiel_current_set(s.s, cx.ctx, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
  s2ft_spiel_stats st{};
  st.version = S2FT_SPIEL_STATS_VERSION;
  EXPECT_S2FT_ERROR(s2ft_spiel_stats_get(nullptr, &st), S2FT_ERR_INVALID_ARGUMENT, "spiel is NULL");
  EXPECT_S2FT_ERROR(s2ft_spiel_stats_get(s.s, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
  st.version = 0;
  EXPECT_S2FT_ERROR(s2ft_spiel_stats_get(s.s, &st), S2FT_ERR_INVALID_ARGUMENT, "out->version is 0");

  // Destroyed handles.
  const int64_t live2 = s2ft_live_handles();
  s2ft_spiel *dead = nullptr;
  ASSERT_S2FT_OK(s2ft_spiel_create(cx.ctx, opt.o, index, &W.t, &so, &dead));
  s2ft_spiel_destroy(dead);
  s2ft_spiel_destroy(nullptr);
  EXPECT_EQ(s2ft_live_handles(), live2);
}

// ---- LIFT's refresh ------------------------------------------------------------------------------

// An exactly rank-1 weight u v^T with distinct |u_i v_j|: LIFT with rank 1
// selects its k largest entries. The weight is then changed to another
// rank-1 weight (a new principal set); refreshing moves the parameter
// there: kept entries keep their state bit-exactly, new ones start at zero,
// and the weight is not changed.
TEST(LiftRefresh, MovesTheParameterToTheNewPrincipalWeights) {
  for (int32_t dtype : {S2FT_F32, S2FT_BF16}) {
    Context cx;
    const int64_t rows = 5, cols = 6, k = 6;
    HostMatrix W(dtype, rows, cols);
    const double u[5] = {1.0, 2.0, 3.5, 5.0, 7.5}, v[6] = {1.0, 1.25, 1.75, 2.5, 3.25, 4.5};
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) W.set(i, j, static_cast<float>(u[i] * v[j] / 8.0));
    // Largest 6 of |u_i v_j|: row 4 x cols 5, 4, 3 and row 3 x col 5, ...
    std::vector<int64_t> order(static_cast<size_t>(rows * cols));
    for (int64_t f = 0; f < rows * cols; ++f) order[static_cast<size_t>(f)] = f;
    const auto by_value = [&](const HostMatrix &h) {
      return [&h, cols](int64_t a, int64_t b) {
        const double x = std::fabs(h.get(a / cols, a % cols)), y = std::fabs(h.get(b / cols, b % cols));
        return x > y || (x == y && a < b);
      };
    };
    std::sort(order.begin(), order.end(), by_value(W));
    std::vector<int64_t> top(order.begin(), order.begin() + k);
    std::sort(top.begin(), top.end());
    // The parameter starts on the top 6 of the first weight...
    Set set(cx.ctx, rows, cols, top);
    Opt opt;
    const s2ft_optimizer_options oo = optimizer_options(S2FT_OPTIMIZER_ADAMW, true);
    ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &oo, &opt.o));
    int64_t index = -1;
    ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.o, &W.t, set.s, &index));
    HostMatrix g(S2FT_F32, 1, k);
    for (int64_t e = 0; e < k; ++e) g.set(0, e, 0.5f + static_cast<float>(e));
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt.o, 0.0, &g.t, 1, nullptr));
    ASSERT_S2FT_OK(s2ft_optimizer_step(opt.o, 0.0, &g.t, 1, nullptr));
    // ... then the weight changes to u' v^T with u' = u reversed: the top
    // entries move from row 4 to row 0 (kept: none in rows 0-3 before).
    const double u2[5] = {7.5, 5.0, 3.5, 2.0, 1.0};
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < cols; ++j) W.set(i, j, static_cast<float>(u2[i] * v[j] / 8.0));
    if (dtype != S2FT_F32) {  // the masters follow the weight (as training would have it)
      std::vector<float> m = s2ft::read_param_state(*opt.o, index, StateTensor::master);
      for (size_t e = 0; e < top.size(); ++e) m[e] = W.get(top[e] / cols, top[e] % cols);
      s2ft::write_param_state(*opt.o, index, StateTensor::master, m);
    }
    std::sort(order.begin(), order.end(), by_value(W));
    std::vector<int64_t> top2(order.begin(), order.begin() + k);
    std::sort(top2.begin(), top2.end());
    std::vector<int64_t> common;
    std::set_intersection(top.begin(), top.end(), top2.begin(), top2.end(), std::back_inserter(common));
    ASSERT_NE(top2, top);
    const EntryState s0 = state_of(opt.o, index);
    const HostMatrix before = W;
    s2ft_lift_options lo;
    ASSERT_S2FT_OK(s2ft_lift_options_init(&lo, S2FT_LIFT_OPTIONS_VERSION));
    lo.rank = 1;
    lo.count = k;
    s2ft_sparse_set *ns = nullptr;
    int64_t kept = -1;
    const s2ft_status st = s2ft_lift_refresh(cx.ctx, opt.o, index, &W.t, &lo, &ns, &kept);
    if (st == S2FT_ERR_UNSUPPORTED) GTEST_SKIP() << s2ft_last_error();
    ASSERT_EQ(st, S2FT_OK) << s2ft_last_error();
    Set fresh;
    fresh.reset(ns);
    EXPECT_EQ(indices_of(fresh.s), top2);
    EXPECT_EQ(kept, static_cast<int64_t>(common.size()));
    EXPECT_EQ(opt.o->params[0].lines, top2);
    EXPECT_EQ(W.bytes, before.bytes);
    const EntryState s1 = state_of(opt.o, index);
    for (int64_t f : top2) {
      const bool was = std::binary_search(top.begin(), top.end(), f);
      for (StateTensor w : {StateTensor::m, StateTensor::v, StateTensor::age, StateTensor::master}) {
        if (s1.t[static_cast<int>(w)].empty()) continue;
        if (was) {
          EXPECT_EQ(s1.at(w, f), s0.at(w, f)) << f;
        } else if (w == StateTensor::master) {
          EXPECT_EQ(s1.at(w, f), W.get(f / cols, f % cols)) << f;
        } else {
          EXPECT_EQ(s1.at(w, f), 0.0f) << f;
        }
      }
    }
    // A refresh on an unchanged weight keeps every entry.
    ASSERT_S2FT_OK(s2ft_lift_refresh(cx.ctx, opt.o, index, &W.t, &lo, &ns, nullptr));
    fresh.reset(ns);
    EXPECT_EQ(indices_of(fresh.s), top2);
    ASSERT_S2FT_OK(s2ft_lift_refresh(cx.ctx, opt.o, index, &W.t, &lo, &ns, &kept));
    fresh.reset(ns);
    EXPECT_EQ(kept, k);
  }
}

// Its overlap (two refreshes in a row: a partial move) and kept count.
TEST(LiftRefresh, KeptCountsTheEntriesInBothSets) {
  Context cx;
  HostMatrix W(S2FT_F32, 4, 4);
  // Rank 1: row scale [1, 2, 3, 4] x column scale [1, 1.5, 2.25, 3.5].
  const double cs[4] = {1.0, 1.5, 2.25, 3.5};
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 4; ++j) W.set(i, j, static_cast<float>(static_cast<double>(i + 1) * cs[j]));
  // Top 4: (3,3) = 14, (2,3) = 10.5, (3,2) = 9, (1,3) = 7 (then 6.75).
  // Start from {0, 1, 14, 15}.
  Set set(cx.ctx, 4, 4, {0, 1, 14, 15});
  Opt opt;
  const s2ft_optimizer_options oo = optimizer_options(S2FT_OPTIMIZER_SGD, false);
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &oo, &opt.o));
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.o, &W.t, set.s, &index));
  s2ft_lift_options lo;
  ASSERT_S2FT_OK(s2ft_lift_options_init(&lo, S2FT_LIFT_OPTIONS_VERSION));
  lo.rank = 1;
  lo.count = 4;
  s2ft_sparse_set *ns = nullptr;
  int64_t kept = -1;
  const s2ft_status st = s2ft_lift_refresh(cx.ctx, opt.o, index, &W.t, &lo, &ns, &kept);
  if (st == S2FT_ERR_UNSUPPORTED) GTEST_SKIP() << s2ft_last_error();
  ASSERT_EQ(st, S2FT_OK) << s2ft_last_error();
  Set fresh;
  fresh.reset(ns);
  EXPECT_EQ(indices_of(fresh.s), (std::vector<int64_t>{7, 11, 14, 15}));
  EXPECT_EQ(kept, 2);
}

TEST(LiftRefresh, ErrorsNameTheArgument) {
  Context cx;
  HostMatrix W(S2FT_F32, 4, 5), V(S2FT_F32, 4, 5);
  Random rng(120);
  W.fill_random(rng);
  Set set(cx.ctx, 4, 5, {0, 1, 2, 3});
  Opt opt;
  const s2ft_optimizer_options oo = optimizer_options(S2FT_OPTIMIZER_ADAMW, false);
  ASSERT_S2FT_OK(s2ft_optimizer_create(cx.ctx, &oo, &opt.o));
  int64_t index = -1, slice_index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.o, &W.t, set.s, &index));
  const s2ft_slice slice{S2FT_AXIS_ROWS, 0, 2, nullptr};
  ASSERT_S2FT_OK(s2ft_optimizer_add_param(opt.o, &V.t, &slice, &slice_index));
  s2ft_lift_options lo;
  ASSERT_S2FT_OK(s2ft_lift_options_init(&lo, S2FT_LIFT_OPTIONS_VERSION));
  lo.rank = 2;
  lo.count = 4;
  s2ft_sparse_set *ns = nullptr;
  int64_t kept = -1;
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(nullptr, opt.o, index, &W.t, &lo, &ns, &kept), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(cx.ctx, nullptr, index, &W.t, &lo, &ns, &kept), S2FT_ERR_INVALID_ARGUMENT,
                    "opt is NULL");
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(cx.ctx, opt.o, index, nullptr, &lo, &ns, &kept), S2FT_ERR_INVALID_ARGUMENT,
                    "weight is NULL");
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(cx.ctx, opt.o, index, &W.t, nullptr, &ns, &kept), S2FT_ERR_INVALID_ARGUMENT,
                    "opts is NULL");
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(cx.ctx, opt.o, index, &W.t, &lo, nullptr, &kept), S2FT_ERR_INVALID_ARGUMENT,
                    "new_set is NULL");
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(cx.ctx, opt.o, 5, &W.t, &lo, &ns, &kept), S2FT_ERR_INVALID_ARGUMENT,
                    "param_index 5 is out of range");
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(cx.ctx, opt.o, slice_index, &V.t, &lo, &ns, &kept), S2FT_ERR_INVALID_ARGUMENT,
                    "is a slice");
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(cx.ctx, opt.o, index, &V.t, &lo, &ns, &kept), S2FT_ERR_INVALID_ARGUMENT,
                    "weight is not the weight of optimizer parameter 0");
  s2ft_lift_options x = lo;
  x.rank = 9;
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(cx.ctx, opt.o, index, &W.t, &x, &ns, &kept), S2FT_ERR_INVALID_ARGUMENT,
                    "opts->rank is 9");
  x = lo;
  x.version = 0;
  EXPECT_S2FT_ERROR(s2ft_lift_refresh(cx.ctx, opt.o, index, &W.t, &x, &ns, &kept), S2FT_ERR_INVALID_ARGUMENT,
                    "s2ft_lift_options_init");
  EXPECT_EQ(ns, nullptr);
  // An entry of another sparse parameter of the same weight: refused, nothing changed.
  Set other(cx.ctx, 4, 5, {19});
  int64_t other_index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt.o, &W.t, other.s, &other_index));
  x = lo;
  x.count = 20;
  x.density = 0.0;
  const s2ft_status st = s2ft_lift_refresh(cx.ctx, opt.o, index, &W.t, &x, &ns, &kept);
  if (st != S2FT_ERR_UNSUPPORTED) {
    EXPECT_EQ(st, S2FT_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(s2ft_last_error()).find("overlaps parameter 2"), std::string::npos) << s2ft_last_error();
    EXPECT_EQ(ns, nullptr);
    EXPECT_EQ(opt.o->params[0].lines, (std::vector<int64_t>{0, 1, 2, 3}));
  }
}

}  // namespace
