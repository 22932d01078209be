// SORSA on CUDA against the CPU backend on the same host data: the forward
// (y and h_saved), the backward (dx, du, ds, dvt; h saved or recomputed,
// dx NULL, every accumulate flag onto non-zero data) over f32/f16/bf16 and
// odd shapes with compact and padded (strided) operands; the regularizer
// (value, gradients, accumulate, the unsquared form) and its decoupled
// step; and the calls that need an SVD (cuSOLVER on CUDA): the split
// (factors and residual) and the principal statistics against the CPU's on
// odd shapes of both orientations with a clear spectral gap.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "gpu/gpu_support.hpp"

using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;
using s2ft_gpu::max_rel_diff;
using s2ft_gpu::settle;
using s2ft_test::dtype_label;
using s2ft_test::HostMatrix;
using s2ft_test::Random;
using s2ft_test::tolerance;

namespace {

HostMatrix random_matrix(Random &rng, int32_t dtype, int64_t rows, int64_t cols) {
  HostMatrix m(dtype, rows, cols);
  m.fill_random(rng);
  return m;
}

HostMatrix poisoned(int32_t dtype, int64_t rows, int64_t cols) {
  HostMatrix m(dtype, rows, cols);
  m.poison();
  return m;
}

struct Case {
  int64_t T, out, in, r;
  int32_t dtype;
  bool padded;  // device operands with padded rows
};

std::string case_name(const ::testing::TestParamInfo<Case> &i) {
  const Case &c = i.param;
  return std::string(dtype_label(c.dtype)) + "_T" + std::to_string(c.T) + "_o" + std::to_string(c.out) + "_i" +
         std::to_string(c.in) + "_r" + std::to_string(c.r) + (c.padded ? "_padded" : "");
}

class GpuSorsa : public ::testing::TestWithParam<Case> {};

TEST_P(GpuSorsa, ForwardBackwardMatchCpu) {
  S2FT_REQUIRE_GPU();
  const Case c = GetParam();
  Random rng(0x5a + c.T * 3 + c.out * 5 + c.in * 7 + c.r * 11 + c.dtype * 13 + c.padded);
  const HostMatrix x = random_matrix(rng, c.dtype, c.T, c.in), w = random_matrix(rng, c.dtype, c.out, c.in),
                   u = random_matrix(rng, S2FT_F32, c.out, c.r), s = random_matrix(rng, S2FT_F32, 1, c.r),
                   vt = random_matrix(rng, S2FT_F32, c.r, c.in), dy = random_matrix(rng, c.dtype, c.T, c.out);
  auto ld = [&](int64_t cols) { return c.padded ? cols + 3 : cols; };

  // The CPU backend's results.
  s2ft_test::Context cpu;
  HostMatrix y_cpu = poisoned(c.dtype, c.T, c.out), h_cpu = poisoned(S2FT_F32, c.T, c.r);
  ASSERT_EQ(s2ft_sorsa_forward(cpu.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, &y_cpu.t, &h_cpu.t), S2FT_OK)
      << s2ft_last_error();

  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  DeviceMatrix dx_(x, ld(c.in)), dw(w, ld(c.in)), du_(u, ld(c.r)), ds_(s), dvt_(vt, ld(c.in)), ddy(dy, ld(c.out));
  DeviceMatrix dyo(c.dtype, c.T, c.out, ld(c.out)), dh(S2FT_F32, c.T, c.r, ld(c.r));
  ASSERT_EQ(s2ft_sorsa_forward(g.ctx, &dx_.t, &dw.t, &du_.t, &ds_.t, &dvt_.t, &dyo.t, &dh.t), S2FT_OK)
      << s2ft_last_error();
  g.sync();
  EXPECT_LT(max_rel_diff(dyo.download(), y_cpu), tolerance(c.dtype));
  EXPECT_LT(max_rel_diff(dh.download(), h_cpu), 1e-5);

  const uint32_t flag_sets[] = {0u, S2FT_ACCUMULATE_DW, S2FT_ACCUMULATE_DX, S2FT_ACCUMULATE_DW | S2FT_ACCUMULATE_DX};
  for (const uint32_t flags : flag_sets)
    for (const bool saved : {true, false})
      for (const bool with_dx : {true, false}) {
        SCOPED_TRACE("flags " + std::to_string(flags) + (saved ? " h saved" : " h recomputed") +
                     (with_dx ? "" : " dx NULL"));
        Random r2(flags * 7 + saved);
        const HostMatrix dx0 = random_matrix(r2, c.dtype, c.T, c.in), du0 = random_matrix(r2, S2FT_F32, c.out, c.r),
                         ds0 = random_matrix(r2, S2FT_F32, 1, c.r), dvt0 = random_matrix(r2, S2FT_F32, c.r, c.in);
        HostMatrix hx = dx0, hu = du0, hs = ds0, hv = dvt0;
        ASSERT_EQ(s2ft_sorsa_backward(cpu.ctx, &x.t, &w.t, &u.t, &s.t, &vt.t, saved ? &h_cpu.t : nullptr, &dy.t,
                                      with_dx ? &hx.t : nullptr, &hu.t, &hs.t, &hv.t, flags),
                  S2FT_OK)
            << s2ft_last_error();
        DeviceMatrix gx(dx0, ld(c.in)), gu(du0, ld(c.r)), gs(ds0), gv(dvt0, ld(c.in));
        ASSERT_EQ(s2ft_sorsa_backward(g.ctx, &dx_.t, &dw.t, &du_.t, &ds_.t, &dvt_.t, saved ? &dh.t : nullptr, &ddy.t,
                                      with_dx ? &gx.t : nullptr, &gu.t, &gs.t, &gv.t, flags),
                  S2FT_OK)
            << s2ft_last_error();
        g.sync();
        EXPECT_LT(max_rel_diff(gu.download(), hu), 1e-4);
        EXPECT_LT(max_rel_diff(gs.download(), hs), 1e-4);
        EXPECT_LT(max_rel_diff(gv.download(), hv), 1e-4);
        if (with_dx) {
          EXPECT_LT(max_rel_diff(gx.download(), hx), tolerance(c.dtype));
        }
      }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GpuSorsa,
                         ::testing::Values(Case{1, 7, 5, 1, S2FT_F32, false}, Case{3, 9, 13, 9, S2FT_F32, true},
                                           Case{33, 65, 47, 8, S2FT_F32, false}, Case{5, 11, 6, 6, S2FT_BF16, false},
                                           Case{37, 70, 51, 16, S2FT_BF16, true}, Case{9, 15, 10, 3, S2FT_F16, true},
                                           Case{300, 129, 257, 32, S2FT_BF16, false}),
                         case_name);

TEST(GpuSorsaRegularizer, MatchesCpu) {
  S2FT_REQUIRE_GPU();
  Random rng(0x7e9);
  const int64_t out = 70, r = 9, in = 45;
  HostMatrix u = random_matrix(rng, S2FT_F32, out, r), vt = random_matrix(rng, S2FT_F32, r, in);
  for (int64_t i = 0; i < out; ++i)
    for (int64_t k = 0; k < r; ++k) u.set(i, k, u.get(i, k) * 0.2f);
  s2ft_test::Context cpu;
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  for (const uint32_t mode : {0u, S2FT_SORSA_UNSQUARED}) {
    SCOPED_TRACE(mode ? "unsquared" : "squared");
    const HostMatrix du0 = random_matrix(rng, S2FT_F32, out, r), dvt0 = random_matrix(rng, S2FT_F32, r, in);
    for (const uint32_t acc : {0u, S2FT_ACCUMULATE_DW}) {
      HostMatrix hu = du0, hv = dvt0;
      double v_cpu = 0, v_gpu = 0;
      ASSERT_EQ(s2ft_sorsa_regularizer(cpu.ctx, &u.t, &vt.t, 0.3, &v_cpu, &hu.t, &hv.t, mode | acc), S2FT_OK);
      DeviceMatrix du_(u, r + 2), dvt_(vt), gu(du0), gv(dvt0, in + 5);
      ASSERT_EQ(s2ft_sorsa_regularizer(g.ctx, &du_.t, &dvt_.t, 0.3, &v_gpu, &gu.t, &gv.t, mode | acc), S2FT_OK)
          << s2ft_last_error();
      g.sync();
      EXPECT_NEAR(v_gpu, v_cpu, 1e-4 * v_cpu);
      EXPECT_LT(max_rel_diff(gu.download(), hu), 1e-4);
      EXPECT_LT(max_rel_diff(gv.download(), hv), 1e-4);
      // Without a value the call does not need to synchronise; the gradients are the same.
      DeviceMatrix gu2(du0);
      ASSERT_EQ(s2ft_sorsa_regularizer(g.ctx, &du_.t, &dvt_.t, 0.3, nullptr, &gu2.t, nullptr, mode | acc), S2FT_OK);
      g.sync();
      EXPECT_LT(max_rel_diff(gu2.download(), hu), 1e-4);
    }
    // The decoupled step.
    HostMatrix su = u, sv = vt;
    double v_cpu = 0, v_gpu = 0;
    ASSERT_EQ(s2ft_sorsa_regularizer_step(cpu.ctx, &su.t, &sv.t, 0.05, &v_cpu, mode), S2FT_OK);
    DeviceMatrix gu(u), gv(vt, in + 1);
    ASSERT_EQ(s2ft_sorsa_regularizer_step(g.ctx, &gu.t, &gv.t, 0.05, &v_gpu, mode), S2FT_OK) << s2ft_last_error();
    g.sync();
    EXPECT_NEAR(v_gpu, v_cpu, 1e-4 * v_cpu);
    EXPECT_LT(max_rel_diff(gu.download(), su), 1e-5);
    EXPECT_LT(max_rel_diff(gv.download(), sv), 1e-5);
  }
}

// s2ft_sorsa_init on a CUDA context against a CPU context: the factors
// (same sign rule) within f32 rounding, the residual within its dtype's
// rounding (relative to its largest entry), on padded device operands.
TEST(GpuSorsaSvd, InitMatchesCpu) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  s2ft_test::Context cpu;
  struct Shape {
    int64_t out, in;
    int32_t r;
    int32_t dtype;
  };
  // in >= out (gesvd on W^T), out > in (gesvd on W), square; odd sizes.
  const Shape shapes[] = {{29, 47, 3, S2FT_F32}, {53, 21, 2, S2FT_F32}, {33, 33, 4, S2FT_BF16}, {45, 19, 1, S2FT_F16}};
  for (const Shape &c : shapes) {
    Random rng(static_cast<uint64_t>(c.out * 101 + c.in * 7 + c.r));
    const HostMatrix w = s2ft_gpu::spectral_gap_matrix(rng, c.dtype, c.out, c.in, c.r + 2);
    HostMatrix hw = w, hu(S2FT_F32, c.out, c.r), hs(S2FT_F32, 1, c.r), hvt(S2FT_F32, c.r, c.in);
    ASSERT_EQ(s2ft_sorsa_init(cpu.ctx, &hw.t, c.r, &hu.t, &hs.t, &hvt.t), S2FT_OK) << s2ft_last_error();
    DeviceMatrix dw(w, c.in + 3), du(S2FT_F32, c.out, c.r, c.r + 1), ds(S2FT_F32, 1, c.r),
        dvt(S2FT_F32, c.r, c.in, c.in + 2);
    ASSERT_EQ(s2ft_sorsa_init(g.ctx, &dw.t, c.r, &du.t, &ds.t, &dvt.t), S2FT_OK) << s2ft_last_error();
    g.sync();
    const std::string what = std::string(dtype_label(c.dtype)) + " [" + std::to_string(c.out) + ", " +
                             std::to_string(c.in) + "] r " + std::to_string(c.r);
    EXPECT_LT(max_rel_diff(ds.download(), hs), 1e-6) << what;
    EXPECT_LT(max_rel_diff(du.download(), hu), 1e-5) << what;
    EXPECT_LT(max_rel_diff(dvt.download(), hvt), 1e-5) << what;
    EXPECT_LT(max_rel_diff(dw.download(), hw), c.dtype == S2FT_F32 ? 1e-3 : 2e-2) << what;
  }
}

// A non-finite weight is refused and nothing is written.
TEST(GpuSorsaSvd, InitRefusesNonFiniteWeight) {
  S2FT_REQUIRE_GPU();
  Random rng(3);
  HostMatrix w = random_matrix(rng, S2FT_F32, 12, 12);
  w.set(5, 2, NAN);
  GpuContext g;
  DeviceMatrix dw(w), du(S2FT_F32, 12, 2), ds(S2FT_F32, 1, 2), dvt(S2FT_F32, 2, 12);
  EXPECT_EQ(s2ft_sorsa_init(g.ctx, &dw.t, 2, &du.t, &ds.t, &dvt.t), S2FT_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(s2ft_last_error()).find("(5, 2)"), std::string::npos) << s2ft_last_error();
  g.sync();
  EXPECT_TRUE(s2ft_gpu::bit_equal(dw.download(), w)) << "w changed";
}

// s2ft_statistics_add_principal on statistics of a CUDA context against a
// CPU context's: the per-unit sums of the rank-r approximation's squared
// line norms, for every target (columns for O and DOWN, rows for V and UP),
// whose shapes cover both orientations.
TEST(GpuSorsaSvd, PrincipalStatisticsMatchCpu) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  s2ft_test::Context cpu;
  const s2ft_model_shape shape{1, 37, 5, 1, 7, 61};  // O [37, 35], DOWN [37, 61], V [7, 37], UP [61, 37]
  s2ft_statistics *cs = nullptr, *gs = nullptr;
  ASSERT_EQ(s2ft_statistics_create(cpu.ctx, &shape, &cs), S2FT_OK) << s2ft_last_error();
  ASSERT_EQ(s2ft_statistics_create(g.ctx, &shape, &gs), S2FT_OK) << s2ft_last_error();
  struct Target {
    int32_t target;
    int64_t rows, cols;
    int32_t rank;
    int32_t dtype;
  };
  const Target targets[] = {{S2FT_TARGET_O, 37, 35, 3, S2FT_F32},
                            {S2FT_TARGET_DOWN, 37, 61, 2, S2FT_BF16},
                            {S2FT_TARGET_V, 7, 37, 2, S2FT_F32},
                            {S2FT_TARGET_UP, 61, 37, 4, S2FT_F16}};
  for (const Target &t : targets) {
    Random rng(static_cast<uint64_t>(500 + t.target));
    const HostMatrix w = s2ft_gpu::spectral_gap_matrix(rng, t.dtype, t.rows, t.cols, t.rank + 2);
    DeviceMatrix dw(w, t.cols + 1);
    ASSERT_EQ(s2ft_statistics_add_principal(cs, 0, t.target, &w.t, t.rank), S2FT_OK) << s2ft_last_error();
    ASSERT_EQ(s2ft_statistics_add_principal(gs, 0, t.target, &dw.t, t.rank), S2FT_OK) << s2ft_last_error();
    int64_t nc = 0, ng = 0;
    ASSERT_EQ(s2ft_statistics_get(cs, 0, t.target, S2FT_STAT_PRINCIPAL, nullptr, 0, &nc), S2FT_OK)
        << s2ft_last_error();
    std::vector<double> vc(static_cast<size_t>(nc)), vg(static_cast<size_t>(nc), -1.0);
    ASSERT_EQ(s2ft_statistics_get(cs, 0, t.target, S2FT_STAT_PRINCIPAL, vc.data(), nc, &nc), S2FT_OK);
    ASSERT_EQ(s2ft_statistics_get(gs, 0, t.target, S2FT_STAT_PRINCIPAL, vg.data(), nc, &ng), S2FT_OK)
        << s2ft_last_error();
    ASSERT_EQ(ng, nc);
    double scale = 0.0;
    for (double v : vc) scale = std::max(scale, std::fabs(v));
    for (size_t i = 0; i < vc.size(); ++i)
      EXPECT_NEAR(vg[i], vc[i], 1e-9 * scale) << "target " << t.target << " unit " << i;
  }
  s2ft_statistics_destroy(cs);
  s2ft_statistics_destroy(gs);
}

}  // namespace
