// s2ft_forward_partial and s2ft_backward_partial on CUDA against the CPU
// backend on the same host data: y and x_saved of the forward, dx and
// dw_slice of the backward, over f32/f16/bf16 (dw_slice also f32 for 16-bit
// inputs), column and row slices, contiguous and indexed (shuffled) lines,
// k = 1 / a third / all, odd sizes, compact and padded (strided) operands,
// every accumulate flag (onto non-zero data) and dx NULL; transposed and
// non-unit-stride views; and the device checks on CUDA contexts.
#include <cuda_runtime.h>

#include <algorithm>
#include <iterator>
#include <numeric>
#include <ostream>
#include <string>
#include <vector>

#include "gpu/gpu_support.hpp"

using s2ft_gpu::bit_equal;
using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;
using s2ft_gpu::settle;
using s2ft_gpu::max_rel_diff;
using s2ft_test::dtype_label;
using s2ft_test::HostMatrix;
using s2ft_test::Random;
using s2ft_test::shuffled_lines;
using s2ft_test::tolerance;

namespace {

HostMatrix poisoned(int32_t dtype, int64_t rows, int64_t cols) {
  HostMatrix m(dtype, rows, cols);
  m.poison();
  return m;
}

HostMatrix random_matrix(Random &rng, int32_t dtype, int64_t rows, int64_t cols) {
  HostMatrix m(dtype, rows, cols);
  m.fill_random(rng);
  return m;
}

// The transpose of h (same dtype, bits moved through the value; data is finite).
HostMatrix transposed(const HostMatrix &h) {
  HostMatrix t(h.dtype, h.cols, h.rows);
  for (int64_t i = 0; i < h.rows; ++i)
    for (int64_t j = 0; j < h.cols; ++j) t.set(j, i, h.get(i, j));
  return t;
}

struct Case {
  int64_t T, out, in, k;
  int32_t axis;
  bool indexed;
  int32_t dtype, dw_dtype;
};

std::string case_name(const Case &c) {
  return std::string(c.axis == S2FT_AXIS_COLUMNS ? "cols" : "rows") + (c.indexed ? "_idx_" : "_range_") +
         dtype_label(c.dtype) + "_dw" + dtype_label(c.dw_dtype) + "_T" + std::to_string(c.T) + "_o" +
         std::to_string(c.out) + "_i" + std::to_string(c.in) + "_k" + std::to_string(c.k);
}

const uint32_t kFlagSets[] = {0u, S2FT_ACCUMULATE_DW, S2FT_ACCUMULATE_DX, S2FT_ACCUMULATE_DW | S2FT_ACCUMULATE_DX};

// One case on the CUDA context g: the CPU backend's results first, then the
// same calls on device copies, compact and strided.
void check_case(const GpuContext &g, const Case &c) {
  const bool cols = c.axis == S2FT_AXIS_COLUMNS;
  Random rng(0x5eed + c.T * 7 + c.out * 131 + c.in * 17 + c.k * 3 + c.axis * 5 + c.indexed + c.dtype * 11 +
             c.dw_dtype * 13);
  const int64_t extent = cols ? c.in : c.out;
  std::vector<int64_t> idx;
  s2ft_slice slice{c.axis, 0, c.k, nullptr};
  if (c.indexed) {
    idx = shuffled_lines(rng, extent, c.k);
    slice.indices = idx.data();
  } else {
    slice.begin = rng.below(extent - c.k + 1);
  }
  const int64_t xs_cols = cols ? c.k : c.in;
  const int64_t dw_rows = cols ? c.out : c.k, dw_cols = cols ? c.k : c.in;

  const HostMatrix W = random_matrix(rng, c.dtype, c.out, c.in), X = random_matrix(rng, c.dtype, c.T, c.in),
                   DY = random_matrix(rng, c.dtype, c.T, c.out);
  // Non-zero starting values for the accumulating flags.
  const HostMatrix DX0 = random_matrix(rng, c.dtype, c.T, c.in), DW0 = random_matrix(rng, c.dw_dtype, dw_rows, dw_cols);

  // The CPU backend's results: the reference.
  s2ft_test::Context cpu;
  HostMatrix Y = poisoned(c.dtype, c.T, c.out), XS = poisoned(c.dtype, c.T, xs_cols);
  ASSERT_S2FT_OK(s2ft_forward_partial(cpu.ctx, &slice, &X.t, &W.t, &Y.t, &XS.t));
  const HostMatrix &XIN = cols ? XS : X;
  std::vector<HostMatrix> ref_dx, ref_dw;
  for (uint32_t flags : kFlagSets) {
    HostMatrix dx = (flags & S2FT_ACCUMULATE_DX) ? DX0 : poisoned(c.dtype, c.T, c.in);
    HostMatrix dw = (flags & S2FT_ACCUMULATE_DW) ? DW0 : poisoned(c.dw_dtype, dw_rows, dw_cols);
    ASSERT_S2FT_OK(s2ft_backward_partial(cpu.ctx, &slice, &W.t, &XIN.t, &DY.t, &dx.t, &dw.t, flags));
    ref_dx.push_back(dx);
    ref_dw.push_back(dw);
  }

  for (int64_t pad : {0, 5}) {  // compact, then every operand with row stride = cols + 5
    SCOPED_TRACE(pad == 0 ? "compact operands" : "strided operands (row stride > cols)");
    auto ld = [pad](int64_t n) { return pad == 0 ? -1 : n + pad; };
    DeviceMatrix dW(W, ld(c.in)), dX(X, ld(c.in)), dDY(DY, ld(c.out));
    DeviceMatrix dY(c.dtype, c.T, c.out, ld(c.out)), dXS(c.dtype, c.T, xs_cols, ld(xs_cols));
    settle();
    ASSERT_S2FT_OK(s2ft_forward_partial(g.ctx, &slice, &dX.t, &dW.t, &dY.t, &dXS.t));
    g.sync();
    EXPECT_LE(max_rel_diff(dY.download(), Y), tolerance(c.dtype)) << "y";
    EXPECT_TRUE(bit_equal(dXS.download(), XS)) << "x_saved is not the bytes of the CPU's";

    {  // x_saved NULL: only y
      DeviceMatrix dY2(c.dtype, c.T, c.out, ld(c.out));
      settle();
      ASSERT_S2FT_OK(s2ft_forward_partial(g.ctx, &slice, &dX.t, &dW.t, &dY2.t, nullptr));
      g.sync();
      EXPECT_LE(max_rel_diff(dY2.download(), Y), tolerance(c.dtype)) << "y without x_saved";
    }

    const DeviceMatrix &dXIN = cols ? dXS : dX;  // the GPU's own saved slice for columns
    for (size_t f = 0; f < std::size(kFlagSets); ++f) {
      const uint32_t flags = kFlagSets[f];
      SCOPED_TRACE("flags " + std::to_string(flags));
      DeviceMatrix ddx(c.dtype, c.T, c.in, ld(c.in)), ddw(c.dw_dtype, dw_rows, dw_cols, ld(dw_cols));
      if (flags & S2FT_ACCUMULATE_DX) ddx.upload(DX0);
      if (flags & S2FT_ACCUMULATE_DW) ddw.upload(DW0);
      settle();
      ASSERT_S2FT_OK(s2ft_backward_partial(g.ctx, &slice, &dW.t, &dXIN.t, &dDY.t, &ddx.t, &ddw.t, flags));
      g.sync();
      EXPECT_LE(max_rel_diff(ddx.download(), ref_dx[f]), tolerance(c.dtype)) << "dx";
      EXPECT_LE(max_rel_diff(ddw.download(), ref_dw[f]), tolerance(c.dw_dtype)) << "dw_slice";
    }

    {  // dx NULL: only the weight gradient (accumulated onto DW0)
      DeviceMatrix ddw(DW0, ld(dw_cols));
      settle();
      ASSERT_S2FT_OK(
          s2ft_backward_partial(g.ctx, &slice, &dW.t, &dXIN.t, &dDY.t, nullptr, &ddw.t, S2FT_ACCUMULATE_DW));
      g.sync();
      EXPECT_LE(max_rel_diff(ddw.download(), ref_dw[1]), tolerance(c.dw_dtype)) << "dw_slice with dx NULL";
    }
  }
}

// One test per (dtypes, axis, lines mode); each runs every shape and k, so a
// test program start (and a CUDA context) is paid 20 times, not once per case.
struct Group {
  int32_t dtype, dw_dtype, axis;
  bool indexed;
};

void PrintTo(const Group &g, std::ostream *os) {
  *os << (g.axis == S2FT_AXIS_COLUMNS ? "columns" : "rows") << (g.indexed ? " indexed " : " range ")
      << dtype_label(g.dtype) << " dw " << dtype_label(g.dw_dtype);
}

class GpuPartial : public ::testing::TestWithParam<Group> {};

TEST_P(GpuPartial, MatchesTheCpuBackend) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  const Group gr = GetParam();
  const int64_t shapes[][3] = {{1, 1, 1}, {7, 13, 29}, {16, 12, 33}, {33, 17, 13}, {70, 130, 257}};
  for (const auto &s : shapes) {
    const int64_t extent = gr.axis == S2FT_AXIS_COLUMNS ? s[2] : s[1];
    std::vector<int64_t> ks{1, extent / 3, extent};  // k = 1, a third, all
    ks.erase(std::remove_if(ks.begin(), ks.end(), [](int64_t k) { return k < 1; }), ks.end());
    ks.erase(std::unique(ks.begin(), ks.end()), ks.end());
    for (int64_t k : ks) {
      const Case c{s[0], s[1], s[2], k, gr.axis, gr.indexed, gr.dtype, gr.dw_dtype};
      SCOPED_TRACE(case_name(c));
      check_case(g, c);
    }
  }
}

std::vector<Group> groups() {
  std::vector<Group> out;
  const int32_t dtypes[][2] = {{S2FT_F32, S2FT_F32},  {S2FT_F16, S2FT_F16}, {S2FT_F16, S2FT_F32},
                               {S2FT_BF16, S2FT_BF16}, {S2FT_BF16, S2FT_F32}};
  for (const auto &dt : dtypes)
    for (int32_t axis : {S2FT_AXIS_COLUMNS, S2FT_AXIS_ROWS})
      for (bool indexed : {false, true}) out.push_back(Group{dt[0], dt[1], axis, indexed});
  return out;
}

INSTANTIATE_TEST_SUITE_P(Slices, GpuPartial, ::testing::ValuesIn(groups()),
                         [](const ::testing::TestParamInfo<Group> &i) {
                           const Group &g = i.param;
                           return std::string(g.axis == S2FT_AXIS_COLUMNS ? "cols" : "rows") +
                                  (g.indexed ? "_idx_" : "_range_") + dtype_label(g.dtype) + "_dw" +
                                  dtype_label(g.dw_dtype);
                         });

// Views cuBLAS reads transposed (x and dy stored column-major: row stride 1)
// and views it cannot read at all (w with column stride 2, packed first),
// through both slice axes; the gathers read x and dy through those strides.
TEST(GpuPartialViews, TransposedAndNonUnitStrideOperands) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  for (int32_t dtype : {S2FT_F32, S2FT_BF16})
    for (int32_t axis : {S2FT_AXIS_COLUMNS, S2FT_AXIS_ROWS}) {
      SCOPED_TRACE(std::string(dtype_label(dtype)) + (axis == S2FT_AXIS_COLUMNS ? " columns" : " rows"));
      Random rng(404 + dtype * 2 + axis);
      const int64_t T = 19, out = 23, in = 31;
      const bool cols = axis == S2FT_AXIS_COLUMNS;
      const int64_t k = cols ? 7 : 6;
      std::vector<int64_t> idx = shuffled_lines(rng, cols ? in : out, k);
      const s2ft_slice slice{axis, 0, k, idx.data()};
      const HostMatrix W = random_matrix(rng, dtype, out, in), X = random_matrix(rng, dtype, T, in),
                       DY = random_matrix(rng, dtype, T, out);

      s2ft_test::Context cpu;
      HostMatrix Y = poisoned(dtype, T, out), XS = poisoned(dtype, T, cols ? k : in);
      HostMatrix DX = poisoned(dtype, T, in), DW = poisoned(S2FT_F32, cols ? out : k, cols ? k : in);
      ASSERT_S2FT_OK(s2ft_forward_partial(cpu.ctx, &slice, &X.t, &W.t, &Y.t, &XS.t));
      ASSERT_S2FT_OK(s2ft_backward_partial(cpu.ctx, &slice, &W.t, cols ? &XS.t : &X.t, &DY.t, &DX.t, &DW.t, 0));

      // x and dy: the transposes stored row-major (padded), viewed with strides {1, ld}.
      DeviceMatrix dXT(transposed(X), T + 3), dDYT(transposed(DY), T + 1);
      s2ft_tensor x = dXT.t, dy = dDYT.t;
      x.shape[0] = T, x.shape[1] = in, x.strides[0] = 1, x.strides[1] = dXT.ld;
      dy.shape[0] = T, dy.shape[1] = out, dy.strides[0] = 1, dy.strides[1] = dDYT.ld;
      // w: the even columns of an [out, 2 in] buffer whose odd columns are NaN.
      HostMatrix wide(dtype, out, 2 * in);
      wide.poison();
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) wide.set(o, 2 * i, W.get(o, i));
      DeviceMatrix dWide(wide);
      s2ft_tensor w = dWide.t;
      w.shape[1] = in, w.strides[1] = 2;

      DeviceMatrix dY(dtype, T, out), dXS(dtype, T, cols ? k : in), dDX(dtype, T, in),
          dDW(S2FT_F32, cols ? out : k, cols ? k : in);
      settle();
      ASSERT_S2FT_OK(s2ft_forward_partial(g.ctx, &slice, &x, &w, &dY.t, &dXS.t));
      // Rows: x_in is the strided full x; columns: the saved slice.
      ASSERT_S2FT_OK(s2ft_backward_partial(g.ctx, &slice, &w, cols ? &dXS.t : &x, &dy, &dDX.t, &dDW.t, 0));
      g.sync();
      EXPECT_LE(max_rel_diff(dY.download(), Y), tolerance(dtype)) << "y";
      EXPECT_TRUE(bit_equal(dXS.download(), XS)) << "x_saved";
      EXPECT_LE(max_rel_diff(dDX.download(), DX), tolerance(dtype)) << "dx";
      EXPECT_LE(max_rel_diff(dDW.download(), DW), tolerance(S2FT_F32)) << "dw_slice";
    }
}

// ---- device checks on CUDA contexts ------------------------------------------------------

struct ErrorFixture {
  GpuContext g;
  Random rng{17};
  HostMatrix hx = random_matrix(rng, S2FT_F32, 4, 8), hw = random_matrix(rng, S2FT_F32, 3, 8),
             hdy = random_matrix(rng, S2FT_F32, 4, 3);
  DeviceMatrix x{hx}, w{hw}, dy{hdy};
  DeviceMatrix y{S2FT_F32, 4, 3}, xs{S2FT_F32, 4, 2}, dx{S2FT_F32, 4, 8}, dw{S2FT_F32, 3, 2};
  HostMatrix hy{S2FT_F32, 4, 3}, hxs{S2FT_F32, 4, 2}, hdx{S2FT_F32, 4, 8}, hdw{S2FT_F32, 3, 2};
  const s2ft_slice slice{S2FT_AXIS_COLUMNS, 1, 2, nullptr};
};

TEST(GpuPartialErrors, CpuTensorOnACudaContext) {
  S2FT_REQUIRE_GPU();
  ErrorFixture f;
  ASSERT_NE(f.g.ctx, nullptr);
  const char *ctx_dev = " is on the CPU but the context is on CUDA device 0";
  EXPECT_S2FT_ERROR(s2ft_forward_partial(f.g.ctx, &f.slice, &f.hx.t, &f.w.t, &f.y.t, nullptr), S2FT_ERR_DEVICE,
                    std::string("x") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_forward_partial(f.g.ctx, &f.slice, &f.x.t, &f.hw.t, &f.y.t, nullptr), S2FT_ERR_DEVICE,
                    std::string("w") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_forward_partial(f.g.ctx, &f.slice, &f.x.t, &f.w.t, &f.hy.t, nullptr), S2FT_ERR_DEVICE,
                    std::string("y") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_forward_partial(f.g.ctx, &f.slice, &f.x.t, &f.w.t, &f.y.t, &f.hxs.t), S2FT_ERR_DEVICE,
                    std::string("x_saved") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(f.g.ctx, &f.slice, &f.w.t, &f.xs.t, &f.hdy.t, &f.dx.t, &f.dw.t, 0),
                    S2FT_ERR_DEVICE, std::string("dy") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(f.g.ctx, &f.slice, &f.w.t, &f.xs.t, &f.dy.t, &f.hdx.t, &f.dw.t, 0),
                    S2FT_ERR_DEVICE, std::string("dx") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(f.g.ctx, &f.slice, &f.w.t, &f.xs.t, &f.dy.t, &f.dx.t, &f.hdw.t, 0),
                    S2FT_ERR_DEVICE, std::string("dw_slice") + ctx_dev);
  // The valid call still works on the same context.
  settle();
  ASSERT_S2FT_OK(s2ft_forward_partial(f.g.ctx, &f.slice, &f.x.t, &f.w.t, &f.y.t, &f.xs.t));
  ASSERT_S2FT_OK(s2ft_backward_partial(f.g.ctx, &f.slice, &f.w.t, &f.xs.t, &f.dy.t, &f.dx.t, &f.dw.t, 0));
  f.g.sync();
}

TEST(GpuPartialErrors, TensorOnAnotherDeviceId) {
  S2FT_REQUIRE_GPU();
  ErrorFixture f;
  ASSERT_NE(f.g.ctx, nullptr);
  auto on1 = [](const DeviceMatrix &m) {
    s2ft_tensor t = m.t;
    t.device.id = 1;  // the same memory, described as another device's
    return t;
  };
  s2ft_tensor x1 = on1(f.x), w1 = on1(f.w), xs1 = on1(f.xs), dy1 = on1(f.dy), dw1 = on1(f.dw), dx1 = on1(f.dx);
  const char *ctx_dev = " is on CUDA device 1 but the context is on CUDA device 0";
  EXPECT_S2FT_ERROR(s2ft_forward_partial(f.g.ctx, &f.slice, &x1, &f.w.t, &f.y.t, nullptr), S2FT_ERR_DEVICE,
                    std::string("x") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_forward_partial(f.g.ctx, &f.slice, &f.x.t, &w1, &f.y.t, nullptr), S2FT_ERR_DEVICE,
                    std::string("w") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_forward_partial(f.g.ctx, &f.slice, &f.x.t, &f.w.t, &f.y.t, &xs1), S2FT_ERR_DEVICE,
                    std::string("x_saved") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(f.g.ctx, &f.slice, &f.w.t, &xs1, &f.dy.t, &f.dx.t, &f.dw.t, 0),
                    S2FT_ERR_DEVICE, std::string("x_in") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(f.g.ctx, &f.slice, &f.w.t, &f.xs.t, &dy1, &f.dx.t, &f.dw.t, 0),
                    S2FT_ERR_DEVICE, std::string("dy") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(f.g.ctx, &f.slice, &f.w.t, &f.xs.t, &f.dy.t, &dx1, &f.dw.t, 0),
                    S2FT_ERR_DEVICE, std::string("dx") + ctx_dev);
  EXPECT_S2FT_ERROR(s2ft_backward_partial(f.g.ctx, &f.slice, &f.w.t, &f.xs.t, &f.dy.t, &f.dx.t, &dw1, 0),
                    S2FT_ERR_DEVICE, std::string("dw_slice") + ctx_dev);
}

// CUDA tensors handed to a CPU context are refused the same way.
TEST(GpuPartialErrors, CudaTensorOnACpuContext) {
  S2FT_REQUIRE_GPU();
  ErrorFixture f;
  s2ft_test::Context cpu;
  EXPECT_S2FT_ERROR(s2ft_forward_partial(cpu.ctx, &f.slice, &f.x.t, &f.hw.t, &f.hy.t, nullptr), S2FT_ERR_DEVICE,
                    "x is on CUDA device 0 but the context is on the CPU");
  EXPECT_S2FT_ERROR(s2ft_backward_partial(cpu.ctx, &f.slice, &f.hw.t, &f.hxs.t, &f.dy.t, &f.hdx.t, &f.hdw.t, 0),
                    S2FT_ERR_DEVICE, "dy is on CUDA device 0 but the context is on the CPU");
}

}  // namespace
