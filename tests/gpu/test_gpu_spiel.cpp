// SpIEL's schedule on CUDA against the CPU backend: the same crafted runs
// (AG with seeded AdamW moments, AG under SGD on a bf16 weight, MA from
// activations and from SM3's accumulators) on a CUDA and a CPU context
// give the same sets, the same statistics and the same weight bytes
// (dropped entries restored to their base bytes), and training goes on
// alike; the dense gradient is formed in tiles across a large weight.
// LIFT's refresh on CUDA gives the CPU's new set, kept count and weight.
#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#include "gpu/gpu_support.hpp"

namespace {

using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;
using s2ft_test::Context;
using s2ft_test::HostMatrix;
using s2ft_test::Random;

// A tensor on the host or the device, with the same values.
struct Tensor {
  HostMatrix h;
  std::unique_ptr<DeviceMatrix> d;
  Tensor(const HostMatrix &m, bool gpu) : h(m) {
    if (gpu) d = std::make_unique<DeviceMatrix>(h);
  }
  s2ft_tensor *t() { return d ? &d->t : &h.t; }
  HostMatrix read() {
    if (!d) return h;
    s2ft_gpu::settle();
    return d->download();
  }
  // Overwrites the values in place (the library may keep the pointer),
  // after the library's queued work is done.
  void write(const HostMatrix &m) {
    ASSERT_EQ(m.bytes.size(), h.bytes.size());
    std::memcpy(h.bytes.data(), m.bytes.data(), m.bytes.size());
    if (d) {
      s2ft_gpu::settle();
      d->upload(m);
    }
  }
};

HostMatrix identity(int64_t n) {
  HostMatrix m(S2FT_F32, n, n);
  for (int64_t i = 0; i < n; ++i) m.set(i, i, 1.0f);
  return m;
}

HostMatrix crafted(int64_t rows, int64_t cols, const std::vector<std::pair<int64_t, float>> &big) {
  HostMatrix m(S2FT_F32, rows, cols);
  for (int64_t f = 0; f < rows * cols; ++f) m.set(f / cols, f % cols, 0.1f * static_cast<float>((f % 7) + 1) / 7.0f);
  for (const auto &b : big) m.set(b.first / cols, b.first % cols, b.second);
  return m;
}

enum class Case { kAgAdamW, kAgSgdBf16, kMaActivations, kMaSm3 };

struct Outcome {
  std::vector<int64_t> set;
  HostMatrix base, reselected, trained;
  s2ft_spiel_stats stats{};
};

// One run of a case on ctx (gpu: device tensors): 2 steps (a window of 2,
// or of 1 for MA), the reselection, then one training step with lr > 0.
Outcome run(s2ft_context *ctx, bool gpu, Case c) {
  Outcome out;
  const int64_t rows = 4, cols = 5;
  const int32_t dtype = c == Case::kAgSgdBf16 || c == Case::kMaActivations ? S2FT_BF16 : S2FT_F32;
  Random rng(500 + static_cast<int>(c));
  HostMatrix W0(dtype, rows, cols);
  W0.fill_random(rng);
  out.base = W0;
  Tensor W(W0, gpu);
  const std::vector<int64_t> entries = c == Case::kMaSm3 ? std::vector<int64_t>{0, 6, 12, 18}
                                                         : std::vector<int64_t>{0, 1, 2, 3};
  s2ft_sparse_set *set = nullptr;
  EXPECT_EQ(s2ft_sparse_set_create(ctx, rows, cols, entries.data(), 4, &set), S2FT_OK) << s2ft_last_error();
  s2ft_optimizer_options oo;
  EXPECT_EQ(s2ft_optimizer_options_init(&oo, S2FT_OPTIMIZER_OPTIONS_VERSION), S2FT_OK);
  oo.kind = c == Case::kAgSgdBf16 ? S2FT_OPTIMIZER_SGD : c == Case::kMaSm3 ? S2FT_OPTIMIZER_SM3 : S2FT_OPTIMIZER_ADAMW;
  oo.age_bias_correction = c == Case::kAgAdamW ? 1 : 0;
  oo.momentum = c == Case::kMaSm3 ? 0.5 : 0.0;
  s2ft_optimizer *opt = nullptr;
  EXPECT_EQ(s2ft_optimizer_create(ctx, &oo, &opt), S2FT_OK) << s2ft_last_error();
  int64_t index = -1;
  EXPECT_EQ(s2ft_optimizer_add_sparse(opt, W.t(), set, &index), S2FT_OK) << s2ft_last_error();
  s2ft_spiel_options so;
  EXPECT_EQ(s2ft_spiel_options_init(&so, S2FT_SPIEL_OPTIONS_VERSION), S2FT_OK);
  const bool ag = c == Case::kAgAdamW || c == Case::kAgSgdBf16;
  so.regrow = ag ? S2FT_SPIEL_AG : S2FT_SPIEL_MA;
  so.reselect_interval = 4;
  so.accumulation_steps = ag ? 2 : 1;
  so.total_steps = 100;
  so.initial_rate = c == Case::kMaSm3 ? 0.8 : 0.6;
  so.first_full = 0;
  so.candidates = ag ? 5 : 0;
  so.ma_source = c == Case::kMaActivations ? S2FT_SPIEL_MA_ACTIVATIONS : S2FT_SPIEL_MA_OPTIMIZER;
  s2ft_spiel *sp = nullptr;
  EXPECT_EQ(s2ft_spiel_create(ctx, opt, index, W.t(), &so, &sp), S2FT_OK) << s2ft_last_error();

  // Inputs: AG as the CPU test (candidates {0, 7, 9, 13, 18}, 13 and 9
  // regrow in place of 2 and 1); MA: R = [0, 1, 9, 4], C = [1, 0, 0, 4,
  // 0.25] (13 and 18 regrow in place of 0 and 1: no deltas, flat order);
  // SM3: the diagonal's gradients 1..4 (8, 13 and 17 in place of 0, 6, 12).
  std::vector<std::pair<HostMatrix, HostMatrix>> steps;
  if (ag) {
    steps.push_back({crafted(rows, cols, {{0, 10.0f}, {7, 9.0f}, {9, 8.0f}, {13, 7.0f}, {18, 6.0f}}), identity(4)});
    steps.push_back({crafted(rows, cols, {{7, -9.0f}, {9, 1.0f}, {13, 5.0f}, {18, 0.0f}, {5, 100.0f}}), identity(4)});
  } else if (c == Case::kMaActivations) {
    HostMatrix x(S2FT_F32, 2, cols), dy(S2FT_F32, 2, rows);
    dy.set(0, 2, 3.0f);
    dy.set(1, 1, 1.0f);
    dy.set(1, 3, 2.0f);
    x.set(0, 0, 1.0f);
    x.set(0, 3, 2.0f);
    x.set(1, 4, 0.5f);
    steps.push_back({x, dy});
  } else {
    HostMatrix x(S2FT_F32, 4, cols);
    for (int64_t i = 0; i < 4; ++i) x.set(i, i, static_cast<float>(i + 1));
    steps.push_back({x, identity(4)});
  }
  for (size_t s = 0; s < steps.size(); ++s) {
    Tensor x(steps[s].first, gpu), dy(steps[s].second, gpu), g(HostMatrix(S2FT_F32, 1, 4), gpu);
    EXPECT_EQ(s2ft_backward_sparse(ctx, set, x.t(), dy.t(), nullptr, nullptr, g.t(), 0), S2FT_OK) << s2ft_last_error();
    EXPECT_EQ(s2ft_spiel_observe(sp, ctx, x.t(), dy.t()), S2FT_OK) << s2ft_last_error();
    double lr = 0.0;
    if (c == Case::kAgSgdBf16 && s + 1 == steps.size()) {  // SGD, lr 1: the deltas are -g
      HostMatrix crafted_g(S2FT_F32, 1, 4);
      const float d[4] = {-0.5f, -0.125f, 0.0625f, -0.25f};
      for (int64_t e = 0; e < 4; ++e) crafted_g.set(0, e, d[e]);
      g.write(crafted_g);
      lr = 1.0;
    }
    EXPECT_EQ(s2ft_optimizer_step(opt, lr, g.t(), 1, nullptr), S2FT_OK) << s2ft_last_error();
    if (c == Case::kAgAdamW && s + 1 == steps.size()) {  // deltas written into the f32 weight
      HostMatrix w = W.read();
      const float d[4] = {0.5f, 0.1f, -0.05f, 0.3f};
      for (int64_t f = 0; f < 4; ++f) w.set(0, f, W0.get(0, f) + d[f]);
      W.write(w);
    }
    int32_t resel = -1;
    EXPECT_EQ(s2ft_spiel_step(sp, ctx, W.t(), &resel), S2FT_OK) << s2ft_last_error();
    EXPECT_EQ(resel, s + 1 == steps.size() ? 1 : 0);
    if (gpu) s2ft_gpu::settle();  // before this step's inputs are freed
  }
  s2ft_sparse_set *now = nullptr;
  EXPECT_EQ(s2ft_spiel_current_set(sp, ctx, &now), S2FT_OK) << s2ft_last_error();
  int64_t n = 0;
  EXPECT_EQ(s2ft_sparse_set_count(now, &n), S2FT_OK);
  out.set.assign(static_cast<size_t>(n), -1);
  EXPECT_EQ(s2ft_sparse_set_indices(now, out.set.data(), n), S2FT_OK);
  out.reselected = W.read();
  out.stats.version = S2FT_SPIEL_STATS_VERSION;
  EXPECT_EQ(s2ft_spiel_stats_get(sp, &out.stats), S2FT_OK);
  // Training goes on with the new set: the seeded or zeroed state shows in the update.
  HostMatrix G(S2FT_F32, 1, n);
  for (int64_t e = 0; e < n; ++e) G.set(0, e, 0.5f - 0.25f * static_cast<float>(e));
  Tensor g(G, gpu);
  EXPECT_EQ(s2ft_optimizer_step(opt, 0.01, g.t(), 1, nullptr), S2FT_OK) << s2ft_last_error();
  out.trained = W.read();
  s2ft_sparse_set_destroy(now);
  s2ft_spiel_destroy(sp);
  s2ft_optimizer_destroy(opt);
  s2ft_sparse_set_destroy(set);
  return out;
}

TEST(GpuSpiel, MatchesCpu) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Context c;
  const std::vector<std::vector<int64_t>> want = {{0, 3, 9, 13}, {0, 3, 9, 13}, {2, 3, 13, 18}, {8, 13, 17, 18}};
  for (Case k : {Case::kAgAdamW, Case::kAgSgdBf16, Case::kMaActivations, Case::kMaSm3}) {
    const int i = static_cast<int>(k);
    const Outcome gpu = run(g.ctx, true, k), cpu = run(c.ctx, false, k);
    EXPECT_EQ(cpu.set, want[static_cast<size_t>(i)]) << "case " << i;
    EXPECT_EQ(gpu.set, cpu.set) << "case " << i;
    EXPECT_EQ(gpu.stats.last_dropped, cpu.stats.last_dropped) << "case " << i;
    EXPECT_EQ(gpu.stats.observations, cpu.stats.observations) << "case " << i;
    EXPECT_EQ(gpu.stats.dense_gradients, cpu.stats.dense_gradients) << "case " << i;
    EXPECT_TRUE(s2ft_gpu::bit_equal(gpu.reselected, cpu.reselected)) << "case " << i;
    for (int64_t f = 0; f < 20; ++f) {  // dropped entries hold their base bytes
      const bool trained_before = k == Case::kMaSm3 ? f % 6 == 0 && f <= 18 : f < 4;
      const bool trained_now = std::binary_search(gpu.set.begin(), gpu.set.end(), f);
      if (trained_before && !trained_now) {
        EXPECT_EQ(gpu.reselected.get(f / 5, f % 5), gpu.base.get(f / 5, f % 5)) << "case " << i << " entry " << f;
      }
    }
    const double tol = gpu.trained.dtype == S2FT_F32 ? 1e-6 : 1e-2;
    EXPECT_LT(s2ft_gpu::max_rel_diff(gpu.trained, cpu.trained), tol) << "case " << i;
  }
}

// dW of a 4100 x 4100 weight spans two tiles of the device's dense
// gradient: eight large entries (one per token) are the candidates, and
// with a full first reselection they become the set.
TEST(GpuSpiel, DenseGradientAcrossTiles) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  const int64_t rows = 4100, cols = 4100, T = 8;
  Random rng(600);
  HostMatrix W(S2FT_F32, rows, cols);
  for (int64_t f = 0; f < rows * cols; f += 977) W.set(f / cols, f % cols, 0.5f);
  DeviceMatrix dw(W);
  HostMatrix x(S2FT_F32, T, cols), dy(S2FT_F32, T, rows);
  std::vector<int64_t> big;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t r = (t * 613 + 11) % rows, c = (t * 1259 + 7) % cols;
    dy.set(t, r, 1.0f);
    for (int64_t j = 0; j < cols; ++j) x.set(t, j, static_cast<float>(rng.uniform(-0.01, 0.01)));
    x.set(t, c, 5.0f + static_cast<float>(t));
    big.push_back(r * cols + c);
  }
  std::sort(big.begin(), big.end());
  std::vector<int64_t> entries;
  for (int64_t e = 0; e < T; ++e) entries.push_back(e * 3);
  s2ft_sparse_set *set = nullptr;
  ASSERT_S2FT_OK(s2ft_sparse_set_create(g.ctx, rows, cols, entries.data(), T, &set));
  s2ft_optimizer_options oo;
  ASSERT_S2FT_OK(s2ft_optimizer_options_init(&oo, S2FT_OPTIMIZER_OPTIONS_VERSION));
  oo.age_bias_correction = 1;
  s2ft_optimizer *opt = nullptr;
  ASSERT_S2FT_OK(s2ft_optimizer_create(g.ctx, &oo, &opt));
  int64_t index = -1;
  ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(opt, &dw.t, set, &index));
  s2ft_spiel_options so;
  ASSERT_S2FT_OK(s2ft_spiel_options_init(&so, S2FT_SPIEL_OPTIONS_VERSION));
  so.accumulation_steps = 1;
  so.total_steps = 100;
  s2ft_spiel *sp = nullptr;
  ASSERT_S2FT_OK(s2ft_spiel_create(g.ctx, opt, index, &dw.t, &so, &sp));
  DeviceMatrix dx(x), ddy(dy), grad(S2FT_F32, 1, T);
  ASSERT_S2FT_OK(s2ft_backward_sparse(g.ctx, set, &dx.t, &ddy.t, nullptr, nullptr, &grad.t, 0));
  ASSERT_S2FT_OK(s2ft_spiel_observe(sp, g.ctx, &dx.t, &ddy.t));
  ASSERT_S2FT_OK(s2ft_optimizer_step(opt, 0.0, &grad.t, 1, nullptr));
  int32_t resel = 0;
  ASSERT_S2FT_OK(s2ft_spiel_step(sp, g.ctx, &dw.t, &resel));
  EXPECT_EQ(resel, 1);
  s2ft_sparse_set *now = nullptr;
  ASSERT_S2FT_OK(s2ft_spiel_current_set(sp, g.ctx, &now));
  std::vector<int64_t> got(static_cast<size_t>(T));
  ASSERT_S2FT_OK(s2ft_sparse_set_indices(now, got.data(), T));
  EXPECT_EQ(got, big);
  s2ft_spiel_stats st{};
  st.version = S2FT_SPIEL_STATS_VERSION;
  ASSERT_S2FT_OK(s2ft_spiel_stats_get(sp, &st));
  EXPECT_EQ(st.dense_gradients, 1);
  g.sync();
  EXPECT_TRUE(s2ft_gpu::bit_equal(dw.download(), W));  // lr 0, resets to base: the weight is as it was
  s2ft_sparse_set_destroy(now);
  s2ft_spiel_destroy(sp);
  s2ft_optimizer_destroy(opt);
  s2ft_sparse_set_destroy(set);
}

// s2ft_lift_refresh on a CUDA context re-selects the CPU context's entries
// (the SVD agrees to rounding on a weight with a clear spectral gap, and
// the ranking is the CPU's code), keeps as many, and moves the optimizer
// parameter alike: the next steps change the same entries the same way.
TEST(GpuSpiel, LiftRefreshMatchesCpu) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Context c;
  struct Shape {
    int64_t rows, cols;
    int32_t method;
  };
  const Shape shapes[] = {{19, 33, S2FT_LIFT_EXACT}, {41, 17, S2FT_LIFT_EXACT}, {27, 35, S2FT_LIFT_RANDOMIZED}};
  for (const Shape &sh : shapes) {
    Random rng(static_cast<uint64_t>(31 * sh.rows + sh.cols));
    const HostMatrix W0 = s2ft_gpu::spectral_gap_matrix(rng, S2FT_F32, sh.rows, sh.cols, 4);
    const int64_t size = sh.rows * sh.cols;
    const std::vector<int64_t> idx = s2ft_test::shuffled_lines(rng, size, size / 8);
    std::vector<int64_t> sorted = idx;
    std::sort(sorted.begin(), sorted.end());
    const int64_t n0 = static_cast<int64_t>(sorted.size());
    HostMatrix G(S2FT_F32, static_cast<int64_t>(1), n0);
    G.fill_random(rng);

    HostMatrix Wc = W0;
    DeviceMatrix dw(W0);
    DeviceMatrix dg(G);
    s2ft_optimizer_options oo;
    ASSERT_S2FT_OK(s2ft_optimizer_options_init(&oo, S2FT_OPTIMIZER_OPTIONS_VERSION));
    s2ft_sparse_set *cset = nullptr, *gset = nullptr;
    ASSERT_S2FT_OK(s2ft_sparse_set_create(c.ctx, sh.rows, sh.cols, sorted.data(), n0, &cset));
    ASSERT_S2FT_OK(s2ft_sparse_set_create(g.ctx, sh.rows, sh.cols, sorted.data(), n0, &gset));
    s2ft_optimizer *copt = nullptr, *gopt = nullptr;
    ASSERT_S2FT_OK(s2ft_optimizer_create(c.ctx, &oo, &copt));
    ASSERT_S2FT_OK(s2ft_optimizer_create(g.ctx, &oo, &gopt));
    int64_t ci = -1, gi = -1;
    ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(copt, &Wc.t, cset, &ci));
    ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(gopt, &dw.t, gset, &gi));
    // One step on the old set, so the refresh moves optimizer state.
    ASSERT_S2FT_OK(s2ft_optimizer_step(copt, 0.01, &G.t, 1, nullptr));
    ASSERT_S2FT_OK(s2ft_optimizer_step(gopt, 0.01, &dg.t, 1, nullptr));

    s2ft_lift_options o;
    ASSERT_S2FT_OK(s2ft_lift_options_init(&o, S2FT_LIFT_OPTIONS_VERSION));
    o.rank = 3;
    o.count = n0;
    o.method = sh.method;
    o.oversampling = 5;
    o.seed = 77;
    s2ft_sparse_set *cnew = nullptr, *gnew = nullptr;
    int64_t ckept = -1, gkept = -1;
    ASSERT_S2FT_OK(s2ft_lift_refresh(c.ctx, copt, ci, &Wc.t, &o, &cnew, &ckept));
    ASSERT_S2FT_OK(s2ft_lift_refresh(g.ctx, gopt, gi, &dw.t, &o, &gnew, &gkept));
    ASSERT_NE(gnew, nullptr);
    EXPECT_EQ(gkept, ckept);
    std::vector<int64_t> cidx(static_cast<size_t>(n0)), gidx(static_cast<size_t>(n0), -1);
    ASSERT_S2FT_OK(s2ft_sparse_set_indices(cnew, cidx.data(), n0));
    ASSERT_S2FT_OK(s2ft_sparse_set_indices(gnew, gidx.data(), n0));
    EXPECT_EQ(gidx, cidx) << "[" << sh.rows << ", " << sh.cols << "] method " << sh.method;
    // Training goes on alike on the new entries.
    for (int step = 0; step < 2; ++step) {
      G.fill_random(rng);
      g.sync();  // the last step may still read dg
      dg.upload(G);
      ASSERT_S2FT_OK(s2ft_optimizer_step(copt, 0.01, &G.t, 1, nullptr));
      ASSERT_S2FT_OK(s2ft_optimizer_step(gopt, 0.01, &dg.t, 1, nullptr));
    }
    g.sync();
    EXPECT_LT(s2ft_gpu::max_rel_diff(dw.download(), Wc), 1e-5);
    s2ft_optimizer_destroy(copt);
    s2ft_optimizer_destroy(gopt);
    s2ft_sparse_set_destroy(cnew);
    s2ft_sparse_set_destroy(gnew);
    s2ft_sparse_set_destroy(cset);
    s2ft_sparse_set_destroy(gset);
  }
}

}  // namespace
