// The CUDA context: device binding, stream, library handles, workspace and
// staging; and the error translation every CUDA source uses.
#include <algorithm>
#include <cstring>
#include <string>

#include "cuda_runtime.cuh"

namespace s2ft {
namespace cuda {

// ---- errors ---------------------------------------------------------------------------

void fail_cuda(cudaError_t err, const char *what) {
  // Out-of-memory is the one failure a caller can act on; the rest are backend errors.
  const s2ft_status st = err == cudaErrorMemoryAllocation ? S2FT_ERR_OUT_OF_MEMORY : S2FT_ERR_BACKEND;
  fail(st, std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") in " + what);
}

void fail_cublas(cublasStatus_t st, const char *what) {
  const s2ft_status s = st == CUBLAS_STATUS_ALLOC_FAILED ? S2FT_ERR_OUT_OF_MEMORY : S2FT_ERR_BACKEND;
  fail(s, std::string("cuBLAS error ") + cublasGetStatusName(st) + " (" + cublasGetStatusString(st) + ") in " + what);
}

void fail_cusolver(cusolverStatus_t st, const char *what) {
  const char *name = "an unlisted status";
  switch (st) {
    case CUSOLVER_STATUS_NOT_INITIALIZED: name = "CUSOLVER_STATUS_NOT_INITIALIZED"; break;
    case CUSOLVER_STATUS_ALLOC_FAILED: name = "CUSOLVER_STATUS_ALLOC_FAILED"; break;
    case CUSOLVER_STATUS_INVALID_VALUE: name = "CUSOLVER_STATUS_INVALID_VALUE"; break;
    case CUSOLVER_STATUS_ARCH_MISMATCH: name = "CUSOLVER_STATUS_ARCH_MISMATCH"; break;
    case CUSOLVER_STATUS_EXECUTION_FAILED: name = "CUSOLVER_STATUS_EXECUTION_FAILED"; break;
    case CUSOLVER_STATUS_INTERNAL_ERROR: name = "CUSOLVER_STATUS_INTERNAL_ERROR"; break;
    case CUSOLVER_STATUS_NOT_SUPPORTED: name = "CUSOLVER_STATUS_NOT_SUPPORTED"; break;
    default: break;
  }
  const s2ft_status s = st == CUSOLVER_STATUS_ALLOC_FAILED ? S2FT_ERR_OUT_OF_MEMORY : S2FT_ERR_BACKEND;
  fail(s, std::string("cuSOLVER error ") + name + " (status " + std::to_string(static_cast<int>(st)) + ") in " + what);
}

void fail_cusparse(cusparseStatus_t st, const char *what) {
  const s2ft_status s = st == CUSPARSE_STATUS_ALLOC_FAILED ? S2FT_ERR_OUT_OF_MEMORY : S2FT_ERR_BACKEND;
  fail(s, std::string("cuSPARSE error ") + cusparseGetErrorName(st) + " (" + cusparseGetErrorString(st) + ") in " +
              what);
}

// ---- device selection -------------------------------------------------------------------

DeviceGuard::DeviceGuard(int32_t device) {
  int cur = -1;
  S2FT_CUDA_CHECK(cudaGetDevice(&cur));
  if (cur != device) {
    S2FT_CUDA_CHECK(cudaSetDevice(device));
    previous_ = cur;
  }
}
DeviceGuard::DeviceGuard(const Context &ctx) : DeviceGuard(ctx.device) {}
DeviceGuard::~DeviceGuard() {
  if (previous_ >= 0) cudaSetDevice(previous_);
}

int device_count(std::string *why) {
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    if (why != nullptr) *why = std::string(cudaGetErrorName(err)) + ": " + cudaGetErrorString(err);
    cudaGetLastError();  // clear the sticky-free error so later queries start clean
    return -1;
  }
  return n;
}

// ---- context lifetime ----------------------------------------------------------------------

void ContextDeleter::operator()(Context *ctx) const {
  if (ctx == nullptr) return;
  {
    int cur = -1;
    cudaGetDevice(&cur);
    cudaSetDevice(ctx->device);
    // Destroying a context waits for its work: the workspace and handles
    // may still be in use by queued kernels.
    cudaStreamSynchronize(ctx->stream);
    ctx->mixed_state.reset();
    if (ctx->own_ws != nullptr) cudaFreeAsync(ctx->own_ws, ctx->stream);
    cudaStreamSynchronize(ctx->stream);
    for (StagingSlot &s : ctx->staging) {
      if (s.done != nullptr) cudaEventDestroy(s.done);
      if (s.host != nullptr) cudaFreeHost(s.host);
    }
    if (ctx->solver != nullptr) cusolverDnDestroy(ctx->solver);
    if (ctx->sparse != nullptr) cusparseDestroy(ctx->sparse);
    if (ctx->blas != nullptr) cublasDestroy(ctx->blas);
    if (cur >= 0) cudaSetDevice(cur);
  }
  delete ctx;
}

ContextPtr create_context(int32_t device_id) {
  std::string why;
  const int n = device_count(&why);
  if (n < 0) fail(S2FT_ERR_UNSUPPORTED, "no usable CUDA runtime or driver (" + why + ")");
  if (n == 0) fail(S2FT_ERR_UNSUPPORTED, "no CUDA device is present");
  if (device_id >= n)
    fail_arg("opts->device_id " + std::to_string(device_id) + " is out of range: " + std::to_string(n) +
             " CUDA device(s) present");
  ContextPtr ctx(new Context);
  ctx->device = device_id;
  DeviceGuard guard(device_id);
  S2FT_CUDA_CHECK(cudaDeviceGetAttribute(&ctx->sm_count, cudaDevAttrMultiProcessorCount, device_id));
  S2FT_CUBLAS_CHECK(cublasCreate(&ctx->blas));
  // Exact f32 GEMMs (no TF32) so f32 results match the CPU backend's.
  S2FT_CUBLAS_CHECK(cublasSetMathMode(ctx->blas, CUBLAS_DEFAULT_MATH));
  S2FT_CUBLAS_CHECK(cublasSetPointerMode(ctx->blas, CUBLAS_POINTER_MODE_HOST));
  S2FT_CUSPARSE_CHECK(cusparseCreate(&ctx->sparse));
  S2FT_CUBLAS_CHECK(cublasSetStream(ctx->blas, ctx->stream));
  S2FT_CUSPARSE_CHECK(cusparseSetStream(ctx->sparse, ctx->stream));
  return ctx;
}

int32_t device_id(const Context &ctx) { return ctx.device; }

cusolverDnHandle_t solver(Context &ctx) {
  if (ctx.solver == nullptr) {
    cusolverDnHandle_t h = nullptr;
    S2FT_CUSOLVER_CHECK(cusolverDnCreate(&h));
    const cusolverStatus_t st = cusolverDnSetStream(h, ctx.stream);
    if (st != CUSOLVER_STATUS_SUCCESS) {
      cusolverDnDestroy(h);
      fail_cusolver(st, "cusolverDnSetStream(h, ctx.stream)");
    }
    ctx.solver = h;
  }
  return ctx.solver;
}

void set_stream(Context &ctx, void *stream) {
  DeviceGuard guard(ctx);
  cudaStream_t s = static_cast<cudaStream_t>(stream);
  if (s == ctx.stream) return;
  // Order the new stream after the library's work on the old one, on the
  // device: the workspace may still be in use there.
  cudaEvent_t ev = nullptr;
  S2FT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
  cudaError_t err = cudaEventRecord(ev, ctx.stream);
  if (err == cudaSuccess) err = cudaStreamWaitEvent(s, ev, 0);
  cudaEventDestroy(ev);
  if (err != cudaSuccess) fail_cuda(err, "ordering the new stream after the old one");
  S2FT_CUBLAS_CHECK(cublasSetStream(ctx.blas, s));
  S2FT_CUSPARSE_CHECK(cusparseSetStream(ctx.sparse, s));
  if (ctx.solver != nullptr) S2FT_CUSOLVER_CHECK(cusolverDnSetStream(ctx.solver, s));
  ctx.stream = s;
}

void *stream(const Context &ctx) { return static_cast<void *>(ctx.stream); }

void set_workspace(Context &ctx, void *ptr, size_t bytes) {
  if (ptr != nullptr) require_device_pointer(ctx.device, ptr, "workspace");
  ctx.user_ws = ptr;
  ctx.user_ws_size = ptr != nullptr ? bytes : 0;
}

size_t workspace_high_water(const Context &ctx) { return ctx.high_water; }

void synchronize(Context &ctx) {
  DeviceGuard guard(ctx);
  S2FT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

void require_device_pointer(int32_t device_id, const void *ptr, const char *name) {
  cudaPointerAttributes attr{};
  const cudaError_t err = cudaPointerGetAttributes(&attr, ptr);
  if (err != cudaSuccess) {
    cudaGetLastError();
    fail(S2FT_ERR_DEVICE, std::string(name) + " is not memory the CUDA runtime knows (" + cudaGetErrorString(err) + ")");
  }
  if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
    fail(S2FT_ERR_DEVICE, std::string(name) + " is described as CUDA device memory but its data pointer is " +
                              (attr.type == cudaMemoryTypeHost ? "pinned host memory" : "host memory"));
  if (attr.device != device_id)
    fail(S2FT_ERR_DEVICE, std::string(name) + "'s data is on CUDA device " + std::to_string(attr.device) +
                              ", not on device " + std::to_string(device_id));
}

// ---- scratch --------------------------------------------------------------------------------

namespace {
constexpr size_t kAlign = 256;
size_t align_up(size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }
}  // namespace

Scratch::Scratch(Context &ctx) : ctx_(ctx) {
  if (ctx.in_call) fail(S2FT_ERR_INTERNAL, "nested CUDA scratch scopes");
  ctx.in_call = true;
  if (ctx.user_ws != nullptr) {
    block_ = static_cast<char *>(ctx.user_ws);
    block_size_ = ctx.user_ws_size;
  } else {
    block_ = static_cast<char *>(ctx.own_ws);
    block_size_ = ctx.own_ws_size;
  }
}

Scratch::~Scratch() {
  if (total_ > ctx_.high_water) ctx_.high_water = total_;
  if (!extra_.empty()) {
    // Regrow the library's workspace to what this call needed; the old
    // blocks are released in stream order, after the work that reads them.
    for (void *p : extra_) cudaFreeAsync(p, ctx_.stream);
    if (ctx_.own_ws != nullptr) cudaFreeAsync(ctx_.own_ws, ctx_.stream);
    ctx_.own_ws = nullptr;
    ctx_.own_ws_size = 0;
    void *p = nullptr;
    if (cudaMallocAsync(&p, total_, ctx_.stream) == cudaSuccess) {
      ctx_.own_ws = p;
      ctx_.own_ws_size = total_;
    } else {
      cudaGetLastError();  // the next call will allocate what it needs
    }
  }
  ctx_.in_call = false;
}

void *Scratch::alloc(size_t bytes) {
  const size_t n = align_up(bytes == 0 ? 1 : bytes);
  total_ += n;
  if (used_ + n <= block_size_) {
    void *p = block_ + used_;
    used_ += n;
    return p;
  }
  if (ctx_.user_ws != nullptr)
    fail(S2FT_ERR_OUT_OF_MEMORY, "the caller's CUDA workspace (" + std::to_string(ctx_.user_ws_size) +
                                     " bytes) is too small: this call needs at least " + std::to_string(total_) +
                                     " bytes (s2ft_context_set_workspace)");
  void *p = nullptr;
  S2FT_CUDA_CHECK(cudaMallocAsync(&p, std::max(n, total_), ctx_.stream));
  extra_.push_back(p);
  block_ = static_cast<char *>(p);
  block_size_ = std::max(n, total_);
  used_ = n;
  return p;
}

void Scratch::upload_bytes(void *dev, const void *host, size_t bytes) { upload_async(ctx_, dev, host, bytes); }

void upload_async(Context &ctx, void *dev, const void *host, size_t bytes) {
  if (bytes == 0) return;
  StagingSlot &s = ctx.staging[ctx.next_staging];
  ctx.next_staging = (ctx.next_staging + 1) % ctx.staging.size();
  if (s.done == nullptr) S2FT_CUDA_CHECK(cudaEventCreateWithFlags(&s.done, cudaEventDisableTiming));
  // Waits only if the copy that last used this slot has not run yet.
  S2FT_CUDA_CHECK(cudaEventSynchronize(s.done));
  if (s.size < bytes) {
    if (s.host != nullptr) S2FT_CUDA_CHECK(cudaFreeHost(s.host));
    s.host = nullptr;
    s.size = 0;
    const size_t want = std::max<size_t>(bytes, 4096);
    S2FT_CUDA_CHECK(cudaMallocHost(&s.host, want));
    s.size = want;
  }
  std::memcpy(s.host, host, bytes);
  S2FT_CUDA_CHECK(cudaMemcpyAsync(dev, s.host, bytes, cudaMemcpyHostToDevice, ctx.stream));
  S2FT_CUDA_CHECK(cudaEventRecord(s.done, ctx.stream));
}

void download_sync(Context &ctx, void *host, const void *dev, size_t bytes) {
  if (bytes == 0) return;
  S2FT_CUDA_CHECK(cudaMemcpyAsync(host, dev, bytes, cudaMemcpyDeviceToHost, ctx.stream));
  S2FT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
}

// ---- device buffers ----------------------------------------------------------------------------

void DeviceBuffer::resize(int32_t device, size_t bytes) {
  if (ptr_ != nullptr && size_ == bytes && device_ == device) return;
  reset();
  if (bytes == 0) return;
  DeviceGuard guard(device);
  void *p = nullptr;
  S2FT_CUDA_CHECK(cudaMalloc(&p, bytes));
  ptr_ = p;
  size_ = bytes;
  device_ = device;
}

void DeviceBuffer::reset() noexcept {
  if (ptr_ != nullptr) {
    int cur = -1;
    cudaGetDevice(&cur);
    cudaSetDevice(device_);
    cudaFree(ptr_);
    if (cur >= 0) cudaSetDevice(cur);
  }
  ptr_ = nullptr;
  size_ = 0;
}

void DeviceBuffer::swap(DeviceBuffer &o) noexcept {
  std::swap(ptr_, o.ptr_);
  std::swap(size_, o.size_);
  std::swap(device_, o.device_);
}

}  // namespace cuda
}  // namespace s2ft
