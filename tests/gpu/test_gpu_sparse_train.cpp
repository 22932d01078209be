// Unstructured sparse training on CUDA against the CPU backend: sparse sets,
// the SDDMM backward (gradient and dx, accumulation, 16-bit inputs, strided
// views), and the optimizer on sparse entries (AdamW with ages, SM3,
// reindexing). LIFT selection (exact and randomized SVD, largest and
// smallest, count and density, f32/bf16, compact and padded weights, both
// orientations of odd shapes) gives the CPU context's indices.
#include <algorithm>
#include <cmath>
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

// The same weight on a CPU and a CUDA context selects the same entries:
// the SVD (exact: cuSOLVER's gesvd; randomized: the same sketch, cuBLAS
// and cuSOLVER's QR) agrees to rounding on weights with a clear spectral
// gap, and the ranking is the CPU's own code, so the indices are equal.
TEST(GpuLift, SelectMatchesCpu) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Context c;
  struct Shape {
    int64_t rows, cols, rank;
  };
  // in >= out (gesvd on W^T), out > in (gesvd on W), square; odd sizes.
  const Shape shapes[] = {{37, 61, 3}, {67, 29, 2}, {45, 45, 1}, {23, 31, 5}};
  int n_case = 0;
  for (const Shape &sh : shapes)
    for (int32_t dtype : {S2FT_F32, S2FT_BF16})
      for (int32_t method : {S2FT_LIFT_EXACT, S2FT_LIFT_RANDOMIZED})
        for (int32_t order : {S2FT_ORDER_LARGEST, S2FT_ORDER_SMALLEST}) {
          ++n_case;
          Random rng(900 + static_cast<uint64_t>(n_case));
          const HostMatrix W = s2ft_gpu::spectral_gap_matrix(rng, dtype, sh.rows, sh.cols, static_cast<int>(sh.rank) + 2);
          DeviceMatrix dw(W, n_case % 2 == 0 ? sh.cols + 3 : sh.cols);  // padded rows every other case
          s2ft_lift_options o;
          ASSERT_S2FT_OK(s2ft_lift_options_init(&o, S2FT_LIFT_OPTIONS_VERSION));
          o.rank = static_cast<int32_t>(sh.rank);
          if (n_case % 3 == 0)
            o.density = 0.07;
          else
            o.count = 1 + (sh.rows * sh.cols) / 9;
          o.method = method;
          o.order = order;
          o.oversampling = 4;
          o.power_iterations = 2;
          o.seed = 17 + static_cast<uint64_t>(n_case);
          int64_t n_cpu = 0, n_gpu = 0;
          ASSERT_S2FT_OK(s2ft_lift_select(c.ctx, &W.t, &o, nullptr, 0, &n_cpu));
          std::vector<int64_t> cpu(static_cast<size_t>(n_cpu)), gpu(static_cast<size_t>(n_cpu), -1);
          ASSERT_S2FT_OK(s2ft_lift_select(c.ctx, &W.t, &o, cpu.data(), n_cpu, &n_cpu));
          ASSERT_S2FT_OK(s2ft_lift_select(g.ctx, &dw.t, &o, gpu.data(), n_cpu, &n_gpu));
          EXPECT_EQ(n_gpu, n_cpu);
          EXPECT_EQ(gpu, cpu) << "case " << n_case << ": [" << sh.rows << ", " << sh.cols << "] rank " << sh.rank
                              << " dtype " << dtype << " method " << method << " order " << order;
          g.sync();
          EXPECT_TRUE(s2ft_gpu::bit_equal(dw.download(), W)) << "the weight changed, case " << n_case;
        }
}

// A non-finite weight is refused as on the CPU, naming the first position.
TEST(GpuLift, NonFiniteWeightRefused) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Random rng(5);
  HostMatrix W = s2ft_gpu::spectral_gap_matrix(rng, S2FT_F32, 9, 13, 2);
  W.set(4, 7, NAN);
  W.set(6, 1, INFINITY);
  DeviceMatrix dw(W);
  s2ft_lift_options o;
  ASSERT_S2FT_OK(s2ft_lift_options_init(&o, S2FT_LIFT_OPTIONS_VERSION));
  o.rank = 1;
  o.count = 3;
  int64_t idx[3], n = 0;
  EXPECT_S2FT_ERROR(s2ft_lift_select(g.ctx, &dw.t, &o, idx, 3, &n), S2FT_ERR_INVALID_ARGUMENT, "(4, 7)");
}

}  // namespace
