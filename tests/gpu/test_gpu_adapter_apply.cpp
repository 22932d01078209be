// s2ft_model on a CUDA context: apply, switch and remove give the CPU
// backend's weights bit for bit after every step (all dtypes and a model
// mixing them, base order and permuted, scale != 1 and the default scale,
// switching between adapters with overlapping lines, k = 1 and k = all,
// compact and padded device weights, sizes that loop the kernels' grids),
// remove restores the base bit-exactly, a fingerprint mismatch is
// S2FT_ERR_FORMAT and changes nothing, S2FT_APPLY_FORCE applies anyway,
// and the CPU's error paths hold on the device too.
#include <cuda_runtime.h>

#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <tuple>
#include <vector>

#include "gpu/gpu_support.hpp"
#include "support/target_geometry.hpp"

using namespace s2ft_test;
using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;

namespace {

using Lines = std::array<std::vector<int64_t>, S2FT_NUM_TARGETS>;  // per target

// Base weights (o, v, down, up of every layer) on the host, one dtype per target.
struct HostWeights {
  std::vector<std::array<HostMatrix, S2FT_NUM_TARGETS>> w;
  std::vector<s2ft_layer_weights> layers;
  HostWeights(const s2ft_model_shape &shape, const std::array<int32_t, 4> &dtypes, uint64_t seed) {
    Random rng(seed);
    w.resize(static_cast<size_t>(shape.n_layers));
    for (auto &l : w)
      for (int32_t t : kTargets) {
        int64_t r, c;
        weight_shape(shape, t, &r, &c);
        l[static_cast<size_t>(t)] = HostMatrix(dtypes[static_cast<size_t>(t)], r, c);
        l[static_cast<size_t>(t)].fill_random(rng, 2.0);
      }
    bind();
  }
  HostWeights(const HostWeights &o) : w(o.w) { bind(); }
  HostWeights &operator=(const HostWeights &) = delete;
  void bind() {
    layers.clear();
    for (auto &l : w) {
      s2ft_layer_weights lw{};
      lw.o = &l[S2FT_TARGET_O].t;
      lw.v = &l[S2FT_TARGET_V].t;
      lw.down = &l[S2FT_TARGET_DOWN].t;
      lw.up = &l[S2FT_TARGET_UP].t;
      layers.push_back(lw);
    }
  }
  HostMatrix &at(int32_t l, int32_t t) { return w[static_cast<size_t>(l)][static_cast<size_t>(t)]; }
  const HostMatrix &at(int32_t l, int32_t t) const { return w[static_cast<size_t>(l)][static_cast<size_t>(t)]; }
};

// Device copies, each row padded by `pad` elements (NaN-filled).
struct DevWeights {
  std::vector<std::array<DeviceMatrix, S2FT_NUM_TARGETS>> w;
  std::vector<s2ft_layer_weights> layers;
  DevWeights(const HostWeights &h, int64_t pad) {
    w.resize(h.w.size());
    for (size_t l = 0; l < h.w.size(); ++l)
      for (int32_t t : kTargets) {
        const HostMatrix &m = h.w[l][static_cast<size_t>(t)];
        w[l][static_cast<size_t>(t)] = DeviceMatrix(m, m.cols + pad);
      }
    for (auto &l : w) {
      s2ft_layer_weights lw{};
      lw.o = &l[S2FT_TARGET_O].t;
      lw.v = &l[S2FT_TARGET_V].t;
      lw.down = &l[S2FT_TARGET_DOWN].t;
      lw.up = &l[S2FT_TARGET_UP].t;
      layers.push_back(lw);
    }
  }
  HostMatrix download(int32_t l, int32_t t) const { return w[static_cast<size_t>(l)][static_cast<size_t>(t)].download(); }
};

// Every device weight equals its host counterpart byte for byte (call after sync).
void expect_same(const DevWeights &d, const HostWeights &h, const std::string &what) {
  for (size_t l = 0; l < h.w.size(); ++l)
    for (int32_t t : kTargets) {
      const HostMatrix got = d.download(static_cast<int32_t>(l), t);
      EXPECT_TRUE(s2ft_gpu::bit_equal(got, h.w[l][static_cast<size_t>(t)]))
          << what << ": layer " << l << " target " << t << " differs from the CPU backend";
    }
}

using s2ft_test::ModelOwner;

// An adapter changing `lines` of every target in every layer (shifted by
// the layer so layers differ), random deltas, fingerprints from `base`
// (base order; NULL: no fingerprints).
void make_adapter(AdapterOwner &ad, const s2ft_model_shape &shape, const HostWeights *base, const Lines &lines,
                  double default_scale, uint64_t seed, const char *name) {
  ASSERT_S2FT_OK(s2ft_adapter_create(&shape, name, default_scale, &ad.a));
  Random rng(seed);
  for (int32_t l = 0; l < shape.n_layers; ++l)
    for (int32_t t : kTargets) {
      const int64_t n = line_count(shape, t), len = line_length(shape, t);
      std::vector<int64_t> ls;
      for (int64_t line : lines[static_cast<size_t>(t)]) ls.push_back((line + l) % n);
      const int64_t k = static_cast<int64_t>(ls.size());
      if (k == 0) continue;
      HostMatrix delta = by_columns(t) ? HostMatrix(S2FT_F32, len, k) : HostMatrix(S2FT_F32, k, len);
      delta.fill_random(rng, 0.5);
      ASSERT_S2FT_OK(s2ft_adapter_set(ad.a, l, t, ls.data(), k, &delta.t, base ? &base->at(l, t).t : nullptr));
    }
}

// `count` distinct lines of [0, n), pseudo-random, in no particular order.
std::vector<int64_t> pick_lines(int64_t n, int64_t count, uint64_t seed, const std::vector<int64_t> &avoid = {}) {
  std::vector<char> used(static_cast<size_t>(n), 0);
  for (int64_t a : avoid) used[static_cast<size_t>(a)] = 1;
  Random rng(seed);
  std::vector<int64_t> out;
  while (static_cast<int64_t>(out.size()) < count) {
    const int64_t c = rng.below(n);
    if (!used[static_cast<size_t>(c)]) {
      used[static_cast<size_t>(c)] = 1;
      out.push_back(c);
    }
  }
  return out;
}

// Adapter B's lines: the first `shared` of A's plus `fresh` lines A does not change.
std::vector<int64_t> overlapping(const std::vector<int64_t> &a, int64_t shared, int64_t n, int64_t fresh, uint64_t seed) {
  std::vector<int64_t> b(a.begin(), a.begin() + shared);
  const std::vector<int64_t> more = pick_lines(n, fresh, seed, a);
  b.insert(b.end(), more.begin(), more.end());
  return b;
}

struct Scenario {
  const char *name;
  s2ft_model_shape shape;
  Lines a, b;
};

// The scenarios: odd GQA sizes (the CPU tests' lines), rows of 16-byte
// multiples (the vectorised row path) with k = 1, k = all and a target only
// one adapter changes, and sizes that make the kernels' grids loop.
const std::vector<Scenario> &scenarios() {
  static const std::vector<Scenario> all = [] {
    std::vector<Scenario> s;
    s.push_back(Scenario{"odd", s2ft_model_shape{2, 13, 4, 2, 3, 11},
                         Lines{std::vector<int64_t>{0, 4, 5, 11}, {1, 2}, {3, 7, 10}, {}},
                         Lines{std::vector<int64_t>{5, 4, 9}, {}, {7, 0, 1, 3}, {2, 8, 6}}});
    {
      const s2ft_model_shape sh{2, 64, 8, 2, 8, 48};
      Scenario sc{"aligned", sh, {}, {}};
      // O: heads 1 and 5 (16 lines); V: all 16 lines (k = all); DOWN: one
      // channel (k = 1); UP: 10 channels that B does not change.
      std::vector<int64_t> o;
      for (int64_t h : {5, 1})
        for (int64_t j = 0; j < 8; ++j) o.push_back(h * 8 + j);
      std::vector<int64_t> v;
      for (int64_t j = 15; j >= 0; --j) v.push_back(j);
      sc.a = Lines{o, v, std::vector<int64_t>{17}, pick_lines(48, 10, 1)};
      sc.b = Lines{overlapping(o, 8, 64, 8, 2), std::vector<int64_t>{3}, overlapping({17}, 1, 48, 11, 3), {}};
      s.push_back(sc);
    }
    {
      const s2ft_model_shape sh{2, 1024, 16, 4, 64, 2816};
      Scenario sc{"large", sh, {}, {}};
      sc.a = Lines{pick_lines(1024, 256, 4), pick_lines(256, 64, 5), pick_lines(2816, 845, 6), pick_lines(2816, 845, 7)};
      sc.b = Lines{overlapping(sc.a[0], 128, 1024, 64, 8), {}, overlapping(sc.a[2], 300, 2816, 100, 9),
                   overlapping(sc.a[3], 845, 2816, 55, 10)};
      s.push_back(sc);
    }
    return s;
  }();
  return all;
}

// A random selection over all four targets (the permutation the model's
// weights are stored in).
void make_selection(Context &cpu, const s2ft_model_shape &shape, Selection &sel) {
  const int64_t count[S2FT_NUM_TARGETS] = {1, 1, 3, 2};
  s2ft_select_options opts = count_options(count, S2FT_HEADS_BY_GROUP);
  opts.seed = 77;
  ASSERT_S2FT_OK(s2ft_select(cpu.ctx, &shape, &opts, nullptr, &sel.sel));
}

void permute_all(s2ft_context *ctx, const s2ft_selection *sel, std::vector<s2ft_layer_weights> &layers) {
  for (size_t l = 0; l < layers.size(); ++l)
    ASSERT_S2FT_OK(s2ft_permute(ctx, sel, static_cast<int32_t>(l), &layers[l], S2FT_PERMUTE_FORWARD));
}

const std::array<int32_t, 4> kF32{S2FT_F32, S2FT_F32, S2FT_F32, S2FT_F32};
const std::array<int32_t, 4> kBF16{S2FT_BF16, S2FT_BF16, S2FT_BF16, S2FT_BF16};
const std::array<int32_t, 4> kF16{S2FT_F16, S2FT_F16, S2FT_F16, S2FT_F16};
const std::array<int32_t, 4> kMixed{S2FT_F32, S2FT_BF16, S2FT_F16, S2FT_BF16};  // o, v, down, up

std::string dtypes_label(const std::array<int32_t, 4> &d) {
  if (d == kMixed) return "mixed";
  return dtype_label(d[0]);
}

// A CPU model and a CUDA model over the same base weights (the CUDA one on
// device copies), in base order or permuted by a selection.
struct Pair {
  Context cpu;
  GpuContext g;
  Selection sel;
  std::unique_ptr<HostWeights> hw;
  std::unique_ptr<DevWeights> dw;
  ModelOwner cm, gm;

  void init(const s2ft_model_shape &shape, const HostWeights &base, bool permuted, int64_t pad) {
    if (permuted) {
      make_selection(cpu, shape, sel);
      if (::testing::Test::HasFatalFailure()) return;
    }
    hw = std::make_unique<HostWeights>(base);
    dw = std::make_unique<DevWeights>(base, pad);
    if (permuted) {
      permute_all(cpu.ctx, sel.sel, hw->layers);
      permute_all(g.ctx, sel.sel, dw->layers);
    }
    ASSERT_S2FT_OK(s2ft_model_create(cpu.ctx, &shape, hw->layers.data(), sel.sel, &cm.m));
    ASSERT_S2FT_OK(s2ft_model_create(g.ctx, &shape, dw->layers.data(), sel.sel, &gm.m));
  }
  // Runs `call` on both models; both must succeed and leave the same bytes.
  void both(const std::string &what, const std::function<s2ft_status(s2ft_model *)> &call) {
    SCOPED_TRACE(what);
    ASSERT_S2FT_OK(call(cm.m));
    ASSERT_S2FT_OK(call(gm.m));
    g.sync();
    expect_same(*dw, *hw, what);
  }
  void expect_applied(const s2ft_adapter *want, double scale) {
    for (s2ft_model *m : {cm.m, gm.m}) {
      const s2ft_adapter *got = reinterpret_cast<const s2ft_adapter *>(1);
      double s = -99.0;
      ASSERT_S2FT_OK(s2ft_model_applied(m, &got, &s));
      EXPECT_EQ(got, want);
      EXPECT_EQ(s, scale);
    }
  }
};

struct Param {
  size_t scenario;
  std::array<int32_t, 4> dtypes;
  bool permuted;
  int64_t pad;
};

void PrintTo(const Param &p, std::ostream *os) {
  *os << scenarios()[p.scenario].name << " " << dtypes_label(p.dtypes) << (p.permuted ? " permuted" : " base order")
      << " pad " << p.pad;
}

std::vector<Param> all_params() {
  std::vector<Param> p;
  for (const auto &d : {kF32, kBF16, kF16, kMixed})
    for (bool perm : {false, true}) {
      for (int64_t pad : {0, 3}) p.push_back(Param{0, d, perm, pad});
      for (int64_t pad : {0, 8, 5}) p.push_back(Param{1, d, perm, pad});
    }
  for (const auto &d : {kBF16, kF32})
    for (bool perm : {false, true}) p.push_back(Param{2, d, perm, 0});
  return p;
}

std::string param_name(const ::testing::TestParamInfo<Param> &i) {
  return std::string(scenarios()[i.param.scenario].name) + "_" + dtypes_label(i.param.dtypes) +
         (i.param.permuted ? "_permuted" : "_base_order") + "_pad" + std::to_string(i.param.pad);
}

class GpuAdapterApply : public ::testing::TestWithParam<Param> {};

TEST_P(GpuAdapterApply, ApplySwitchRemoveEqualCpuBitForBit) {
  S2FT_REQUIRE_GPU();
  const Param p = GetParam();
  const Scenario &sc = scenarios()[p.scenario];
  const HostWeights base(sc.shape, p.dtypes, 11);
  AdapterOwner a, b;
  make_adapter(a, sc.shape, &base, sc.a, 1.0, 12, "a");
  make_adapter(b, sc.shape, &base, sc.b, -1.25, 13, "b");
  ASSERT_FALSE(HasFatalFailure());
  Pair m;
  m.init(sc.shape, base, p.permuted, p.pad);
  ASSERT_FALSE(HasFatalFailure());
  m.g.sync();
  expect_same(*m.dw, *m.hw, "after create");
  const HostWeights original(*m.hw);
  // One adapter uploaded ahead of time, the other on first use.
  ASSERT_S2FT_OK(s2ft_adapter_upload(m.g.ctx, a.a));

  m.both("apply a 0.75", [&](s2ft_model *x) { return s2ft_adapter_apply(x, a.a, 0.75, 0); });
  m.expect_applied(a.a, 0.75);
  m.both("switch b -2", [&](s2ft_model *x) { return s2ft_adapter_switch(x, b.a, -2.0, 0); });
  m.both("switch a 0.5", [&](s2ft_model *x) { return s2ft_adapter_switch(x, a.a, 0.5, 0); });
  m.both("switch a 3 (same adapter, new scale)", [&](s2ft_model *x) { return s2ft_adapter_switch(x, a.a, 3.0, 0); });
  m.both("switch b default scale", [&](s2ft_model *x) { return s2ft_adapter_switch(x, b.a, NAN, 0); });
  m.expect_applied(b.a, -1.25);
  m.both("remove b", [&](s2ft_model *x) { return s2ft_adapter_remove(x); });
  m.expect_applied(nullptr, 0.0);
  expect_same(*m.dw, original, "remove restores the base");
  m.both("switch a from nothing", [&](s2ft_model *x) { return s2ft_adapter_switch(x, a.a, -0.3, 0); });
  m.both("remove a", [&](s2ft_model *x) { return s2ft_adapter_remove(x); });
  expect_same(*m.dw, original, "remove restores the base again");

  // An adapter changed after use: its device copy is refreshed.
  {
    const int32_t t = S2FT_TARGET_DOWN;
    const int64_t len = line_length(sc.shape, t), k = 2;
    std::vector<int64_t> lines = {1, 0};
    HostMatrix delta(S2FT_F32, len, k);
    Random rng(99);
    delta.fill_random(rng, 0.25);
    ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, t, lines.data(), k, &delta.t, &base.at(0, t).t));
  }
  m.both("apply changed a", [&](s2ft_model *x) { return s2ft_adapter_apply(x, a.a, 1.0, 0); });
  m.both("remove changed a", [&](s2ft_model *x) { return s2ft_adapter_remove(x); });
  expect_same(*m.dw, original, "remove restores the base after the changed adapter");
}

INSTANTIATE_TEST_SUITE_P(Scenarios, GpuAdapterApply, ::testing::ValuesIn(all_params()), param_name);

// ---- fingerprints ----------------------------------------------------------------------

const Scenario &odd() { return scenarios()[0]; }

class GpuAdapterFingerprints : public ::testing::TestWithParam<std::tuple<int32_t, bool>> {};

// A mismatch is S2FT_ERR_FORMAT and changes nothing; FORCE applies anyway.
TEST_P(GpuAdapterFingerprints, MismatchIsFormatErrorUnlessForced) {
  S2FT_REQUIRE_GPU();
  const int32_t dtype = std::get<0>(GetParam());
  const bool permuted = std::get<1>(GetParam());
  const s2ft_model_shape &shape = odd().shape;
  const std::array<int32_t, 4> dts{dtype, dtype, dtype, dtype};
  const HostWeights base(shape, dts, 8);
  AdapterOwner a;
  make_adapter(a, shape, &base, odd().a, 1.0, 9, "a");
  // Another base: one element of layer 1's DOWN line 8 (A's line 7 + 1) differs.
  HostWeights other(base);
  other.at(1, S2FT_TARGET_DOWN).set(4, 8, other.at(1, S2FT_TARGET_DOWN).get(4, 8) + 0.5f);
  ASSERT_FALSE(HasFatalFailure());
  Pair m;
  m.init(shape, other, permuted, 0);
  ASSERT_FALSE(HasFatalFailure());
  const HostWeights before(*m.hw);

  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.gm.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "layer 1 target DOWN line 8");
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.gm.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "fingerprint");
  m.g.sync();
  expect_same(*m.dw, before, "after the refused apply and switch");
  m.expect_applied(nullptr, 0.0);

  m.both("forced apply", [&](s2ft_model *x) { return s2ft_adapter_apply(x, a.a, 1.0, S2FT_APPLY_FORCE); });
  m.both("remove", [&](s2ft_model *x) { return s2ft_adapter_remove(x); });
  expect_same(*m.dw, before, "remove after a forced apply");
}

// A scale at which merging could overflow the dtype is refused as on the
// CPU (from the create-time line maxima), forced or not, and nothing changes.
TEST_P(GpuAdapterFingerprints, ScaleThatWouldOverflowIsRefusedLikeTheCpu) {
  S2FT_REQUIRE_GPU();
  const int32_t dtype = std::get<0>(GetParam());
  const bool permuted = std::get<1>(GetParam());
  const s2ft_model_shape &shape = odd().shape;
  const std::array<int32_t, 4> dts{dtype, dtype, dtype, dtype};
  const HostWeights base(shape, dts, 12);
  AdapterOwner a;
  make_adapter(a, shape, &base, odd().a, 1.0, 13, "a");
  ASSERT_FALSE(HasFatalFailure());
  Pair m;
  m.init(shape, base, permuted, 0);
  ASSERT_FALSE(HasFatalFailure());
  const HostWeights before(*m.hw);
  const double too_large = dtype == S2FT_F16 ? 1e6 : 1e300;
  for (const uint32_t flags : {0u, S2FT_APPLY_FORCE}) {
    EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.cm.m, a.a, too_large, flags), S2FT_ERR_INVALID_ARGUMENT, "could overflow");
    EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.gm.m, a.a, too_large, flags), S2FT_ERR_INVALID_ARGUMENT, "could overflow");
  }
  m.g.sync();
  expect_same(*m.dw, before, "after the refused applies");
  m.expect_applied(nullptr, 0.0);
  m.both("apply at scale 3", [&](s2ft_model *x) { return s2ft_adapter_apply(x, a.a, 3.0, 0); });
}

// A switch to an adapter made for another base leaves the applied adapter,
// its scale and the weights as they were.
TEST_P(GpuAdapterFingerprints, FailedSwitchChangesNothing) {
  S2FT_REQUIRE_GPU();
  const int32_t dtype = std::get<0>(GetParam());
  const bool permuted = std::get<1>(GetParam());
  const s2ft_model_shape &shape = odd().shape;
  const std::array<int32_t, 4> dts{dtype, dtype, dtype, dtype};
  const HostWeights base(shape, dts, 10);
  HostWeights wrong(base);  // UP line 7 of layer 1 (one of B's lines) differs
  wrong.at(1, S2FT_TARGET_UP).set(7, 0, wrong.at(1, S2FT_TARGET_UP).get(7, 0) + 0.25f);
  AdapterOwner a, b_wrong;
  make_adapter(a, shape, &base, odd().a, 1.0, 11, "a");
  make_adapter(b_wrong, shape, &wrong, odd().b, 1.0, 12, "b_wrong");
  ASSERT_FALSE(HasFatalFailure());
  Pair m;
  m.init(shape, base, permuted, 0);
  ASSERT_FALSE(HasFatalFailure());
  const HostWeights original(*m.hw);
  m.both("apply a", [&](s2ft_model *x) { return s2ft_adapter_apply(x, a.a, 0.5, 0); });
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.gm.m, b_wrong.a, 1.0, 0), S2FT_ERR_FORMAT, "layer 1 target UP line 7");
  m.g.sync();
  expect_same(*m.dw, *m.hw, "after the refused switch");
  m.expect_applied(a.a, 0.5);  // the CPU model never tried: both must still say a, 0.5
  m.both("forced switch", [&](s2ft_model *x) { return s2ft_adapter_switch(x, b_wrong.a, 1.0, S2FT_APPLY_FORCE); });
  m.both("remove", [&](s2ft_model *x) { return s2ft_adapter_remove(x); });
  expect_same(*m.dw, original, "remove restores the base");
}

// Fingerprints 0 (an adapter made without a base) are never checked.
TEST_P(GpuAdapterFingerprints, UnknownFingerprintsAreNotChecked) {
  S2FT_REQUIRE_GPU();
  const int32_t dtype = std::get<0>(GetParam());
  const bool permuted = std::get<1>(GetParam());
  const s2ft_model_shape &shape = odd().shape;
  const std::array<int32_t, 4> dts{dtype, dtype, dtype, dtype};
  const HostWeights base(shape, dts, 14);
  AdapterOwner a;
  make_adapter(a, shape, nullptr, odd().a, 1.0, 15, "a");
  ASSERT_FALSE(HasFatalFailure());
  Pair m;
  m.init(shape, base, permuted, 0);
  ASSERT_FALSE(HasFatalFailure());
  m.both("apply", [&](s2ft_model *x) { return s2ft_adapter_apply(x, a.a, 2.0, 0); });
  m.both("remove", [&](s2ft_model *x) { return s2ft_adapter_remove(x); });
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuAdapterFingerprints,
                         ::testing::Combine(::testing::Values(S2FT_F32, S2FT_BF16, S2FT_F16), ::testing::Bool()),
                         [](const ::testing::TestParamInfo<std::tuple<int32_t, bool>> &i) {
                           return std::string(dtype_label(std::get<0>(i.param))) +
                                  (std::get<1>(i.param) ? "_permuted" : "_base_order");
                         });

// ---- rounding ------------------------------------------------------------------------------

// W + scale * delta is rounded once from double: 1 + (half an ulp + 2^-30)
// rounds up, where rounding to f32 first would land on the tie and round
// to even (down).
TEST(GpuAdapterRounding, RoundsOnceFromDouble) {
  S2FT_REQUIRE_GPU();
  const s2ft_model_shape &shape = odd().shape;
  for (int32_t dtype : {S2FT_BF16, S2FT_F16}) {
    SCOPED_TRACE(dtype_label(dtype));
    const double half_ulp = dtype == S2FT_BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    HostWeights base(shape, {dtype, dtype, dtype, dtype}, 30);
    HostMatrix &down = base.at(0, S2FT_TARGET_DOWN);
    for (int64_t i = 0; i < down.rows; ++i) down.set(i, 4, 1.0f);
    AdapterOwner a;
    ASSERT_S2FT_OK(s2ft_adapter_create(&shape, "tie", 1.0, &a.a));
    HostMatrix delta(S2FT_F32, shape.d_model, 1);
    for (int64_t i = 0; i < shape.d_model; ++i) delta.set(i, 0, static_cast<float>(half_ulp + std::ldexp(1.0, -30)));
    const int64_t line = 4;
    ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, S2FT_TARGET_DOWN, &line, 1, &delta.t, nullptr));
    Pair m;
    m.init(shape, base, false, 0);
    ASSERT_FALSE(HasFatalFailure());
    m.both("apply", [&](s2ft_model *x) { return s2ft_adapter_apply(x, a.a, 1.0, 0); });
    const HostMatrix got = m.dw->download(0, S2FT_TARGET_DOWN);
    for (int64_t i = 0; i < got.rows; ++i) EXPECT_EQ(got.get(i, 4), static_cast<float>(1.0 + 2 * half_ulp)) << "row " << i;
    m.both("remove", [&](s2ft_model *x) { return s2ft_adapter_remove(x); });
    const HostMatrix back = m.dw->download(0, S2FT_TARGET_DOWN);
    for (int64_t i = 0; i < back.rows; ++i) EXPECT_EQ(back.get(i, 4), 1.0f);
  }
}

// ---- error paths -----------------------------------------------------------------------------

TEST(GpuAdapterApplyErrors, StateAndMissingWeightLeaveTheModelUnchanged) {
  S2FT_REQUIRE_GPU();
  const s2ft_model_shape &shape = odd().shape;
  const HostWeights base(shape, kBF16, 20);
  AdapterOwner a;
  make_adapter(a, shape, &base, odd().a, 1.0, 21, "a");
  ASSERT_FALSE(HasFatalFailure());
  GpuContext g;
  DevWeights dw(base, 0);

  // A weight the adapter needs is missing: nothing is written, not even layer 0.
  std::vector<s2ft_layer_weights> layers = dw.layers;
  layers[1].down = nullptr;
  ModelOwner partial;
  ASSERT_S2FT_OK(s2ft_model_create(g.ctx, &shape, layers.data(), nullptr, &partial.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(partial.m, a.a, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "layers[1].down");
  g.sync();
  expect_same(dw, base, "after the refused apply");
}

TEST(GpuAdapterApplyErrors, ApplyTwiceAndRemoveNothingAreState) {
  S2FT_REQUIRE_GPU();
  const s2ft_model_shape &shape = odd().shape;
  const HostWeights base(shape, kF16, 22);
  AdapterOwner a;
  make_adapter(a, shape, &base, odd().a, 1.0, 23, "a");
  ASSERT_FALSE(HasFatalFailure());
  GpuContext g;
  DevWeights dw(base, 0);
  ModelOwner m;
  ASSERT_S2FT_OK(s2ft_model_create(g.ctx, &shape, dw.layers.data(), nullptr, &m.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_remove(m.m), S2FT_ERR_STATE, "no adapter");
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 1.0, 0));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 0), S2FT_ERR_STATE, "already");
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, a.a, INFINITY, 0), S2FT_ERR_INVALID_ARGUMENT, "scale");
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, a.a, 1.0, 8u), S2FT_ERR_INVALID_ARGUMENT, "flags");
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  g.sync();
  expect_same(dw, base, "after remove");
}

TEST(GpuAdapterApplyErrors, CreateChecksDeviceAndOverlap) {
  S2FT_REQUIRE_GPU();
  const s2ft_model_shape &shape = odd().shape;
  HostWeights host(shape, kF32, 24);
  GpuContext g;
  DevWeights dw(host, 0);
  s2ft_model *out = reinterpret_cast<s2ft_model *>(1);

  std::vector<s2ft_layer_weights> layers = dw.layers;
  layers[0].o = host.layers[0].o;  // a CPU tensor on a CUDA context
  EXPECT_S2FT_ERROR(s2ft_model_create(g.ctx, &shape, layers.data(), nullptr, &out), S2FT_ERR_DEVICE, "layers[0].o");
  EXPECT_EQ(out, nullptr);

  s2ft_tensor lying = *host.layers[1].v;  // claims the GPU, points at host memory
  lying.device = s2ft_device{S2FT_DEVICE_CUDA, 0};
  layers = dw.layers;
  layers[1].v = &lying;
  EXPECT_S2FT_ERROR(s2ft_model_create(g.ctx, &shape, layers.data(), nullptr, &out), S2FT_ERR_DEVICE, "layers[1].v");

  layers = dw.layers;
  layers[1].o = layers[0].o;  // the same device memory twice
  EXPECT_S2FT_ERROR(s2ft_model_create(g.ctx, &shape, layers.data(), nullptr, &out), S2FT_ERR_INVALID_ARGUMENT,
                    "layers[1].o");
}

}  // namespace
