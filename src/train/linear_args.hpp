// The checked arguments of a linear layer's forward y = x W^T, shared by
// s2ft_forward_partial and s2ft_adapter_forward_mixed.
#pragma once

#include "common/tensor.hpp"
#include "context.hpp"

namespace s2ft {

struct LinearArgs {
  Matrix x, w, y;  // [T, in], [out, in], [T, out]
};

// Validates x, w, y (named "x", "w", "y") on the context's device: shapes
// that fit, one dtype, y overlapping neither input.
LinearArgs check_linear(const s2ft_context &ctx, const s2ft_tensor *x, const s2ft_tensor *w, const s2ft_tensor *y);

}  // namespace s2ft
