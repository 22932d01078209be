// Sparse deltas on CUDA (cusparseSpMM) against the CPU loop on the same host
// data: random CSRs with empty rows, nnz 0, every dtype, strided x and y,
// several scales; deltas from adapters read back bit-exactly; deltas and
// tensors on the wrong device.
#include <cuda_runtime.h>

#include <string>
#include <vector>

#include "gpu/gpu_support.hpp"
#include "support/csr.hpp"

using s2ft_gpu::DeviceMatrix;
using s2ft_gpu::GpuContext;
using namespace s2ft_test;

namespace {

// Every seventh row (3, 10, 17, ...) empty.
Csr random_csr_with_gaps(Random &rng, int64_t rows, int64_t cols, double density) {
  std::vector<int64_t> empty;
  for (int64_t r = 3; r < rows; r += 7) empty.push_back(r);
  return random_csr(rng, rows, cols, density, empty);
}

class GpuSparseForward : public ::testing::TestWithParam<int32_t> {};

TEST_P(GpuSparseForward, MatchesCpu) {
  S2FT_REQUIRE_GPU();
  const int32_t dt = GetParam();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  Context cx;
  Random rng(51 + static_cast<uint64_t>(dt));
  struct Shape {
    int64_t T, rows, cols;
    double density;
  };
  for (const Shape sh : {Shape{7, 13, 11, 0.3}, Shape{1, 45, 37, 0.2}, Shape{33, 300, 257, 0.02},
                         Shape{5, 1, 9, 1.0}, Shape{64, 129, 1, 0.5}, Shape{3, 20, 2100, 0.01}}) {
    const Csr c = random_csr_with_gaps(rng, sh.rows, sh.cols, sh.density);
    DeltaOwner dc, dg;
    ASSERT_S2FT_OK(create_sparse_delta(cx.ctx, c, &dc.d));
    ASSERT_S2FT_OK(create_sparse_delta(g.ctx, c, &dg.d));
    int64_t rows = 0, cols = 0, nnz = -1;
    ASSERT_S2FT_OK(s2ft_sparse_delta_info(dg.d, &rows, &cols, &nnz));
    EXPECT_EQ(rows, sh.rows);
    EXPECT_EQ(cols, sh.cols);
    EXPECT_EQ(nnz, c.nnz());
    for (const double scale : {1.0, -0.75}) {
      for (const bool strided : {false, true}) {
        HostMatrix x(dt, sh.T, sh.cols), y(dt, sh.T, sh.rows);
        x.fill_random(rng);
        y.fill_random(rng);
        DeviceMatrix dx(x, strided ? sh.cols + 3 : -1), dy(y, strided ? sh.rows + 2 : -1);
        ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, dc.d, scale, &x.t, &y.t));
        ASSERT_S2FT_OK(s2ft_sparse_delta_forward(g.ctx, dg.d, scale, &dx.t, &dy.t));
        g.sync();
        EXPECT_LE(s2ft_gpu::max_rel_diff(dy.download(), y), tolerance(dt))
            << dtype_label(dt) << " T " << sh.T << " D [" << sh.rows << ", " << sh.cols << "] scale " << scale
            << (strided ? " strided" : "");
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Dtypes, GpuSparseForward, ::testing::Values(S2FT_F32, S2FT_F16, S2FT_BF16),
                         [](const ::testing::TestParamInfo<int32_t> &i) { return std::string(dtype_label(i.param)); });

TEST(GpuSparseDelta, EmptyDeltaLeavesYUnchanged) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  const std::vector<int64_t> offsets(6, 0);
  DeltaOwner d;
  ASSERT_S2FT_OK(s2ft_sparse_delta_create(g.ctx, 5, 4, offsets.data(), nullptr, nullptr, 0, &d.d));
  Random rng(2);
  HostMatrix x(S2FT_F16, 3, 4), y(S2FT_F16, 3, 5);
  x.fill_random(rng);
  y.fill_random(rng);
  DeviceMatrix dx(x), dy(y);
  ASSERT_S2FT_OK(s2ft_sparse_delta_forward(g.ctx, d.d, 2.0, &dx.t, &dy.t));
  g.sync();
  EXPECT_TRUE(s2ft_gpu::bit_equal(dy.download(), y));
}

// x = I and y = 0 give y = D^T exactly (one product by 1 per element), so an
// adapter's delta comes back bit for bit, the same as on the CPU.
TEST(GpuSparseDelta, FromAdapterReadsBackExactly) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  Context cx;
  const s2ft_model_shape shape{2, 45, 4, 2, 5, 37};
  for (int32_t t : {S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN, S2FT_TARGET_UP}) {
    s2ft_adapter *a = nullptr;
    ASSERT_S2FT_OK(s2ft_adapter_create(&shape, "", 1.0, &a));
    const bool cols_target = t == S2FT_TARGET_O || t == S2FT_TARGET_DOWN;
    int64_t rows = 0, cols = 0;
    if (t == S2FT_TARGET_O) rows = 45, cols = 20;
    if (t == S2FT_TARGET_V) rows = 10, cols = 45;
    if (t == S2FT_TARGET_DOWN) rows = 45, cols = 37;
    if (t == S2FT_TARGET_UP) rows = 37, cols = 45;
    const std::vector<int64_t> lines = {7, 2, 9};
    Random rng(60 + static_cast<uint64_t>(t));
    HostMatrix delta = cols_target ? HostMatrix(S2FT_F32, rows, 3) : HostMatrix(S2FT_F32, 3, cols);
    delta.fill_random(rng);
    ASSERT_S2FT_OK(s2ft_adapter_set(a, 1, t, lines.data(), 3, &delta.t, nullptr));
    DeltaOwner dc, dg;
    ASSERT_S2FT_OK(s2ft_sparse_delta_from_adapter(cx.ctx, a, 1, t, nullptr, &dc.d));
    ASSERT_S2FT_OK(s2ft_sparse_delta_from_adapter(g.ctx, a, 1, t, nullptr, &dg.d));
    s2ft_adapter_destroy(a);  // the deltas are copies
    HostMatrix eye(S2FT_F32, cols, cols), y(S2FT_F32, cols, rows);
    for (int64_t i = 0; i < cols; ++i) eye.set(i, i, 1.0f);
    DeviceMatrix deye(eye), dy(y);
    ASSERT_S2FT_OK(s2ft_sparse_delta_forward(cx.ctx, dc.d, 1.0, &eye.t, &y.t));
    ASSERT_S2FT_OK(s2ft_sparse_delta_forward(g.ctx, dg.d, 1.0, &deye.t, &dy.t));
    g.sync();
    const HostMatrix got = dy.download();
    EXPECT_TRUE(s2ft_gpu::bit_equal(got, y)) << "target " << t;
    for (int64_t j = 0; j < 3; ++j)  // spot check against the adapter's delta
      EXPECT_EQ(cols_target ? got.get(lines[static_cast<size_t>(j)], 4) : got.get(4, lines[static_cast<size_t>(j)]),
                cols_target ? delta.get(4, j) : delta.get(j, 4));
  }
}

TEST(GpuSparseDelta, WrongDevices) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  Context cx;
  const int64_t offsets[3] = {0, 1, 2};
  const int64_t indices[2] = {1, 0};
  const float values[2] = {1.0f, -1.0f};
  DeltaOwner dc, dg;
  ASSERT_S2FT_OK(s2ft_sparse_delta_create(cx.ctx, 2, 3, offsets, indices, values, 2, &dc.d));
  ASSERT_S2FT_OK(s2ft_sparse_delta_create(g.ctx, 2, 3, offsets, indices, values, 2, &dg.d));
  HostMatrix x(S2FT_F32, 4, 3), y(S2FT_F32, 4, 2);
  Random rng(7);
  x.fill_random(rng);
  DeviceMatrix dx(x), dy(y);
  // A delta made on another device than the context's.
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(g.ctx, dc.d, 1.0, &dx.t, &dy.t), S2FT_ERR_DEVICE, "created on");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(cx.ctx, dg.d, 1.0, &x.t, &y.t), S2FT_ERR_DEVICE, "created on");
  // CPU tensors on a CUDA context, and a tensor that claims the GPU but is host memory.
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(g.ctx, dg.d, 1.0, &x.t, &dy.t), S2FT_ERR_DEVICE, "x is on");
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(g.ctx, dg.d, 1.0, &dx.t, &y.t), S2FT_ERR_DEVICE, "y is on");
  s2ft_tensor liar = x.t;
  liar.device = s2ft_device{S2FT_DEVICE_CUDA, 0};
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(g.ctx, dg.d, 1.0, &liar, &dy.t), S2FT_ERR_DEVICE, "host memory");
  // Still the shared checks first.
  EXPECT_S2FT_ERROR(s2ft_sparse_delta_forward(g.ctx, dg.d, NAN, &dx.t, &dy.t), S2FT_ERR_INVALID_ARGUMENT, "scale");
  ASSERT_S2FT_OK(s2ft_sparse_delta_forward(g.ctx, dg.d, 1.0, &dx.t, &dy.t));
  g.sync();
}

}  // namespace
