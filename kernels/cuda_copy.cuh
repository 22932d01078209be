// Moving elements between strided device views: copy with dtype conversion,
// packing into compact scratch, gathering and scattering weight lines, and
// filling. Every function queues work on the context's stream and returns.
#pragma once

#include <cstdint>

#include "common/tensor.hpp"
#include "cuda_elements.cuh"
#include "cuda_runtime.cuh"

namespace s2ft {
namespace cuda {

// A typed strided view for kernels: element (i, j) is p[i * rs + j * cs].
template <typename T>
struct View {
  T *p;
  int64_t rows, cols, rs, cs;
  __device__ __forceinline__ T &at(int64_t i, int64_t j) const { return p[i * rs + j * cs]; }
};

template <typename T>
View<T> view_of(const Matrix &m) {
  return View<T>{reinterpret_cast<T *>(m.base), m.rows, m.cols, m.rs, m.cs};
}

// A compact row-major [rows, cols] device matrix of `dtype` in scratch.
Matrix scratch_matrix(Scratch &s, int32_t dtype, int64_t rows, int64_t cols);
// A compact row-major view of device memory the caller owns.
Matrix device_matrix(void *data, int32_t dtype, int64_t rows, int64_t cols, int32_t device);

// dst = src element by element (same shape). Same dtype moves bits exactly;
// otherwise values are widened to f32 and rounded to nearest even.
void copy(Context &ctx, const Matrix &src, const Matrix &dst);
// src as a compact row-major matrix of `dtype` (src itself when it already is).
Matrix pack(Scratch &s, const Matrix &src, int32_t dtype);

// Lines of a weight-shaped matrix: `lines` is a device array of `count`
// indices, or NULL for the contiguous range [begin, begin + count).
struct DeviceLines {
  int32_t axis = S2FT_AXIS_COLUMNS;
  int64_t begin = 0, count = 0;
  const int64_t *lines = nullptr;
};

// Columns: dst[:, j] = src[:, line(j)] (dst [src.rows, count]);
// rows:    dst[j, :] = src[line(j), :] (dst [count, src.cols]).
void gather_lines(Context &ctx, const Matrix &src, const DeviceLines &lines, const Matrix &dst);
// The inverse: dst's lines line(j) = src's j-th column (or row); with
// `accumulate` the values are added (in f32) instead of stored.
void scatter_lines(Context &ctx, const Matrix &src, const DeviceLines &lines, const Matrix &dst, bool accumulate);

// Every element of dst = value (rounded to dst's dtype).
void fill(Context &ctx, const Matrix &dst, float value);

}  // namespace cuda
}  // namespace s2ft
