// Single elements of the F32, F16 and BF16 weights the tool edits: their
// value, and how far apart two of them are in representable steps (units in
// the last place), which is how `s2ft diff` tells a bit-exact round trip
// from one that is off by one rounding.
#pragma once

#include <cstddef>
#include <cstdint>

#include "s2ft/s2ft.h"

namespace s2ft {
namespace cli {

// The value of one element of dtype S2FT_F32, S2FT_F16 or S2FT_BF16.
double element_value(const uint8_t *p, int32_t dtype);

// The number of representable values of `dtype` one must step through to
// get from element a to element b: 0 for the same value (+0 and -0
// included), 1 for neighbours.
uint64_t ulp_distance(const uint8_t *a, const uint8_t *b, int32_t dtype);

// Bytes per element of dtype S2FT_F32, S2FT_F16 or S2FT_BF16.
size_t element_size(int32_t dtype);

// The S2FT_F32 / S2FT_F16 / S2FT_BF16 value of a tensor's DLPack dtype.
int32_t tensor_dtype(const s2ft_tensor &t);

}  // namespace cli
}  // namespace s2ft
