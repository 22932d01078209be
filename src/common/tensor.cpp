#include "common/tensor.hpp"

#include <cmath>
#include <limits>

#include "common/error.hpp"

namespace s2ft {

int32_t dtype_id(const s2ft_dtype &d) {
  if (d.lanes != 1) return -1;
  if (d.code == S2FT_DLPACK_FLOAT && d.bits == 32) return S2FT_F32;
  if (d.code == S2FT_DLPACK_FLOAT && d.bits == 16) return S2FT_F16;
  if (d.code == S2FT_DLPACK_BFLOAT && d.bits == 16) return S2FT_BF16;
  return -1;
}

const char *dtype_name(int32_t id) {
  switch (id) {
    case S2FT_F32: return "f32";
    case S2FT_F16: return "f16";
    case S2FT_BF16: return "bf16";
    default: return "unknown";
  }
}

size_t dtype_size(int32_t id) { return id == S2FT_F32 ? 4 : 2; }

s2ft_dtype dtype_from_id(int32_t id) {
  switch (id) {
    case S2FT_F32: return s2ft_dtype{S2FT_DLPACK_FLOAT, 32, 1};
    case S2FT_F16: return s2ft_dtype{S2FT_DLPACK_FLOAT, 16, 1};
    case S2FT_BF16: return s2ft_dtype{S2FT_DLPACK_BFLOAT, 16, 1};
    default: fail(S2FT_ERR_DTYPE, "unknown dtype " + std::to_string(id) + " (expected S2FT_F32, S2FT_F16 or S2FT_BF16)");
  }
}

std::string device_type_name(int32_t device_type) {
  if (device_type == S2FT_DEVICE_CPU) return "CPU";
  if (device_type == S2FT_DEVICE_CUDA) return "CUDA";
  return "type-" + std::to_string(device_type);
}

std::string device_name(const s2ft_device &d) {
  if (d.type == S2FT_DEVICE_CPU) return "the CPU";
  if (d.type == S2FT_DEVICE_CUDA) return "CUDA device " + std::to_string(d.id);
  return "device type " + std::to_string(d.type);
}

// IEEE binary16 <-> binary32, with subnormals, infinities, NaN and
// round-to-nearest-even, done on the bit patterns.
float f16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      u = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | man << 13;
  } else {
    u = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);  // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow to inf
  if (abs < 0x38800000u) {  // subnormal or zero in f16
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
    uint32_t exp = abs >> 23;
    uint32_t man = (abs & 0x7fffffu) | 0x800000u;
    // value = man * 2^(exp-150) and the f16 subnormal unit is 2^-24, so the
    // f16 mantissa is man >> (126 - exp), rounded to nearest even.
    uint32_t total = 126 - exp;
    uint32_t half = 1u << (total - 1);
    uint32_t rest = man & ((1u << total) - 1);
    uint32_t r = man >> total;
    if (rest > half || (rest == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  uint32_t r = abs - 0x38000000u;  // rebias exponent 127 -> 15
  uint32_t rest = r & 0x1fffu;
  r >>= 13;
  if (rest > 0x1000u || (rest == 0x1000u && (r & 1u))) ++r;
  return static_cast<uint16_t>(sign | r);
}

float Matrix::get(int64_t i, int64_t j) const {
  const char *p = at(i, j);
  switch (dtype) {
    case S2FT_F32: {
      float v;
      std::memcpy(&v, p, 4);
      return v;
    }
    case S2FT_BF16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return bf16_to_f32(h);
    }
    default: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return f16_to_f32(h);
    }
  }
}

void Matrix::set(int64_t i, int64_t j, float v) const {
  char *p = at(i, j);
  switch (dtype) {
    case S2FT_F32: std::memcpy(p, &v, 4); break;
    case S2FT_BF16: {
      uint16_t h = f32_to_bf16(v);
      std::memcpy(p, &h, 2);
      break;
    }
    default: {
      uint16_t h = f32_to_f16(v);
      std::memcpy(p, &h, 2);
      break;
    }
  }
}

Matrix Matrix::col_range(int64_t c0, int64_t n) const {
  Matrix m = *this;
  m.base = n > 0 && rows > 0 ? at(0, c0) : base;
  m.cols = n;
  return m;
}

Matrix Matrix::row_range(int64_t r0, int64_t n) const {
  Matrix m = *this;
  m.base = n > 0 && cols > 0 ? at(r0, 0) : base;
  m.rows = n;
  return m;
}

void Matrix::byte_span(uintptr_t *lo, uintptr_t *hi) const {
  uintptr_t b = reinterpret_cast<uintptr_t>(base);
  if (empty()) {
    *lo = *hi = b;
    return;
  }
  *lo = b;
  *hi = b + static_cast<uintptr_t>(((rows - 1) * rs + (cols - 1) * cs + 1) * static_cast<int64_t>(elem()));
}

bool overlaps(const Matrix &a, const Matrix &b) {
  uintptr_t alo, ahi, blo, bhi;
  a.byte_span(&alo, &ahi);
  b.byte_span(&blo, &bhi);
  if (alo == ahi || blo == bhi) return false;
  return alo < bhi && blo < ahi;
}

Matrix f32_view(float *data, int64_t rows, int64_t cols) {
  Matrix m;
  m.base = reinterpret_cast<char *>(data);
  m.dtype = S2FT_F32;
  m.rows = rows;
  m.cols = cols;
  m.rs = cols;
  m.cs = 1;
  return m;
}

void require_shape(const Matrix &m, const char *name, int64_t rows, int64_t cols) {
  if (m.rows != rows || m.cols != cols)
    fail_shape(std::string(name) + " must be [" + std::to_string(rows) + ", " + std::to_string(cols) + "], got [" +
               std::to_string(m.rows) + ", " + std::to_string(m.cols) + "]");
}

void require_same_dtype(const Matrix &a, const char *an, const Matrix &b, const char *bn) {
  if (a.dtype != b.dtype)
    fail(S2FT_ERR_DTYPE, std::string(an) + " is " + dtype_name(a.dtype) + " but " + bn + " is " + dtype_name(b.dtype));
}

void require_disjoint(const Matrix &out, const char *on, const Matrix &in, const char *in_name) {
  if (overlaps(out, in)) fail_arg(std::string(on) + " overlaps " + in_name + " (outputs must not alias inputs)");
}

namespace {
// Row of n elements with unit stride -> f32, one tight loop per dtype (the
// per-element dtype switch of Matrix::get costs more than the conversion).
void row_to_f32(const char *src, int32_t dtype, int64_t n, float *dst) {
  if (dtype == S2FT_F32) {
    std::memcpy(dst, src, static_cast<size_t>(n) * 4);
    return;
  }
  const uint16_t *h = reinterpret_cast<const uint16_t *>(src);
  if (dtype == S2FT_BF16) {
    for (int64_t j = 0; j < n; ++j) dst[j] = bf16_to_f32(h[j]);
  } else {
    for (int64_t j = 0; j < n; ++j) dst[j] = f16_to_f32(h[j]);
  }
}
}  // namespace

std::vector<float> to_f32(const Matrix &m) {
  std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
  to_f32(m, out.data());
  return out;
}

void to_f32(const Matrix &m, float *out) {
  const bool unit_cols = m.cols <= 1 || m.cs == 1;
  for (int64_t i = 0; i < m.rows; ++i) {
    float *dst = out + i * m.cols;
    if (unit_cols && m.cols > 0) {
      row_to_f32(m.at(i, 0), m.dtype, m.cols, dst);
    } else {
      for (int64_t j = 0; j < m.cols; ++j) dst[j] = m.get(i, j);
    }
  }
}

void from_f32(const float *src, const Matrix &dst, bool accumulate) {
  const bool fast = !accumulate && (dst.cols <= 1 || dst.cs == 1);
  for (int64_t i = 0; i < dst.rows; ++i) {
    const float *row = src + i * dst.cols;
    if (fast && dst.cols > 0) {  // unit stride: one tight loop per dtype
      char *p = dst.at(i, 0);
      uint16_t *h = reinterpret_cast<uint16_t *>(p);
      if (dst.dtype == S2FT_F32) {
        std::memcpy(p, row, static_cast<size_t>(dst.cols) * 4);
      } else if (dst.dtype == S2FT_BF16) {
        for (int64_t j = 0; j < dst.cols; ++j) h[j] = f32_to_bf16(row[j]);
      } else {
        for (int64_t j = 0; j < dst.cols; ++j) h[j] = f32_to_f16(row[j]);
      }
      continue;
    }
    for (int64_t j = 0; j < dst.cols; ++j) {
      float v = row[j];
      if (accumulate) v += dst.get(i, j);
      dst.set(i, j, v);
    }
  }
}

}  // namespace s2ft
