// How libs2ft.so meets its CUDA module, through the public API, one process
// per test (CTest runs each alone, some with S2FT_CUDA_BACKEND set):
// a CPU process never maps a CUDA library, and a CUDA context without a
// usable module or driver is S2FT_ERR_UNSUPPORTED with the reason.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "s2ft/s2ft.h"
#include "support/test_util.hpp"

namespace {

// The shared objects mapped into this process whose path mentions `what`.
std::string mapped(const std::string &what) {
  std::ifstream maps("/proc/self/maps");
  std::string line, found;
  while (std::getline(maps, line))
    if (line.find(what) != std::string::npos) found += line + "\n";
  return found;
}

TEST(CudaModule, CpuProcessNeverLoadsCuda) {
  int32_t n = 0;
  ASSERT_S2FT_OK(s2ft_device_count(S2FT_DEVICE_CPU, &n));
  s2ft_context *ctx = nullptr;
  ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx));
  // One real call through the CPU backend.
  float w[6] = {1, 2, 3, 4, 5, 6}, x[3] = {1, -1, 2}, y[2] = {-9, -9};
  s2ft_tensor W, X, Y;
  s2ft_tensor_cpu_f32_2d(&W, w, 2, 3);
  s2ft_tensor_cpu_f32_2d(&X, x, 1, 3);
  s2ft_tensor_cpu_f32_2d(&Y, y, 1, 2);
  const s2ft_slice slice = {S2FT_AXIS_COLUMNS, 0, 1, nullptr};
  ASSERT_S2FT_OK(s2ft_forward_partial(ctx, &slice, &X, &W, &Y, nullptr));
  EXPECT_EQ(y[0], 1 - 2 + 6);
  EXPECT_EQ(y[1], 4 - 5 + 12);
  s2ft_context_destroy(ctx);
  for (const char *lib : {"libs2ft_cuda", "libcublas", "libcusparse", "libcudart", "libcuda."})
    EXPECT_EQ(mapped(lib), "") << lib << " is mapped into a CPU-only process";
}

// The variants CTest runs with a given environment: S2FT_TEST_CUDA_REASON
// is the text the refusal must contain ("" where a GPU may be present).
TEST(CudaModule, CudaContextWithoutAUsableModuleOrDriverIsUnsupported) {
  const char *reason_env = std::getenv("S2FT_TEST_CUDA_REASON");
  ASSERT_NE(reason_env, nullptr) << "run through CTest, which sets S2FT_TEST_CUDA_REASON";
  const std::string reason = reason_env;
  s2ft_context_options o;
  ASSERT_S2FT_OK(s2ft_context_options_init(&o, S2FT_CONTEXT_OPTIONS_VERSION));
  o.device_type = S2FT_DEVICE_CUDA;
  s2ft_context *ctx = nullptr;
  s2ft_clear_error();
  const s2ft_status st = s2ft_context_create(&o, &ctx);
  int32_t n = -1;
  if (st == S2FT_OK) {  // only where a module, a driver and a GPU are present
    ASSERT_TRUE(reason.empty()) << "a CUDA context was made where it must fail with: " << reason;
    ASSERT_S2FT_OK(s2ft_device_count(S2FT_DEVICE_CUDA, &n));
    EXPECT_GT(n, 0);
    s2ft_context_destroy(ctx);
    return;
  }
  EXPECT_EQ(st, S2FT_ERR_UNSUPPORTED) << s2ft_last_error();
  EXPECT_EQ(ctx, nullptr);
  const std::string first = s2ft_last_error();
  EXPECT_NE(first.find("s2ft_context_create: "), std::string::npos) << first;
  if (!reason.empty()) {
    EXPECT_NE(first.find(reason), std::string::npos) << "'" << reason << "' not in: " << first;
  }
  // Counting devices is not an error: none, with the same reason.
  ASSERT_S2FT_OK(s2ft_device_count(S2FT_DEVICE_CUDA, &n));
  EXPECT_EQ(n, 0);
  EXPECT_NE(std::string(s2ft_last_error()).find("no CUDA devices usable"), std::string::npos) << s2ft_last_error();
  if (!reason.empty()) {
    EXPECT_NE(std::string(s2ft_last_error()).find(reason), std::string::npos) << s2ft_last_error();
  }
  // The answer is kept: a second try says the same; CPU contexts still work.
  EXPECT_S2FT_ERROR(s2ft_context_create(&o, &ctx), S2FT_ERR_UNSUPPORTED, first.substr(first.find(": ") + 2));
  ASSERT_S2FT_OK(s2ft_context_create(nullptr, &ctx));
  s2ft_context_destroy(ctx);
}

}  // namespace
