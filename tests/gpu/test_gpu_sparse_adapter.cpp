// Adapters with unstructured sparse entries on a CUDA context, against the
// CPU backend: apply, switch and remove give the CPU's weights bit for bit
// after every step (f32, bf16, f16; base order and permuted; one entry, 1%
// and every free element; padded device weights; lines of one adapter
// meeting sparse entries of the other), remove restores the base
// bit-exactly, the whole-weight fingerprint is checked (S2FT_ERR_FORMAT,
// nothing changed; S2FT_APPLY_FORCE applies), an overflowing merge is
// refused, and the mixed forward and sparse deltas with sparse entries
// match the CPU.
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "gpu/gpu_all_weights.hpp"
#include "gpu/gpu_support.hpp"
#include "support/sparse_adapter.hpp"

using namespace s2ft_test;
using s2ft_gpu::DevAll;
using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;

namespace {

const s2ft_model_shape kShape{2, 13, 4, 2, 3, 11};

using Model = s2ft_test::ModelOwner;

struct Case {
  int32_t dtype;
  bool permuted;
  double density;
};
std::string case_name(const ::testing::TestParamInfo<Case> &i) {
  const std::string d = i.param.density < 0 ? "one" : i.param.density >= 1 ? "all" : "1pct";
  return std::string(dtype_label(i.param.dtype)) + (i.param.permuted ? "_permuted_" : "_base_") + d;
}

class GpuSparseApply : public ::testing::TestWithParam<Case> {};

TEST_P(GpuSparseApply, MatchesTheCpuBitForBit) {
  S2FT_REQUIRE_GPU();
  const Case c = GetParam();
  GpuContext g;
  Context cpu;
  s2ft_selection *sel = nullptr;
  if (c.permuted) make_moving_selection(kShape, &sel);
  const AllWeights base(kShape, c.dtype, 7);
  std::array<WeightSpec, 7> sa, sb;
  for (int32_t w : kWeights) {
    sa[static_cast<size_t>(w)].density = c.density;
    sb[static_cast<size_t>(w)].density = c.density;
  }
  sa[S2FT_WEIGHT_O].lines = {0, 4, 5};
  sa[S2FT_WEIGHT_DOWN].lines = {3, 7};
  sb[S2FT_WEIGHT_O].lines = {5, 9};
  sb[S2FT_WEIGHT_UP].lines = {2, 6};
  TestAdapter a, b;
  make_test_adapter(a, kShape, sa, &base, 8, "a");
  make_test_adapter(b, kShape, sb, &base, 9, "b");
  AllWeights host(base);
  if (sel != nullptr) host.permute(cpu.ctx, sel, S2FT_PERMUTE_FORWARD);
  const AllWeights original(host);
  DevAll dev(host, 3);
  Model mc, mg;
  ASSERT_S2FT_OK(s2ft_model_create(cpu.ctx, &kShape, host.layers.data(), sel, &mc.m));
  ASSERT_S2FT_OK(s2ft_model_create(g.ctx, &kShape, dev.layers.data(), sel, &mg.m));
  const struct {
    const s2ft_adapter *ad;
    double scale;
  } steps[] = {{a.a, 0.75}, {b.a, -2.0}, {a.a, NAN}, {a.a, 3.0}, {b.a, 0.5}};
  for (const auto &st : steps) {
    ASSERT_S2FT_OK(s2ft_adapter_switch(mc.m, st.ad, st.scale, 0));
    ASSERT_S2FT_OK(s2ft_adapter_switch(mg.m, st.ad, st.scale, 0));
    ASSERT_TRUE(dev.equals(host));
  }
  AllWeights want = merged(base, {&b}, {0.5});
  if (sel != nullptr) want.permute(cpu.ctx, sel, S2FT_PERMUTE_FORWARD);
  EXPECT_TRUE(host.same_bytes(want));
  ASSERT_S2FT_OK(s2ft_adapter_remove(mg.m));
  EXPECT_TRUE(dev.equals(original));
  s2ft_selection_destroy(sel);
}

INSTANTIATE_TEST_SUITE_P(DtypesOrdersDensities, GpuSparseApply,
                         ::testing::Values(Case{S2FT_F32, false, -1}, Case{S2FT_F32, true, 0.01},
                                           Case{S2FT_F32, true, 1.0}, Case{S2FT_BF16, false, 1.0},
                                           Case{S2FT_BF16, true, 0.01}, Case{S2FT_F16, false, 0.01},
                                           Case{S2FT_F16, true, -1}, Case{S2FT_F16, true, 1.0}),
                         case_name);

TEST(GpuSparseChecks, FingerprintAndOverflowRefusalsChangeNothing) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  const AllWeights base(kShape, S2FT_F16, 20);
  std::array<WeightSpec, 7> s;
  s[S2FT_WEIGHT_K].density = 0.2;
  s[S2FT_WEIGHT_GATE].density = 0.1;
  TestAdapter a;
  make_test_adapter(a, kShape, s, &base, 21, "a");
  AllWeights other(base);
  other.at(1, S2FT_WEIGHT_K).set(0, 0, other.at(1, S2FT_WEIGHT_K).get(0, 0) + 0.5f);
  DevAll dev(other, 0);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(g.ctx, &kShape, dev.layers.data(), nullptr, &m.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "layer 1 weight K");
  EXPECT_TRUE(dev.equals(other));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 3e5, S2FT_APPLY_FORCE), S2FT_ERR_INVALID_ARGUMENT, "could overflow");
  EXPECT_TRUE(dev.equals(other));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 1.0, S2FT_APPLY_FORCE));
  EXPECT_TRUE(dev.equals(merged(other, {&a}, {1.0})));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(dev.equals(other));
}

// The mixed forward and sparse deltas with sparse entries, against the CPU.
TEST(GpuSparseForward, MixedForwardAndSparseDeltaMatchTheCpu) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  Context cpu;
  s2ft_selection *sel = nullptr;
  make_moving_selection(kShape, &sel);
  const AllWeights base(kShape, S2FT_F32, 30);
  for (int32_t w : kWeights)
    for (const s2ft_selection *perm : {static_cast<const s2ft_selection *>(nullptr), static_cast<const s2ft_selection *>(sel)}) {
      SCOPED_TRACE("weight " + std::to_string(w) + (perm ? " permuted" : " base order"));
      std::array<WeightSpec, 7> sa, sb;
      sa[static_cast<size_t>(w)].density = 0.2;
      sb[static_cast<size_t>(w)].density = 0.05;
      if (w < 4) sb[static_cast<size_t>(w)].lines = {0, 2};
      TestAdapter a, b;
      make_test_adapter(a, kShape, sa, &base, 31, "a");
      make_test_adapter(b, kShape, sb, &base, 32, "b");
      const HostMatrix &W = base.at(1, w);
      const int64_t T = 21;  // decode-sized and prefill-sized segments
      HostMatrix x(S2FT_F32, T, W.cols), y_cpu(S2FT_F32, T, W.rows);
      Random rng(33);
      x.fill_random(rng);
      y_cpu.poison();
      DeviceMatrix dx(x), dw(W), dy(S2FT_F32, T, W.rows);
      const s2ft_adapter *ads[2] = {a.a, b.a};
      const int64_t offsets[5] = {0, 1, 3, 15, 21};
      const int32_t seg[4] = {0, -1, 1, 0};
      ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cpu.ctx, 1, w, &x.t, &W.t, perm, ads, nullptr, 2, offsets, seg, 4, &y_cpu.t));
      ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(g.ctx, 1, w, &dx.t, &dw.t, perm, ads, nullptr, 2, offsets, seg, 4, &dy.t));
      g.sync();
      EXPECT_LT(s2ft_gpu::max_rel_diff(dy.download(), y_cpu), 1e-5);
      for (const TestAdapter *ta : {&a, &b}) {
        s2ft_sparse_delta *dc = nullptr, *dg = nullptr;
        ASSERT_S2FT_OK(s2ft_sparse_delta_from_adapter(cpu.ctx, ta->a, 1, w, perm, &dc));
        ASSERT_S2FT_OK(s2ft_sparse_delta_from_adapter(g.ctx, ta->a, 1, w, perm, &dg));
        HostMatrix yc(S2FT_F32, T, W.rows);
        DeviceMatrix yg(S2FT_F32, T, W.rows);
        ASSERT_EQ(cudaMemset(yg.data, 0, yg.bytes()), cudaSuccess);
        s2ft_gpu::settle();
        ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cpu.ctx, dc, 0.5, &x.t, &yc.t));
        ASSERT_S2FT_OK(s2ft_sparse_delta_forward(g.ctx, dg, 0.5, &dx.t, &yg.t));
        g.sync();
        EXPECT_LT(s2ft_gpu::max_rel_diff(yg.download(), yc), 1e-5);
        s2ft_sparse_delta_destroy(dc);
        s2ft_sparse_delta_destroy(dg);
      }
    }
  s2ft_selection_destroy(sel);
}

}  // namespace
