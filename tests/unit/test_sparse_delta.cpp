// Sparse deltas on the CPU: the forward y += scale * x D^T against a float64
// reference (odd shapes, empty rows, nnz 0, every dtype, strided views),
// every validation error of the hostile CSR arrays and of the forward,
// s2ft_sparse_delta_from_adapter against the adapter's dense delta (base
// order and permuted, column and row targets), and the delta-path setting
// of a CPU context.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <tuple>
#include <vector>

#include "support/csr.hpp"
#include "support/target_geometry.hpp"
#include "support/test_util.hpp"

using namespace s2ft_test;

namespace {

// want = y0 + scale * x D^T in float64.
std::vector<double> reference(const Csr &c, double scale, const HostMatrix &x, const HostMatrix &y0) {
  std::vector<double> want = y0.to_double();
  for (int64_t t = 0; t < x.rows; ++t)
    for (int64_t r = 0; r < c.rows; ++r) {
      double acc = 0.0;
      for (int64_t e = c.offsets[static_cast<size_t>(r)]; e < c.offsets[static_cast<size_t>(r + 1)]; ++e)
        acc += static_cast<double>(c.values[static_cast<size_t>(e)]) * x.get(t, c.indices[static_cast<size_t>(e)]);
      want[static_cast<size_t>(t * c.rows + r)] += scale * acc;
    }
  return want;
}

// ---- forward ------------------------------------------------------------------

class SparseForward : public ::testing::TestWithParam<int32_t> {};

TEST_P(SparseForward, MatchesFloat64Reference) {
  const int32_t dt = GetParam();
  Context cx;
  Random rng(11 + static_cast<uint64_t>(dt));
  struct Shape {
    int64_t T, rows, cols;
    double density;
  };
  for (const Shape sh : {Shape{7, 13, 11, 0.3}, Shape{1, 5, 17, 0.5}, Shape{9, 1, 3, 1.0}, Shape{4, 17, 1, 0.6},
                         Shape{3, 6, 29, 0.05}}) {
    const Csr c = random_csr(rng, sh.rows, sh.cols, sh.density, {0, sh.rows / 2});
    DeltaOwner d;
    ASSERT_S2FT_OK(create_sparse_delta(cx.ctx, c, &d.d));
    int64_t r = -1, k = -1, nnz = -1;
    ASSERT_S2FT_OK(s2ft_sparse_delta_info(d.d, &r, &k, &nnz));
    EXPECT_EQ(r, sh.rows);
    EXPECT_EQ(k, sh.cols);
    EXPECT_EQ(nnz, c.nnz());
    for (const double scale : {1.0, -0.7, 2.5}) {
      HostMatrix x(dt, sh.T, sh.cols), y(dt, sh.T, sh.rows);
      x.fill_random(rng);
      y.fill_random(rng);
      const std::vector<double> want = reference(c, scale, x, y);
      ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, d.d, scale, &x.t, &y.t));
      EXPECT_LE(rel_error(y.to_double(), want), tolerance(dt))
          << dtype_label(dt) << " T " << sh.T << " D [" << sh.rows << ", " << sh.cols << "] scale " << scale;
    }
  }
}

TEST_P(SparseForward, StridedViews) {
  const int32_t dt = GetParam();
  Context cx;
  Random rng(21);
  const Csr c = random_csr(rng, 9, 7, 0.4, {3});
  DeltaOwner d;
  ASSERT_S2FT_OK(create_sparse_delta(cx.ctx, c, &d.d));
  // x is the first 7 columns of a [5, 10] buffer; y the first 9 of a [5, 12] one.
  HostMatrix xb(dt, 5, 10), yb(dt, 5, 12);
  xb.fill_random(rng);
  yb.fill_random(rng);
  HostMatrix x(dt, 5, 7), y0(dt, 5, 9);
  for (int64_t i = 0; i < 5; ++i) {
    for (int64_t j = 0; j < 7; ++j) x.set(i, j, xb.get(i, j));
    for (int64_t j = 0; j < 9; ++j) y0.set(i, j, yb.get(i, j));
  }
  s2ft_tensor xv = xb.t, yv = yb.t;
  xv.shape[1] = 7;
  yv.shape[1] = 9;
  const HostMatrix before = yb;
  ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, d.d, 0.5, &xv, &yv));
  const std::vector<double> want = reference(c, 0.5, x, y0);
  HostMatrix got(dt, 5, 9);
  for (int64_t i = 0; i < 5; ++i)
    for (int64_t j = 0; j < 9; ++j) got.set(i, j, yb.get(i, j));
  EXPECT_LE(rel_error(got.to_double(), want), tolerance(dt));
  for (int64_t i = 0; i < 5; ++i)  // the padding columns are untouched
    for (int64_t j = 9; j < 12; ++j) EXPECT_EQ(yb.get(i, j), before.get(i, j));
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SparseForward, ::testing::Values(S2FT_F32, S2FT_F16, S2FT_BF16),
                         [](const ::testing::TestParamInfo<int32_t> &i) { return std::string(dtype_label(i.param)); });

TEST(SparseDelta, EmptyDeltaLeavesYUnchanged) {
  Context cx;
  Random rng(3);
  Csr c;
  c.rows = 6;
  c.cols = 4;
  c.offsets.assign(7, 0);
  DeltaOwner d;
  ASSERT_S2FT_OK(s2ft_sparse_delta_create(cx.ctx, 6, 4, c.offsets.data(), nullptr, nullptr, 0, &d.d));
  int64_t nnz = -1;
  ASSERT_S2FT_OK(s2ft_sparse_delta_info(d.d, nullptr, nullptr, &nnz));
  EXPECT_EQ(nnz, 0);
  HostMatrix x(S2FT_BF16, 3, 4), y(S2FT_BF16, 3, 6);
  x.fill_random(rng);
  y.fill_random(rng);
  const HostMatrix before = y;
  ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, d.d, 3.0, &x.t, &y.t));
  EXPECT_EQ(y.bytes, before.bytes);
}

TEST(SparseDelta, EmptyShapes) {
  Context cx;
  const int64_t zero[1] = {0};
  DeltaOwner d0;
  ASSERT_S2FT_OK(s2ft_sparse_delta_create(cx.ctx, 0, 0, zero, nullptr, nullptr, 0, &d0.d));
  HostMatrix x(S2FT_F32, 4, 0), y(S2FT_F32, 4, 0);
  ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, d0.d, 1.0, &x.t, &y.t));
  // No rows of x: nothing to do.
  Random rng(4);
  const Csr c = random_csr(rng, 3, 5, 0.5);
  DeltaOwner d;
  ASSERT_S2FT_OK(create_sparse_delta(cx.ctx, c, &d.d));
  HostMatrix x2(S2FT_F32, 0, 5), y2(S2FT_F32, 0, 3);
  ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &x2.t, &y2.t));
}

TEST(SparseDelta, DestroyNullAndHandleCount) {
  s2ft_sparse_delta_destroy(nullptr);
  const int64_t before = s2ft_live_handles();
  {
    Context cx;
    Random rng(5);
    const Csr c = random_csr(rng, 4, 4, 0.5);
    DeltaOwner d;
    ASSERT_S2FT_OK(create_sparse_delta(cx.ctx, c, &d.d));
    EXPECT_EQ(s2ft_live_handles(), before + 2);
  }
  EXPECT_EQ(s2ft_live_handles(), before);
}

// ---- validation of the CSR arrays ------------------------------------------------

class SparseCreateErrors : public ::testing::Test {
 protected:
  Context cx;
  // [3, 4]: row 0 {0, 2}, row 1 {}, row 2 {1, 3}.
  std::vector<int64_t> offsets{0, 2, 2, 4};
  std::vector<int64_t> indices{0, 2, 1, 3};
  std::vector<float> values{1.0f, -2.0f, 0.5f, 3.0f};
  int64_t rows = 3, cols = 4, nnz = 4;
  s2ft_sparse_delta *out = reinterpret_cast<s2ft_sparse_delta *>(&offsets);  // not NULL: must be reset
  s2ft_status call() {
    out = reinterpret_cast<s2ft_sparse_delta *>(&offsets);
    return s2ft_sparse_delta_create(cx.ctx, rows, cols, offsets.data(), indices.data(), values.data(), nnz, &out);
  }
  void TearDown() override {
    if (out != reinterpret_cast<s2ft_sparse_delta *>(&offsets)) s2ft_sparse_delta_destroy(out);
  }
};

#define EXPECT_CREATE_ERROR(needle)                                  \
  do {                                                               \
    EXPECT_S2FT_ERROR(call(), S2FT_ERR_INVALID_ARGUMENT, needle);    \
    EXPECT_EQ(out, nullptr);                                         \
  } while (0)

TEST_F(SparseCreateErrors, ValidArraysSucceed) {
  ASSERT_S2FT_OK(call());
  ASSERT_NE(out, nullptr);
}

TEST_F(SparseCreateErrors, NullArguments) {
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_create(cx.ctx, rows, cols, offsets.data(), indices.data(), values.data(), nnz,
                                             nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
  s2ft_sparse_delta *d = reinterpret_cast<s2ft_sparse_delta *>(&rows);
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_create(nullptr, rows, cols, offsets.data(), indices.data(), values.data(), nnz,
                                             &d),
                    S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_EQ(d, nullptr);
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_create(cx.ctx, rows, cols, nullptr, indices.data(), values.data(), nnz, &d),
                    S2FT_ERR_INVALID_ARGUMENT, "row_offsets is NULL");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_create(cx.ctx, rows, cols, offsets.data(), nullptr, values.data(), nnz, &d),
                    S2FT_ERR_INVALID_ARGUMENT, "col_indices is NULL");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_create(cx.ctx, rows, cols, offsets.data(), indices.data(), nullptr, nnz, &d),
                    S2FT_ERR_INVALID_ARGUMENT, "values is NULL");
  EXPECT_EQ(d, nullptr);
}

TEST_F(SparseCreateErrors, NegativeSizes) {
  rows = -1;
  EXPECT_CREATE_ERROR("rows -1 is negative");
  rows = 3;
  cols = -2;
  EXPECT_CREATE_ERROR("cols -2 is negative");
  cols = 4;
  nnz = -3;
  EXPECT_CREATE_ERROR("nnz -3 is negative");
}

TEST_F(SparseCreateErrors, HugeSizes) {
  rows = std::numeric_limits<int64_t>::max();
  EXPECT_CREATE_ERROR("too large");
  rows = 3;
  nnz = std::numeric_limits<int64_t>::max();
  EXPECT_CREATE_ERROR("too large");
}

TEST_F(SparseCreateErrors, MoreEntriesThanTheShapeHolds) {
  cols = 1;
  EXPECT_CREATE_ERROR("more than rows * cols");
  cols = 0;
  EXPECT_CREATE_ERROR("more than rows * cols");
}

TEST_F(SparseCreateErrors, BadOffsets) {
  offsets[0] = 1;
  EXPECT_CREATE_ERROR("row_offsets[0] is 1");
  offsets = {0, 3, 2, 4};
  EXPECT_CREATE_ERROR("row_offsets[2] = 2 is below row_offsets[1] = 3");
  offsets = {0, 2, 9, 4};
  EXPECT_CREATE_ERROR("row_offsets[2] = 9 is beyond nnz = 4");
  offsets = {0, 2, 2, 3};
  EXPECT_CREATE_ERROR("row_offsets[rows] = 3 is not nnz = 4");
  offsets = {-1, 2, 2, 4};
  EXPECT_CREATE_ERROR("row_offsets[0] is -1");
}

TEST_F(SparseCreateErrors, BadIndices) {
  indices = {0, 4, 1, 3};
  EXPECT_CREATE_ERROR("col_indices[1] = 4 (row 0) is out of range [0, 4)");
  indices = {0, 2, -1, 3};
  EXPECT_CREATE_ERROR("col_indices[2] = -1 (row 2) is out of range");
  indices = {2, 2, 1, 3};
  EXPECT_CREATE_ERROR("col_indices[1] = 2 (row 0) does not ascend strictly");
  indices = {0, 2, 3, 1};
  EXPECT_CREATE_ERROR("col_indices[3] = 1 (row 2) does not ascend strictly");
  // Ascending across a row boundary is not required.
  indices = {1, 3, 0, 2};
  ASSERT_S2FT_OK(call());
}

TEST_F(SparseCreateErrors, ValuesNotFinite) {
  values[2] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_CREATE_ERROR("values[2] is not finite");
  values[2] = 0.5f;
  values[3] = -std::numeric_limits<float>::infinity();
  EXPECT_CREATE_ERROR("values[3] is not finite");
}

// ---- validation of the forward -------------------------------------------------------

class SparseForwardErrors : public ::testing::Test {
 protected:
  Context cx;
  DeltaOwner d;  // [3, 4]
  HostMatrix x{S2FT_F32, 2, 4}, y{S2FT_F32, 2, 3};
  void SetUp() override {
    const int64_t offsets[4] = {0, 1, 1, 2};
    const int64_t indices[2] = {3, 0};
    const float values[2] = {1.0f, 2.0f};
    ASSERT_S2FT_OK(s2ft_sparse_delta_create(cx.ctx, 3, 4, offsets, indices, values, 2, &d.d));
    Random rng(6);
    x.fill_random(rng);
    y.fill_random(rng);
  }
};

TEST_F(SparseForwardErrors, Succeeds) { ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &x.t, &y.t)); }

TEST_F(SparseForwardErrors, Nulls) {
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(nullptr, d.d, 1.0, &x.t, &y.t), S2FT_ERR_INVALID_ARGUMENT, "ctx");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, nullptr, 1.0, &x.t, &y.t), S2FT_ERR_INVALID_ARGUMENT, "delta");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, nullptr, &y.t), S2FT_ERR_INVALID_ARGUMENT, "x");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &x.t, nullptr), S2FT_ERR_INVALID_ARGUMENT, "y");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_info(nullptr, nullptr, nullptr, nullptr), S2FT_ERR_INVALID_ARGUMENT, "delta");
}

TEST_F(SparseForwardErrors, ScaleNotFinite) {
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, NAN, &x.t, &y.t), S2FT_ERR_INVALID_ARGUMENT, "scale");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, INFINITY, &x.t, &y.t), S2FT_ERR_INVALID_ARGUMENT, "scale");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, 1e300, &x.t, &y.t), S2FT_ERR_INVALID_ARGUMENT,
                    "f32 range");
}

TEST_F(SparseForwardErrors, Shapes) {
  HostMatrix x5(S2FT_F32, 2, 5), y4(S2FT_F32, 2, 4), y3(S2FT_F32, 3, 3);
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &x5.t, &y.t), S2FT_ERR_SHAPE, "x");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &x.t, &y4.t), S2FT_ERR_SHAPE, "y");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &x.t, &y3.t), S2FT_ERR_SHAPE, "y");
}

TEST_F(SparseForwardErrors, DtypeMismatch) {
  HostMatrix yb(S2FT_BF16, 2, 3);
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &x.t, &yb.t), S2FT_ERR_DTYPE, "y");
}

TEST_F(SparseForwardErrors, WrongDevice) {
  x.t.device.type = S2FT_DEVICE_CUDA;
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &x.t, &y.t), S2FT_ERR_DEVICE, "x");
}

TEST_F(SparseForwardErrors, OutputOverlapsInput) {
  // x is columns [0, 4) and y columns [2, 5) of one [2, 5] buffer.
  HostMatrix big(S2FT_F32, 2, 5);
  s2ft_tensor xv = big.t, yv = big.t;
  xv.shape[1] = 4;
  yv.shape[1] = 3;
  yv.byte_offset = 2 * sizeof(float);
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &xv, &yv), S2FT_ERR_INVALID_ARGUMENT, "y");
}

// ---- from_adapter ---------------------------------------------------------------------

const s2ft_model_shape kShape{2, 13, 4, 2, 3, 11};  // GQA, odd sizes
const int32_t kLayer = 1;

void weight_shape(int32_t t, int64_t *r, int64_t *c) { s2ft_test::weight_shape(kShape, t, r, c); }

// Where base line `line` of the target sits in the permuted weight.
int64_t position(const s2ft_selection *sel, int32_t target, int64_t line) {
  const int64_t p = permuted_position(sel, kLayer, target, line, kShape.head_dim);
  EXPECT_GE(p, 0) << "unit of line " << line << " not in the permutation";
  return p < 0 ? 0 : p;
}

class FromAdapter : public ::testing::TestWithParam<std::tuple<int32_t, bool>> {};

// With x = I (f32) and y = 0, the forward writes y = D^T exactly (each
// element is one product by 1 plus exact zeros), so the dense delta can be
// read back bit for bit and compared with the adapter's lines and delta.
TEST_P(FromAdapter, EqualsTheDenseDelta) {
  const int32_t t = std::get<0>(GetParam());
  const bool permuted = std::get<1>(GetParam());
  Context cx;
  Selection sel;
  if (permuted) {
    // Per layer (layer-major): O trains KV group 1, V KV head 1, and
    // channels scattered over d_ff, so every permutation moves lines.
    const int64_t o[2] = {1, 1}, v[2] = {1, 1}, down[8] = {2, 5, 9, 10, 0, 6, 7, 8}, up[6] = {7, 3, 8, 10, 1, 4};
    const int64_t *units[4] = {o, v, down, up};
    const int64_t n_units[4] = {1, 1, 4, 3};
    ASSERT_S2FT_OK(s2ft_selection_create(&kShape, S2FT_HEADS_BY_GROUP, units, n_units, &sel.sel));
  }
  int64_t rows = 0, cols = 0;
  weight_shape(t, &rows, &cols);
  const int64_t len = by_columns(t) ? rows : cols;
  const std::vector<int64_t> lines = {5, 1, 3, 0};  // given unsorted
  const int64_t k = static_cast<int64_t>(lines.size());
  AdapterOwner ad;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "sparse", 1.0, &ad.a));
  Random rng(31 + static_cast<uint64_t>(t));
  HostMatrix delta = by_columns(t) ? HostMatrix(S2FT_F32, len, k) : HostMatrix(S2FT_F32, k, len);
  delta.fill_random(rng);
  ASSERT_S2FT_OK(s2ft_adapter_set(ad.a, kLayer, t, lines.data(), k, &delta.t, nullptr));

  DeltaOwner d;
  ASSERT_S2FT_OK(s2ft_sparse_delta_from_adapter(cx.ctx, ad.a, kLayer, t, sel.sel, &d.d));
  int64_t r = 0, c = 0, nnz = 0;
  ASSERT_S2FT_OK(s2ft_sparse_delta_info(d.d, &r, &c, &nnz));
  EXPECT_EQ(r, rows);
  EXPECT_EQ(c, cols);
  EXPECT_EQ(nnz, k * len);

  // want[rr][cc]: the dense delta in the weight's (possibly permuted) order.
  std::vector<float> want(static_cast<size_t>(rows * cols), 0.0f);
  for (int64_t j = 0; j < k; ++j) {
    const int64_t p = position(sel.sel, t, lines[static_cast<size_t>(j)]);
    for (int64_t i = 0; i < len; ++i) {
      const float v = by_columns(t) ? delta.get(i, j) : delta.get(j, i);
      if (by_columns(t)) want[static_cast<size_t>(i * cols + p)] = v;
      else want[static_cast<size_t>(p * cols + i)] = v;
    }
  }
  HostMatrix eye(S2FT_F32, cols, cols), y(S2FT_F32, cols, rows);
  for (int64_t i = 0; i < cols; ++i) eye.set(i, i, 1.0f);
  ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, d.d, 1.0, &eye.t, &y.t));
  for (int64_t rr = 0; rr < rows; ++rr)
    for (int64_t cc = 0; cc < cols; ++cc)
      EXPECT_EQ(y.get(cc, rr), want[static_cast<size_t>(rr * cols + cc)]) << "D[" << rr << ", " << cc << "]";
}

using TargetCase = std::tuple<int32_t, bool>;
std::string target_case_name(const ::testing::TestParamInfo<TargetCase> &i) {
  static const char *const names[] = {"O", "V", "DOWN", "UP"};
  return std::string(names[std::get<0>(i.param)]) + (std::get<1>(i.param) ? "_permuted" : "_base_order");
}
INSTANTIATE_TEST_SUITE_P(Targets, FromAdapter,
                         ::testing::Combine(::testing::Values(S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN,
                                                              S2FT_TARGET_UP),
                                            ::testing::Bool()),
                         target_case_name);

TEST(SparseFromAdapter, EntryWithoutLinesIsEmpty) {
  Context cx;
  AdapterOwner ad;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "", 1.0, &ad.a));
  DeltaOwner d;
  ASSERT_S2FT_OK(s2ft_sparse_delta_from_adapter(cx.ctx, ad.a, 0, S2FT_TARGET_DOWN, nullptr, &d.d));
  int64_t r = 0, c = 0, nnz = -1;
  ASSERT_S2FT_OK(s2ft_sparse_delta_info(d.d, &r, &c, &nnz));
  EXPECT_EQ(r, kShape.d_model);
  EXPECT_EQ(c, kShape.d_ff);
  EXPECT_EQ(nnz, 0);
}

TEST(SparseFromAdapter, Errors) {
  Context cx;
  AdapterOwner ad;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "", 1.0, &ad.a));
  s2ft_sparse_delta *d = reinterpret_cast<s2ft_sparse_delta *>(&ad);
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_from_adapter(cx.ctx, ad.a, 0, S2FT_TARGET_O, nullptr, nullptr),
                    S2FT_ERR_INVALID_ARGUMENT, "out is NULL");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_from_adapter(nullptr, ad.a, 0, S2FT_TARGET_O, nullptr, &d),
                    S2FT_ERR_INVALID_ARGUMENT, "ctx is NULL");
  EXPECT_EQ(d, nullptr);
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_from_adapter(cx.ctx, nullptr, 0, S2FT_TARGET_O, nullptr, &d),
                    S2FT_ERR_INVALID_ARGUMENT, "adapter is NULL");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_from_adapter(cx.ctx, ad.a, 2, S2FT_TARGET_O, nullptr, &d),
                    S2FT_ERR_INVALID_ARGUMENT, "layer");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_from_adapter(cx.ctx, ad.a, -1, S2FT_TARGET_O, nullptr, &d),
                    S2FT_ERR_INVALID_ARGUMENT, "layer");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_from_adapter(cx.ctx, ad.a, 0, S2FT_NUM_WEIGHTS, nullptr, &d), S2FT_ERR_INVALID_ARGUMENT,
                    "target");
  s2ft_model_shape other = kShape;
  other.d_ff = 12;
  s2ft_select_options o;
  ASSERT_S2FT_OK(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION));
  Selection sel;
  ASSERT_S2FT_OK(s2ft_select(cx.ctx, &other, &o, nullptr, &sel.sel));
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_from_adapter(cx.ctx, ad.a, 0, S2FT_TARGET_DOWN, sel.sel, &d),
                    S2FT_ERR_INVALID_ARGUMENT, "different model shape");
  EXPECT_EQ(d, nullptr);
}

// ---- the delta path on a CPU context ----------------------------------------------------

TEST(DeltaPath, CpuContext) {
  Context cx;
  ASSERT_S2FT_OK(s2ft_context_set_delta_path(cx.ctx, S2FT_DELTA_PATH_DENSE));
  ASSERT_S2FT_OK(s2ft_context_set_delta_path(cx.ctx, S2FT_DELTA_PATH_AUTO));
  EXPECT_S2FT_ERROR(s2ft_context_set_delta_path(cx.ctx, S2FT_DELTA_PATH_SPARSE), S2FT_ERR_UNSUPPORTED, "CUDA");
  EXPECT_S2FT_ERROR(s2ft_context_set_delta_path(cx.ctx, 3), S2FT_ERR_INVALID_ARGUMENT, "got 3");
  EXPECT_S2FT_ERROR(s2ft_context_set_delta_path(cx.ctx, -1), S2FT_ERR_INVALID_ARGUMENT, "got -1");
  EXPECT_S2FT_ERROR(s2ft_context_set_delta_path(nullptr, S2FT_DELTA_PATH_AUTO), S2FT_ERR_INVALID_ARGUMENT, "ctx");
}

// DENSE and AUTO give the same bytes on the CPU (both are the dense path).
TEST(DeltaPath, CpuForwardMixedIsTheSameUnderEveryAcceptedPath) {
  Context cx;
  AdapterOwner ad;
  ASSERT_S2FT_OK(s2ft_adapter_create(&kShape, "", 1.0, &ad.a));
  Random rng(41);
  const int64_t lines[2] = {2, 7};
  HostMatrix delta(S2FT_F32, kShape.d_model, 2);
  delta.fill_random(rng);
  ASSERT_S2FT_OK(s2ft_adapter_set(ad.a, kLayer, S2FT_TARGET_DOWN, lines, 2, &delta.t, nullptr));
  HostMatrix w(S2FT_BF16, kShape.d_model, kShape.d_ff), x(S2FT_BF16, 20, kShape.d_ff);
  w.fill_random(rng);
  x.fill_random(rng);
  const s2ft_adapter *handles[1] = {ad.a};
  const int64_t offsets[3] = {0, 1, 20};
  const int32_t seg[2] = {0, 0};
  HostMatrix y1(S2FT_BF16, 20, kShape.d_model), y2(S2FT_BF16, 20, kShape.d_model);
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, handles, nullptr, 1,
                                            offsets, seg, 2, &y1.t));
  ASSERT_S2FT_OK(s2ft_context_set_delta_path(cx.ctx, S2FT_DELTA_PATH_DENSE));
  ASSERT_S2FT_OK(s2ft_adapter_forward_mixed(cx.ctx, kLayer, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, handles, nullptr, 1,
                                            offsets, seg, 2, &y2.t));
  EXPECT_EQ(y1.bytes, y2.bytes);
}

}  // namespace
