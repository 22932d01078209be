// The context object behind the opaque s2ft_context handle.
#pragma once

#include "common/live_handles.hpp"
#include <memory>

#include "backend/backend.hpp"
#include "cuda_context.hpp"
#include "s2ft/s2ft.h"

struct s2ft_context {
  s2ft::LiveHandle live;  // counted by s2ft_live_handles()
  s2ft_device device{S2FT_DEVICE_CPU, 0};
  std::unique_ptr<s2ft::Backend> backend;  // CPU contexts
  s2ft::cuda::ContextPtr cuda;             // CUDA contexts (kernels/)

  bool on_cuda() const { return device.type == S2FT_DEVICE_CUDA; }
};

namespace s2ft {
// Throws S2FT_ERR_INVALID_ARGUMENT "<name> is NULL" for a NULL context.
s2ft_context &require_context(s2ft_context *ctx, const char *name = "ctx");
// Throws S2FT_ERR_UNSUPPORTED naming `what` when ctx is a CPU context.
cuda::Context &require_cuda(s2ft_context &ctx, const char *what);
}  // namespace s2ft
