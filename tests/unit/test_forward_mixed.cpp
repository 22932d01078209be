// Mixed-adapter forward: each row segment's output equals x W_a^T with its
// own merged weight W_a = W + scale_a * delta_a (float64 reference), for
// column and row targets, base-order and permuted weights, segments without
// an adapter, empty segments, repeated adapters, k = 1 and k = all lines;
// and every error path.
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "support/target_geometry.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

const s2ft_model_shape kShape{2, 13, 4, 2, 3, 11};  // GQA, odd sizes
const int32_t kLayer = 1;

void weight_shape(int32_t t, int64_t *r, int64_t *c) { s2ft_test::weight_shape(kShape, t, r, c); }

struct AdapterOwner {
  s2ft_adapter *a = nullptr;
  // Test-side copy: lines given to s2ft_adapter_set and their delta (double, line-major: [k][len]).
  std::vector<int64_t> lines;
  std::vector<std::vector<double>> delta;
  AdapterOwner() = default;
  AdapterOwner(const AdapterOwner &) = delete;
  AdapterOwner &operator=(const AdapterOwner &) = delete;
  ~AdapterOwner() { s2ft_adapter_destroy(a); }
};

// An adapter with `lines` for (kLayer, target) (none when empty; then it
// changes `other_target` instead, so it exists but adds nothing here).
void make_adapter(AdapterOwner &ad, int32_t target, std::vector<int64_t> lines, double default_scale, uint64_t seed,
                  int32_t other_target = -1) {
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "t", default_scale, &ad.a));
  Random rng(seed);
  const int32_t t = lines.empty() ? other_target : target;
  if (lines.empty()) lines = {0};
  int64_t r, c;
  weight_shape(t, &r, &c);
  const int64_t len = by_columns(t) ? r : c, k = static_cast<int64_t>(lines.size());
  HostMatrix d = by_columns(t) ? HostMatrix(S2FT_F32, len, k) : HostMatrix(S2FT_F32, k, len);
  d.fill_random(rng, 0.5);
  ASSERT_S2FT_OK(s2ft_adapter_set(ad.a, kLayer, t, lines.data(), k, &d.t, nullptr));
  if (t != target) return;
  ad.lines = lines;
  for (int64_t j = 0; j < k; ++j) {
    std::vector<double> line;
    for (int64_t i = 0; i < len; ++i) line.push_back(by_columns(t) ? d.get(i, j) : d.get(j, i));
    ad.delta.push_back(line);
  }
}

// Where base line `line` of the target sits in the permuted weight.
int64_t position(const s2ft_selection *sel, int32_t target, int64_t line) {
  const int64_t p = permuted_position(sel, kLayer, target, line, kShape.head_dim);
  EXPECT_GE(p, 0) << "unit of line " << line << " not in the permutation";
  return p < 0 ? 0 : p;
}

struct Case {
  int32_t target;
  int32_t dtype;
  bool permuted;
};
void PrintTo(const Case &c, std::ostream *os) {
  *os << "target " << c.target << " " << dtype_label(c.dtype) << (c.permuted ? " permuted" : " base order");
}
std::string case_name(const ::testing::TestParamInfo<Case> &i) {
  static const char *const names[] = {"O", "V", "DOWN", "UP"};
  return std::string(names[i.param.target]) + "_" + dtype_label(i.param.dtype) +
         (i.param.permuted ? "_permuted" : "_base_order");
}

class ForwardMixed : public ::testing::TestWithParam<Case> {};

TEST_P(ForwardMixed, EachSegmentMatchesItsMergedWeight) {
  const Case c = GetParam();
  const int32_t t = c.target;
  Context cx;
  Selection sel;
  if (c.permuted) {
    // Every permutation moves lines: O trains KV group 1 (query heads 2, 3),
    // V KV head 1, and channels scattered over d_ff.
    const int64_t o[2] = {1, 1}, v[2] = {1, 1}, down[8] = {2, 5, 9, 10, 0, 6, 7, 8}, up[6] = {7, 3, 8, 10, 1, 4};
    const int64_t *units[4] = {o, v, down, up};
    const int64_t n_units[4] = {1, 1, 4, 3};
    ASSERT_S2FT_OK(s2ft_selection_create(&kShape, S2FT_HEADS_BY_GROUP, units, n_units, &sel.sel));
  }
  int64_t rows, cols;
  weight_shape(t, &rows, &cols);
  const int64_t n_lines = by_columns(t) ? cols : rows;
  Random rng(100 + static_cast<uint64_t>(t));
  HostMatrix w(c.dtype, rows, cols);
  w.fill_random(rng);
  if (c.permuted) {  // the weight as a permuted model holds it
    s2ft_layer_weights lw{};
    if (t == S2FT_TARGET_O) lw.o = &w.t;
    if (t == S2FT_TARGET_V) lw.v = &w.t;
    if (t == S2FT_TARGET_DOWN) lw.down = &w.t;
    if (t == S2FT_TARGET_UP) lw.up = &w.t;
    ASSERT_S2FT_OK(s2ft_permute(cx.ctx, sel.sel, kLayer, &lw, S2FT_PERMUTE_FORWARD));
  }

  // Adapters: 3 lines (given unsorted), all lines, 1 line, none for this target.
  AdapterOwner ads[4];
  std::vector<int64_t> all(static_cast<size_t>(n_lines));
  for (int64_t i = 0; i < n_lines; ++i) all[static_cast<size_t>(i)] = n_lines - 1 - i;
  make_adapter(ads[0], t, {5, 1, 3}, 0.8, 7);
  make_adapter(ads[1], t, all, 1.0, 8);
  make_adapter(ads[2], t, {n_lines - 2}, 1.0, 9);
  make_adapter(ads[3], t, {}, 1.0, 10, t == S2FT_TARGET_O ? S2FT_TARGET_UP : S2FT_TARGET_O);
  const s2ft_adapter *handles[4] = {ads[0].a, ads[1].a, ads[2].a, ads[3].a};
  const double scales[4] = {0.8, -1.5, 2.0, 1.0};
  // Segments: empty ones, no adapter, the same adapter consecutively and again later.
  const std::vector<int64_t> sizes = {3, 0, 5, 4, 1, 7, 2, 3, 0};
  const std::vector<int32_t> seg = {0, 1, -1, 0, 0, 2, 3, 1, 2};
  std::vector<int64_t> offsets = {0};
  for (int64_t s : sizes) offsets.push_back(offsets.back() + s);
  const int64_t T = offsets.back();

  HostMatrix x(c.dtype, T, cols), y(c.dtype, T, rows);
  x.fill_random(rng);
  y.poison();
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, kLayer, t, &x.t, &w.t, sel.sel, handles, scales, 4,
                                            offsets.data(), seg.data(), static_cast<int64_t>(seg.size()), &y.t));

  // Reference: per segment, the weight as stored plus scale * delta at each
  // line's position, in float64.
  const std::vector<double> xd = x.to_double(), wd = w.to_double();
  std::vector<double> want(static_cast<size_t>(T * rows));
  for (size_t j = 0; j < seg.size(); ++j) {
    std::vector<double> merged = wd;
    if (seg[j] >= 0) {
      const AdapterOwner &a = ads[seg[j]];
      for (size_t l = 0; l < a.lines.size(); ++l) {
        const int64_t p = position(sel.sel, t, a.lines[l]);
        for (size_t i = 0; i < a.delta[l].size(); ++i) {
          const size_t at = by_columns(t) ? i * static_cast<size_t>(cols) + static_cast<size_t>(p)
                                          : static_cast<size_t>(p) * static_cast<size_t>(cols) + i;
          merged[at] += scales[seg[j]] * a.delta[l][i];
        }
      }
    }
    for (int64_t r = offsets[j]; r < offsets[j + 1]; ++r)
      for (int64_t o = 0; o < rows; ++o) {
        double acc = 0;
        for (int64_t i = 0; i < cols; ++i) acc += xd[static_cast<size_t>(r * cols + i)] * merged[static_cast<size_t>(o * cols + i)];
        want[static_cast<size_t>(r * rows + o)] = acc;
      }
  }
  EXPECT_LE(rel_error(y.to_double(), want), tolerance(c.dtype));

  // Default scales (scales NULL, and NaN entries) equal the explicit defaults.
  HostMatrix y2(c.dtype, T, rows), y3(c.dtype, T, rows);
  y2.poison();
  y3.poison();
  const double defaults[4] = {0.8, 1.0, 1.0, 1.0};
  const double nans[4] = {NAN, NAN, NAN, NAN};
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, kLayer, t, &x.t, &w.t, sel.sel, handles, defaults, 4,
                                            offsets.data(), seg.data(), static_cast<int64_t>(seg.size()), &y2.t));
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, kLayer, t, &x.t, &w.t, sel.sel, handles, nullptr, 4,
                                            offsets.data(), seg.data(), static_cast<int64_t>(seg.size()), &y.t));
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, kLayer, t, &x.t, &w.t, sel.sel, handles, nans, 4,
                                            offsets.data(), seg.data(), static_cast<int64_t>(seg.size()), &y3.t));
  EXPECT_EQ(y.bytes, y2.bytes);
  EXPECT_EQ(y3.bytes, y2.bytes);
}

std::vector<Case> all_cases() {
  std::vector<Case> v;
  for (int32_t t = 0; t < 4; ++t)
    for (int32_t dt : {S2FT_F32, S2FT_BF16, S2FT_F16})
      for (bool p : {false, true}) v.push_back(Case{t, dt, p});
  return v;
}
INSTANTIATE_TEST_SUITE_P(Targets, ForwardMixed, ::testing::ValuesIn(all_cases()), case_name);

// No segments and no rows: nothing to do, and that is fine.
TEST(ForwardMixedEdge, NoRows) {
  Context cx;
  HostMatrix w(S2FT_F32, 13, 11), x(S2FT_F32, 0, 11), y(S2FT_F32, 0, 13);
  const int64_t offsets[1] = {0};
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, nullptr, nullptr, 0,
                                            offsets, nullptr, 0, &y.t));
}

// Segments without adapters give exactly the base product (no adapters array needed).
TEST(ForwardMixedEdge, NoAdapterIsBaseForward) {
  Context cx;
  Random rng(5);
  HostMatrix w(S2FT_F32, 13, 11), x(S2FT_F32, 6, 11), y(S2FT_F32, 6, 13);
  w.fill_random(rng);
  x.fill_random(rng);
  y.poison();
  const int64_t offsets[3] = {0, 2, 6};
  const int32_t seg[2] = {-1, -1};
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, nullptr, nullptr, 0,
                                            offsets, seg, 2, &y.t));
  EXPECT_LE(rel_error(y.to_double(), ref_matmul(x.to_double(), 6, 11, false, w.to_double(), 13, 11, true)), 1e-6);
}

// ---- error paths -----------------------------------------------------------

class ForwardMixedErrors : public ::testing::Test {
 protected:
  Context cx;
  AdapterOwner ad;
  HostMatrix w{S2FT_F32, 13, 11}, x{S2FT_F32, 5, 11}, y{S2FT_F32, 5, 13};
  const s2ft_adapter *handles[1] = {nullptr};
  int64_t offsets[3] = {0, 2, 5};
  int32_t seg[2] = {0, -1};
  void SetUp() override {
    make_adapter(ad, S2FT_TARGET_DOWN, {1, 4}, 1.0, 3);
    handles[0] = ad.a;
    Random rng(4);
    w.fill_random(rng);
    x.fill_random(rng);
  }
  s2ft_status call(int32_t layer = kLayer, int32_t target = S2FT_TARGET_DOWN, const s2ft_selection *perm = nullptr,
                   const double *scales = nullptr, int64_t n_adapters = 1) {
    return s2ft_adapter_forward_mixed(cx.ctx, layer, target, &x.t, &w.t, perm, handles, scales, n_adapters, offsets,
                                      seg, 2, &y.t);
  }
};

TEST_F(ForwardMixedErrors, Succeeds) { ASSERT_S2FT_OK(call()); }

TEST_F(ForwardMixedErrors, NullContext) {
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(nullptr, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, handles, nullptr,
                                               1, offsets, seg, 2, &y.t),
                    S2FT_ERR_INVALID_ARGUMENT, "ctx");
}

TEST_F(ForwardMixedErrors, BadTarget) {
  // Any of the seven weight ids is a target (q, k, gate carry only sparse entries).
  EXPECT_S2FT_ERROR(call(kLayer, S2FT_NUM_WEIGHTS), S2FT_ERR_INVALID_ARGUMENT, "target");
  EXPECT_S2FT_ERROR(call(kLayer, -1), S2FT_ERR_INVALID_ARGUMENT, "target");
}

TEST_F(ForwardMixedErrors, NegativeLayer) { EXPECT_S2FT_ERROR(call(-1), S2FT_ERR_INVALID_ARGUMENT, "layer"); }

TEST_F(ForwardMixedErrors, LayerBeyondAdapter) {
  EXPECT_S2FT_ERROR(call(2), S2FT_ERR_INVALID_ARGUMENT, "adapters[0]");
}

TEST_F(ForwardMixedErrors, WeightShapeDiffersFromAdapters) {
  // target O with a [11, 13] w: the adapter's model has O weights of [13, 12].
  HostMatrix w2(S2FT_F32, 11, 13), x2(S2FT_F32, 5, 13), y2(S2FT_F32, 5, 11);
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_O, &x2.t, &w2.t, nullptr, handles, nullptr,
                                               1, offsets, seg, 2, &y2.t),
                    S2FT_ERR_SHAPE, "adapters[0]");
}

TEST_F(ForwardMixedErrors, NullTensors) {
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, nullptr, &w.t, nullptr, handles,
                                               nullptr, 1, offsets, seg, 2, &y.t),
                    S2FT_ERR_INVALID_ARGUMENT, "x");
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, nullptr, nullptr, handles,
                                               nullptr, 1, offsets, seg, 2, &y.t),
                    S2FT_ERR_INVALID_ARGUMENT, "w");
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, handles,
                                               nullptr, 1, offsets, seg, 2, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "y");
}

TEST_F(ForwardMixedErrors, XShape) {
  x = HostMatrix(S2FT_F32, 5, 12);
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_SHAPE, "x");
}

TEST_F(ForwardMixedErrors, YShape) {
  y = HostMatrix(S2FT_F32, 5, 12);
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_SHAPE, "y");
}

TEST_F(ForwardMixedErrors, DtypeMismatch) {
  y = HostMatrix(S2FT_BF16, 5, 13);
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_DTYPE, "y");
}

TEST_F(ForwardMixedErrors, WrongDevice) {
  x.t.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_DEVICE, "x");
}

TEST_F(ForwardMixedErrors, OutputOverlapsInput) {
  // x is the first 11 columns of a [5, 13] buffer and y is the whole buffer.
  HostMatrix big(S2FT_F32, 5, 13);
  s2ft_tensor alias = big.t;
  x.t = big.t;
  x.t.shape[1] = 11;
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, handles, nullptr,
                                               1, offsets, seg, 2, &alias),
                    S2FT_ERR_INVALID_ARGUMENT, "y");
}

TEST_F(ForwardMixedErrors, NullOffsets) {
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, handles, nullptr,
                                               1, nullptr, seg, 2, &y.t),
                    S2FT_ERR_INVALID_ARGUMENT, "offsets");
}

TEST_F(ForwardMixedErrors, NullSegmentAdapter) {
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, handles, nullptr,
                                               1, offsets, nullptr, 2, &y.t),
                    S2FT_ERR_INVALID_ARGUMENT, "segment_adapter");
}

TEST_F(ForwardMixedErrors, FirstOffsetNotZero) {
  offsets[0] = 1;
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_INVALID_ARGUMENT, "offsets[0]");
}

TEST_F(ForwardMixedErrors, DecreasingOffsets) {
  offsets[1] = 6;
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_INVALID_ARGUMENT, "offsets[2]");
}

TEST_F(ForwardMixedErrors, LastOffsetNotT) {
  offsets[2] = 4;
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_INVALID_ARGUMENT, "offsets[n_segments]");
}

TEST_F(ForwardMixedErrors, NegativeCounts) {
  EXPECT_S2FT_ERROR(call(kLayer, S2FT_TARGET_DOWN, nullptr, nullptr, -1), S2FT_ERR_INVALID_ARGUMENT, "n_adapters");
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, handles, nullptr,
                                               1, offsets, seg, -1, &y.t),
                    S2FT_ERR_INVALID_ARGUMENT, "n_segments");
}

TEST_F(ForwardMixedErrors, SegmentAdapterOutOfRange) {
  seg[1] = 1;
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_INVALID_ARGUMENT, "segment_adapter[1]");
  seg[1] = -2;
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_INVALID_ARGUMENT, "segment_adapter[1]");
}

TEST_F(ForwardMixedErrors, UsedAdapterIsNull) {
  handles[0] = nullptr;
  EXPECT_S2FT_ERROR(call(), S2FT_ERR_INVALID_ARGUMENT, "adapters[0]");
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, nullptr, nullptr,
                                               1, offsets, seg, 2, &y.t),
                    S2FT_ERR_INVALID_ARGUMENT, "adapters");
}

TEST_F(ForwardMixedErrors, InfiniteScale) {
  const double s[1] = {INFINITY};
  EXPECT_S2FT_ERROR(call(kLayer, S2FT_TARGET_DOWN, nullptr, s), S2FT_ERR_INVALID_ARGUMENT, "scales[0]");
}

TEST_F(ForwardMixedErrors, AdaptersOfDifferentModelShapes) {
  // Two adapters for o_proj of models that differ only in d_ff: w fits
  // both, so only their model shapes tell them apart.
  s2ft_model_shape other = kShape;
  other.d_ff = kShape.d_ff + 1;
  AdapterOwner mismatched;
  ASSERT_S2FT_OK(s2ft_adapter_create(&other, "other", 1.0, &mismatched.a));
  int64_t r, c;
  weight_shape(S2FT_TARGET_O, &r, &c);
  HostMatrix w_o(S2FT_F32, r, c), x_o(S2FT_F32, 5, c), y_o(S2FT_F32, 5, r);
  Random rng(11);
  w_o.fill_random(rng);
  x_o.fill_random(rng);
  const s2ft_adapter *two[2] = {ad.a, mismatched.a};
  const int32_t seg_o[2] = {0, 1};
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_O, &x_o.t, &w_o.t, nullptr, two, nullptr,
                                               2, offsets, seg_o, 2, &y_o.t),
                    S2FT_ERR_INVALID_ARGUMENT, "adapters[1] was made for model shape");
  // Also when the odd one is not used by any segment.
  const int32_t seg_first[2] = {0, -1};
  EXPECT_S2FT_ERROR(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_O, &x_o.t, &w_o.t, nullptr, two, nullptr,
                                               2, offsets, seg_first, 2, &y_o.t),
                    S2FT_ERR_INVALID_ARGUMENT, "d_ff 12");
  // Both of one shape: accepted.
  const s2ft_adapter *same[2] = {ad.a, ad.a};
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_O, &x_o.t, &w_o.t, nullptr, same, nullptr, 2,
                                            offsets, seg_o, 2, &y_o.t));
}

TEST_F(ForwardMixedErrors, PermutationOfAnotherShape) {
  s2ft_model_shape other = kShape;
  other.d_ff = 12;
  s2ft_select_options o;
  ASSERT_S2FT_OK(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION));
  Selection sel;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &other, &o, nullptr, &sel.sel));
  EXPECT_S2FT_ERROR(call(kLayer, S2FT_TARGET_DOWN, sel.sel), S2FT_ERR_SHAPE, "w");
}

}  // namespace
