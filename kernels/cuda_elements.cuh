// Element types on the device: f32, f16 and bf16 loads that widen to f32 and
// stores that round to nearest even, matching the CPU backend's conversions
// bit for bit; and the dispatch from a runtime dtype id to a template.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/error.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {
namespace cuda {

template <typename T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Rounds a double once to T (never through f32 for 16-bit types, which
// could round twice on near-ties); matches the CPU backend's model updates.
template <typename T>
__device__ __forceinline__ T from_f64(double v);
template <>
__device__ __forceinline__ float from_f64<float>(double v) {
  return static_cast<float>(v);
}
template <>
__device__ __forceinline__ __half from_f64<__half>(double v) {
  return __double2half(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f64<__nv_bfloat16>(double v) {
  return __double2bfloat16(v);
}

// Calls f(T{}) with T the element type of dtype id `dtype`.
template <typename F>
void dispatch_dtype(int32_t dtype, F &&f) {
  switch (dtype) {
    case S2FT_F32:
      f(float{});
      return;
    case S2FT_F16:
      f(__half{});
      return;
    case S2FT_BF16:
      f(__nv_bfloat16{});
      return;
    default:
      fail(S2FT_ERR_DTYPE, "unsupported dtype id " + std::to_string(dtype) + " on CUDA");
  }
}

}  // namespace cuda
}  // namespace s2ft
