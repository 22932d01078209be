#include "elements.hpp"

#include <cmath>
#include <cstring>


namespace s2ft {
namespace cli {

namespace {

uint32_t load_u32(const uint8_t *p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

uint16_t load_u16(const uint8_t *p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

float f32_from_bits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// IEEE binary16: 1 sign bit, 5 exponent bits (bias 15), 10 mantissa bits.
double f16_value(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  const double sign = (h & 0x8000) != 0 ? -1.0 : 1.0;
  if (exponent == 0) return sign * std::ldexp(mantissa, -24);  // zero and subnormals
  if (exponent == 31) return mantissa == 0 ? sign * INFINITY : NAN;
  return sign * std::ldexp(mantissa + 1024, exponent - 25);
}

// Sign-magnitude bits mapped onto a line where neighbouring values are
// neighbouring integers (and +0, -0 both map to 0).
int64_t ordered(uint32_t bits, int sign_bit) {
  const uint32_t sign = 1u << sign_bit;
  return (bits & sign) != 0 ? -static_cast<int64_t>(bits & ~sign) : static_cast<int64_t>(bits);
}

uint64_t element_bits(const uint8_t *p, int32_t dtype) { return dtype == S2FT_F32 ? load_u32(p) : load_u16(p); }

}  // namespace

size_t element_size(int32_t dtype) { return dtype == S2FT_F32 ? 4 : 2; }

int32_t tensor_dtype(const s2ft_tensor &t) {
  if (t.dtype.code == S2FT_DLPACK_BFLOAT) return S2FT_BF16;
  return t.dtype.bits == 32 ? S2FT_F32 : S2FT_F16;
}

double element_value(const uint8_t *p, int32_t dtype) {
  switch (dtype) {
    case S2FT_F32: return f32_from_bits(load_u32(p));
    case S2FT_BF16: return f32_from_bits(static_cast<uint32_t>(load_u16(p)) << 16);  // bf16 is the top half of f32
    default: return f16_value(load_u16(p));
  }
}

uint64_t ulp_distance(const uint8_t *a, const uint8_t *b, int32_t dtype) {
  const int sign_bit = dtype == S2FT_F32 ? 31 : 15;
  const int64_t x = ordered(static_cast<uint32_t>(element_bits(a, dtype)), sign_bit);
  const int64_t y = ordered(static_cast<uint32_t>(element_bits(b, dtype)), sign_bit);
  return static_cast<uint64_t>(x > y ? x - y : y - x);
}

}  // namespace cli
}  // namespace s2ft
