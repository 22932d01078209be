// Checked 2-D views of s2ft_tensor descriptors, and element conversion
// between f32 and the 16-bit float formats. Every public entry point turns
// its tensor arguments into Matrix values through check_matrix(), which is
// where shape, dtype, device and address-range validation happens.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "s2ft/s2ft.h"

namespace s2ft {

// Element type as S2FT_F32 / S2FT_F16 / S2FT_BF16, or -1 when unsupported.
int32_t dtype_id(const s2ft_dtype &d);
const char *dtype_name(int32_t id);
size_t dtype_size(int32_t id);
s2ft_dtype dtype_from_id(int32_t id);  // throws S2FT_ERR_DTYPE on unknown ids
std::string device_name(const s2ft_device &d);   // "the CPU", "CUDA device 1"
std::string device_type_name(int32_t device_type);  // "CPU", "CUDA"

// bfloat16: the upper half of an IEEE f32; rounding is to nearest even.
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);

// A rank-2 strided view: element (i, j) lives at base + (i*rs + j*cs) * size.
struct Matrix {
  char *base = nullptr;  // data + byte_offset
  int32_t dtype = S2FT_F32;
  int64_t rows = 0, cols = 0;
  int64_t rs = 0, cs = 0;  // strides in elements
  s2ft_device device{S2FT_DEVICE_CPU, 0};

  size_t elem() const { return dtype_size(dtype); }
  char *at(int64_t i, int64_t j) const { return base + (i * rs + j * cs) * static_cast<int64_t>(elem()); }
  float get(int64_t i, int64_t j) const;
  void set(int64_t i, int64_t j, float v) const;
  // True when BLAS can take it directly: f32, unit column stride, rows padded by rs.
  bool blas_ready() const { return dtype == S2FT_F32 && (cols <= 1 || cs == 1) && (rows <= 1 || rs >= cols); }
  int64_t ld() const { return rows <= 1 ? (cols > 0 ? cols : 1) : rs; }
  float *f32() const { return reinterpret_cast<float *>(base); }
  // The sub-view of columns [c0, c0 + n).
  Matrix col_range(int64_t c0, int64_t n) const;
  Matrix row_range(int64_t r0, int64_t n) const;
  bool empty() const { return rows == 0 || cols == 0; }
  // The half-open byte range [lo, hi) the view touches (empty view: lo == hi).
  void byte_span(uintptr_t *lo, uintptr_t *hi) const;
};

bool overlaps(const Matrix &a, const Matrix &b);

// A compact row-major [rows, cols] f32 view of host memory (scratch buffers).
Matrix f32_view(float *data, int64_t rows, int64_t cols);

// Validates `t` as a rank-2 tensor named `name` on `device` and returns the view.
// Checks: not NULL, rank 2, supported dtype, non-negative shape and strides,
// data non-NULL when non-empty, and no overflow in the address arithmetic.
Matrix check_matrix(const s2ft_tensor *t, const char *name, const s2ft_device &device);

// The same for a vector of n elements: a rank-1 tensor [n] or a rank-2
// tensor [1, n], returned as a [1, n] view (S2FT_ERR_SHAPE for other shapes).
Matrix check_vector(const s2ft_tensor *t, const char *name, const s2ft_device &device, int64_t n);

// Throws S2FT_ERR_SHAPE unless m is [rows, cols].
void require_shape(const Matrix &m, const char *name, int64_t rows, int64_t cols);
// Throws S2FT_ERR_DTYPE unless a and b have the same dtype.
void require_same_dtype(const Matrix &a, const char *an, const Matrix &b, const char *bn);
// Throws S2FT_ERR_INVALID_ARGUMENT when an output overlaps an input.
void require_disjoint(const Matrix &out, const char *on, const Matrix &in, const char *in_name);

// Copies a view into a compact row-major f32 buffer, and back.
std::vector<float> to_f32(const Matrix &m);
void to_f32(const Matrix &m, float *dst);  // dst holds rows * cols floats
void from_f32(const float *src, const Matrix &dst, bool accumulate);

}  // namespace s2ft
