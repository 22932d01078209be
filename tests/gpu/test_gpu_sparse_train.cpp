// Unstructured sparse training on CUDA against the CPU backend: sparse sets,
// the SDDMM backward (gradient and dx, accumulation, 16-bit inputs, strided
// views), and the optimizer on sparse entries (AdamW with ages, SM3,
// reindexing). LIFT selection is refused on CUDA with its message.
#include <algorithm>
#include <vector>

#include "gpu/gpu_support.hpp"

namespace {

using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;
using s2ft_test::Context;
using s2ft_test::HostMatrix;
using s2ft_test::Random;

std::vector<int64_t> entries(Random &rng, int64_t rows, int64_t cols, int64_t count) {
  std::vector<int64_t> v = s2ft_test::shuffled_lines(rng, rows * cols, count);
  std::sort(v.begin(), v.end());
  return v;
}

struct Set {
  s2ft_sparse_set *s = nullptr;
  Set(s2ft_context *ctx, int64_t r, int64_t c, const std::vector<int64_t> &idx) {
    EXPECT_EQ(s2ft_sparse_set_create(ctx, r, c, idx.data(), static_cast<int64_t>(idx.size()), &s), S2FT_OK)
        << s2ft_last_error();
  }
  ~Set() { s2ft_sparse_set_destroy(s); }
};

TEST(GpuSparseBackward, MatchesCpu) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Context c;
  for (int32_t dtype : {S2FT_F32, S2FT_BF16, S2FT_F16}) {
    Random rng(700 + dtype);
    const int64_t T = 2100, out = 37, in = 53;  // T beyond one staged chunk of tokens
    const std::vector<int64_t> idx = entries(rng, out, in, 300);
    Set gs(g.ctx, out, in, idx), cs(c.ctx, out, in, idx);
    HostMatrix X(dtype, T, in), DY(dtype, T, out), W(dtype, out, in);
    X.fill_random(rng);
    DY.fill_random(rng);
    W.fill_random(rng);
    HostMatrix G(S2FT_F32, 1, 300), DX(dtype, T, in);
    G.poison();
    DX.poison();
    ASSERT_S2FT_OK(s2ft_backward_sparse(c.ctx, cs.s, &X.t, &DY.t, &W.t, &DX.t, &G.t, 0));
    DeviceMatrix dx(X, in + 3), dy(DY), w(W), dg(S2FT_F32, 1, 300), ddx(dtype, T, in, in + 5);
    ASSERT_S2FT_OK(s2ft_backward_sparse(g.ctx, gs.s, &dx.t, &dy.t, &w.t, &ddx.t, &dg.t, 0));
    g.sync();
    EXPECT_LT(s2ft_gpu::max_rel_diff(dg.download(), G), 1e-5) << s2ft_test::dtype_label(dtype);
    EXPECT_LT(s2ft_gpu::max_rel_diff(ddx.download(), DX), s2ft_test::tolerance(dtype)) << s2ft_test::dtype_label(dtype);
    // Accumulate: the gradient doubles.
    ASSERT_S2FT_OK(s2ft_backward_sparse(g.ctx, gs.s, &dx.t, &dy.t, nullptr, nullptr, &dg.t, S2FT_ACCUMULATE_DW));
    g.sync();
    HostMatrix twice = G;
    for (int64_t n = 0; n < 300; ++n) twice.set(0, n, 2.0f * G.get(0, n));
    EXPECT_LT(s2ft_gpu::max_rel_diff(dg.download(), twice), 1e-5);
  }
}

TEST(GpuSparseOptimizer, AdamWWithAgesAndSm3MatchCpu) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Context c;
  for (int32_t kind : {S2FT_OPTIMIZER_ADAMW, S2FT_OPTIMIZER_SM3}) {
    Random rng(800 + kind);
    const int64_t out = 19, in = 23;
    const std::vector<int64_t> a = entries(rng, out, in, 60), b = entries(rng, out, in, 50);
    HostMatrix W(S2FT_BF16, out, in);
    W.fill_random(rng);
    DeviceMatrix dw(W);
    HostMatrix Wc = W;
    Set ga(g.ctx, out, in, a), ca(c.ctx, out, in, a), gb(g.ctx, out, in, b), cb(c.ctx, out, in, b);
    s2ft_optimizer_options o;
    ASSERT_S2FT_OK(s2ft_optimizer_options_init(&o, S2FT_OPTIMIZER_OPTIONS_VERSION));
    o.kind = kind;
    o.age_bias_correction = 1;
    o.momentum = kind == S2FT_OPTIMIZER_SM3 ? 0.5 : 0.0;
    s2ft_optimizer *go = nullptr, *co = nullptr;
    ASSERT_S2FT_OK(s2ft_optimizer_create(g.ctx, &o, &go));
    ASSERT_S2FT_OK(s2ft_optimizer_create(c.ctx, &o, &co));
    int64_t i = -1;
    ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(go, &dw.t, ga.s, &i));
    ASSERT_S2FT_OK(s2ft_optimizer_add_sparse(co, &Wc.t, ca.s, &i));
    for (int step = 0; step < 6; ++step) {
      if (step == 3) {
        ASSERT_S2FT_OK(s2ft_optimizer_sparse_reindex(go, 0, gb.s));
        ASSERT_S2FT_OK(s2ft_optimizer_sparse_reindex(co, 0, cb.s));
      }
      const int64_t n = step < 3 ? 60 : 50;
      HostMatrix G(S2FT_F32, 1, n);
      G.fill_random(rng);
      DeviceMatrix dg(G);
      ASSERT_S2FT_OK(s2ft_optimizer_step(go, 0.01, &dg.t, 1, nullptr));
      ASSERT_S2FT_OK(s2ft_optimizer_step(co, 0.01, &G.t, 1, nullptr));
      g.sync();
    }
    EXPECT_LT(s2ft_gpu::max_rel_diff(dw.download(), Wc), 1e-2) << "kind " << kind;
    s2ft_optimizer_destroy(go);
    s2ft_optimizer_destroy(co);
  }
}

TEST(GpuLift, RefusedWithItsReason) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  HostMatrix W(S2FT_F32, 4, 5);
  Random rng(3);
  W.fill_random(rng);
  DeviceMatrix dw(W);
  s2ft_lift_options o;
  ASSERT_S2FT_OK(s2ft_lift_options_init(&o, S2FT_LIFT_OPTIONS_VERSION));
  o.rank = 1;
  o.count = 3;
  int64_t idx[3], n = 0;
  EXPECT_S2FT_ERROR(s2ft_lift_select(g.ctx, &dw.t, &o, idx, 3, &n), S2FT_ERR_UNSUPPORTED, "CPU context");
}

}  // namespace
