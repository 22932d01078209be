// Applying adapters to a model: apply matches a float64 reference rounded
// once, remove restores the bytes exactly, switch is bit-identical to
// remove-then-apply, fused adapters apply as the sum, fingerprints guard the
// base, and every error path leaves the model unchanged with a clear message.
// Each case runs in f32, bf16 and f16, on base-order and permuted weights.
#include <array>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "support/target_geometry.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

// GQA and odd sizes: 4 query heads over 2 KV heads of 3, d_ff 11.
const s2ft_model_shape kShape{2, 13, 4, 2, 3, 11};

// One (layer, target) of a test adapter: its lines in the order given to
// s2ft_adapter_set and the delta in that order.
struct Entry {
  std::vector<int64_t> lines;
  HostMatrix delta;  // f32 [len, k] or [k, len]
  double at(int32_t t, int64_t line, int64_t i) const {
    for (size_t j = 0; j < lines.size(); ++j)
      if (lines[j] == line) return by_columns(t) ? delta.get(i, static_cast<int64_t>(j)) : delta.get(static_cast<int64_t>(j), i);
    return 0.0;
  }
  bool has(int64_t line) const {
    for (int64_t l : lines)
      if (l == line) return true;
    return false;
  }
};

// The base weights of all layers in base order, plus a working copy the
// model edits (permuted when the test permutes).
struct Weights {
  int32_t dtype;
  std::vector<std::array<HostMatrix, 4>> w;  // [layer][target]
  std::vector<s2ft_layer_weights> layers;

  Weights(int32_t dt, uint64_t seed) : dtype(dt) {
    Random rng(seed);
    w.resize(static_cast<size_t>(kShape.n_layers));
    for (auto &l : w)
      for (int32_t t : kTargets) {
        int64_t r, c;
        weight_shape(kShape, t, &r, &c);
        l[static_cast<size_t>(t)] = HostMatrix(dt, r, c);
        l[static_cast<size_t>(t)].fill_random(rng, 2.0);
      }
    bind();
  }
  Weights(const Weights &o) : dtype(o.dtype), w(o.w) { bind(); }
  Weights &operator=(const Weights &) = delete;
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
  HostMatrix &at(int32_t layer, int32_t t) { return w[static_cast<size_t>(layer)][static_cast<size_t>(t)]; }
  bool same_bytes(const Weights &o) const {
    for (size_t l = 0; l < w.size(); ++l)
      for (int32_t t : kTargets)
        if (w[l][static_cast<size_t>(t)].bytes != o.w[l][static_cast<size_t>(t)].bytes) return false;
    return true;
  }
};

struct Adapter {
  s2ft_adapter *a = nullptr;
  std::vector<std::array<Entry, 4>> entries;
  Adapter() = default;
  Adapter(const Adapter &) = delete;
  Adapter &operator=(const Adapter &) = delete;
  ~Adapter() { s2ft_adapter_destroy(a); }
};

using Model = s2ft_test::ModelOwner;

// Fills `ad` with the given lines per target (same in every layer, shifted by
// layer so layers differ), random deltas, fingerprints from `base` (base order).
void make_adapter(Adapter &ad, Weights &base, const std::vector<std::vector<int64_t>> &lines_per_target,
                  double default_scale, uint64_t seed, const char *name) {
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, name, default_scale, &ad.a));
  Random rng(seed);
  ad.entries.resize(static_cast<size_t>(kShape.n_layers));
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t t : kTargets) {
      Entry &e = ad.entries[static_cast<size_t>(l)][static_cast<size_t>(t)];
      const int64_t n = line_count(kShape, t), len = line_length(kShape, t);
      for (int64_t line : lines_per_target[static_cast<size_t>(t)]) e.lines.push_back((line + l) % n);
      const int64_t k = static_cast<int64_t>(e.lines.size());
      if (k == 0) continue;
      e.delta = by_columns(t) ? HostMatrix(S2FT_F32, len, k) : HostMatrix(S2FT_F32, k, len);
      e.delta.fill_random(rng, 0.5);
      ASSERT_S2FT_OK(s2ft_adapter_set(ad.a, l, t, e.lines.data(), k, &e.delta.t, &base.at(l, t).t));
    }
}

// base + scale * delta rounded once, in base order.
Weights expected_after(const Weights &base, const Adapter &ad, double scale) {
  Weights out(base);
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t t : kTargets) {
      const Entry &e = ad.entries[static_cast<size_t>(l)][static_cast<size_t>(t)];
      HostMatrix &w = out.at(l, t);
      for (int64_t line : e.lines)
        for (int64_t i = 0; i < line_length(kShape, t); ++i) {
          const int64_t r = by_columns(t) ? i : line, c = by_columns(t) ? line : i;
          w.set(r, c, round_once(static_cast<double>(w.get(r, c)) + scale * e.at(t, line, i), w.dtype));
        }
    }
  return out;
}

// A selection over all four targets whose permutations move lines in both
// layers: O trains KV group 1 (query heads 2, 3), V KV head 1, and channels
// scattered over d_ff.
void make_selection(Selection &sel) {
  const int64_t o[2] = {1, 1}, v[2] = {1, 1}, down[8] = {2, 5, 9, 10, 0, 6, 7, 8}, up[6] = {7, 3, 8, 10, 1, 4};
  const int64_t *units[4] = {o, v, down, up};
  const int64_t n_units[4] = {1, 1, 4, 3};
  ASSERT_S2FT_OK(s2ft_selection_create(&kShape, S2FT_HEADS_BY_GROUP, units, n_units, &sel.sel));
}

void permute(Context &cx, const s2ft_selection *sel, Weights &w, int32_t direction) {
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    ASSERT_S2FT_OK(s2ft_permute(cx.ctx, sel, l, &w.layers[static_cast<size_t>(l)], direction));
}

struct Case {
  int32_t dtype;
  bool permuted;
};
void PrintTo(const Case &c, std::ostream *os) { *os << dtype_label(c.dtype) << (c.permuted ? " permuted" : " base order"); }
std::string case_name(const ::testing::TestParamInfo<Case> &i) {
  return std::string(dtype_label(i.param.dtype)) + (i.param.permuted ? "_permuted" : "_base_order");
}

class AdapterApply : public ::testing::TestWithParam<Case> {
 protected:
  Context cx;
  Selection sel;
  void SetUp() override {
    if (GetParam().permuted) make_selection(sel);
  }
  // The model's working weights: base, permuted when the case is permuted.
  void to_model_order(Weights &w) {
    if (GetParam().permuted) permute(cx, sel.sel, w, S2FT_PERMUTE_FORWARD);
  }
};

// Lines of adapter A and of adapter B: overlapping, disjoint, and targets
// only one of them changes.
const std::vector<std::vector<int64_t>> kLinesA = {{0, 4, 5, 11}, {1, 2}, {3, 7, 10}, {}};
const std::vector<std::vector<int64_t>> kLinesB = {{5, 4, 9}, {}, {7, 0, 1, 3}, {2, 8, 6}};

TEST_P(AdapterApply, ApplyMatchesRoundedFloat64AndRemoveRestoresBytes) {
  const Case c = GetParam();
  Weights base(c.dtype, 1);
  Adapter a;
  make_adapter(a, base, kLinesA, 1.0, 2, "a");
  Weights work(base);
  to_model_order(work);
  const Weights before(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel.sel, &m.m));

  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 0.75, 0));
  Weights want = expected_after(base, a, 0.75);
  to_model_order(want);
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t t : kTargets)
      for (int64_t i = 0; i < want.at(l, t).rows; ++i)
        for (int64_t j = 0; j < want.at(l, t).cols; ++j)
          ASSERT_EQ(work.at(l, t).get(i, j), want.at(l, t).get(i, j)) << "layer " << l << " target " << t << " (" << i << ", " << j << ")";
  ASSERT_TRUE(work.same_bytes(want));
  const s2ft_adapter *applied = nullptr;
  double scale = 0;
  ASSERT_S2FT_OK(s2ft_model_applied(m.m, &applied, &scale));
  EXPECT_EQ(applied, a.a);
  EXPECT_EQ(scale, 0.75);

  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(before));
  ASSERT_S2FT_OK(s2ft_model_applied(m.m, &applied, nullptr));
  EXPECT_EQ(applied, nullptr);
}

TEST_P(AdapterApply, NanScaleMeansDefaultScale) {
  const Case c = GetParam();
  Weights base(c.dtype, 3);
  Adapter a;
  make_adapter(a, base, kLinesB, -1.25, 4, "b");
  Weights work(base);
  to_model_order(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel.sel, &m.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, NAN, 0));
  Weights want = expected_after(base, a, -1.25);
  to_model_order(want);
  EXPECT_TRUE(work.same_bytes(want));
  const s2ft_adapter *applied = nullptr;
  double scale = 0;
  ASSERT_S2FT_OK(s2ft_model_applied(m.m, &applied, &scale));
  EXPECT_EQ(scale, -1.25);
}

// switch A -> B must equal remove A then apply B, byte for byte, and touch
// no line outside A and B; B -> A and back to nothing must round-trip too.
TEST_P(AdapterApply, SwitchIsBitIdenticalToRemoveThenApply) {
  const Case c = GetParam();
  Weights base(c.dtype, 5);
  Adapter a, b;
  make_adapter(a, base, kLinesA, 1.0, 6, "a");
  make_adapter(b, base, kLinesB, 1.0, 7, "b");
  Weights w1(base), w2(base);
  to_model_order(w1);
  to_model_order(w2);
  const Weights original(w1);
  Model m1, m2;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, w1.layers.data(), sel.sel, &m1.m));
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, w2.layers.data(), sel.sel, &m2.m));

  // Switching with nothing applied is apply.
  ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, a.a, 0.5, 0));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m2.m, a.a, 0.5, 0));
  ASSERT_TRUE(w1.same_bytes(w2));

  ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, b.a, -2.0, 0));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m2.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m2.m, b.a, -2.0, 0));
  EXPECT_TRUE(w1.same_bytes(w2));
  Weights want = expected_after(base, b, -2.0);
  to_model_order(want);
  EXPECT_TRUE(w1.same_bytes(want));

  // Back to A, then the same adapter at another scale.
  ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, a.a, 0.5, 0));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m2.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m2.m, a.a, 0.5, 0));
  EXPECT_TRUE(w1.same_bytes(w2));
  ASSERT_S2FT_OK(s2ft_adapter_switch(m1.m, a.a, 3.0, 0));
  Weights want_a3 = expected_after(base, a, 3.0);
  to_model_order(want_a3);
  EXPECT_TRUE(w1.same_bytes(want_a3));

  ASSERT_S2FT_OK(s2ft_adapter_remove(m1.m));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m2.m));
  EXPECT_TRUE(w1.same_bytes(original));
  EXPECT_TRUE(w2.same_bytes(original));
}

// A fingerprint mismatch changes nothing; S2FT_APPLY_FORCE applies anyway.
TEST_P(AdapterApply, FingerprintMismatchIsFormatErrorUnlessForced) {
  const Case c = GetParam();
  Weights base(c.dtype, 8);
  Adapter a;
  make_adapter(a, base, kLinesA, 1.0, 9, "a");
  Weights other(base);  // another base: one element of layer 1's DOWN line 8 (A's line 7 + 1) differs
  other.at(1, S2FT_TARGET_DOWN).set(4, 8, other.at(1, S2FT_TARGET_DOWN).get(4, 8) + 0.5f);
  Weights work(other);
  to_model_order(work);
  const Weights before(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel.sel, &m.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "layer 1 target DOWN line 8");
  EXPECT_TRUE(work.same_bytes(before));
  const s2ft_adapter *applied = a.a;
  ASSERT_S2FT_OK(s2ft_model_applied(m.m, &applied, nullptr));
  EXPECT_EQ(applied, nullptr);
  // Switch checks the same way.
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "fingerprint");
  EXPECT_TRUE(work.same_bytes(before));

  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 1.0, S2FT_APPLY_FORCE));
  Weights want = expected_after(other, a, 1.0);
  to_model_order(want);
  EXPECT_TRUE(work.same_bytes(want));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(before));
}

// A scale at which merging could overflow the weight's dtype is refused,
// forced or not, and nothing is written (instead of infinities).
TEST_P(AdapterApply, ScaleThatWouldOverflowIsRefused) {
  const Case c = GetParam();
  Weights base(c.dtype, 31);
  Adapter a;
  make_adapter(a, base, kLinesA, 1.0, 32, "a");
  Weights work(base);
  to_model_order(work);
  const Weights before(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel.sel, &m.m));
  // |W| <= 2 and |delta| <= 0.5: scale 1e300 overflows every dtype, 2e5 only f16 (largest 65504).
  const double too_large = c.dtype == S2FT_F16 ? 2e5 : 1e300;
  for (const uint32_t flags : {0u, S2FT_APPLY_FORCE}) {
    EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, too_large, flags), S2FT_ERR_INVALID_ARGUMENT, "could overflow");
    EXPECT_TRUE(work.same_bytes(before));
    EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, -too_large, flags), S2FT_ERR_INVALID_ARGUMENT,
                      std::string("largest finite ") + dtype_label(c.dtype));
    EXPECT_TRUE(work.same_bytes(before));
  }
  // At a scale the dtype holds, apply works as usual; for f16 also one whose
  // scaled deltas pass half the range (the bound with the base values decides).
  const double large_but_fine = c.dtype == S2FT_F16 ? 8e4 : 1000.0;
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, large_but_fine, 0));
  Weights want = expected_after(base, a, large_but_fine);
  to_model_order(want);
  EXPECT_TRUE(work.same_bytes(want));
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(before));
}

// A failing switch leaves the applied adapter and the weights as they were.
TEST_P(AdapterApply, FailedSwitchChangesNothing) {
  const Case c = GetParam();
  Weights base(c.dtype, 10);
  Adapter a, b;
  make_adapter(a, base, kLinesA, 1.0, 11, "a");
  make_adapter(b, base, kLinesB, 1.0, 12, "b");
  // B made against a base whose UP line 7 of layer 1 (one of B's lines)
  // differs from this model's.
  Weights wrong(base);
  wrong.at(1, S2FT_TARGET_UP).set(7, 0, wrong.at(1, S2FT_TARGET_UP).get(7, 0) + 0.25f);
  Adapter b_wrong;
  make_adapter(b_wrong, wrong, kLinesB, 1.0, 12, "b_wrong");
  Weights work(base);
  to_model_order(work);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel.sel, &m.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 0.5, 0));
  const Weights with_a(work);
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, b_wrong.a, 1.0, 0), S2FT_ERR_FORMAT, "layer 1 target UP line 7");
  EXPECT_TRUE(work.same_bytes(with_a));
  const s2ft_adapter *applied = nullptr;
  double scale = 0;
  ASSERT_S2FT_OK(s2ft_model_applied(m.m, &applied, &scale));
  EXPECT_EQ(applied, a.a);
  EXPECT_EQ(scale, 0.5);
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  Weights original(base);
  to_model_order(original);
  EXPECT_TRUE(work.same_bytes(original));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AdapterApply,
                         ::testing::Values(Case{S2FT_F32, false}, Case{S2FT_F32, true}, Case{S2FT_BF16, false},
                                           Case{S2FT_BF16, true}, Case{S2FT_F16, false}, Case{S2FT_F16, true}),
                         case_name);

// Fingerprints hash bf16-rounded values: an adapter made against an f32
// base applies, without S2FT_APPLY_FORCE, to the base's bf16 copy (each
// value rounded to nearest even, as PyTorch's .to(torch.bfloat16) does),
// in base order and permuted, and gives the copy's own rounded result;
// a base that differs at bf16 precision in one element is still refused.
TEST(AdapterApplyDtypeCopy, AdapterOfAnF32BaseAppliesToItsBf16Copy) {
  for (const bool permuted : {false, true}) {
    SCOPED_TRACE(permuted ? "permuted" : "base order");
    Context cx;
    Selection sel;
    if (permuted) make_selection(sel);
    auto to_model_order = [&](Weights &w) {
      if (permuted) permute(cx, sel.sel, w, S2FT_PERMUTE_FORWARD);
    };
    Weights f32_base(S2FT_F32, 21);
    Adapter a;
    make_adapter(a, f32_base, kLinesA, 1.0, 22, "trained on f32");
    Weights copy(S2FT_BF16, 23);
    for (int32_t l = 0; l < kShape.n_layers; ++l)
      for (int32_t t : kTargets) {
        const HostMatrix &src = f32_base.at(l, t);
        for (int64_t i = 0; i < src.rows; ++i)
          for (int64_t j = 0; j < src.cols; ++j) copy.at(l, t).set(i, j, src.get(i, j));  // RNE to bf16
      }
    Weights work(copy);
    to_model_order(work);
    Model m;
    ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel.sel, &m.m));
    ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 1.0, 0));
    Weights want = expected_after(copy, a, 1.0);
    to_model_order(want);
    EXPECT_TRUE(work.same_bytes(want));
    ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));

    // One element of one of A's lines one bf16 step away: another base.
    Weights other(copy);
    HostMatrix &down = other.at(0, S2FT_TARGET_DOWN);
    down.set(2, 3, from_bf16(static_cast<uint16_t>(to_bf16(down.get(2, 3)) + 1)));
    Weights work2(other);
    to_model_order(work2);
    Model m2;
    ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work2.layers.data(), sel.sel, &m2.m));
    EXPECT_S2FT_ERROR(s2ft_adapter_apply(m2.m, a.a, 1.0, 0), S2FT_ERR_FORMAT, "layer 0 target DOWN line 3");
  }
}

// apply(fuse(A, B) with weights sA, sB) equals W + sA dA + sB dB up to the
// one f32 rounding of the fused delta (f32 weights).
TEST(AdapterApplyFused, FusedEqualsSequentialArithmetic) {
  Context cx;
  Weights base(S2FT_F32, 13);
  Adapter a, b;
  make_adapter(a, base, kLinesA, 1.0, 14, "a");
  make_adapter(b, base, kLinesB, 1.0, 15, "b");
  const s2ft_adapter *inputs[2] = {a.a, b.a};
  const double weights[2] = {0.7, -1.3};
  s2ft_adapter *fused = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(inputs, weights, 2, &fused));
  std::unique_ptr<s2ft_adapter, void (*)(s2ft_adapter *)> owner(fused, s2ft_adapter_destroy);
  Weights work(base);
  Model m;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), nullptr, &m.m));
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, fused, NAN, 0));
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t t : kTargets) {
      const Entry &ea = a.entries[static_cast<size_t>(l)][static_cast<size_t>(t)];
      const Entry &eb = b.entries[static_cast<size_t>(l)][static_cast<size_t>(t)];
      const HostMatrix &w0 = base.at(l, t), &w = work.at(l, t);
      for (int64_t i = 0; i < w.rows; ++i)
        for (int64_t j = 0; j < w.cols; ++j) {
          const int64_t line = by_columns(t) ? j : i, e = by_columns(t) ? i : j;
          const double want = w0.get(i, j) + 0.7 * ea.at(t, line, e) + -1.3 * eb.at(t, line, e);
          EXPECT_NEAR(w.get(i, j), want, 4e-7 * (std::fabs(want) + 1.0)) << "layer " << l << " target " << t;
          if (!ea.has(line) && !eb.has(line)) {
            EXPECT_EQ(w.get(i, j), w0.get(i, j));
          }
        }
    }
  ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
  EXPECT_TRUE(work.same_bytes(base));
}

// W + scale * delta is rounded once from double: 1 + (half an ulp + 2^-30)
// rounds up, where rounding to f32 first would land on the tie and round
// to even (down).
TEST(AdapterApplyRounding, RoundsOnceFromDouble) {
  Context cx;
  for (int32_t dtype : {S2FT_BF16, S2FT_F16}) {
    const double half_ulp = dtype == S2FT_BF16 ? std::ldexp(1.0, -8) : std::ldexp(1.0, -11);
    Weights work(dtype, 30);
    HostMatrix &down = work.at(0, S2FT_TARGET_DOWN);
    for (int64_t i = 0; i < down.rows; ++i) down.set(i, 4, 1.0f);
    s2ft_adapter *a = nullptr;
    ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "tie", 1.0, &a));
    std::unique_ptr<s2ft_adapter, void (*)(s2ft_adapter *)> owner(a, s2ft_adapter_destroy);
    HostMatrix delta(S2FT_F32, kShape.d_model, 1);
    for (int64_t i = 0; i < kShape.d_model; ++i) delta.set(i, 0, static_cast<float>(half_ulp + std::ldexp(1.0, -30)));
    const int64_t line = 4;
    ASSERT_S2FT_OK(s2ft_adapter_set(a, 0, S2FT_TARGET_DOWN, &line, 1, &delta.t, nullptr));
    Model m;
    ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), nullptr, &m.m));
    ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a, 1.0, 0));
    for (int64_t i = 0; i < down.rows; ++i)
      EXPECT_EQ(down.get(i, 4), static_cast<float>(1.0 + 2 * half_ulp)) << dtype_label(dtype) << " row " << i;
    ASSERT_S2FT_OK(s2ft_adapter_remove(m.m));
    for (int64_t i = 0; i < down.rows; ++i) EXPECT_EQ(down.get(i, 4), 1.0f);
  }
}

// ---- error paths -----------------------------------------------------------

class AdapterApplyErrors : public ::testing::Test {
 protected:
  Context cx;
  Weights base{S2FT_F32, 20};
  Weights work{base};
  Adapter a;
  Model m;
  void SetUp() override {
    make_adapter(a, base, kLinesA, 1.0, 21, "a");
    ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), nullptr, &m.m));
  }
};

TEST_F(AdapterApplyErrors, ApplyTwiceIsState) {
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 1.0, 0));
  const Weights with_a(work);
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 0), S2FT_ERR_STATE, "already");
  EXPECT_TRUE(work.same_bytes(with_a));
}

TEST_F(AdapterApplyErrors, RemoveWithNothingAppliedIsState) {
  EXPECT_S2FT_ERROR(s2ft_adapter_remove(m.m), S2FT_ERR_STATE, "no adapter");
}

TEST_F(AdapterApplyErrors, NullModel) {
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(nullptr, a.a, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "model");
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(nullptr, a.a, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "model");
  EXPECT_S2FT_ERROR(s2ft_adapter_remove(nullptr), S2FT_ERR_INVALID_ARGUMENT, "model");
  const s2ft_adapter *applied = nullptr;
  EXPECT_S2FT_ERROR(s2ft_model_applied(nullptr, &applied, nullptr), S2FT_ERR_INVALID_ARGUMENT, "model");
  s2ft_model_destroy(nullptr);  // no-op
}

TEST_F(AdapterApplyErrors, NullAdapter) {
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, nullptr, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "adapter");
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, nullptr, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "adapter");
  EXPECT_S2FT_ERROR(s2ft_model_applied(m.m, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "adapter");
}

TEST_F(AdapterApplyErrors, UnknownFlags) {
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, 1.0, 4u), S2FT_ERR_INVALID_ARGUMENT, "flags");
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, a.a, 1.0, 6u), S2FT_ERR_INVALID_ARGUMENT, "flags");
  EXPECT_TRUE(work.same_bytes(base));
}

TEST_F(AdapterApplyErrors, InfiniteScale) {
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, a.a, INFINITY, 0), S2FT_ERR_INVALID_ARGUMENT, "scale");
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, a.a, -INFINITY, 0), S2FT_ERR_INVALID_ARGUMENT, "scale");
  EXPECT_TRUE(work.same_bytes(base));
}

TEST_F(AdapterApplyErrors, AdapterForAnotherModelShape) {
  s2ft_model_shape other = kShape;
  other.d_ff = 12;
  s2ft_adapter *x = nullptr;
  ASSERT_S2FT_OK(s2ft_adapter_create(&other, "x", 1.0, &x));
  std::unique_ptr<s2ft_adapter, void (*)(s2ft_adapter *)> owner(x, s2ft_adapter_destroy);
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(m.m, x, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "shape");
  ASSERT_S2FT_OK(s2ft_adapter_apply(m.m, a.a, 1.0, 0));
  const Weights with_a(work);
  EXPECT_S2FT_ERROR(s2ft_adapter_switch(m.m, x, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "shape");
  EXPECT_TRUE(work.same_bytes(with_a));
}

TEST_F(AdapterApplyErrors, WeightMissingFromModel) {
  std::vector<s2ft_layer_weights> layers = work.layers;
  layers[1].down = nullptr;
  Model partial;
  ASSERT_S2FT_OK(s2ft_model_create(cx.ctx, &kShape, layers.data(), nullptr, &partial.m));
  EXPECT_S2FT_ERROR(s2ft_adapter_apply(partial.m, a.a, 1.0, 0), S2FT_ERR_INVALID_ARGUMENT, "layers[1].down");
  EXPECT_TRUE(work.same_bytes(base));  // nothing written, not even layer 0
}

TEST_F(AdapterApplyErrors, CreateNullArguments) {
  s2ft_model *out = reinterpret_cast<s2ft_model *>(1);
  EXPECT_S2FT_ERROR(s2ft_model_create(nullptr, &kShape, work.layers.data(), nullptr, &out), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_EQ(out, nullptr);
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, nullptr, work.layers.data(), nullptr, &out), S2FT_ERR_INVALID_ARGUMENT, "shape");
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, &kShape, nullptr, nullptr, &out), S2FT_ERR_INVALID_ARGUMENT, "layers");
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
}

TEST_F(AdapterApplyErrors, CreateBadShape) {
  s2ft_model_shape bad = kShape;
  bad.n_kv_heads = 3;
  s2ft_model *out = nullptr;
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, &bad, work.layers.data(), nullptr, &out), S2FT_ERR_INVALID_ARGUMENT, "n_heads");
}

TEST_F(AdapterApplyErrors, CreateWeightOfWrongShape) {
  HostMatrix wrong(S2FT_F32, 13, 11);  // a DOWN-shaped tensor where O [13, 12] belongs
  std::vector<s2ft_layer_weights> layers = work.layers;
  layers[1].o = &wrong.t;
  s2ft_model *out = nullptr;
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, &kShape, layers.data(), nullptr, &out), S2FT_ERR_SHAPE, "layers[1].o");
}

TEST_F(AdapterApplyErrors, CreateWeightOnAnotherDevice) {
  s2ft_tensor t = *work.layers[0].v;
  t.device.type = S2FT_DEVICE_CUDA;
  std::vector<s2ft_layer_weights> layers = work.layers;
  layers[0].v = &t;
  s2ft_model *out = nullptr;
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, &kShape, layers.data(), nullptr, &out), S2FT_ERR_DEVICE, "layers[0].v");
}

TEST_F(AdapterApplyErrors, CreateWeightOfUnsupportedDtype) {
  s2ft_tensor t = *work.layers[0].up;
  t.dtype.bits = 64;
  std::vector<s2ft_layer_weights> layers = work.layers;
  layers[0].up = &t;
  s2ft_model *out = nullptr;
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, &kShape, layers.data(), nullptr, &out), S2FT_ERR_DTYPE, "layers[0].up");
}

TEST_F(AdapterApplyErrors, CreateOverlappingWeights) {
  std::vector<s2ft_layer_weights> layers = work.layers;
  layers[1].o = layers[0].o;  // the same memory twice
  s2ft_model *out = nullptr;
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, &kShape, layers.data(), nullptr, &out), S2FT_ERR_INVALID_ARGUMENT, "layers[1].o");
}

TEST_F(AdapterApplyErrors, CreatePermutationOfAnotherShape) {
  s2ft_model_shape other = kShape;
  other.n_layers = 3;
  s2ft_select_options o;
  ASSERT_S2FT_OK(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION));
  Selection sel;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &other, &o, nullptr, &sel.sel));
  s2ft_model *out = nullptr;
  EXPECT_S2FT_ERROR(s2ft_model_create(cx.ctx, &kShape, work.layers.data(), sel.sel, &out), S2FT_ERR_INVALID_ARGUMENT, "perm");
}

}  // namespace
