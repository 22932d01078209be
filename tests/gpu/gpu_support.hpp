// Helpers for the `gpu` suites: skipping cleanly without a device, a CUDA
// context fixture on its own non-default stream, and device copies of
// HostMatrix data (optionally with padded rows, to test strided views)
// that are poisoned before kernels write them.
#pragma once

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "support/test_util.hpp"

namespace s2ft_gpu {

using s2ft_test::HostMatrix;

// Empty when a CUDA context can be created; otherwise why not.
inline std::string gpu_unavailable_reason() {
  int32_t n = 0;
  s2ft_clear_error();
  if (s2ft_device_count(S2FT_DEVICE_CUDA, &n) != S2FT_OK) return s2ft_last_error();
  if (n == 0) {
    const std::string why = s2ft_last_error();
    return why.empty() ? "no CUDA device is present" : why;
  }
  return "";
}

// Skips the test (GoogleTest SKIPPED, reported by CTest as skipped) when no GPU.
#define S2FT_REQUIRE_GPU()                                                                  \
  do {                                                                                      \
    const std::string s2ft_why_ = ::s2ft_gpu::gpu_unavailable_reason();                     \
    if (!s2ft_why_.empty()) GTEST_SKIP() << "gpu test skipped: no usable CUDA device (" << s2ft_why_ << ")"; \
  } while (0)

#define ASSERT_CUDA_OK(expr)                                                            \
  do {                                                                                  \
    const cudaError_t s2ft_ce_ = (expr);                                                \
    ASSERT_EQ(s2ft_ce_, cudaSuccess) << #expr << ": " << cudaGetErrorString(s2ft_ce_); \
  } while (0)

// A CUDA context on device 0 that queues work on a stream of its own.
struct GpuContext {
  s2ft_context *ctx = nullptr;
  cudaStream_t stream = nullptr;
  GpuContext() {
    s2ft_context_options o;
    s2ft_context_options_init(&o, S2FT_CONTEXT_OPTIONS_VERSION);
    o.device_type = S2FT_DEVICE_CUDA;
    EXPECT_EQ(s2ft_context_create(&o, &ctx), S2FT_OK) << s2ft_last_error();
    EXPECT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
    if (ctx != nullptr) {
      EXPECT_EQ(s2ft_context_set_stream(ctx, stream), S2FT_OK) << s2ft_last_error();
    }
  }
  GpuContext(const GpuContext &) = delete;
  GpuContext &operator=(const GpuContext &) = delete;
  ~GpuContext() {
    s2ft_context_destroy(ctx);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
  // Waits for the queued work; fails the test on a device fault.
  void sync() const { EXPECT_EQ(s2ft_context_synchronize(ctx), S2FT_OK) << s2ft_last_error(); }
};

// A [rows, cols] matrix of one dtype in device memory, row stride `ld`
// (>= cols; the padding is filled with NaN so reads of it show up).
struct DeviceMatrix {
  int32_t dtype = S2FT_F32;
  int64_t rows = 0, cols = 0, ld = 0;
  void *data = nullptr;
  s2ft_tensor t{};

  DeviceMatrix() = default;
  DeviceMatrix(int32_t dt, int64_t r, int64_t c, int64_t row_stride = -1)
      : dtype(dt), rows(r), cols(c), ld(row_stride < 0 ? c : row_stride) {
    const size_t bytes = static_cast<size_t>(r > 0 ? r * ld : 0) * elem() + 8;
    EXPECT_EQ(cudaMalloc(&data, bytes), cudaSuccess);
    const int64_t shape[2] = {r, c};
    EXPECT_EQ(s2ft_tensor_init(&t, data, dt, S2FT_DEVICE_CUDA, 0, 2, shape), S2FT_OK) << s2ft_last_error();
    t.strides[0] = ld;
    poison();
  }
  explicit DeviceMatrix(const HostMatrix &h, int64_t row_stride = -1)
      : DeviceMatrix(h.dtype, h.rows, h.cols, row_stride) {
    upload(h);
  }
  DeviceMatrix(const DeviceMatrix &) = delete;
  DeviceMatrix &operator=(const DeviceMatrix &) = delete;
  DeviceMatrix(DeviceMatrix &&o) noexcept { *this = std::move(o); }
  DeviceMatrix &operator=(DeviceMatrix &&o) noexcept {
    std::swap(dtype, o.dtype);
    std::swap(rows, o.rows);
    std::swap(cols, o.cols);
    std::swap(ld, o.ld);
    std::swap(data, o.data);
    std::swap(t, o.t);
    return *this;
  }
  ~DeviceMatrix() {
    if (data != nullptr) cudaFree(data);
  }
  size_t elem() const { return dtype == S2FT_F32 ? 4 : 2; }
  size_t bytes() const { return static_cast<size_t>(rows > 0 ? rows * ld : 0) * elem(); }

  // All bytes 0xFF: NaN in every dtype.
  // Both finish on the device before returning: the library's work runs on
  // a non-blocking stream, which does not wait for the legacy stream.
  void poison() {
    EXPECT_EQ(cudaMemset(data, 0xFF, bytes() + 8), cudaSuccess);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  void upload(const HostMatrix &h) {
    ASSERT_EQ(h.dtype, dtype);
    ASSERT_EQ(h.rows, rows);
    ASSERT_EQ(h.cols, cols);
    if (rows == 0 || cols == 0) return;
    ASSERT_EQ(cudaMemcpy2D(data, static_cast<size_t>(ld) * elem(), h.bytes.data(), static_cast<size_t>(cols) * elem(),
                           static_cast<size_t>(cols) * elem(), static_cast<size_t>(rows), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  // The matrix back on the host (synchronous: call after the context's work is done).
  HostMatrix download() const {
    HostMatrix h(dtype, rows, cols);
    if (rows > 0 && cols > 0) {
      EXPECT_EQ(cudaMemcpy2D(h.bytes.data(), static_cast<size_t>(cols) * elem(), data, static_cast<size_t>(ld) * elem(),
                             static_cast<size_t>(cols) * elem(), static_cast<size_t>(rows), cudaMemcpyDeviceToHost),
                cudaSuccess);
    }
    return h;
  }
};

// Waits for all device work (the tests' own legacy-stream copies and the
// library's queued work) before the host reads or reuses memory.
inline void settle() { EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess); }

// Largest |got - want| relative to the largest |want| (1 when want is all zero).
inline double max_rel_diff(const HostMatrix &got, const HostMatrix &want) {
  double diff = 0.0, scale = 0.0;
  for (int64_t i = 0; i < want.rows; ++i)
    for (int64_t j = 0; j < want.cols; ++j) {
      const double g = got.get(i, j), w = want.get(i, j);
      if (std::isnan(g) != std::isnan(w)) return INFINITY;
      if (!std::isnan(w)) diff = std::max(diff, std::fabs(g - w));
      scale = std::max(scale, std::fabs(w));
    }
  return diff / (scale > 0.0 ? scale : 1.0);
}

// True when both hold the same bytes (the same values, NaN payloads included).
inline bool bit_equal(const HostMatrix &a, const HostMatrix &b) {
  if (a.dtype != b.dtype || a.rows != b.rows || a.cols != b.cols) return false;
  return std::memcmp(a.bytes.data(), b.bytes.data(), static_cast<size_t>(a.rows * a.cols) * a.elem()) == 0;
}

// A [rows, cols] matrix with a clear spectral gap, so that its leading
// singular subspaces (and, with distinct values, its leading singular
// vectors up to sign) are well defined and an SVD on the device agrees
// with the CPU's to rounding: sum over k < strong of 3 * 0.6^k a_k b_k^T
// (a_k, b_k uniform in [-1, 1]) plus uniform noise of size `noise`.
inline HostMatrix spectral_gap_matrix(s2ft_test::Random &rng, int32_t dtype, int64_t rows, int64_t cols, int strong,
                                      double noise = 0.01) {
  std::vector<double> a(static_cast<size_t>(rows * strong)), b(static_cast<size_t>(cols * strong));
  for (double &v : a) v = rng.uniform();
  for (double &v : b) v = rng.uniform();
  HostMatrix m(dtype, rows, cols);
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = 0; j < cols; ++j) {
      double v = noise * rng.uniform(), sigma = 3.0;
      for (int k = 0; k < strong; ++k, sigma *= 0.6)
        v += sigma * a[static_cast<size_t>(i * strong + k)] * b[static_cast<size_t>(j * strong + k)];
      m.set(i, j, static_cast<float>(v));
    }
  return m;
}

}  // namespace s2ft_gpu
