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
  // How s2ft_adapter_forward_mixed adds deltas (S2FT_DELTA_PATH_*, set by
  // s2ft_context_set_delta_path), and on CUDA its state: the path AUTO chose
  // per shape and the cached device CSR deltas (kernels/cuda_forward_mixed.cu;
  // opaque here). Declared after `cuda` so it is released first.
  int32_t delta_path = S2FT_DELTA_PATH_AUTO;
  std::shared_ptr<void> cuda_mixed_state;

  bool on_cuda() const { return device.type == S2FT_DEVICE_CUDA; }
};

namespace s2ft {
// Throws S2FT_ERR_INVALID_ARGUMENT "<name> is NULL" for a NULL context.
s2ft_context &require_context(s2ft_context *ctx, const char *name = "ctx");
// Throws S2FT_ERR_UNSUPPORTED naming `what` when ctx is a CPU context.
cuda::Context &require_cuda(s2ft_context &ctx, const char *what);
}  // namespace s2ft
