#include "cuda_copy.cuh"

namespace s2ft {
namespace cuda {
namespace {

// One grid-stride loop over the rows x cols elements of a view; consecutive
// threads take consecutive columns so that row-major views coalesce.
template <typename S, typename D>
__global__ void copy_kernel(View<const S> src, View<D> dst) {
  const int64_t n = dst.rows * dst.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / dst.cols, j = t % dst.cols;
    dst.at(i, j) = from_f32<D>(to_f32(src.at(i, j)));
  }
}

// Same dtype: move the bits (exact for NaN payloads and signed zeros too).
template <typename T>
__global__ void copy_bits_kernel(View<const T> src, View<T> dst) {
  const int64_t n = dst.rows * dst.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / dst.cols, j = t % dst.cols;
    dst.at(i, j) = src.at(i, j);
  }
}

__device__ __forceinline__ int64_t line_at(const int64_t *lines, int64_t begin, int64_t j) {
  return lines != nullptr ? lines[j] : begin + j;
}

// Gather: element (i, j) of dst comes from src (i, line(j)) or (line(i), j).
template <typename S, typename D>
__global__ void gather_kernel(View<const S> src, int32_t axis, const int64_t *lines, int64_t begin, View<D> dst) {
  const int64_t n = dst.rows * dst.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / dst.cols, j = t % dst.cols;
    const S v = axis == S2FT_AXIS_COLUMNS ? src.at(i, line_at(lines, begin, j)) : src.at(line_at(lines, begin, i), j);
    dst.at(i, j) = from_f32<D>(to_f32(v));
  }
}

// Scatter: src (i, j) goes to dst (i, line(j)) or (line(i), j). Lines are
// distinct, so no two threads write one element.
template <typename S, typename D>
__global__ void scatter_kernel(View<const S> src, int32_t axis, const int64_t *lines, int64_t begin, View<D> dst,
                               bool accumulate) {
  const int64_t n = src.rows * src.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / src.cols, j = t % src.cols;
    D &out = axis == S2FT_AXIS_COLUMNS ? dst.at(i, line_at(lines, begin, j)) : dst.at(line_at(lines, begin, i), j);
    const float v = to_f32(src.at(i, j));
    out = from_f32<D>(accumulate ? to_f32(out) + v : v);
  }
}

template <typename D>
__global__ void fill_kernel(View<D> dst, float value) {
  const int64_t n = dst.rows * dst.cols;
  const D v = from_f32<D>(value);
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst.at(t / dst.cols, t % dst.cols) = v;
}

template <typename S>
View<const S> const_view(const Matrix &m) {
  return View<const S>{reinterpret_cast<const S *>(m.base), m.rows, m.cols, m.rs, m.cs};
}

}  // namespace

Matrix device_matrix(void *data, int32_t dtype, int64_t rows, int64_t cols, int32_t device) {
  Matrix m;
  m.base = static_cast<char *>(data);
  m.dtype = dtype;
  m.rows = rows;
  m.cols = cols;
  m.rs = cols;
  m.cs = 1;
  m.device = s2ft_device{S2FT_DEVICE_CUDA, device};
  return m;
}

Matrix scratch_matrix(Scratch &s, int32_t dtype, int64_t rows, int64_t cols) {
  return device_matrix(s.alloc(static_cast<size_t>(rows * cols) * dtype_size(dtype)), dtype, rows, cols,
                       s.ctx().device);
}

void copy(Context &ctx, const Matrix &src, const Matrix &dst) {
  if (dst.empty()) return;
  const unsigned grid = grid_for(ctx, dst.rows * dst.cols);
  if (src.dtype == dst.dtype) {
    dispatch_dtype(src.dtype, [&](auto t) {
      using T = decltype(t);
      copy_bits_kernel<T><<<grid, kThreads, 0, ctx.stream>>>(const_view<T>(src), view_of<T>(dst));
    });
  } else {
    dispatch_dtype(src.dtype, [&](auto s) {
      dispatch_dtype(dst.dtype, [&](auto d) {
        using S = decltype(s);
        using D = decltype(d);
        copy_kernel<S, D><<<grid, kThreads, 0, ctx.stream>>>(const_view<S>(src), view_of<D>(dst));
      });
    });
  }
  S2FT_CUDA_CHECK_LAUNCH("copy");
}

Matrix pack(Scratch &s, const Matrix &src, int32_t dtype) {
  const bool compact = src.dtype == dtype && (src.cols <= 1 || src.cs == 1) && (src.rows <= 1 || src.rs == src.cols);
  if (compact) {
    Matrix m = src;
    m.rs = src.cols;
    m.cs = 1;
    return m;
  }
  Matrix out = scratch_matrix(s, dtype, src.rows, src.cols);
  copy(s.ctx(), src, out);
  return out;
}

void gather_lines(Context &ctx, const Matrix &src, const DeviceLines &lines, const Matrix &dst) {
  if (dst.empty()) return;
  const unsigned grid = grid_for(ctx, dst.rows * dst.cols);
  dispatch_dtype(src.dtype, [&](auto s) {
    dispatch_dtype(dst.dtype, [&](auto d) {
      using S = decltype(s);
      using D = decltype(d);
      gather_kernel<S, D><<<grid, kThreads, 0, ctx.stream>>>(const_view<S>(src), lines.axis, lines.lines, lines.begin,
                                                             view_of<D>(dst));
    });
  });
  S2FT_CUDA_CHECK_LAUNCH("gather_lines");
}

void scatter_lines(Context &ctx, const Matrix &src, const DeviceLines &lines, const Matrix &dst, bool accumulate) {
  if (src.empty()) return;
  const unsigned grid = grid_for(ctx, src.rows * src.cols);
  dispatch_dtype(src.dtype, [&](auto s) {
    dispatch_dtype(dst.dtype, [&](auto d) {
      using S = decltype(s);
      using D = decltype(d);
      scatter_kernel<S, D><<<grid, kThreads, 0, ctx.stream>>>(const_view<S>(src), lines.axis, lines.lines, lines.begin,
                                                              view_of<D>(dst), accumulate);
    });
  });
  S2FT_CUDA_CHECK_LAUNCH("scatter_lines");
}

void fill(Context &ctx, const Matrix &dst, float value) {
  if (dst.empty()) return;
  dispatch_dtype(dst.dtype, [&](auto d) {
    using D = decltype(d);
    fill_kernel<D><<<grid_for(ctx, dst.rows * dst.cols), kThreads, 0, ctx.stream>>>(view_of<D>(dst), value);
  });
  S2FT_CUDA_CHECK_LAUNCH("fill");
}

}  // namespace cuda
}  // namespace s2ft
