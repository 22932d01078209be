// S2FT's partial forward and backward on CUDA. Every product is one
// cublasGemmEx (cuda::gemm) straight on the caller's strided views, f32
// accumulation, rounding once into the output's dtype; the only other work
// moves selected columns (the saved input slice, and dy[:, S] for an indexed
// row slice). Nothing here waits for the device: all work is queued on the
// context's stream, and host index arrays go up through Scratch::upload
// (pinned staging, cudaMemcpyAsync).
#include <cstdint>

#include "cuda_copy.cuh"
#include "cuda_gemm.cuh"
#include "cuda_partial.hpp"

namespace s2ft {
namespace cuda {
namespace {

// Column gather: dst[i, j] = src[i, lines[j]] for i < dst.rows, j < dst.cols.
// U is an unsigned integer of the element's size, so each element's bits are
// moved unchanged (NaN payloads included), exactly like the CPU's memcpy.
// Consecutive threads take consecutive j, so the writes of a row coalesce.
template <typename U>
__global__ void gather_columns_kernel(View<const U> src, const int64_t *__restrict__ lines, View<U> dst) {
  const int64_t n = dst.rows * dst.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / dst.cols, j = t % dst.cols;
    dst.at(i, j) = src.at(i, lines[j]);
  }
}

template <typename U>
View<U> bits_view(const Matrix &m) {
  return View<U>{reinterpret_cast<U *>(m.base), m.rows, m.cols, m.rs, m.cs};
}

// dst = src[:, lines] (bit-exact). src and dst share one dtype; `lines` is a
// device array of dst.cols column indices of src, each in [0, src.cols).
void gather_columns(Context &ctx, const Matrix &src, const int64_t *lines, const Matrix &dst) {
  if (dst.empty()) return;
  if (src.dtype != dst.dtype) fail(S2FT_ERR_INTERNAL, "gather_columns between different dtypes");
  const unsigned grid = grid_for(ctx, dst.rows * dst.cols);
  if (dtype_size(dst.dtype) == 4) {
    gather_columns_kernel<uint32_t>
        <<<grid, kThreads, 0, ctx.stream>>>(bits_view<const uint32_t>(src), lines, bits_view<uint32_t>(dst));
  } else {
    gather_columns_kernel<uint16_t>
        <<<grid, kThreads, 0, ctx.stream>>>(bits_view<const uint16_t>(src), lines, bits_view<uint16_t>(dst));
  }
  S2FT_CUDA_CHECK_LAUNCH("gather_columns");
}

}  // namespace

// y = x W^T: [T, in] x [in, out], W read transposed in place.
// x_saved: columns -> x[:, S] ([T, k]); rows -> x ([T, in]), bytes moved.
void forward_partial(Context &ctx, const Lines &lines, const Matrix &x, const Matrix &w, const Matrix &y,
                     const Matrix *x_saved) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  gemm(s, Op::N, x, Op::T, w, y, false);
  if (x_saved == nullptr || x_saved->empty()) return;
  const Matrix &xs = *x_saved;
  if (lines.axis == S2FT_AXIS_ROWS) {
    copy(ctx, x, xs);
  } else if (lines.contiguous()) {
    copy(ctx, x.col_range(lines.begin, lines.count), xs);
  } else {
    gather_columns(ctx, x, s.upload(lines.indices.data(), lines.count), xs);
  }
}

// dx = dy W                [T, out] x [out, in]
// columns: dW_S = dy^T x_S [out, T] x [T, k]
// rows:    dW_S = dy_S^T x [k, T] x [T, in], dy_S = dy[:, S]: a strided
//          column range of dy when S is contiguous, else gathered into scratch.
void backward_partial(Context &ctx, const Lines &lines, const Matrix &w, const Matrix &x_in, const Matrix &dy,
                      const Matrix *dx, const Matrix &dw, bool accumulate_dx, bool accumulate_dw) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t T = dy.rows, k = lines.count;
  if (dx != nullptr) gemm(s, Op::N, dy, Op::N, w, *dx, accumulate_dx);
  if (lines.axis == S2FT_AXIS_COLUMNS) {
    gemm(s, Op::T, dy, Op::N, x_in, dw, accumulate_dw);
  } else if (lines.contiguous()) {
    gemm(s, Op::T, dy.col_range(lines.begin, k), Op::N, x_in, dw, accumulate_dw);
  } else {
    const Matrix dys = scratch_matrix(s, dy.dtype, T, k);
    if (T > 0) gather_columns(ctx, dy, s.upload(lines.indices.data(), k), dys);
    gemm(s, Op::T, dys, Op::N, x_in, dw, accumulate_dw);
  }
}

}  // namespace cuda
}  // namespace s2ft
