// The sparse backward on CUDA: dx = dy W by cuBLAS, and the gradient at a
// sparse set's entries (SDDMM) by the kernels below; the dense [out, in]
// dW is never formed.
//
// SDDMM, for entry n at flat index r_n * in + c_n of W [out, in]:
//
//   grad[n] = sum_t dy[t, r_n] * x[t, c_n]          t in [0, T)
//
// dy[:, r] and x[:, c] are columns of row-major [T, *] matrices: a warp
// reading one of them touches T separate rows. So both are first
// transposed into f32 scratch (transpose_kernel, through shared memory so
// that reads and writes coalesce):
//
//   DYT[r][t] = dy[t, r]    [out, T]
//   XT[c][t]  = x[t, c]     [in, T]
//
// and each entry becomes the dot product of two contiguous T-vectors.
// sddmm_kernel gives one block to each row r of W that has entries: the
// block stages DYT[r] in shared memory, kChunk tokens at a time, and its
// warps take the row's entries (warp w: entries b + w, b + w + kWarps, ...,
// the same in every chunk, so each warp owns its entries' outputs): lane l
// multiplies DYT[r][t] by XT[c_n][t] for t = l, l + 32, ... (coalesced
// reads of XT), a shuffle tree sums the 32 lanes, and lane 0 adds the
// chunk's sum into grad[n] (written on the first chunk unless
// accumulating). All arithmetic is f32. The XT lines of a row's entries are
// reused by the other rows' blocks through L2.
#include <cstdint>
#include <memory>

#include "cuda_copy.cuh"
#include "cuda_gemm.cuh"
#include "cuda_runtime.cuh"
#include "cuda_sparse_backward.hpp"

namespace s2ft {
namespace cuda {

struct DeviceSparseSet {
  int32_t device = 0;
  int64_t rows = 0, cols = 0, count = 0;
  DeviceBuffer indices;      // int64 [count], ascending flat indices
  DeviceBuffer row_offsets;  // int64 [rows + 1]
};

namespace {

constexpr int kTile = 32;           // transpose tile: 32 x 32 elements
constexpr int kTileRows = 8;        // threads per tile column (blockDim (32, 8))
constexpr int kChunk = 2048;        // tokens of DYT[r] staged per step (8 KiB of shared memory)
constexpr int kWarps = kThreads / 32;

// dst[j][t] = f32(src(t, j)) for src [T, n] (any strides), dst compact
// [n, T]. One 32 x 32 tile per block iteration, through shared memory (the
// +1 column avoids bank conflicts), tiles grid-strided.
template <typename S>
__global__ void transpose_kernel(View<const S> src, float *__restrict dst) {
  __shared__ float tile[kTile][kTile + 1];
  const int64_t T = src.rows, n = src.cols;
  const int64_t tiles_t = (T + kTile - 1) / kTile, tiles_n = (n + kTile - 1) / kTile;
  for (int64_t k = blockIdx.x; k < tiles_t * tiles_n; k += gridDim.x) {
    const int64_t t0 = (k / tiles_n) * kTile, j0 = (k % tiles_n) * kTile;
    for (int i = threadIdx.y; i < kTile; i += kTileRows) {  // read rows t0 + i, columns j0 + threadIdx.x
      const int64_t t = t0 + i, j = j0 + threadIdx.x;
      if (t < T && j < n) tile[i][threadIdx.x] = to_f32(src.at(t, j));
    }
    __syncthreads();
    for (int i = threadIdx.y; i < kTile; i += kTileRows) {  // write rows j0 + i, tokens t0 + threadIdx.x
      const int64_t j = j0 + i, t = t0 + threadIdx.x;
      if (j < n && t < T) dst[j * T + t] = tile[threadIdx.x][i];
    }
    __syncthreads();
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// grad[n * gs] (+)= sum_t DYT[r_n][t] XT[c_n][t]; see the top of the file.
__global__ void sddmm_kernel(const float *__restrict dyt, const float *__restrict xt, int64_t T,
                             const int64_t *__restrict row_offsets, const int64_t *__restrict indices, int64_t rows,
                             int64_t cols, float *grad, int64_t gs, int accumulate) {
  __shared__ float dys[kChunk];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t b = row_offsets[r], e = row_offsets[r + 1];
    if (b == e) continue;  // uniform across the block
    for (int64_t t0 = 0; t0 < T; t0 += kChunk) {
      const int64_t len = T - t0 < kChunk ? T - t0 : kChunk;
      __syncthreads();  // the previous chunk's readers are done
      for (int64_t t = threadIdx.x; t < len; t += blockDim.x) dys[t] = dyt[r * T + t0 + t];
      __syncthreads();
      for (int64_t n = b + warp; n < e; n += kWarps) {
        const float *xv = xt + (indices[n] - r * cols) * T + t0;
        float s = 0.0f;
        for (int64_t t = lane; t < len; t += 32) s = __fadd_rn(s, __fmul_rn(dys[t], xv[t]));
        s = warp_sum(s);
        if (lane == 0) {
          float &g = grad[n * gs];
          g = (t0 == 0 && accumulate == 0) ? s : g + s;
        }
      }
    }
  }
}

// dst = src^T in f32 scratch ([src.cols, src.rows]).
float *transposed(Scratch &s, Context &ctx, const Matrix &src) {
  float *dst = s.alloc_n<float>(src.rows * src.cols);
  if (src.empty()) return dst;
  const int64_t tiles = ((src.rows + kTile - 1) / kTile) * ((src.cols + kTile - 1) / kTile);
  const unsigned grid = static_cast<unsigned>(tiles < int64_t{65535} ? tiles : int64_t{65535});
  const dim3 block(kTile, kTileRows);
  dispatch_dtype(src.dtype, [&](auto tag) {
    using S = decltype(tag);
    transpose_kernel<S><<<grid, block, 0, ctx.stream>>>(view_of<const S>(src), dst);
  });
  S2FT_CUDA_CHECK_LAUNCH("transpose_kernel");
  return dst;
}

}  // namespace

std::shared_ptr<DeviceSparseSet> upload_sparse_set(Context &ctx, const SparseEntries &e) {
  DeviceGuard guard(ctx);
  auto set = std::make_shared<DeviceSparseSet>();
  set->device = ctx.device;
  set->rows = e.rows;
  set->cols = e.cols;
  set->count = e.count();
  set->indices.resize(ctx.device, e.indices.size() * sizeof(int64_t));
  set->row_offsets.resize(ctx.device, e.row_offsets.size() * sizeof(int64_t));
  upload_async(ctx, set->indices.get(), e.indices.data(), e.indices.size() * sizeof(int64_t));
  upload_async(ctx, set->row_offsets.get(), e.row_offsets.data(), e.row_offsets.size() * sizeof(int64_t));
  return set;
}

namespace {

// grad (+)= the SDDMM gradient at the set, with scratch from s (T >= 1).
void sddmm(Scratch &s, Context &ctx, const DeviceSparseSet &set, const Matrix &x, const Matrix &dy, float *grad,
           int64_t gs, bool accumulate_grad) {
  const int64_t T = x.rows;
  const float *dyt = transposed(s, ctx, dy);
  const float *xt = transposed(s, ctx, x);
  const int64_t cap = static_cast<int64_t>(ctx.sm_count > 0 ? ctx.sm_count : 1) * 16;
  const unsigned grid = static_cast<unsigned>(set.rows < cap ? set.rows : cap);
  sddmm_kernel<<<grid, kThreads, 0, ctx.stream>>>(dyt, xt, T, set.row_offsets.as<int64_t>(), set.indices.as<int64_t>(),
                                                  set.rows, set.cols, grad, gs, accumulate_grad ? 1 : 0);
  S2FT_CUDA_CHECK_LAUNCH("sddmm_kernel");
}

// sums[n] += g[n], sums[count + n] += g[n]^2 (double).
__global__ void add_sums_kernel(const float *__restrict g, int64_t count, double *__restrict sums) {
  for (int64_t n = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; n < count;
       n += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double v = g[n];
    sums[n] += v;
    sums[count + n] += v * v;
  }
}

}  // namespace

void backward_sparse(Context &ctx, const DeviceSparseSet &set, const Matrix &x, const Matrix &dy, const Matrix *w,
                     const Matrix *dx, const Matrix &grad, bool accumulate_dx, bool accumulate_grad) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  if (dx != nullptr) gemm(s, Op::N, dy, Op::N, *w, *dx, accumulate_dx);
  const int64_t T = x.rows;
  if (T == 0) {  // no tokens: the gradient is 0 (+ grad)
    if (!accumulate_grad) fill(ctx, grad, 0.0f);
    return;
  }
  sddmm(s, ctx, set, x, dy, grad.f32(), grad.cs, accumulate_grad);
}

void add_sparse_gradient_sums(Context &ctx, const DeviceSparseSet &set, const Matrix &x, const Matrix &dy,
                              double *sums) {
  if (x.rows == 0 || set.count == 0) return;  // no tokens: g = 0
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  float *g = s.alloc_n<float>(set.count);
  sddmm(s, ctx, set, x, dy, g, 1, false);
  add_sums_kernel<<<grid_for(ctx, set.count), kThreads, 0, ctx.stream>>>(g, set.count, sums);
  S2FT_CUDA_CHECK_LAUNCH("add_sums_kernel");
}

}  // namespace cuda
}  // namespace s2ft
