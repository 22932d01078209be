// The adapter object through the public API: entries set by hand round-trip
// (lines sorted with their delta lines and fingerprints), adapters built from
// a training run hold trained - base (in double, rounded once) on exactly the
// selected lines, and are the same whether the weights are permuted or not;
// fusion matches a float64 reference over the union of lines; save -> load
// keeps every bit; and every error path names its argument.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support/target_geometry.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

// GQA (4 query heads over 2 KV heads of 3) with odd sizes.
const s2ft_model_shape kShape{2, 5, 4, 2, 3, 7};
// A delta for k lines: [len, k] for column targets, [k, len] for rows.
HostMatrix delta_matrix(const s2ft_model_shape &s, int32_t t, int64_t k, int32_t dtype = S2FT_F32) {
  const int64_t len = line_length(s, t);
  return by_columns(t) ? HostMatrix(dtype, len, k) : HostMatrix(dtype, k, len);
}
// Element j of line i of a delta matrix.
float line_elem(const HostMatrix &d, int32_t t, int64_t i, int64_t j) { return by_columns(t) ? d.get(j, i) : d.get(i, j); }

// The base-line fingerprint, written from its definition (docs/adapter-format.md):
// 64-bit FNV-1a over each element's value rounded to nearest-even bf16
// (little-endian, every NaN as 0x7fc0), along the line; 0 stored as 1.
uint64_t fingerprint(const HostMatrix &w, bool columns, int64_t line) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](uint8_t b) { h = (h ^ b) * 0x100000001b3ull; };
  const int64_t n = columns ? w.rows : w.cols;
  for (int64_t i = 0; i < n; ++i) {
    const float v = columns ? w.get(i, line) : w.get(line, i);
    const uint16_t b = std::isnan(v) ? 0x7fc0 : s2ft_test::to_bf16(v);
    mix(static_cast<uint8_t>(b & 0xff));
    mix(static_cast<uint8_t>(b >> 8));
  }
  return h == 0 ? 1 : h;
}

struct Adapter {
  s2ft_adapter *a = nullptr;
  Adapter() = default;
  Adapter(const Adapter &) = delete;
  Adapter &operator=(const Adapter &) = delete;
  ~Adapter() { s2ft_adapter_destroy(a); }
};

// What an adapter holds for one (layer, target), read back through the API.
struct Entry {
  std::vector<int64_t> lines;
  std::vector<uint64_t> fps;
  std::vector<float> delta;  // row-major, as s2ft_adapter_delta writes f32
};
Entry read_entry(const s2ft_adapter *a, int32_t layer, int32_t t) {
  Entry e;
  int64_t n = -1;
  EXPECT_EQ(s2ft_adapter_lines(a, layer, t, nullptr, nullptr, 0, &n), S2FT_OK) << s2ft_last_error();
  if (n <= 0) return e;
  e.lines.assign(static_cast<size_t>(n), -1);
  e.fps.assign(static_cast<size_t>(n), 0);
  EXPECT_EQ(s2ft_adapter_lines(a, layer, t, e.lines.data(), e.fps.data(), n, &n), S2FT_OK) << s2ft_last_error();
  s2ft_model_shape s{};
  EXPECT_EQ(s2ft_adapter_info(a, &s, nullptr, nullptr), S2FT_OK);
  HostMatrix d = delta_matrix(s, t, n);
  d.poison();
  EXPECT_EQ(s2ft_adapter_delta(a, layer, t, &d.t), S2FT_OK) << s2ft_last_error();
  for (int64_t i = 0; i < d.rows; ++i)
    for (int64_t j = 0; j < d.cols; ++j) e.delta.push_back(d.get(i, j));
  return e;
}
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
void expect_same_entry(const Entry &a, const Entry &b, const std::string &what) {
  EXPECT_EQ(a.lines, b.lines) << what;
  EXPECT_EQ(a.fps, b.fps) << what;
  ASSERT_EQ(a.delta.size(), b.delta.size()) << what;
  for (size_t i = 0; i < a.delta.size(); ++i) ASSERT_EQ(bits(a.delta[i]), bits(b.delta[i])) << what << " element " << i;
}
void expect_same_adapter(const s2ft_adapter *a, const s2ft_adapter *b) {
  s2ft_model_shape sa{}, sb{};
  double da = 0, db = 0;
  uint32_t ta = 0, tb = 0;
  ASSERT_S2FT_OK(s2ft_adapter_info(a, &sa, &da, &ta));
  ASSERT_S2FT_OK(s2ft_adapter_info(b, &sb, &db, &tb));
  EXPECT_EQ(0, std::memcmp(&sa, &sb, sizeof sa));
  EXPECT_EQ(da, db);
  EXPECT_EQ(ta, tb);
  EXPECT_STREQ(s2ft_adapter_name(a), s2ft_adapter_name(b));
  for (int32_t l = 0; l < sa.n_layers; ++l)
    for (int32_t t : kTargets)
      expect_same_entry(read_entry(a, l, t), read_entry(b, l, t), "layer " + std::to_string(l) + " target " + std::to_string(t));
}

std::string temp_path(const std::string &name) {
  return ::testing::TempDir() + "s2ft_adapter_" + std::to_string(getpid()) + "_" + name;
}

// One layer's seven weights in a host dtype.
struct LayerWeights {
  HostMatrix q, k, v, o, gate, up, down;
  LayerWeights(const s2ft_model_shape &s, int32_t dtype, Random &rng) {
    const int64_t nq = int64_t{s.n_heads} * s.head_dim, nkv = int64_t{s.n_kv_heads} * s.head_dim;
    q = HostMatrix(dtype, nq, s.d_model);
    k = HostMatrix(dtype, nkv, s.d_model);
    v = HostMatrix(dtype, nkv, s.d_model);
    o = HostMatrix(dtype, s.d_model, nq);
    gate = HostMatrix(dtype, s.d_ff, s.d_model);
    up = HostMatrix(dtype, s.d_ff, s.d_model);
    down = HostMatrix(dtype, s.d_model, s.d_ff);
    for (HostMatrix *m : {&q, &k, &v, &o, &gate, &up, &down}) m->fill_random(rng, 0.5);
  }
  s2ft_layer_weights all() { return s2ft_layer_weights{&q.t, &k.t, &v.t, &o.t, &gate.t, &up.t, &down.t}; }
  HostMatrix &target(int32_t t) { return t == S2FT_TARGET_O ? o : t == S2FT_TARGET_V ? v : t == S2FT_TARGET_DOWN ? down : up; }
};

// A filled adapter: every target of layer 0 and DOWN of layer 1.
void fill_adapter(s2ft_adapter *a, Random &rng, std::vector<LayerWeights> *bases = nullptr) {
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t t : kTargets) {
      if (l == 1 && t != S2FT_TARGET_DOWN) continue;
      const int64_t n = line_count(kShape, t), k = 1 + rng.below(n);
      std::vector<int64_t> all(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
      for (int64_t i = n - 1; i > 0; --i) std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(rng.below(i + 1))]);
      all.resize(static_cast<size_t>(k));
      HostMatrix d = delta_matrix(kShape, t, k);
      d.fill_random(rng, 0.01);
      const s2ft_tensor *base = bases ? &(*bases)[static_cast<size_t>(l)].target(t).t : nullptr;
      ASSERT_S2FT_OK(s2ft_adapter_set(a, l, t, all.data(), k, &d.t, base));
    }
}

// ---- create / set / lines / delta / info ----------------------------------------

TEST(AdapterObject, CreateGivesAnEmptyAdapterWithNameShapeAndScale) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "math-v1", 0.75, &a.a));
  EXPECT_STREQ(s2ft_adapter_name(a.a), "math-v1");
  s2ft_model_shape s{};
  double scale = 0;
  uint32_t targets = 99;
  ASSERT_S2FT_OK(s2ft_adapter_info(a.a, &s, &scale, &targets));
  EXPECT_EQ(0, std::memcmp(&s, &kShape, sizeof s));
  EXPECT_EQ(scale, 0.75);
  EXPECT_EQ(targets, 0u);
  ASSERT_S2FT_OK(s2ft_adapter_info(a.a, nullptr, nullptr, nullptr));
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t t : kTargets) {
      int64_t n = -1;
      ASSERT_S2FT_OK(s2ft_adapter_lines(a.a, l, t, nullptr, nullptr, 0, &n));
      EXPECT_EQ(n, 0);
    }
  EXPECT_STREQ(s2ft_adapter_name(nullptr), "");
  s2ft_adapter_destroy(nullptr);
}

class AdapterSet : public ::testing::TestWithParam<int32_t> {};

// Lines given in any order come back ascending, each with its own delta
// line and the fingerprint of its base line.
TEST_P(AdapterSet, LinesSortedWithTheirDeltaAndFingerprints) {
  const int32_t dtype = GetParam();
  Random rng(11 + static_cast<uint64_t>(dtype));
  std::vector<LayerWeights> base;
  for (int32_t l = 0; l < kShape.n_layers; ++l) base.emplace_back(kShape, dtype, rng);
  for (int32_t t : kTargets) {
    Adapter a;
    ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "x", 1.0, &a.a));
    const int64_t n = line_count(kShape, t);
    for (int64_t kk : {int64_t{1}, int64_t{3}, n}) {
      // kk distinct lines in random order.
      std::vector<int64_t> lines(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) lines[static_cast<size_t>(i)] = i;
      for (int64_t i = n - 1; i > 0; --i) std::swap(lines[static_cast<size_t>(i)], lines[static_cast<size_t>(rng.below(i + 1))]);
      lines.resize(static_cast<size_t>(kk));
      std::vector<int64_t> order(static_cast<size_t>(kk));  // caller positions by ascending line
      for (int64_t i = 0; i < kk; ++i) order[static_cast<size_t>(i)] = i;
      std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return lines[static_cast<size_t>(x)] < lines[static_cast<size_t>(y)]; });
      HostMatrix d = delta_matrix(kShape, t, kk, dtype);
      d.fill_random(rng, 0.1);
      ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 1, t, lines.data(), kk, &d.t, &base[1].target(t).t));
      const Entry e = read_entry(a.a, 1, t);
      ASSERT_EQ(static_cast<int64_t>(e.lines.size()), kk);
      const int64_t len = line_length(kShape, t);
      for (int64_t i = 0; i < kk; ++i) {
        const int64_t src = order[static_cast<size_t>(i)];
        EXPECT_EQ(e.lines[static_cast<size_t>(i)], lines[static_cast<size_t>(src)]);
        EXPECT_EQ(e.fps[static_cast<size_t>(i)], fingerprint(base[1].target(t), by_columns(t), lines[static_cast<size_t>(src)]));
        for (int64_t j = 0; j < len; ++j) {
          const float got = by_columns(t) ? e.delta[static_cast<size_t>(j * kk + i)] : e.delta[static_cast<size_t>(i * len + j)];
          ASSERT_EQ(bits(got), bits(line_elem(d, t, src, j)));
        }
      }
      uint32_t mask = 0;
      ASSERT_S2FT_OK(s2ft_adapter_info(a.a, nullptr, nullptr, &mask));
      EXPECT_EQ(mask, S2FT_TARGET_BIT(t));
    }
    // No base: fingerprints are 0 (unknown).
    const int64_t one = 0;
    HostMatrix d = delta_matrix(kShape, t, 1);
    d.fill_random(rng);
    ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, t, &one, 1, &d.t, nullptr));
    EXPECT_EQ(read_entry(a.a, 0, t).fps, std::vector<uint64_t>{0});
    // n_lines 0 removes the entry (lines and delta may then be NULL).
    ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, t, nullptr, 0, nullptr, nullptr));
    ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 1, t, nullptr, 0, nullptr, nullptr));
    uint32_t mask = 99;
    ASSERT_S2FT_OK(s2ft_adapter_info(a.a, nullptr, nullptr, &mask));
    EXPECT_EQ(mask, 0u);
    EXPECT_S2FT_ERROR(s2ft_adapter_delta(a.a, 1, t, &d.t), S2FT_ERR_STATE, "no entry");
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, AdapterSet, ::testing::Values(S2FT_F32, S2FT_BF16, S2FT_F16),
                         [](const auto &i) { return std::string(dtype_label(i.param)); });

TEST(AdapterObject, DeltaCopiesOutInAnyDtypeRounded) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "", 1.0, &a.a));
  Random rng(5);
  const int64_t lines[] = {4, 1};
  HostMatrix d = delta_matrix(kShape, S2FT_TARGET_DOWN, 2);
  d.fill_random(rng);
  ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, S2FT_TARGET_DOWN, lines, 2, &d.t, nullptr));
  for (int32_t dt : {S2FT_BF16, S2FT_F16}) {
    HostMatrix out = delta_matrix(kShape, S2FT_TARGET_DOWN, 2, dt);
    out.poison();
    ASSERT_S2FT_OK(s2ft_adapter_delta(a.a, 0, S2FT_TARGET_DOWN, &out.t));
    for (int64_t j = 0; j < out.rows; ++j) {
      // Column 0 is line 1 (the caller's second), column 1 is line 4.
      const float want0 = d.get(j, 1), want1 = d.get(j, 0);
      EXPECT_NEAR(out.get(j, 0), want0, tolerance(dt) * (1 + std::fabs(want0)));
      EXPECT_NEAR(out.get(j, 1), want1, tolerance(dt) * (1 + std::fabs(want1)));
      const float r0 = dt == S2FT_BF16 ? from_bf16(to_bf16(want0)) : from_f16(to_f16(want0));
      EXPECT_EQ(out.get(j, 0), r0);
    }
  }
  // A strided output view (every other column of a wider buffer).
  std::vector<float> buf(static_cast<size_t>(kShape.d_model * 4), NAN);
  s2ft_tensor t{};
  const int64_t shape[2] = {kShape.d_model, 2};
  ASSERT_S2FT_OK(s2ft_tensor_init(&t, buf.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 2, shape));
  t.strides[0] = 4;
  t.strides[1] = 2;
  ASSERT_S2FT_OK(s2ft_adapter_delta(a.a, 0, S2FT_TARGET_DOWN, &t));
  for (int64_t j = 0; j < kShape.d_model; ++j) {
    EXPECT_EQ(buf[static_cast<size_t>(j * 4)], d.get(j, 1));
    EXPECT_EQ(buf[static_cast<size_t>(j * 4 + 2)], d.get(j, 0));
    EXPECT_TRUE(std::isnan(buf[static_cast<size_t>(j * 4 + 1)]));
  }
}

// ---- from_training ---------------------------------------------------------------

struct TrainCase {
  const char *name;
  s2ft_model_shape shape;
  int32_t granularity;
  int32_t dtype;
  int64_t count[S2FT_NUM_TARGETS];
};

class FromTraining : public ::testing::TestWithParam<TrainCase> {};

// trained = base + noise everywhere, so a delta that reads a wrong line
// shows. The adapter must hold exactly trained - base (double, rounded
// once to f32) on the selected base lines, with base-line fingerprints,
// and be bit-identical when built from the co-permuted weights.
TEST_P(FromTraining, HoldsTrainedMinusBaseAndIgnoresPermutation) {
  const TrainCase c = GetParam();
  const s2ft_model_shape &s = c.shape;
  Context cx;
  s2ft_select_options opts = count_options(c.count, c.granularity);
  opts.seed = 42;
  Selection sel;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &s, &opts, nullptr, &sel.sel));

  Random rng(99);
  std::vector<LayerWeights> base, trained;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    base.emplace_back(s, c.dtype, rng);
    trained.push_back(base.back());
    for (HostMatrix *m : {&trained.back().o, &trained.back().v, &trained.back().down, &trained.back().up})
      for (int64_t i = 0; i < m->rows; ++i)
        for (int64_t j = 0; j < m->cols; ++j) m->set(i, j, static_cast<float>(m->get(i, j) + rng.uniform(-0.05, 0.05)));
  }
  std::vector<s2ft_layer_weights> bw, tw;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    bw.push_back(base[static_cast<size_t>(l)].all());
    tw.push_back(trained[static_cast<size_t>(l)].all());
  }
  Adapter plain;
  ASSERT_S2FT_OK(s2ft_adapter_from_training(cx.ctx, sel.sel, bw.data(), tw.data(), 0, "run", &plain.a));
  EXPECT_STREQ(s2ft_adapter_name(plain.a), "run");
  double scale = 0;
  uint32_t mask = 0;
  ASSERT_S2FT_OK(s2ft_adapter_info(plain.a, nullptr, &scale, &mask));
  EXPECT_EQ(scale, 1.0);
  EXPECT_EQ(mask, opts.targets);

  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int32_t t : kTargets) {
      int64_t n = 0;
      ASSERT_S2FT_OK(s2ft_selection_indices(sel.sel, l, t, S2FT_INDEX_LINES | S2FT_INDEX_BASE, nullptr, 0, &n));
      std::vector<int64_t> want(static_cast<size_t>(n));
      if (n > 0) ASSERT_S2FT_OK(s2ft_selection_indices(sel.sel, l, t, S2FT_INDEX_LINES | S2FT_INDEX_BASE, want.data(), n, &n));
      int64_t got_n = -1;
      ASSERT_S2FT_OK(s2ft_adapter_lines(plain.a, l, t, nullptr, nullptr, 0, &got_n));
      ASSERT_EQ(got_n, n);
      if (n == 0) continue;
      // Read the delta through our own copy of the shape for this case.
      std::vector<int64_t> lines(static_cast<size_t>(n));
      std::vector<uint64_t> fps(static_cast<size_t>(n));
      ASSERT_S2FT_OK(s2ft_adapter_lines(plain.a, l, t, lines.data(), fps.data(), n, &n));
      EXPECT_EQ(lines, want);
      HostMatrix d = delta_matrix(s, t, n);
      d.poison();
      ASSERT_S2FT_OK(s2ft_adapter_delta(plain.a, l, t, &d.t));
      const HostMatrix &B = base[static_cast<size_t>(l)].target(t), &T = trained[static_cast<size_t>(l)].target(t);
      for (int64_t i = 0; i < n; ++i) {
        const int64_t line = lines[static_cast<size_t>(i)];
        EXPECT_EQ(fps[static_cast<size_t>(i)], fingerprint(B, by_columns(t), line));
        for (int64_t j = 0; j < line_length(s, t); ++j) {
          const int64_t r = by_columns(t) ? j : line, cc = by_columns(t) ? line : j;
          const float want_d = static_cast<float>(static_cast<double>(T.get(r, cc)) - static_cast<double>(B.get(r, cc)));
          ASSERT_EQ(bits(line_elem(d, t, i, j)), bits(want_d)) << "layer " << l << " target " << t << " line " << line;
        }
      }
    }

  // The same run on co-permuted weights (all seven permuted together). The
  // cases are chosen so that the permutation moves trained lines.
  bool moved = false;
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int32_t t : kTargets) {
      int64_t n = 0;
      ASSERT_S2FT_OK(s2ft_selection_indices(sel.sel, l, t, S2FT_INDEX_LINES, nullptr, 0, &n));
      std::vector<int64_t> b(static_cast<size_t>(n)), p(static_cast<size_t>(n));
      if (n == 0) continue;
      ASSERT_S2FT_OK(s2ft_selection_indices(sel.sel, l, t, S2FT_INDEX_LINES, b.data(), n, &n));
      ASSERT_S2FT_OK(s2ft_selection_indices(sel.sel, l, t, S2FT_INDEX_LINES | S2FT_INDEX_PERMUTED, p.data(), n, &n));
      moved = moved || b != p;
    }
  EXPECT_TRUE(moved) << "the selection leaves every trained line in place; pick another seed";
  std::vector<LayerWeights> pbase = base, ptrained = trained;
  std::vector<s2ft_layer_weights> pbw, ptw;
  for (int32_t l = 0; l < s.n_layers; ++l) {
    pbw.push_back(pbase[static_cast<size_t>(l)].all());
    ptw.push_back(ptrained[static_cast<size_t>(l)].all());
    ASSERT_S2FT_OK(s2ft_permute(cx.ctx, sel.sel, l, &pbw.back(), S2FT_PERMUTE_FORWARD));
    ASSERT_S2FT_OK(s2ft_permute(cx.ctx, sel.sel, l, &ptw.back(), S2FT_PERMUTE_FORWARD));
  }
  Adapter permuted;
  ASSERT_S2FT_OK(s2ft_adapter_from_training(cx.ctx, sel.sel, pbw.data(), ptw.data(), 1, "run", &permuted.a));
  expect_same_adapter(plain.a, permuted.a);
}

// Counts: O in KV groups under BY_GROUP, query heads under SINGLE.
INSTANTIATE_TEST_SUITE_P(
    Cases, FromTraining,
    ::testing::Values(TrainCase{"gqa_group_f32", {2, 5, 4, 2, 3, 7}, S2FT_HEADS_BY_GROUP, S2FT_F32, {1, 1, 2, 3}},
                      TrainCase{"gqa_single_f32", {2, 5, 4, 2, 3, 7}, S2FT_HEADS_SINGLE, S2FT_F32, {3, 1, 1, 2}},
                      TrainCase{"gqa_single_bf16", {3, 6, 6, 2, 2, 9}, S2FT_HEADS_SINGLE, S2FT_BF16, {2, 1, 4, 9}},
                      TrainCase{"gqa_group_f16", {2, 6, 6, 3, 2, 5}, S2FT_HEADS_BY_GROUP, S2FT_F16, {2, 3, 5, 1}},
                      TrainCase{"mha_group_o_down", {2, 4, 3, 3, 2, 6}, S2FT_HEADS_BY_GROUP, S2FT_F32, {1, 0, 2, 0}},
                      TrainCase{"v_up_only", {1, 4, 4, 2, 2, 6}, S2FT_HEADS_SINGLE, S2FT_BF16, {0, 2, 0, 1}}),
    [](const auto &i) { return std::string(i.param.name); });

// ---- fuse --------------------------------------------------------------------------

// Reference: per line of the union, sum_i w_i * delta_i in double in input
// order, rounded once to f32.
void expect_fused(const s2ft_adapter *fused, const std::vector<const s2ft_adapter *> &in, const std::vector<double> &w) {
  for (int32_t l = 0; l < kShape.n_layers; ++l)
    for (int32_t t : kTargets) {
      std::map<int64_t, std::vector<double>> ref;  // line -> its delta line
      std::map<int64_t, uint64_t> fp;
      const int64_t len = line_length(kShape, t);
      for (size_t i = 0; i < in.size(); ++i) {
        const Entry e = read_entry(in[i], l, t);
        const int64_t k = static_cast<int64_t>(e.lines.size());
        for (int64_t p = 0; p < k; ++p) {
          auto &v = ref[e.lines[static_cast<size_t>(p)]];
          v.resize(static_cast<size_t>(len), 0.0);
          for (int64_t j = 0; j < len; ++j)
            v[static_cast<size_t>(j)] +=
                w[i] * e.delta[static_cast<size_t>(by_columns(t) ? j * k + p : p * len + j)];
          if (e.fps[static_cast<size_t>(p)] != 0) fp[e.lines[static_cast<size_t>(p)]] = e.fps[static_cast<size_t>(p)];
        }
      }
      const Entry got = read_entry(fused, l, t);
      ASSERT_EQ(got.lines.size(), ref.size());
      const int64_t k = static_cast<int64_t>(ref.size());
      int64_t p = 0;
      for (const auto &kv : ref) {
        EXPECT_EQ(got.lines[static_cast<size_t>(p)], kv.first);
        EXPECT_EQ(got.fps[static_cast<size_t>(p)], fp.count(kv.first) ? fp[kv.first] : 0u);
        for (int64_t j = 0; j < len; ++j)
          ASSERT_EQ(bits(got.delta[static_cast<size_t>(by_columns(t) ? j * k + p : p * len + j)]),
                    bits(static_cast<float>(kv.second[static_cast<size_t>(j)])));
        ++p;
      }
    }
}

TEST(AdapterFuse, UnionAndWeightedSumsMatchAFloat64Reference) {
  Random rng(3);
  std::vector<LayerWeights> bases;
  for (int32_t l = 0; l < kShape.n_layers; ++l) bases.emplace_back(kShape, S2FT_BF16, rng);
  Adapter a, b, c;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "a", 0.5, &a.a));
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "b", -2.0, &b.a));
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "c", 1.25, &c.a));
  fill_adapter(a.a, rng, &bases);
  fill_adapter(b.a, rng, &bases);
  fill_adapter(c.a, rng);  // fingerprints 0: they take the others' values
  // Disjoint lines too: only c has UP in layer 1.
  const int64_t up_lines[] = {6, 2};
  HostMatrix d = delta_matrix(kShape, S2FT_TARGET_UP, 2);
  d.fill_random(rng);
  ASSERT_S2FT_OK(s2ft_adapter_set(c.a, 1, S2FT_TARGET_UP, up_lines, 2, &d.t, nullptr));

  const std::vector<const s2ft_adapter *> in = {a.a, b.a, c.a};
  const double w[] = {0.3, -1.7, 2.0};
  Adapter f;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in.data(), w, 3, &f.a));
  expect_fused(f.a, in, {0.3, -1.7, 2.0});
  EXPECT_STREQ(s2ft_adapter_name(f.a), "a+b+c");
  double scale = 0;
  ASSERT_S2FT_OK(s2ft_adapter_info(f.a, nullptr, &scale, nullptr));
  EXPECT_EQ(scale, 1.0);

  // weights NULL: each adapter's default scale.
  Adapter g;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in.data(), nullptr, 3, &g.a));
  expect_fused(g.a, in, {0.5, -2.0, 1.25});

  // One adapter: a scaled copy.
  Adapter h;
  const double two = 2.0;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in.data(), &two, 1, &h.a));
  expect_fused(h.a, {a.a}, {2.0});
  EXPECT_STREQ(s2ft_adapter_name(h.a), "a");
}

TEST(AdapterFuse, OverlappingLinesAddAndDisjointLinesAreKept) {
  // Hand-made: a has DOWN lines {1, 3}, b has {3, 5}; fused has {1, 3, 5}
  // with line 3 = wa * a3 + wb * b3.
  Adapter a, b;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "a", 1.0, &a.a));
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "b", 1.0, &b.a));
  Random rng(17);
  const int64_t la[] = {3, 1}, lb[] = {3, 5};
  HostMatrix da = delta_matrix(kShape, S2FT_TARGET_DOWN, 2), db = delta_matrix(kShape, S2FT_TARGET_DOWN, 2);
  da.fill_random(rng);
  db.fill_random(rng);
  ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, S2FT_TARGET_DOWN, la, 2, &da.t, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_set(b.a, 0, S2FT_TARGET_DOWN, lb, 2, &db.t, nullptr));
  const s2ft_adapter *in[] = {a.a, b.a};
  const double w[] = {0.5, 3.0};
  Adapter f;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in, w, 2, &f.a));
  const Entry e = read_entry(f.a, 0, S2FT_TARGET_DOWN);
  ASSERT_EQ(e.lines, (std::vector<int64_t>{1, 3, 5}));
  for (int64_t j = 0; j < kShape.d_model; ++j) {
    EXPECT_EQ(e.delta[static_cast<size_t>(j * 3 + 0)], static_cast<float>(0.5 * da.get(j, 1)));
    EXPECT_EQ(e.delta[static_cast<size_t>(j * 3 + 1)], static_cast<float>(0.5 * da.get(j, 0) + 3.0 * db.get(j, 0)));
    EXPECT_EQ(e.delta[static_cast<size_t>(j * 3 + 2)], static_cast<float>(3.0 * db.get(j, 1)));
  }
}

// Fusing allocates for the lines the inputs hold, not for the model shape
// they claim: two adapters of a model with d_ff = 2^31 - 1 (a claim a loaded
// file can make, backed by nothing) fuse in a few bytes (this took 16 GB).
TEST(AdapterFuse, MemoryFollowsTheLinesNotTheClaimedShape) {
  const s2ft_model_shape huge{1, 4, 2, 1, 2, 2147483647};
  Adapter a, b;
  ASSERT_S2FT_OK(s2ft_adapter_create(&huge, "a", 1.0, &a.a));
  ASSERT_S2FT_OK(s2ft_adapter_create(&huge, "b", 1.0, &b.a));
  const int64_t la[] = {2147483646}, lb[] = {7};
  HostMatrix da(S2FT_F32, huge.d_model, 1), db(S2FT_F32, huge.d_model, 1);
  Random rng(41);
  da.fill_random(rng);
  db.fill_random(rng);
  ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, S2FT_TARGET_DOWN, la, 1, &da.t, nullptr));
  ASSERT_S2FT_OK(s2ft_adapter_set(b.a, 0, S2FT_TARGET_DOWN, lb, 1, &db.t, nullptr));
  const s2ft_adapter *in[] = {a.a, b.a};
  Adapter f;
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in, nullptr, 2, &f.a));
  const Entry e = read_entry(f.a, 0, S2FT_TARGET_DOWN);
  ASSERT_EQ(e.lines, (std::vector<int64_t>{7, 2147483646}));
  for (int64_t j = 0; j < huge.d_model; ++j) {
    EXPECT_EQ(e.delta[static_cast<size_t>(j * 2 + 0)], db.get(j, 0));
    EXPECT_EQ(e.delta[static_cast<size_t>(j * 2 + 1)], da.get(j, 0));
  }
}

// ---- save / load ------------------------------------------------------------------

TEST(AdapterFile, SaveThenLoadKeepsEveryBit) {
  Random rng(23);
  std::vector<LayerWeights> bases;
  for (int32_t l = 0; l < kShape.n_layers; ++l) bases.emplace_back(kShape, S2FT_F16, rng);
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "r\xc3\xa9sum\xc3\xa9 \"v2\"", 0.1 + 0.2, &a.a));
  fill_adapter(a.a, rng, &bases);
  const std::string path = temp_path("roundtrip.safetensors");
  ASSERT_S2FT_OK(s2ft_adapter_save(a.a, path.c_str()));
  Adapter b;
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &b.a));
  expect_same_adapter(a.a, b.a);
  // Saving over an existing file replaces it; an empty adapter round-trips.
  Adapter e, e2;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "", -3.5, &e.a));
  ASSERT_S2FT_OK(s2ft_adapter_save(e.a, path.c_str()));
  ASSERT_S2FT_OK(s2ft_adapter_load(path.c_str(), &e2.a));
  expect_same_adapter(e.a, e2.a);
  std::remove(path.c_str());
}

// ---- error paths ------------------------------------------------------------------

TEST(AdapterErrors, Create) {
  s2ft_adapter *a = reinterpret_cast<s2ft_adapter *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_adapter_create(&kShape, "n", 1.0, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
  EXPECT_S2FT_ERROR(s2ft_adapter_create(nullptr, "n", 1.0, &a), S2FT_ERR_INVALID_ARGUMENT, "shape");
  EXPECT_EQ(a, nullptr);
  s2ft_model_shape bad = kShape;
  bad.n_kv_heads = 3;
  EXPECT_S2FT_ERROR(s2ft_adapter_create(&bad, "n", 1.0, &a), S2FT_ERR_INVALID_ARGUMENT, "n_kv_heads");
  bad = kShape;
  bad.d_ff = 0;
  EXPECT_S2FT_ERROR(s2ft_adapter_create(&bad, "n", 1.0, &a), S2FT_ERR_INVALID_ARGUMENT, "d_ff");
  EXPECT_S2FT_ERROR(s2ft_adapter_create(&kShape, nullptr, 1.0, &a), S2FT_ERR_INVALID_ARGUMENT, "name");
  const std::string long_name(256, 'x');
  EXPECT_S2FT_ERROR(s2ft_adapter_create(&kShape, long_name.c_str(), 1.0, &a), S2FT_ERR_INVALID_ARGUMENT, "name");
  EXPECT_S2FT_ERROR(s2ft_adapter_create(&kShape, "\xff\xfe", 1.0, &a), S2FT_ERR_INVALID_ARGUMENT, "UTF-8");
  EXPECT_S2FT_ERROR(s2ft_adapter_create(&kShape, "n", NAN, &a), S2FT_ERR_INVALID_ARGUMENT, "default_scale");
  EXPECT_S2FT_ERROR(s2ft_adapter_create(&kShape, "n", INFINITY, &a), S2FT_ERR_INVALID_ARGUMENT, "default_scale");
  EXPECT_EQ(a, nullptr);
  Adapter ok;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, std::string(255, 'y').c_str(), 1.0, &ok.a));
}

struct AdapterSetErrors : ::testing::Test {
  Adapter a;
  HostMatrix d = delta_matrix(kShape, S2FT_TARGET_O, 2);
  HostMatrix base = HostMatrix(S2FT_F32, kShape.d_model, int64_t{kShape.n_heads} * kShape.head_dim);
  const int64_t lines[2] = {0, 5};
  void SetUp() override {
    ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "a", 1.0, &a.a));
    Random rng(1);
    d.fill_random(rng);
    base.fill_random(rng);
  }
};

TEST_F(AdapterSetErrors, NullAdapter) {
  EXPECT_S2FT_ERROR(s2ft_adapter_set(nullptr, 0, 0, lines, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "adapter");
}
TEST_F(AdapterSetErrors, BadLayer) {
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 2, 0, lines, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "layer 2");
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, -1, 0, lines, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "layer -1");
}
TEST_F(AdapterSetErrors, BadTarget) {
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 4, lines, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "target 4");
}
TEST_F(AdapterSetErrors, BadLineCount) {
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, -1, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "n_lines");
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, 13, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "n_lines");
}
TEST_F(AdapterSetErrors, NullLines) {
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, nullptr, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "lines");
}
TEST_F(AdapterSetErrors, LineOutOfRange) {
  const int64_t bad[2] = {0, 12};
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, bad, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "lines[1] = 12");
  const int64_t neg[2] = {-1, 2};
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, neg, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "lines[0] = -1");
}
TEST_F(AdapterSetErrors, DuplicateLine) {
  const int64_t dup[2] = {4, 4};
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, dup, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "duplicated");
}
TEST_F(AdapterSetErrors, NullDelta) {
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, 2, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "delta");
}
TEST_F(AdapterSetErrors, DeltaShape) {
  HostMatrix wrong(S2FT_F32, 2, kShape.d_model);  // [k, len] for a column target
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, 2, &wrong.t, nullptr), S2FT_ERR_SHAPE, "delta");
}
TEST_F(AdapterSetErrors, DeltaDtype) {
  s2ft_tensor t = d.t;
  t.dtype.code = 0;  // int
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, 2, &t, nullptr), S2FT_ERR_DTYPE, "delta");
}
TEST_F(AdapterSetErrors, DeltaDevice) {
  s2ft_tensor t = d.t;
  t.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, 2, &t, nullptr), S2FT_ERR_DEVICE, "delta");
}
TEST_F(AdapterSetErrors, DeltaNotFinite) {
  d.set(1, 1, NAN);
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "non-finite");
  d.set(1, 1, INFINITY);
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, 2, &d.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "non-finite");
}
TEST_F(AdapterSetErrors, BaseShape) {
  HostMatrix wrong(S2FT_F32, kShape.d_model, 11);
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, 2, &d.t, &wrong.t), S2FT_ERR_SHAPE, "base");
}
TEST_F(AdapterSetErrors, BaseDevice) {
  s2ft_tensor t = base.t;
  t.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_adapter_set(a.a, 0, 0, lines, 2, &d.t, &t), S2FT_ERR_DEVICE, "base");
}
TEST_F(AdapterSetErrors, FailureLeavesTheEntryUnchanged) {
  ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, 0, lines, 2, &d.t, &base.t));
  const Entry before = read_entry(a.a, 0, 0);
  const int64_t dup[2] = {1, 1};
  EXPECT_NE(s2ft_adapter_set(a.a, 0, 0, dup, 2, &d.t, &base.t), S2FT_OK);
  d.set(0, 0, NAN);
  EXPECT_NE(s2ft_adapter_set(a.a, 0, 0, lines, 2, &d.t, &base.t), S2FT_OK);
  expect_same_entry(read_entry(a.a, 0, 0), before, "after failed sets");
}

TEST_F(AdapterSetErrors, InfoLinesDeltaErrors) {
  ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, 0, lines, 2, &d.t, &base.t));
  EXPECT_S2FT_ERROR(s2ft_adapter_info(nullptr, nullptr, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "adapter");
  int64_t n = 0, out[2];
  EXPECT_S2FT_ERROR(s2ft_adapter_lines(nullptr, 0, 0, nullptr, nullptr, 0, &n), S2FT_ERR_INVALID_ARGUMENT, "adapter");
  EXPECT_S2FT_ERROR(s2ft_adapter_lines(a.a, 0, 0, nullptr, nullptr, 0, nullptr), S2FT_ERR_INVALID_ARGUMENT, "count");
  EXPECT_S2FT_ERROR(s2ft_adapter_lines(a.a, 5, 0, nullptr, nullptr, 0, &n), S2FT_ERR_INVALID_ARGUMENT, "layer 5");
  EXPECT_S2FT_ERROR(s2ft_adapter_lines(a.a, 0, -1, nullptr, nullptr, 0, &n), S2FT_ERR_INVALID_ARGUMENT, "target -1");
  EXPECT_S2FT_ERROR(s2ft_adapter_lines(a.a, 0, 0, out, nullptr, 1, &n), S2FT_ERR_INVALID_ARGUMENT, "capacity 1");

  EXPECT_S2FT_ERROR(s2ft_adapter_delta(nullptr, 0, 0, &d.t), S2FT_ERR_INVALID_ARGUMENT, "adapter");
  EXPECT_S2FT_ERROR(s2ft_adapter_delta(a.a, 2, 0, &d.t), S2FT_ERR_INVALID_ARGUMENT, "layer 2");
  EXPECT_S2FT_ERROR(s2ft_adapter_delta(a.a, 0, 7, &d.t), S2FT_ERR_INVALID_ARGUMENT, "target 7");
  EXPECT_S2FT_ERROR(s2ft_adapter_delta(a.a, 0, 0, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
  EXPECT_S2FT_ERROR(s2ft_adapter_delta(a.a, 1, 0, &d.t), S2FT_ERR_STATE, "layer 1 target O");
  HostMatrix wrong(S2FT_F32, kShape.d_model, 3);
  EXPECT_S2FT_ERROR(s2ft_adapter_delta(a.a, 0, 0, &wrong.t), S2FT_ERR_SHAPE, "out");
  s2ft_tensor t = d.t;
  t.dtype.bits = 64;
  EXPECT_S2FT_ERROR(s2ft_adapter_delta(a.a, 0, 0, &t), S2FT_ERR_DTYPE, "out");
  t = d.t;
  t.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_adapter_delta(a.a, 0, 0, &t), S2FT_ERR_DEVICE, "out");
}

struct FromTrainingErrors : ::testing::Test {
  Context cx;
  Selection sel;
  Random rng{7};
  std::vector<LayerWeights> base, trained;
  std::vector<s2ft_layer_weights> bw, tw;
  void SetUp() override {
    s2ft_select_options opts;
    ASSERT_S2FT_OK(s2ft_select_options_init(&opts, S2FT_SELECT_OPTIONS_VERSION));
    opts.targets = S2FT_TARGET_BIT(S2FT_TARGET_O) | S2FT_TARGET_BIT(S2FT_TARGET_DOWN);
    ASSERT_S2FT_OK(s2ft_select(cx.ctx, &kShape, &opts, nullptr, &sel.sel));
    for (int32_t l = 0; l < kShape.n_layers; ++l) {
      base.emplace_back(kShape, S2FT_F32, rng);
      trained.emplace_back(kShape, S2FT_F32, rng);
    }
    for (int32_t l = 0; l < kShape.n_layers; ++l) {
      bw.push_back(base[static_cast<size_t>(l)].all());
      tw.push_back(trained[static_cast<size_t>(l)].all());
    }
  }
  s2ft_status run(s2ft_adapter **out) {
    return s2ft_adapter_from_training(cx.ctx, sel.sel, bw.data(), tw.data(), 0, "t", out);
  }
};

TEST_F(FromTrainingErrors, NullArguments) {
  s2ft_adapter *a = nullptr;
  EXPECT_S2FT_ERROR(s2ft_adapter_from_training(cx.ctx, sel.sel, bw.data(), tw.data(), 0, "t", nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "out");
  EXPECT_S2FT_ERROR(s2ft_adapter_from_training(nullptr, sel.sel, bw.data(), tw.data(), 0, "t", &a),
                    S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_adapter_from_training(cx.ctx, nullptr, bw.data(), tw.data(), 0, "t", &a),
                    S2FT_ERR_INVALID_ARGUMENT, "sel");
  EXPECT_S2FT_ERROR(s2ft_adapter_from_training(cx.ctx, sel.sel, nullptr, tw.data(), 0, "t", &a),
                    S2FT_ERR_INVALID_ARGUMENT, "base");
  EXPECT_S2FT_ERROR(s2ft_adapter_from_training(cx.ctx, sel.sel, bw.data(), nullptr, 0, "t", &a),
                    S2FT_ERR_INVALID_ARGUMENT, "trained");
  EXPECT_S2FT_ERROR(s2ft_adapter_from_training(cx.ctx, sel.sel, bw.data(), tw.data(), 0, nullptr, &a),
                    S2FT_ERR_INVALID_ARGUMENT, "name");
  EXPECT_EQ(a, nullptr);
}
TEST_F(FromTrainingErrors, MissingWeightOfATrainedTarget) {
  s2ft_adapter *a = nullptr;
  bw[1].down = nullptr;
  EXPECT_S2FT_ERROR(run(&a), S2FT_ERR_INVALID_ARGUMENT, "base[1].down is NULL");
  bw[1].down = &base[1].down.t;
  tw[0].o = nullptr;
  EXPECT_S2FT_ERROR(run(&a), S2FT_ERR_INVALID_ARGUMENT, "trained[0].o is NULL");
  EXPECT_EQ(a, nullptr);
}
TEST_F(FromTrainingErrors, UntrainedTargetsMayBeMissing) {
  Adapter a;
  for (auto &w : bw) w.v = w.up = w.q = w.k = w.gate = nullptr;
  for (auto &w : tw) w.v = w.up = nullptr;
  ASSERT_S2FT_OK(run(&a.a));
}
TEST_F(FromTrainingErrors, WeightShape) {
  s2ft_adapter *a = nullptr;
  HostMatrix wrong(S2FT_F32, kShape.d_model, kShape.d_ff + 1);
  tw[1].down = &wrong.t;
  EXPECT_S2FT_ERROR(run(&a), S2FT_ERR_SHAPE, "trained[1].down");
}
TEST_F(FromTrainingErrors, WeightDtype) {
  s2ft_adapter *a = nullptr;
  s2ft_tensor t = base[0].o.t;
  t.dtype.code = 1;  // uint
  bw[0].o = &t;
  EXPECT_S2FT_ERROR(run(&a), S2FT_ERR_DTYPE, "base[0].o");
}
TEST_F(FromTrainingErrors, WeightDevice) {
  s2ft_adapter *a = nullptr;
  s2ft_tensor t = trained[1].o.t;
  t.device.type = S2FT_DEVICE_CUDA;
  tw[1].o = &t;
  EXPECT_S2FT_ERROR(run(&a), S2FT_ERR_DEVICE, "trained[1].o");
}
TEST_F(FromTrainingErrors, BadName) {
  s2ft_adapter *a = nullptr;
  EXPECT_S2FT_ERROR(s2ft_adapter_from_training(cx.ctx, sel.sel, bw.data(), tw.data(), 0, std::string(300, 'n').c_str(), &a),
                    S2FT_ERR_INVALID_ARGUMENT, "name");
}
TEST_F(FromTrainingErrors, DeltaOverflowingF32) {
  s2ft_adapter *a = nullptr;
  int64_t n = 0, line = 0;
  ASSERT_S2FT_OK(s2ft_selection_indices(sel.sel, 0, S2FT_TARGET_DOWN, S2FT_INDEX_LINES, &line, 1, &n));
  base[0].down.set(2, line, -3e38f);
  trained[0].down.set(2, line, 3e38f);
  EXPECT_S2FT_ERROR(run(&a), S2FT_ERR_INVALID_ARGUMENT, "trained[0].down");
}

TEST(AdapterErrors, Fuse) {
  Adapter a, b, other;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "a", 1.0, &a.a));
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "b", 1.0, &b.a));
  s2ft_model_shape s2 = kShape;
  s2.d_ff = 8;
  ASSERT_S2FT_OK(s2ft_adapter_create(&s2, "o", 1.0, &other.a));
  s2ft_adapter *out = nullptr;
  const s2ft_adapter *in[] = {a.a, b.a};
  const double w[] = {1.0, 1.0};
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(in, w, 2, nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(nullptr, w, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "adapters");
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(in, w, 0, &out), S2FT_ERR_INVALID_ARGUMENT, "n 0");
  const s2ft_adapter *with_null[] = {a.a, nullptr};
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(with_null, w, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "adapters[1] is NULL");
  const double nan_w[] = {1.0, NAN};
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(in, nan_w, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "weights[1]");
  const s2ft_adapter *mixed[] = {a.a, other.a};
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(mixed, w, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "adapters[1] has model shape");

  // The same line with different nonzero fingerprints: different bases.
  Random rng(8);
  HostMatrix base1(S2FT_F32, kShape.d_model, kShape.d_ff), base2 = base1;
  base1.fill_random(rng);
  base2.fill_random(rng);
  HostMatrix d = delta_matrix(kShape, S2FT_TARGET_DOWN, 1);
  d.fill_random(rng);
  const int64_t line = 3;
  ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 1, S2FT_TARGET_DOWN, &line, 1, &d.t, &base1.t));
  ASSERT_S2FT_OK(s2ft_adapter_set(b.a, 1, S2FT_TARGET_DOWN, &line, 1, &d.t, &base2.t));
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(in, w, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "line 3");
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(in, w, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "different base");
  // A sum that overflows f32.
  HostMatrix big = delta_matrix(kShape, S2FT_TARGET_DOWN, 1);
  big.fill_random(rng);
  big.set(0, 0, 3e38f);
  ASSERT_S2FT_OK(s2ft_adapter_set(b.a, 1, S2FT_TARGET_DOWN, &line, 1, &big.t, &base1.t));
  const double w2[] = {1.0, 2.0};
  EXPECT_S2FT_ERROR(s2ft_adapter_fuse(in, w2, 2, &out), S2FT_ERR_INVALID_ARGUMENT, "overflows");
  EXPECT_EQ(out, nullptr);
}

TEST(AdapterFuse, LongJoinedNamesAreCutAtACharacterBoundary) {
  const std::string n1 = std::string(200, 'a');  // + '+' + 53 'b' = 254 bytes; the 2-byte 'é' straddles 255
  Adapter a, b, f;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, n1.c_str(), 1.0, &a.a));
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, (std::string(53, 'b') + "\xc3\xa9").c_str(), 1.0, &b.a));
  const s2ft_adapter *in[] = {a.a, b.a};
  ASSERT_S2FT_OK(s2ft_adapter_fuse(in, nullptr, 2, &f.a));
  const std::string name = s2ft_adapter_name(f.a);
  EXPECT_EQ(name, n1 + "+" + std::string(53, 'b'));  // 254 bytes: the 2-byte character did not fit
}

TEST(AdapterErrors, SaveAndLoad) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "a", 1.0, &a.a));
  EXPECT_S2FT_ERROR(s2ft_adapter_save(nullptr, "x"), S2FT_ERR_INVALID_ARGUMENT, "adapter");
  EXPECT_S2FT_ERROR(s2ft_adapter_save(a.a, nullptr), S2FT_ERR_INVALID_ARGUMENT, "path");
  EXPECT_S2FT_ERROR(s2ft_adapter_save(a.a, ""), S2FT_ERR_INVALID_ARGUMENT, "path");
  const std::string missing_dir = temp_path("no_such_dir/x.safetensors");
  EXPECT_S2FT_ERROR(s2ft_adapter_save(a.a, missing_dir.c_str()), S2FT_ERR_IO, "no_such_dir");
  s2ft_adapter *out = reinterpret_cast<s2ft_adapter *>(0x1);
  EXPECT_S2FT_ERROR(s2ft_adapter_load(missing_dir.c_str(), &out), S2FT_ERR_IO, "no_such_dir");
  EXPECT_EQ(out, nullptr);
  EXPECT_S2FT_ERROR(s2ft_adapter_load(nullptr, &out), S2FT_ERR_INVALID_ARGUMENT, "path");
  EXPECT_S2FT_ERROR(s2ft_adapter_load("x", nullptr), S2FT_ERR_INVALID_ARGUMENT, "out");
  // More layers than the file format holds.
  s2ft_model_shape deep = kShape;
  deep.n_layers = 70000;
  Adapter big;
  ASSERT_S2FT_OK(s2ft_adapter_create(&deep, "deep", 1.0, &big.a));
  EXPECT_S2FT_ERROR(s2ft_adapter_save(big.a, temp_path("deep.safetensors").c_str()), S2FT_ERR_INVALID_ARGUMENT,
                    "70000 layers");
  // A directory is not a file.
  EXPECT_S2FT_ERROR(s2ft_adapter_load(::testing::TempDir().c_str(), &out), S2FT_ERR_IO, "");
}

}  // namespace

namespace {

TEST(AdapterSetInfo, RenamesAndRescales) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "first", 1.0, &a.a));
  ASSERT_S2FT_OK(s2ft_adapter_set_info(a.a, "second \xc3\xa9", 0.25));
  EXPECT_STREQ(s2ft_adapter_name(a.a), "second \xc3\xa9");
  double scale = 0;
  ASSERT_S2FT_OK(s2ft_adapter_info(a.a, nullptr, &scale, nullptr));
  EXPECT_EQ(scale, 0.25);
  ASSERT_S2FT_OK(s2ft_adapter_set_info(a.a, s2ft_adapter_name(a.a), 2.0));  // its own name is fine
  EXPECT_STREQ(s2ft_adapter_name(a.a), "second \xc3\xa9");
}
TEST(AdapterSetInfo, NullAdapter) {
  EXPECT_S2FT_ERROR(s2ft_adapter_set_info(nullptr, "x", 1.0), S2FT_ERR_INVALID_ARGUMENT, "adapter is NULL");
}
TEST(AdapterSetInfo, BadNameOrScaleChangesNothing) {
  Adapter a;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "keep", 3.0, &a.a));
  EXPECT_S2FT_ERROR(s2ft_adapter_set_info(a.a, nullptr, 1.0), S2FT_ERR_INVALID_ARGUMENT, "name is NULL");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_info(a.a, std::string(256, 'n').c_str(), 1.0), S2FT_ERR_INVALID_ARGUMENT, "name");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_info(a.a, "\xff", 1.0), S2FT_ERR_INVALID_ARGUMENT, "UTF-8");
  EXPECT_S2FT_ERROR(s2ft_adapter_set_info(a.a, "ok", std::nan("")), S2FT_ERR_INVALID_ARGUMENT, "default_scale");
  EXPECT_STREQ(s2ft_adapter_name(a.a), "keep");
  double scale = 0;
  ASSERT_S2FT_OK(s2ft_adapter_info(a.a, nullptr, &scale, nullptr));
  EXPECT_EQ(scale, 3.0);
}

}  // namespace

// Uploading is a CUDA-context matter; on a CPU context it checks its
// arguments and does nothing else.
TEST_F(AdapterSetErrors, UploadOnACpuContextIsANoOp) {
  s2ft_test::Context c;
  ASSERT_S2FT_OK(s2ft_adapter_set(a.a, 0, 0, lines, 2, &d.t, &base.t));
  ASSERT_S2FT_OK(s2ft_adapter_upload(c.ctx, a.a));
  EXPECT_S2FT_ERROR(s2ft_adapter_upload(nullptr, a.a), S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_S2FT_ERROR(s2ft_adapter_upload(c.ctx, nullptr), S2FT_ERR_INVALID_ARGUMENT, "adapter is NULL");
}
