// What every CUDA source of the backend shares: the context's definition,
// error checks that turn CUDA, cuBLAS, cuSPARSE and cuSOLVER failures into library
// statuses, the per-call scratch arena, stream-ordered device buffers and
// the staging of small host arrays. Compiled by nvcc only.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <cusparse.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "common/error.hpp"
#include "cuda_context.hpp"

namespace s2ft {
namespace cuda {

// ---- errors ---------------------------------------------------------------------

[[noreturn]] void fail_cuda(cudaError_t err, const char *what);
[[noreturn]] void fail_cublas(cublasStatus_t st, const char *what);
[[noreturn]] void fail_cusparse(cusparseStatus_t st, const char *what);
[[noreturn]] void fail_cusolver(cusolverStatus_t st, const char *what);

#define S2FT_CUDA_CHECK(expr)                                          \
  do {                                                                 \
    const cudaError_t s2ft_err_ = (expr);                              \
    if (s2ft_err_ != cudaSuccess) ::s2ft::cuda::fail_cuda(s2ft_err_, #expr); \
  } while (0)
#define S2FT_CUBLAS_CHECK(expr)                                              \
  do {                                                                       \
    const cublasStatus_t s2ft_st_ = (expr);                                  \
    if (s2ft_st_ != CUBLAS_STATUS_SUCCESS) ::s2ft::cuda::fail_cublas(s2ft_st_, #expr); \
  } while (0)
#define S2FT_CUSPARSE_CHECK(expr)                                                \
  do {                                                                           \
    const cusparseStatus_t s2ft_st_ = (expr);                                    \
    if (s2ft_st_ != CUSPARSE_STATUS_SUCCESS) ::s2ft::cuda::fail_cusparse(s2ft_st_, #expr); \
  } while (0)
#define S2FT_CUSOLVER_CHECK(expr)                                                \
  do {                                                                           \
    const cusolverStatus_t s2ft_st_ = (expr);                                    \
    if (s2ft_st_ != CUSOLVER_STATUS_SUCCESS) ::s2ft::cuda::fail_cusolver(s2ft_st_, #expr); \
  } while (0)
// After a kernel launch: launch-configuration errors are reported now;
// faults inside the kernel surface at the next synchronising call.
#define S2FT_CUDA_CHECK_LAUNCH(name) S2FT_CUDA_CHECK(cudaPeekAtLastError())

// ---- the context ------------------------------------------------------------------

// Pinned host memory through which small host arrays (line indices, segment
// offsets) are copied to the device, so that cudaMemcpyAsync never has to
// stage pageable memory (which may wait for the stream). A slot is reused
// only after the copy that last read it has run.
struct StagingSlot {
  void *host = nullptr;
  size_t size = 0;
  cudaEvent_t done = nullptr;
};

// The CUDA backend's instance (backend::Instance) of one s2ft_context.
struct Context : backend::Instance {
  int32_t device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  cusparseHandle_t sparse = nullptr;
  // cuSOLVER's dense handle, made on first use (solver()), bound to `stream`.
  cusolverDnHandle_t solver = nullptr;
  int sm_count = 0;
  // Library-owned workspace (stream-ordered) or the caller's.
  void *own_ws = nullptr;
  size_t own_ws_size = 0;
  void *user_ws = nullptr;
  size_t user_ws_size = 0;
  size_t high_water = 0;
  bool in_call = false;  // a Scratch is alive (one per call; calls do not nest)
  std::array<StagingSlot, 64> staging{};
  size_t next_staging = 0;
  // The mixed forward's cache (cuda_forward_mixed.cu): the path AUTO chose
  // per shape and device CSR deltas; released before the handles.
  std::shared_ptr<void> mixed_state;
};

// Makes ctx's device current for the lifetime of the guard and restores the
// caller's current device afterwards (cudaSetDevice does not synchronise).
class DeviceGuard {
 public:
  explicit DeviceGuard(const Context &ctx);
  explicit DeviceGuard(int32_t device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard &) = delete;
  DeviceGuard &operator=(const DeviceGuard &) = delete;

 private:
  int previous_ = -1;
};

// The context's cuSOLVER handle, created on the first call that needs one
// (creating it costs memory and time that contexts without SVDs never
// spend), on ctx's stream; destroyed with the context. The caller holds a
// DeviceGuard for ctx.
cusolverDnHandle_t solver(Context &ctx);

// ---- per-call scratch ---------------------------------------------------------------

// Device scratch for one library call, carved by a bump allocator from the
// context's workspace. All pointers stay valid until the Scratch dies; work
// queued on the stream may still read them afterwards, which is safe because
// later calls (and the stream-ordered frees) are queued behind it. When the
// library-owned workspace is too small, extra blocks are allocated
// (stream-ordered) for this call and the workspace is regrown for the next.
class Scratch {
 public:
  explicit Scratch(Context &ctx);
  ~Scratch();
  Scratch(const Scratch &) = delete;
  Scratch &operator=(const Scratch &) = delete;

  void *alloc(size_t bytes);  // 256-byte aligned; 0 bytes gives a valid pointer
  template <typename T>
  T *alloc_n(int64_t n) {
    return static_cast<T *>(alloc(static_cast<size_t>(n < 0 ? 0 : n) * sizeof(T)));
  }
  // Copies n host values into fresh scratch through pinned staging memory.
  template <typename T>
  const T *upload(const T *host, int64_t n) {
    T *dev = alloc_n<T>(n);
    upload_bytes(dev, host, static_cast<size_t>(n < 0 ? 0 : n) * sizeof(T));
    return dev;
  }
  Context &ctx() { return ctx_; }

 private:
  void upload_bytes(void *dev, const void *host, size_t bytes);
  Context &ctx_;
  char *block_ = nullptr;  // current block
  size_t block_size_ = 0, used_ = 0, total_ = 0;
  std::vector<void *> extra_;  // blocks beyond the workspace, freed at the end
};

// Copies bytes from host to device memory through pinned staging (no wait on
// the stream unless 64 earlier staged copies are still queued).
void upload_async(Context &ctx, void *dev, const void *host, size_t bytes);
// Copies device bytes to host memory and waits for them: a synchronising call.
void download_sync(Context &ctx, void *host, const void *dev, size_t bytes);

// ---- persistent device memory ---------------------------------------------------------

// Device memory owned by a library object (optimizer state, saved lines,
// adapter copies). Allocation and release are plain cudaMalloc/cudaFree on
// the buffer's device, which may synchronise: only create, add, resize and
// destroy calls do this, never the per-step calls.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(int32_t device, size_t bytes) { resize(device, bytes); }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(DeviceBuffer &&o) noexcept { swap(o); }
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept {
    swap(o);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;

  // Reallocates (contents lost) unless the buffer already holds `bytes`.
  void resize(int32_t device, size_t bytes);
  void reset() noexcept;
  void swap(DeviceBuffer &o) noexcept;
  void *get() const { return ptr_; }
  template <typename T>
  T *as() const {
    return static_cast<T *>(ptr_);
  }
  size_t size() const { return size_; }

 private:
  void *ptr_ = nullptr;
  size_t size_ = 0;
  int32_t device_ = 0;
};

// ---- launch geometry ----------------------------------------------------------------------

constexpr int kThreads = 256;
// Blocks for a grid-stride loop over n elements: enough to fill the device,
// never more than needed.
inline unsigned grid_for(const Context &ctx, int64_t n, int threads = kThreads) {
  const int64_t need = (n + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(ctx.sm_count > 0 ? ctx.sm_count : 1) * 32;
  const int64_t g = need < cap ? need : cap;
  return static_cast<unsigned>(g < 1 ? 1 : g);
}

}  // namespace cuda
}  // namespace s2ft
