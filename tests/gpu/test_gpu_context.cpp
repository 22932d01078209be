// The CUDA context: device binding, stream, workspace, synchronisation and
// the checks on device pointers.
#include <cuda_runtime.h>

#include "gpu/gpu_support.hpp"

using s2ft_gpu::GpuContext;

TEST(GpuContext, BindsToTheDeviceAndStream) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  ASSERT_NE(g.ctx, nullptr);
  s2ft_device d{};
  ASSERT_S2FT_OK(s2ft_context_device(g.ctx, &d));
  EXPECT_EQ(d.type, S2FT_DEVICE_CUDA);
  EXPECT_EQ(d.id, 0);
  void *s = nullptr;
  ASSERT_S2FT_OK(s2ft_context_stream(g.ctx, &s));
  EXPECT_EQ(s, static_cast<void *>(g.stream));
  ASSERT_S2FT_OK(s2ft_context_set_stream(g.ctx, nullptr));
  ASSERT_S2FT_OK(s2ft_context_stream(g.ctx, &s));
  EXPECT_EQ(s, nullptr);
  ASSERT_S2FT_OK(s2ft_context_synchronize(g.ctx));
}

TEST(GpuContext, DeviceIdOutOfRange) {
  S2FT_REQUIRE_GPU();
  int32_t n = 0;
  ASSERT_S2FT_OK(s2ft_device_count(S2FT_DEVICE_CUDA, &n));
  s2ft_context_options o;
  s2ft_context_options_init(&o, S2FT_CONTEXT_OPTIONS_VERSION);
  o.device_type = S2FT_DEVICE_CUDA;
  o.device_id = n;
  s2ft_context *ctx = nullptr;
  EXPECT_S2FT_ERROR(s2ft_context_create(&o, &ctx), S2FT_ERR_INVALID_ARGUMENT, "out of range");
  EXPECT_EQ(ctx, nullptr);
}

TEST(GpuContext, WorkspaceMustBeDeviceMemory) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  std::vector<char> host(1024);
  EXPECT_S2FT_ERROR(s2ft_context_set_workspace(g.ctx, host.data(), host.size()), S2FT_ERR_DEVICE, "host memory");
  void *dev = nullptr;
  ASSERT_CUDA_OK(cudaMalloc(&dev, 1 << 20));
  ASSERT_S2FT_OK(s2ft_context_set_workspace(g.ctx, dev, 1 << 20));
  ASSERT_S2FT_OK(s2ft_context_set_workspace(g.ctx, nullptr, 0));
  g.sync();
  cudaFree(dev);
}

TEST(GpuContext, HostPointerInACudaTensorIsRefused) {
  S2FT_REQUIRE_GPU();
  GpuContext g;
  s2ft_test::HostMatrix x(S2FT_F32, 4, 8), w(S2FT_F32, 3, 8), y(S2FT_F32, 4, 3);
  s2ft_gpu::DeviceMatrix dw(S2FT_F32, 3, 8), dy(S2FT_F32, 4, 3);
  x.t.device = s2ft_device{S2FT_DEVICE_CUDA, 0};  // claims the GPU, points at host memory
  const s2ft_slice slice{S2FT_AXIS_COLUMNS, 0, 2, nullptr};
  EXPECT_S2FT_ERROR(s2ft_forward_partial(g.ctx, &slice, &x.t, &dw.t, &dy.t, nullptr), S2FT_ERR_DEVICE,
                    "x is described as CUDA device memory but its data pointer is host memory");
}
