// SpIEL's operations on CUDA (see cuda_spiel.hpp). The dense gradient is
// cuBLAS GEMMs over tiles of dW's rows; the element copies are one small
// gather or scatter kernel over the flat indices, moving raw bytes (2 or 4
// per element), so a restored base value is bit-exact.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda_copy.cuh"
#include "cuda_gemm.cuh"
#include "cuda_runtime.cuh"
#include "cuda_spiel.hpp"

namespace s2ft {
namespace cuda {
namespace {

constexpr int64_t kMaxTileElems = int64_t{1} << 24;  // 64 MiB of f32 dW per tile

// out[i] = w[flat[i]] for a [rows, cols] view with strides (rs, cs).
template <typename T>
__global__ void gather_kernel(const T *__restrict w, int64_t rs, int64_t cs, int64_t cols,
                              const int64_t *__restrict flat, int64_t n, T *__restrict out) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t f = flat[i];
    out[i] = w[(f / cols) * rs + (f % cols) * cs];
  }
}

// w[flat[i]] = in[i].
template <typename T>
__global__ void scatter_kernel(T *__restrict w, int64_t rs, int64_t cs, int64_t cols,
                               const int64_t *__restrict flat, int64_t n, const T *__restrict in) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t f = flat[i];
    w[(f / cols) * rs + (f % cols) * cs] = in[i];
  }
}

// Calls f with an unsigned integer of the element's size (bytes move as they are).
template <typename F>
void by_size(size_t elem, F &&f) {
  if (elem == 4) {
    f(uint32_t{});
  } else {
    f(uint16_t{});
  }
}

}  // namespace

void dense_gradient_to_host(Context &ctx, const Matrix &x, const Matrix &dy, float *host) {
  const int64_t out = dy.cols, in = x.cols;
  if (out == 0 || in == 0) return;
  if (x.rows == 0) {  // no tokens: dW = 0
    std::fill(host, host + out * in, 0.0f);
    return;
  }
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(out, kMaxTileElems / in));
  void *mem = s.alloc(static_cast<size_t>(tile * in) * sizeof(float));
  for (int64_t r0 = 0; r0 < out; r0 += tile) {
    const int64_t n = std::min(tile, out - r0);
    // dW[r0:r0+n, :] = dy[:, r0:r0+n]^T x   ([n, in])
    const Matrix dw = device_matrix(mem, S2FT_F32, n, in, ctx.device);
    gemm(s, Op::T, dy.col_range(r0, n), Op::N, x, dw, false);
    download_sync(ctx, host + r0 * in, mem, static_cast<size_t>(n * in) * sizeof(float));
  }
}

void read_weight_entries(Context &ctx, const Matrix &w, const std::vector<int64_t> &flat, void *host) {
  const int64_t n = static_cast<int64_t>(flat.size());
  if (n == 0) return;
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t *dflat = s.upload(flat.data(), n);
  const size_t e = w.elem();
  void *out = s.alloc(static_cast<size_t>(n) * e);
  by_size(e, [&](auto tag) {
    using T = decltype(tag);
    gather_kernel<T><<<grid_for(ctx, n), kThreads, 0, ctx.stream>>>(reinterpret_cast<const T *>(w.base), w.rs, w.cs,
                                                                     w.cols, dflat, n, static_cast<T *>(out));
  });
  S2FT_CUDA_CHECK_LAUNCH("gather_kernel");
  download_sync(ctx, host, out, static_cast<size_t>(n) * e);
}

void write_weight_entries(Context &ctx, const Matrix &w, const std::vector<int64_t> &flat, const void *host) {
  const int64_t n = static_cast<int64_t>(flat.size());
  if (n == 0) return;
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t *dflat = s.upload(flat.data(), n);
  const size_t e = w.elem();
  by_size(e, [&](auto tag) {
    using T = decltype(tag);
    const T *in = s.upload(static_cast<const T *>(host), n);
    scatter_kernel<T><<<grid_for(ctx, n), kThreads, 0, ctx.stream>>>(reinterpret_cast<T *>(w.base), w.rs, w.cs,
                                                                      w.cols, dflat, n, in);
  });
  S2FT_CUDA_CHECK_LAUNCH("scatter_kernel");
}

}  // namespace cuda
}  // namespace s2ft
