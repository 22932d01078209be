// Partial forward/backward against a float64 dense reference: the full
// backward is computed in double, then sliced.
#include <algorithm>
#include <numeric>
#include <tuple>

#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

struct Case {
  int64_t T, out, in, k;
  int32_t axis;
  bool indexed;
  int32_t dtype;
};

std::string case_name(const Case &c) {
  return std::string(c.axis == S2FT_AXIS_COLUMNS ? "cols" : "rows") + (c.indexed ? "_idx" : "_range") + "_" +
         dtype_label(c.dtype) + "_T" + std::to_string(c.T) + "_o" + std::to_string(c.out) + "_i" +
         std::to_string(c.in) + "_k" + std::to_string(c.k);
}

class PartialParity : public ::testing::TestWithParam<Case> {};

TEST_P(PartialParity, MatchesFloat64DenseReferenceSliced) {
  const Case c = GetParam();
  Random rng(1234 + c.T * 7 + c.out * 131 + c.in * 17 + c.k + c.axis * 3 + c.indexed + c.dtype * 11);
  Context cx;
  const int64_t extent = c.axis == S2FT_AXIS_COLUMNS ? c.in : c.out;
  std::vector<int64_t> idx;
  s2ft_slice slice{c.axis, 0, c.k, nullptr};
  if (c.indexed) {
    idx = shuffled_lines(rng, extent, c.k);
    slice.indices = idx.data();
  } else {
    slice.begin = rng.below(extent - c.k + 1);
    for (int64_t i = 0; i < c.k; ++i) idx.push_back(slice.begin + i);
  }

  HostMatrix W(c.dtype, c.out, c.in), X(c.dtype, c.T, c.in), DY(c.dtype, c.T, c.out);
  W.fill_random(rng);
  X.fill_random(rng);
  DY.fill_random(rng);
  const auto w = W.to_double(), x = X.to_double(), dy = DY.to_double();

  // Forward: y = x W^T and the saved slice.
  HostMatrix Y(c.dtype, c.T, c.out);
  Y.poison();
  const bool cols = c.axis == S2FT_AXIS_COLUMNS;
  HostMatrix XS(c.dtype, c.T, cols ? c.k : c.in);
  XS.poison();
  ASSERT_S2FT_OK(s2ft_forward_partial(cx.ctx, &slice, &X.t, &W.t, &Y.t, &XS.t));
  EXPECT_LE(rel_error(Y.to_double(), ref_matmul(x, c.T, c.in, false, w, c.out, c.in, true)), tolerance(c.dtype));
  for (int64_t t = 0; t < c.T; ++t)
    for (int64_t j = 0; j < XS.cols; ++j)
      ASSERT_EQ(XS.get(t, j), X.get(t, cols ? idx[static_cast<size_t>(j)] : j)) << "saved input differs at " << t << "," << j;

  // Backward, then the reference: full dW = dy^T x in double, sliced.
  HostMatrix DX(c.dtype, c.T, c.in);
  DX.poison();
  HostMatrix DW(S2FT_F32, cols ? c.out : c.k, cols ? c.k : c.in);
  DW.poison();
  ASSERT_S2FT_OK(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, &DX.t, &DW.t, 0));
  const auto dx_ref = ref_matmul(dy, c.T, c.out, false, w, c.out, c.in, false);
  const auto dw_full = ref_matmul(dy, c.T, c.out, true, x, c.T, c.in, false);
  std::vector<double> dw_ref;
  if (cols) {
    for (int64_t o = 0; o < c.out; ++o)
      for (int64_t j = 0; j < c.k; ++j) dw_ref.push_back(dw_full[static_cast<size_t>(o * c.in + idx[static_cast<size_t>(j)])]);
  } else {
    for (int64_t j = 0; j < c.k; ++j)
      for (int64_t i = 0; i < c.in; ++i) dw_ref.push_back(dw_full[static_cast<size_t>(idx[static_cast<size_t>(j)] * c.in + i)]);
  }
  EXPECT_LE(rel_error(DX.to_double(), dx_ref), tolerance(c.dtype));
  // dW is written in f32 whatever the input dtype, so only the input rounding limits it.
  EXPECT_LE(rel_error(DW.to_double(), dw_ref), c.dtype == S2FT_F32 ? 1e-5 : 1e-5 * 10);

  // Accumulation adds onto what is there, and dx may be skipped.
  const auto dw_before = DW.to_double();
  ASSERT_S2FT_OK(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, nullptr, &DW.t, S2FT_ACCUMULATE_DW));
  std::vector<double> twice(dw_before.size());
  for (size_t i = 0; i < twice.size(); ++i) twice[i] = 2 * dw_ref[i];
  EXPECT_LE(rel_error(DW.to_double(), twice), 1e-4);
  ASSERT_S2FT_OK(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, &DX.t, &DW.t, S2FT_ACCUMULATE_DX));
  std::vector<double> dx2(dx_ref.size());
  for (size_t i = 0; i < dx2.size(); ++i) dx2[i] = 2 * dx_ref[i];
  EXPECT_LE(rel_error(DX.to_double(), dx2), 2 * tolerance(c.dtype));
  EXPECT_LE(rel_error(DW.to_double(), dw_ref), 1e-4);  // overwritten again
}

std::vector<Case> parity_cases() {
  std::vector<Case> cases;
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 5, 9}, {16, 12, 33}, {33, 17, 13}, {64, 48, 40}};
  for (int32_t dtype : {S2FT_F32, S2FT_BF16, S2FT_F16})
    for (int32_t axis : {S2FT_AXIS_COLUMNS, S2FT_AXIS_ROWS})
      for (bool indexed : {false, true})
        for (const auto &s : shapes) {
          const int64_t extent = axis == S2FT_AXIS_COLUMNS ? s[2] : s[1];
          std::vector<int64_t> ks{1, extent / 3, extent};  // k = 1, a third, k = all
          ks.erase(std::remove_if(ks.begin(), ks.end(), [](int64_t k) { return k < 1; }), ks.end());
          ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
          for (int64_t k : ks) cases.push_back(Case{s[0], s[1], s[2], k, axis, indexed, dtype});
        }
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Shapes, PartialParity, ::testing::ValuesIn(parity_cases()),
                         [](const ::testing::TestParamInfo<Case> &i) { return case_name(i.param); });

// dW written as bf16 (the weight's dtype) rounds once, at the end.
TEST(Partial, WeightGradientInInputDtype) {
  Random rng(5);
  Context cx;
  const int64_t T = 9, out = 6, in = 11, k = 4;
  HostMatrix W(S2FT_BF16, out, in), XS(S2FT_BF16, T, k), DY(S2FT_BF16, T, out), DW(S2FT_BF16, out, k);
  W.fill_random(rng);
  XS.fill_random(rng);
  DY.fill_random(rng);
  DW.poison();
  s2ft_slice slice{S2FT_AXIS_COLUMNS, 3, k, nullptr};
  ASSERT_S2FT_OK(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, nullptr, &DW.t, 0));
  EXPECT_LE(rel_error(DW.to_double(), ref_matmul(DY.to_double(), T, out, true, XS.to_double(), T, k, false)), 1e-2);
}

// The same training state expressed on a permuted and an unpermuted weight
// gives the same gradients once indices are mapped (S -> [0, k)).
TEST(Partial, PermutedAndIndexedModesAgree) {
  for (int32_t axis : {S2FT_AXIS_COLUMNS, S2FT_AXIS_ROWS}) {
    Random rng(77 + axis);
    Context cx;
    const int64_t T = 13, out = 10, in = 14, k = 5;
    const int64_t extent = axis == S2FT_AXIS_COLUMNS ? in : out;
    std::vector<int64_t> sel = shuffled_lines(rng, extent, k);
    std::sort(sel.begin(), sel.end());
    // perm[p] = base line at position p: selected first, then the rest in order.
    std::vector<int64_t> perm = sel;
    for (int64_t i = 0; i < extent; ++i)
      if (!std::count(sel.begin(), sel.end(), i)) perm.push_back(i);

    HostMatrix W(S2FT_F32, out, in), X(S2FT_F32, T, in), DY(S2FT_F32, T, out);
    W.fill_random(rng);
    X.fill_random(rng);
    DY.fill_random(rng);
    HostMatrix Wp = W, Xp = X, DYp = DY;  // the permuted model's tensors
    for (int64_t p = 0; p < extent; ++p) {
      const int64_t b = perm[static_cast<size_t>(p)];
      if (axis == S2FT_AXIS_COLUMNS) {
        for (int64_t o = 0; o < out; ++o) Wp.set(o, p, W.get(o, b));
        for (int64_t t = 0; t < T; ++t) Xp.set(t, p, X.get(t, b));
      } else {
        for (int64_t i = 0; i < in; ++i) Wp.set(p, i, W.get(b, i));
        for (int64_t t = 0; t < T; ++t) DYp.set(t, p, DY.get(t, b));
      }
    }
    const bool cols = axis == S2FT_AXIS_COLUMNS;
    s2ft_slice base{axis, 0, k, sel.data()};
    s2ft_slice permuted{axis, 0, k, nullptr};
    HostMatrix XS(S2FT_F32, T, cols ? k : in), XSp = XS;
    HostMatrix Y(S2FT_F32, T, out);
    ASSERT_S2FT_OK(s2ft_forward_partial(cx.ctx, &base, &X.t, &W.t, &Y.t, &XS.t));
    ASSERT_S2FT_OK(s2ft_forward_partial(cx.ctx, &permuted, &Xp.t, &Wp.t, &Y.t, &XSp.t));
    HostMatrix DX(S2FT_F32, T, in), DXp = DX, DW(S2FT_F32, cols ? out : k, cols ? k : in), DWp = DW;
    DX.poison(), DXp.poison(), DW.poison(), DWp.poison();
    ASSERT_S2FT_OK(s2ft_backward_partial(cx.ctx, &base, &W.t, &XS.t, &DY.t, &DX.t, &DW.t, 0));
    ASSERT_S2FT_OK(s2ft_backward_partial(cx.ctx, &permuted, &Wp.t, &XSp.t, &DYp.t, &DXp.t, &DWp.t, 0));
    EXPECT_LE(rel_error(DWp.to_double(), DW.to_double()), 1e-6);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t p = 0; p < in; ++p) {
        const int64_t b = cols ? perm[static_cast<size_t>(p)] : p;
        EXPECT_NEAR(DXp.get(t, p), DX.get(t, b), 1e-5) << "dx at " << t << "," << p;
      }
  }
}

// Strided views: the trained block of a permuted weight is a column range of
// the full weight (row stride = in), and dW lands in a block of a larger buffer.
TEST(Partial, StridedSubMatrixViews) {
  Random rng(99);
  Context cx;
  const int64_t T = 8, out = 7, in = 12, k = 3;
  HostMatrix W(S2FT_F32, out, in), X(S2FT_F32, T, in), DY(S2FT_F32, T, out);
  W.fill_random(rng), X.fill_random(rng), DY.fill_random(rng);
  HostMatrix big(S2FT_F32, out, 10);  // dW goes to columns [4, 4 + k) of this buffer
  big.poison();
  s2ft_tensor dw = big.t;
  dw.shape[1] = k;
  dw.byte_offset = 4 * sizeof(float);
  s2ft_tensor xs = X.t;  // x[:, 0:k] as a view: no copy
  xs.shape[1] = k;
  s2ft_slice slice{S2FT_AXIS_COLUMNS, 0, k, nullptr};
  ASSERT_S2FT_OK(s2ft_backward_partial(cx.ctx, &slice, &W.t, &xs, &DY.t, nullptr, &dw, 0));
  const auto ref = ref_matmul(DY.to_double(), T, out, true, X.to_double(), T, in, false);
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t j = 0; j < k; ++j) EXPECT_NEAR(big.get(o, 4 + j), ref[static_cast<size_t>(o * in + j)], 1e-5);
    for (int64_t j : {0, 1, 2, 3, 7, 8, 9}) EXPECT_TRUE(std::isnan(big.get(o, j))) << "wrote outside the view";
  }
  // A transposed (column-major) weight view: strides {1, out}.
  HostMatrix WT(S2FT_F32, in, out);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) WT.set(i, o, W.get(o, i));
  s2ft_tensor wview = WT.t;
  wview.shape[0] = out, wview.shape[1] = in, wview.strides[0] = 1, wview.strides[1] = out;
  HostMatrix DX(S2FT_F32, T, in);
  DX.poison();
  ASSERT_S2FT_OK(s2ft_backward_partial(cx.ctx, &slice, &wview, &xs, &DY.t, &DX.t, &dw, 0));
  EXPECT_LE(rel_error(DX.to_double(), ref_matmul(DY.to_double(), T, out, false, W.to_double(), out, in, false)), 1e-5);
}

// ---- error paths: one test each, checking status and the argument named ----

struct ErrorFixture : ::testing::Test {
  Context cx;
  Random rng{3};
  HostMatrix W{S2FT_F32, 6, 10}, XS{S2FT_F32, 4, 3}, X{S2FT_F32, 4, 10}, DY{S2FT_F32, 4, 6}, DX{S2FT_F32, 4, 10},
      DW{S2FT_F32, 6, 3}, Y{S2FT_F32, 4, 6};
  s2ft_slice slice{S2FT_AXIS_COLUMNS, 2, 3, nullptr};
  void SetUp() override {
    W.fill_random(rng), XS.fill_random(rng), X.fill_random(rng), DY.fill_random(rng);
  }
  s2ft_status backward() { return s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, &DX.t, &DW.t, 0); }
};

TEST_F(ErrorFixture, BackwardNullContext) {
  EXPECT_S2FT_ERROR(s2ft_backward_partial(nullptr, &slice, &W.t, &XS.t, &DY.t, &DX.t, &DW.t, 0), S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
}
TEST_F(ErrorFixture, BackwardNullSlice) {
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, nullptr, &W.t, &XS.t, &DY.t, &DX.t, &DW.t, 0), S2FT_ERR_INVALID_ARGUMENT, "slice is NULL");
}
TEST_F(ErrorFixture, BackwardNullWeight) {
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, nullptr, &XS.t, &DY.t, &DX.t, &DW.t, 0), S2FT_ERR_INVALID_ARGUMENT, "w is NULL");
}
TEST_F(ErrorFixture, BackwardNullInput) {
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, nullptr, &DY.t, &DX.t, &DW.t, 0), S2FT_ERR_INVALID_ARGUMENT, "x_in is NULL");
}
TEST_F(ErrorFixture, BackwardNullOutputGradient) {
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, nullptr, &DX.t, &DW.t, 0), S2FT_ERR_INVALID_ARGUMENT, "dy is NULL");
}
TEST_F(ErrorFixture, BackwardNullWeightGradient) {
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, &DX.t, nullptr, 0), S2FT_ERR_INVALID_ARGUMENT, "dw_slice is NULL");
}
TEST_F(ErrorFixture, BackwardNullData) {
  XS.t.data = nullptr;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "x_in.data is NULL");
}
TEST_F(ErrorFixture, BackwardBadAxis) {
  slice.axis = 7;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "slice->axis");
}
TEST_F(ErrorFixture, BackwardZeroCount) {
  slice.count = 0;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "slice->count");
}
TEST_F(ErrorFixture, BackwardCountAboveExtent) {
  slice.count = 11;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "slice->count");
}
TEST_F(ErrorFixture, BackwardRangeOutside) {
  slice.begin = 8;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "slice range");
}
TEST_F(ErrorFixture, BackwardNegativeBegin) {
  slice.begin = -1;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "slice range");
}
TEST_F(ErrorFixture, BackwardBeginNearInt64Max) {  // no overflow while checking or reporting it
  slice.begin = INT64_MAX - 1;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT,
                    "slice range [9223372036854775806, 9223372036854775806 + 3) is outside");
}
TEST_F(ErrorFixture, BackwardIndexOutOfRange) {
  const int64_t idx[3] = {1, 10, 2};
  slice.indices = idx;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "slice->indices[1] = 10 is out of range");
}
TEST_F(ErrorFixture, BackwardNegativeIndex) {
  const int64_t idx[3] = {-1, 0, 2};
  slice.indices = idx;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "slice->indices[0] = -1");
}
TEST_F(ErrorFixture, BackwardDuplicateIndex) {
  const int64_t idx[3] = {4, 1, 4};
  slice.indices = idx;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "slice->indices has 4 twice");
}
TEST_F(ErrorFixture, BackwardWrongInputShape) {
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &X.t, &DY.t, &DX.t, &DW.t, 0), S2FT_ERR_SHAPE, "x_in must be [4, 3]");
}
TEST_F(ErrorFixture, BackwardWrongOutputGradientShape) {
  HostMatrix bad(S2FT_F32, 4, 5);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &bad.t, &DX.t, &DW.t, 0), S2FT_ERR_SHAPE, "dy must be");
}
TEST_F(ErrorFixture, BackwardWrongWeightGradientShape) {
  HostMatrix bad(S2FT_F32, 3, 6);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, &DX.t, &bad.t, 0), S2FT_ERR_SHAPE, "dw_slice must be [6, 3]");
}
TEST_F(ErrorFixture, BackwardWrongInputGradientShape) {
  HostMatrix bad(S2FT_F32, 4, 9);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, &bad.t, &DW.t, 0), S2FT_ERR_SHAPE, "dx must be [4, 10]");
}
TEST_F(ErrorFixture, BackwardRowSliceWantsFullInput) {
  slice.axis = S2FT_AXIS_ROWS;
  HostMatrix dw(S2FT_F32, 3, 10);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, &DX.t, &dw.t, 0), S2FT_ERR_SHAPE, "x_in must be [4, 10]");
}
TEST_F(ErrorFixture, BackwardRank3Tensor) {
  W.t.ndim = 3;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_SHAPE, "w must have rank 2");
}
TEST_F(ErrorFixture, BackwardMixedDtypes) {
  HostMatrix xs(S2FT_BF16, 4, 3);
  xs.fill_random(rng);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &xs.t, &DY.t, &DX.t, &DW.t, 0), S2FT_ERR_DTYPE, "x_in is bf16 but w is f32");
}
TEST_F(ErrorFixture, BackwardWeightGradientDtype) {
  HostMatrix w(S2FT_BF16, 6, 10), xs(S2FT_BF16, 4, 3), dy(S2FT_BF16, 4, 6), dw(S2FT_F16, 6, 3);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &w.t, &xs.t, &dy.t, nullptr, &dw.t, 0), S2FT_ERR_DTYPE, "dw_slice must be f32 or bf16");
}
TEST_F(ErrorFixture, BackwardUnknownDtype) {
  W.t.dtype.code = 0;  // DLPack int
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_DTYPE, "w has unsupported dtype");
}
TEST_F(ErrorFixture, BackwardVectorLanesRejected) {
  DY.t.dtype.lanes = 4;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_DTYPE, "dy has unsupported dtype");
}
TEST_F(ErrorFixture, BackwardMixedDevices) {
  DY.t.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_DEVICE, "dy is on CUDA device 0 but the context is on the CPU");
}
TEST_F(ErrorFixture, BackwardUnknownFlags) {
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, &DX.t, &DW.t, 0x10), S2FT_ERR_INVALID_ARGUMENT, "flags has unknown bits 0x10");
}
TEST_F(ErrorFixture, BackwardOutputAliasesInput) {
  // x_in and dx carved from one buffer: their address ranges intersect.
  HostMatrix buf(S2FT_F32, 4, 13);
  buf.fill_random(rng);
  s2ft_tensor xin = buf.t, dx = buf.t;
  xin.shape[1] = 3;
  dx.shape[1] = 10;
  dx.byte_offset = 3 * sizeof(float);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &xin, &DY.t, &dx, &DW.t, 0), S2FT_ERR_INVALID_ARGUMENT, "dx overlaps x_in");
  s2ft_tensor dwalias = W.t;
  dwalias.shape[1] = 3;
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cx.ctx, &slice, &W.t, &XS.t, &DY.t, &DX.t, &dwalias, 0), S2FT_ERR_INVALID_ARGUMENT, "dw_slice overlaps w");
}
TEST_F(ErrorFixture, BackwardNegativeStride) {
  W.t.strides[0] = -10;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "w has a negative stride");
}
TEST_F(ErrorFixture, BackwardOverflowingStride) {
  W.t.strides[0] = INT64_MAX / 2;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "w has strides and shape whose extent overflows");
}
TEST_F(ErrorFixture, BackwardBroadcastStride) {
  DY.t.strides[0] = 0;
  EXPECT_S2FT_ERROR(backward(), S2FT_ERR_INVALID_ARGUMENT, "dy has a zero stride");
}
TEST_F(ErrorFixture, ForwardNullContext) {
  EXPECT_S2FT_ERROR(s2ft_forward_partial(nullptr, &slice, &X.t, &W.t, &Y.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
}
TEST_F(ErrorFixture, ForwardNullOutput) {
  EXPECT_S2FT_ERROR(s2ft_forward_partial(cx.ctx, &slice, &X.t, &W.t, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "y is NULL");
}
TEST_F(ErrorFixture, ForwardNullInput) {
  EXPECT_S2FT_ERROR(s2ft_forward_partial(cx.ctx, &slice, nullptr, &W.t, &Y.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "x is NULL");
}
TEST_F(ErrorFixture, ForwardWrongSavedShape) {
  HostMatrix bad(S2FT_F32, 4, 4);
  EXPECT_S2FT_ERROR(s2ft_forward_partial(cx.ctx, &slice, &X.t, &W.t, &Y.t, &bad.t), S2FT_ERR_SHAPE, "x_saved must be [4, 3]");
}
TEST_F(ErrorFixture, ForwardWrongOutputShape) {
  HostMatrix bad(S2FT_F32, 4, 7);
  EXPECT_S2FT_ERROR(s2ft_forward_partial(cx.ctx, &slice, &X.t, &W.t, &bad.t, nullptr), S2FT_ERR_SHAPE, "y must be [4, 6]");
}
TEST_F(ErrorFixture, ForwardOutputAliasesInput) {
  s2ft_tensor y = X.t;
  y.shape[1] = 6;
  EXPECT_S2FT_ERROR(s2ft_forward_partial(cx.ctx, &slice, &X.t, &W.t, &y, nullptr), S2FT_ERR_INVALID_ARGUMENT, "y overlaps x");
}
TEST_F(ErrorFixture, ForwardMixedDtypes) {
  HostMatrix y(S2FT_BF16, 4, 6);
  EXPECT_S2FT_ERROR(s2ft_forward_partial(cx.ctx, &slice, &X.t, &W.t, &y.t, nullptr), S2FT_ERR_DTYPE, "y is bf16 but w is f32");
}
TEST_F(ErrorFixture, ForwardBadSlice) {
  slice.count = -2;
  EXPECT_S2FT_ERROR(s2ft_forward_partial(cx.ctx, &slice, &X.t, &W.t, &Y.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "slice->count");
}

}  // namespace
