// Calibration statistics on a CUDA context against the CPU backend: weight,
// activation and gradient sums for every target (V and UP activations
// derived from O and DOWN), GQA and plain multi-head shapes with odd sizes,
// all three dtypes, padded and column-major inputs, accumulation across
// reads, a gradient larger than one GEMM tile; then s2ft_select on the CUDA
// statistics picks the units it picks on the CPU's.
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "gpu/gpu_support.hpp"
#include "support/target_geometry.hpp"

namespace {

using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;
using s2ft_gpu::settle;
using s2ft_test::HostMatrix;
using s2ft_test::Random;
using s2ft_test::transpose;

constexpr int32_t O = S2FT_TARGET_O, V = S2FT_TARGET_V, DOWN = S2FT_TARGET_DOWN, UP = S2FT_TARGET_UP;

// A device copy of a host matrix in one of three layouts: 0 compact,
// 1 padded rows, 2 column-major (transposed storage); `t` describes it.
struct DeviceCopy {
  DeviceMatrix m;
  s2ft_tensor t{};
  DeviceCopy(const HostMatrix &h, int layout) : m(layout == 2 ? transpose(h) : h, layout == 1 ? h.cols + 5 : -1) {
    t = m.t;
    if (layout == 2) {
      t.shape[0] = h.rows;
      t.shape[1] = h.cols;
      t.strides[0] = 1;
      t.strides[1] = h.rows;
    }
  }
};

struct Stats {
  s2ft_statistics *stats = nullptr;
  Stats(s2ft_context *ctx, const s2ft_model_shape &shape) {
    EXPECT_EQ(s2ft_statistics_create(ctx, &shape, &stats), S2FT_OK) << s2ft_last_error();
  }
  ~Stats() { s2ft_statistics_destroy(stats); }
  Stats(const Stats &) = delete;
  Stats &operator=(const Stats &) = delete;
};

using s2ft_test::weight_shape;  // [out, in] of a target
bool column_target(int32_t t) { return s2ft_test::by_columns(t); }
int64_t unit_width(const s2ft_model_shape &s, int32_t t) { return t == O || t == V ? s.head_dim : 1; }

std::vector<double> get(const s2ft_statistics *st, int32_t layer, int32_t target, int32_t kind) {
  int64_t n = -1;
  EXPECT_EQ(s2ft_statistics_get(st, layer, target, kind, nullptr, 0, &n), S2FT_OK) << s2ft_last_error();
  std::vector<double> v(static_cast<size_t>(n < 0 ? 0 : n), -1.0);
  EXPECT_EQ(s2ft_statistics_get(st, layer, target, kind, v.data(), n, &n), S2FT_OK) << s2ft_last_error();
  return v;
}

// Every unit within `tol` of the CPU's value, relative to that value.
void expect_sums_match(const std::vector<double> &got, const std::vector<double> &want, double tol,
                       const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t u = 0; u < want.size(); ++u) {
    EXPECT_TRUE(std::isfinite(got[u])) << what << " unit " << u;
    EXPECT_LE(std::fabs(got[u] - want[u]), tol * std::fabs(want[u])) << what << " unit " << u << ": got " << got[u]
                                                                        << ", want " << want[u];
  }
}

// Calibration data for every (layer, target): values of unit u are scaled
// by 1.3^p(u) for a random permutation p, so units are well apart and both
// backends rank them the same way.
struct Calib {
  s2ft_model_shape shape;
  int32_t dtype;
  struct Target {
    HostMatrix weight, decoy;                  // decoy: recorded first, then replaced
    std::vector<HostMatrix> act;               // O and DOWN only
    std::vector<std::pair<HostMatrix, HostMatrix>> grad;  // (x, dy)
  };
  std::vector<std::array<Target, S2FT_NUM_TARGETS>> t;

  Calib(const s2ft_model_shape &s, int32_t dt, uint64_t seed, std::vector<int64_t> act_T = {5, 300},
        std::vector<int64_t> grad_T = {4, 33})
      : shape(s), dtype(dt), t(static_cast<size_t>(s.n_layers)) {
    Random rng(seed);
    for (int32_t l = 0; l < s.n_layers; ++l)
      for (int32_t tg = 0; tg < S2FT_NUM_TARGETS; ++tg) {
        Target &T = t[static_cast<size_t>(l)][static_cast<size_t>(tg)];
        int64_t out = 0, in = 0;
        weight_shape(s, tg, &out, &in);
        const bool cols = column_target(tg);
        const int64_t wd = unit_width(s, tg);
        const int64_t units = (cols ? in : out) / wd;
        std::vector<int64_t> p(static_cast<size_t>(units));
        for (int64_t u = 0; u < units; ++u) p[static_cast<size_t>(u)] = u;
        for (int64_t u = units - 1; u > 0; --u) std::swap(p[static_cast<size_t>(u)], p[static_cast<size_t>(rng.below(u + 1))]);
        auto scale = [&](int64_t line) { return std::pow(1.3, static_cast<double>(p[static_cast<size_t>(line / wd)])); };

        T.weight = HostMatrix(dt, out, in);
        T.decoy = HostMatrix(dt, out, in);
        T.decoy.fill_random(rng);
        for (int64_t i = 0; i < out; ++i)
          for (int64_t j = 0; j < in; ++j) T.weight.set(i, j, static_cast<float>(rng.uniform() * scale(cols ? j : i)));
        if (cols)
          for (int64_t rows : act_T) {
            HostMatrix x(dt, rows, in);
            for (int64_t i = 0; i < rows; ++i)
              for (int64_t j = 0; j < in; ++j) x.set(i, j, static_cast<float>(rng.uniform() * scale(j)));
            T.act.push_back(x);
          }
        for (int64_t rows : grad_T) {
          HostMatrix x(dt, rows, in), dy(dt, rows, out);
          for (int64_t i = 0; i < rows; ++i) {
            for (int64_t j = 0; j < in; ++j) x.set(i, j, static_cast<float>(rng.uniform() * (cols ? scale(j) : 1.0)));
            for (int64_t j = 0; j < out; ++j)
              dy.set(i, j, static_cast<float>(rng.uniform(-0.5, 0.5) * (cols ? 1.0 : scale(j))));
          }
          T.grad.emplace_back(x, dy);
        }
      }
  }
  Target &at(int32_t l, int32_t tg) { return t[static_cast<size_t>(l)][static_cast<size_t>(tg)]; }
};

// Feeds the calibration data to CPU statistics (host tensors) and CUDA
// statistics (device copies in varied layouts), kind by kind.
struct Feeder {
  Calib &c;
  s2ft_statistics *cpu, *gpu;
  GpuContext &g;
  std::vector<std::unique_ptr<DeviceCopy>> keep;  // alive until the queued work has run

  const DeviceCopy &dev(const HostMatrix &h, int layout) {
    keep.push_back(std::make_unique<DeviceCopy>(h, layout));
    settle();
    return *keep.back();
  }
  void weights() {
    for (int32_t l = 0; l < c.shape.n_layers; ++l)
      for (int32_t tg = 0; tg < S2FT_NUM_TARGETS; ++tg) {
        Calib::Target &T = c.at(l, tg);
        ASSERT_S2FT_OK(s2ft_statistics_add_weight(cpu, l, tg, &T.decoy.t));
        ASSERT_S2FT_OK(s2ft_statistics_add_weight(gpu, l, tg, &dev(T.decoy, 0).t));
        ASSERT_S2FT_OK(s2ft_statistics_add_weight(cpu, l, tg, &T.weight.t));
        ASSERT_S2FT_OK(s2ft_statistics_add_weight(gpu, l, tg, &dev(T.weight, (l + tg) % 3).t));
      }
  }
  // Batch `b` of the activations (all batches when b < 0).
  void activations(int b = -1) {
    for (int32_t l = 0; l < c.shape.n_layers; ++l)
      for (int32_t tg : {O, DOWN}) {
        Calib::Target &T = c.at(l, tg);
        for (size_t i = 0; i < T.act.size(); ++i) {
          if (b >= 0 && static_cast<size_t>(b) != i) continue;
          ASSERT_S2FT_OK(s2ft_statistics_add_activation(cpu, l, tg, &T.act[i].t));
          ASSERT_S2FT_OK(s2ft_statistics_add_activation(gpu, l, tg, &dev(T.act[i], static_cast<int>(i + l) % 3).t));
        }
      }
  }
  void gradients() {
    for (int32_t l = 0; l < c.shape.n_layers; ++l)
      for (int32_t tg = 0; tg < S2FT_NUM_TARGETS; ++tg) {
        Calib::Target &T = c.at(l, tg);
        for (size_t i = 0; i < T.grad.size(); ++i) {
          auto &xd = T.grad[i];
          ASSERT_S2FT_OK(s2ft_statistics_add_gradient(cpu, l, tg, &xd.first.t, &xd.second.t));
          const int lx = static_cast<int>(i + tg) % 3, ld = static_cast<int>(i + tg + 1) % 3;
          const DeviceCopy &x = dev(xd.first, lx);
          const DeviceCopy &dy = dev(xd.second, ld);
          ASSERT_S2FT_OK(s2ft_statistics_add_gradient(gpu, l, tg, &x.t, &dy.t));
        }
      }
  }
  ~Feeder() { g.sync(); }
};

// Tolerances: weight and activation sums add the same f32 values in double
// (only the order differs); gradient sums come from f32 GEMMs.
constexpr double kExactTol = 1e-12;
constexpr double kGradTol = 1e-4;

void expect_all_match(const s2ft_model_shape &s, const s2ft_statistics *cpu, const s2ft_statistics *gpu,
                      const std::string &label) {
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int32_t tg = 0; tg < S2FT_NUM_TARGETS; ++tg)
      for (int32_t kind : {S2FT_STAT_WEIGHT, S2FT_STAT_ACTIVATION, S2FT_STAT_GRADIENT}) {
        const std::string what = label + " layer " + std::to_string(l) + " target " + std::to_string(tg) + " kind " +
                                 std::to_string(kind);
        expect_sums_match(get(gpu, l, tg, kind), get(cpu, l, tg, kind),
                          kind == S2FT_STAT_GRADIENT ? kGradTol : kExactTol, what);
      }
}

struct ShapeCase {
  const char *name;
  s2ft_model_shape shape;
};
const ShapeCase kShapes[] = {
    {"gqa", {2, 13, 6, 2, 3, 19}},   // r = 3, odd sizes
    {"mha", {1, 24, 4, 4, 5, 37}},   // one query head per KV head
    {"gqa8", {1, 16, 8, 1, 2, 9}},   // a single KV head
};

class GpuStatisticsParity : public ::testing::TestWithParam<std::tuple<int, int32_t>> {};

TEST_P(GpuStatisticsParity, EveryKindAndTargetMatchesCpu) {
  S2FT_REQUIRE_GPU();
  const ShapeCase &sc = kShapes[std::get<0>(GetParam())];
  const int32_t dt = std::get<1>(GetParam());
  const s2ft_model_shape &s = sc.shape;
  GpuContext g;
  s2ft_test::Context cpu_ctx;
  Stats cpu(cpu_ctx.ctx, s), gpu(g.ctx, s);
  Calib cal(s, dt, 17 + static_cast<uint64_t>(dt));
  {
    Feeder f{cal, cpu.stats, gpu.stats, g, {}};
    f.weights();
    if (HasFatalFailure()) return;
    f.activations(0);
    if (HasFatalFailure()) return;
    // A read in between: the host copies refresh, and later adds accumulate on top.
    for (int32_t l = 0; l < s.n_layers; ++l) {
      expect_sums_match(get(gpu.stats, l, DOWN, S2FT_STAT_ACTIVATION), get(cpu.stats, l, DOWN, S2FT_STAT_ACTIVATION),
                        kExactTol, "first batch, layer " + std::to_string(l));
      expect_sums_match(get(gpu.stats, l, V, S2FT_STAT_WEIGHT), get(cpu.stats, l, V, S2FT_STAT_WEIGHT), kExactTol,
                        "weights, layer " + std::to_string(l));
    }
    f.activations(1);
    if (HasFatalFailure()) return;
    f.gradients();
    if (HasFatalFailure()) return;
  }
  expect_all_match(s, cpu.stats, gpu.stats, std::string(sc.name) + " " + s2ft_test::dtype_label(dt));
}

INSTANTIATE_TEST_SUITE_P(ShapesAndDtypes, GpuStatisticsParity,
                         ::testing::Combine(::testing::Values(0, 1, 2),
                                            ::testing::Values(S2FT_F32, S2FT_F16, S2FT_BF16)),
                         [](const ::testing::TestParamInfo<std::tuple<int, int32_t>> &i) {
                           return std::string(kShapes[std::get<0>(i.param)].name) + "_" +
                                  s2ft_test::dtype_label(std::get<1>(i.param));
                         });

// ---------------------------------------------------------------------------

std::vector<int64_t> selected(const s2ft_selection *sel, int32_t layer, int32_t target) {
  int64_t n = -1;
  EXPECT_EQ(s2ft_selection_indices(sel, layer, target, S2FT_INDEX_UNITS | S2FT_INDEX_BASE, nullptr, 0, &n), S2FT_OK)
      << s2ft_last_error();
  std::vector<int64_t> v(static_cast<size_t>(n < 0 ? 0 : n), -1);
  EXPECT_EQ(s2ft_selection_indices(sel, layer, target, S2FT_INDEX_UNITS | S2FT_INDEX_BASE, v.data(), n, &n), S2FT_OK)
      << s2ft_last_error();
  return v;
}

TEST(GpuStatistics, SelectPicksTheSameUnitsAsOnTheCpu) {
  S2FT_REQUIRE_GPU();
  const s2ft_model_shape s{3, 13, 6, 2, 3, 19};
  for (const int32_t dt : {S2FT_F32, S2FT_BF16}) {
    GpuContext g;
    s2ft_test::Context cpu_ctx;
    Stats cpu(cpu_ctx.ctx, s), gpu(g.ctx, s);
    Calib cal(s, dt, 91 + static_cast<uint64_t>(dt));
    {
      Feeder f{cal, cpu.stats, gpu.stats, g, {}};
      f.weights();
      f.activations();
      f.gradients();
      if (HasFatalFailure()) return;
    }
    for (const int32_t strategy :
         {S2FT_STRATEGY_WEIGHT, S2FT_STRATEGY_ACTIVATION, S2FT_STRATEGY_WEIGHT_ACT, S2FT_STRATEGY_GRADIENT})
      for (const int32_t order : {S2FT_ORDER_LARGEST, S2FT_ORDER_SMALLEST})
        for (const int32_t gran : {S2FT_HEADS_BY_GROUP, S2FT_HEADS_SINGLE})
          for (const int32_t alloc : {S2FT_ALLOCATE_PER_LAYER, S2FT_ALLOCATE_GLOBAL}) {
            s2ft_select_options o;
            ASSERT_S2FT_OK(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION));
            o.targets = S2FT_TARGET_BIT(O) | S2FT_TARGET_BIT(V) | S2FT_TARGET_BIT(DOWN) | S2FT_TARGET_BIT(UP);
            o.strategy = strategy;
            o.order = order;
            o.head_granularity = gran;
            o.allocation = alloc;
            o.seed = 7;
            const int64_t layers = alloc == S2FT_ALLOCATE_GLOBAL ? s.n_layers : 1;
            for (int t = 0; t < S2FT_NUM_TARGETS; ++t) o.ratio[t] = 0.0;
            o.count[O] = (gran == S2FT_HEADS_BY_GROUP ? 1 : 2) * layers;
            o.count[V] = 1 * layers;
            o.count[DOWN] = 5 * layers;
            o.count[UP] = 3 * layers;
            s2ft_test::Selection want, got, got_cpu_ctx;
            ASSERT_S2FT_OK(s2ft_select(cpu_ctx.ctx, &s, &o, cpu.stats, &want.sel));
            ASSERT_S2FT_OK(s2ft_select(g.ctx, &s, &o, gpu.stats, &got.sel));
            // CUDA statistics also serve a selection made with a CPU context.
            ASSERT_S2FT_OK(s2ft_select(cpu_ctx.ctx, &s, &o, gpu.stats, &got_cpu_ctx.sel));
            for (int32_t l = 0; l < s.n_layers; ++l)
              for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
                const std::vector<int64_t> w = selected(want.sel, l, t);
                EXPECT_EQ(selected(got.sel, l, t), w) << s2ft_test::dtype_label(dt) << " strategy " << strategy
                                                      << " order " << order << " granularity " << gran << " allocation "
                                                      << alloc << " layer " << l << " target " << t;
                EXPECT_EQ(selected(got_cpu_ctx.sel, l, t), w);
              }
          }
  }
}

// ---------------------------------------------------------------------------

TEST(GpuStatistics, GradientLargerThanOneTileAndMixedDtypes) {
  S2FT_REQUIRE_GPU();
  // DOWN's dW is [4096, 4100] and UP's [4100, 4096]: more than one 2^24-element tile.
  const s2ft_model_shape s{1, 4096, 32, 8, 128, 4100};
  GpuContext g;
  s2ft_test::Context cpu_ctx;
  Stats cpu(cpu_ctx.ctx, s), gpu(g.ctx, s);
  Random rng(2024);
  std::vector<std::unique_ptr<DeviceMatrix>> keep;
  for (const int32_t tg : {DOWN, UP}) {
    int64_t out = 0, in = 0;
    weight_shape(s, tg, &out, &in);
    const int64_t T = 6;
    // x in bf16, dy in f32: the device meets them in f32.
    HostMatrix x(S2FT_BF16, T, in), dy(S2FT_F32, T, out);
    x.fill_random(rng);
    dy.fill_random(rng, 0.5);
    keep.push_back(std::make_unique<DeviceMatrix>(x));
    keep.push_back(std::make_unique<DeviceMatrix>(dy, out + 1));
    settle();
    ASSERT_S2FT_OK(s2ft_statistics_add_gradient(cpu.stats, 0, tg, &x.t, &dy.t));
    ASSERT_S2FT_OK(s2ft_statistics_add_gradient(gpu.stats, 0, tg, &keep[keep.size() - 2]->t, &keep.back()->t));
  }
  // A long activation: many row blocks in the column reduction.
  HostMatrix a(S2FT_F16, 2000, s.d_ff);
  a.fill_random(rng, 2.0);
  keep.push_back(std::make_unique<DeviceMatrix>(a));
  settle();
  ASSERT_S2FT_OK(s2ft_statistics_add_activation(cpu.stats, 0, DOWN, &a.t));
  ASSERT_S2FT_OK(s2ft_statistics_add_activation(gpu.stats, 0, DOWN, &keep.back()->t));
  g.sync();
  for (const int32_t tg : {DOWN, UP})
    expect_sums_match(get(gpu.stats, 0, tg, S2FT_STAT_GRADIENT), get(cpu.stats, 0, tg, S2FT_STAT_GRADIENT), kGradTol,
                      "gradient target " + std::to_string(tg));
  expect_sums_match(get(gpu.stats, 0, DOWN, S2FT_STAT_ACTIVATION), get(cpu.stats, 0, DOWN, S2FT_STAT_ACTIVATION),
                    kExactTol, "activation");
  expect_sums_match(get(gpu.stats, 0, UP, S2FT_STAT_ACTIVATION), get(cpu.stats, 0, UP, S2FT_STAT_ACTIVATION), kExactTol,
                    "UP activation (DOWN's)");
}

// ---------------------------------------------------------------------------

class GpuStatisticsErrors : public ::testing::Test {
 protected:
  const s2ft_model_shape shape_{2, 8, 4, 2, 2, 10};
};

TEST_F(GpuStatisticsErrors, HostTensorsAreRefused) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Stats st(g.ctx, shape_);
  HostMatrix w(S2FT_F32, 8, 8), x(S2FT_F32, 3, 8), dy(S2FT_F32, 3, 8);
  EXPECT_S2FT_ERROR(s2ft_statistics_add_weight(st.stats, 0, O, &w.t), S2FT_ERR_DEVICE, "weight");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, O, &x.t), S2FT_ERR_DEVICE, "x");
  DeviceMatrix ddy(S2FT_F32, 3, 8);
  settle();
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, O, &x.t, &ddy.t), S2FT_ERR_DEVICE, "x");
  x.t.device = s2ft_device{S2FT_DEVICE_CUDA, 0};  // claims the GPU, points at host memory
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, O, &x.t), S2FT_ERR_DEVICE, "host memory");
  // Nothing was recorded.
  double out[8];
  int64_t n = 0;
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 0, O, S2FT_STAT_WEIGHT, out, 8, &n), S2FT_ERR_STATE, "no weight");
  EXPECT_S2FT_ERROR(s2ft_statistics_get(st.stats, 0, V, S2FT_STAT_ACTIVATION, out, 8, &n), S2FT_ERR_STATE,
                    "no activation");
}

TEST_F(GpuStatisticsErrors, ShapesAndTargetsAreCheckedAsOnTheCpu) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Stats st(g.ctx, shape_);
  DeviceMatrix x(S2FT_F32, 3, 8), wrong(S2FT_F32, 3, 7), dy(S2FT_F32, 4, 8);
  settle();
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, V, &x.t), S2FT_ERR_INVALID_ARGUMENT,
                    "has no input activation of its own");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_activation(st.stats, 0, O, &wrong.t), S2FT_ERR_SHAPE, "x must be [T, 8]");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_gradient(st.stats, 0, O, &x.t, &dy.t), S2FT_ERR_SHAPE, "rows");
  EXPECT_S2FT_ERROR(s2ft_statistics_add_weight(st.stats, 2, O, &x.t), S2FT_ERR_INVALID_ARGUMENT, "layer 2");
}

TEST(GpuStatistics, DestroyWithWorkQueued) {
  S2FT_REQUIRE_GPU();
  const s2ft_model_shape s{1, 8, 4, 2, 2, 10};
  GpuContext g;
  Random rng(5);
  HostMatrix x(S2FT_BF16, 64, 10);
  x.fill_random(rng);
  DeviceMatrix dx(x);
  settle();
  s2ft_statistics *st = nullptr;
  ASSERT_S2FT_OK(s2ft_statistics_create(g.ctx, &s, &st));
  for (int i = 0; i < 4; ++i) ASSERT_S2FT_OK(s2ft_statistics_add_activation(st, 0, DOWN, &dx.t));
  s2ft_statistics_destroy(st);  // frees the arena after the queued work (cudaFree)
  g.sync();
}

}  // namespace
