// Adapters with low-rank (SORSA) entries on a CUDA context, against the CPU
// backend: apply, switch and remove give the CPU's weights bit for bit after
// every step (f32, bf16, f16; base order and permuted; padded device
// weights; low-rank entries meeting lines and sparse entries of the other
// adapters on the same weights), remove restores the base bit-exactly, and
// the whole-weight fingerprint and overflow refusals change nothing.
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "gpu/gpu_all_weights.hpp"
#include "gpu/gpu_support.hpp"
#include "support/low_rank_adapter.hpp"

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
};
std::string case_name(const ::testing::TestParamInfo<Case> &i) {
  return std::string(dtype_label(i.param.dtype)) + (i.param.permuted ? "_permuted" : "_base");
}

class GpuLowRankApply : public ::testing::TestWithParam<Case> {};

TEST_P(GpuLowRankApply, MatchesTheCpuBitForBit) {
  S2FT_REQUIRE_GPU();
  const Case c = GetParam();
  GpuContext g;
  Context cpu;
  s2ft_selection *sel = nullptr;
  if (c.permuted) make_moving_selection(kShape, &sel);
  const AllWeights base(kShape, c.dtype, 7);
  TestAdapter a, b, d;
  make_low_rank_adapter(a, base, 8, "a");  // low-rank on Q, O, DOWN, GATE
  std::array<WeightSpec, 7> sb;            // lines and sparse entries on a's low-rank weights
  sb[S2FT_WEIGHT_O].lines = {0, 4, 5};
  sb[S2FT_WEIGHT_DOWN].lines = {3, 7};
  sb[S2FT_WEIGHT_Q].density = 0.1;
  sb[S2FT_WEIGHT_GATE].density = -1;
  make_test_adapter(b, kShape, sb, &base, 9, "b");
  std::array<WeightSpec, 7> sd;
  sd[S2FT_WEIGHT_V].lines = {3};
  make_test_adapter(d, kShape, sd, &base, 10, "d");
  for (int32_t l = 0; l < kShape.n_layers; ++l) {
    add_low_rank(d, l, S2FT_WEIGHT_O, 2, 11 + static_cast<uint64_t>(l), &base);
    add_low_rank(d, l, S2FT_WEIGHT_K, 1, 13 + static_cast<uint64_t>(l), &base);
  }
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
  } steps[] = {{a.a, 0.75}, {b.a, -2.0}, {a.a, NAN}, {d.a, 0.5}, {a.a, 3.0}, {d.a, -1.0}, {b.a, 0.5}};
  for (const auto &st : steps) {
    ASSERT_S2FT_OK(s2ft_adapter_switch(mc.m, st.ad, st.scale, 0));
    ASSERT_S2FT_OK(s2ft_adapter_switch(mg.m, st.ad, st.scale, 0));
    ASSERT_TRUE(dev.equals(host));
  }
  ASSERT_S2FT_OK(s2ft_adapter_switch(mg.m, a.a, 1.0, 0));
  AllWeights want = merged(base, {&a}, {1.0});
  if (sel != nullptr) want.permute(cpu.ctx, sel, S2FT_PERMUTE_FORWARD);
  EXPECT_TRUE(dev.equals(want));
  ASSERT_S2FT_OK(s2ft_adapter_remove(mg.m));
  EXPECT_TRUE(dev.equals(original));
  s2ft_selection_destroy(sel);
}

INSTANTIATE_TEST_SUITE_P(DtypesOrders, GpuLowRankApply,
                         ::testing::Values(Case{S2FT_F32, false}, Case{S2FT_F32, true}, Case{S2FT_BF16, false},
                                           Case{S2FT_BF16, true}, Case{S2FT_F16, false}, Case{S2FT_F16, true}),
                         case_name);

TEST(GpuLowRankChecks, FingerprintAndOverflowRefusalsChangeNothing) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  const AllWeights base(kShape, S2FT_F16, 20, 1000.0);
  TestAdapter a;
  make_test_adapter(a, kShape, {}, &base, 21, "a");
  add_low_rank(a, 1, S2FT_WEIGHT_K, 2, 22, &base);
  AllWeights other(base);
  other.at(1, S2FT_WEIGHT_K).set(0, 0, other.at(1, S2FT_WEIGHT_K).get(0, 0) + 0.5f);
  DevAll dev(other, 0);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(g.ctx, &kShape, dev.layers.data(), nullptr, &m.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "layer 1 weight K");
  EXPECT_TRUE(dev.equals(other));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1e6, S2FT_APPLY_FORCE), S2FT_ERR_INVALID_ARGUMENT, "could overflow");
  EXPECT_TRUE(dev.equals(other));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 1.0, S2FT_APPLY_FORCE));
  EXPECT_TRUE(dev.equals(merged(other, {&a}, {1.0})));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(dev.equals(other));
}

}  // namespace
