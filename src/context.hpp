// The context object behind the opaque s2ft_context handle: a device and
// the backend instance that computes on it.
#pragma once

#include <utility>

#include "backend/backend.hpp"
#include "common/live_handles.hpp"
#include "s2ft/s2ft.h"

struct s2ft_context {
  s2ft::LiveHandle<s2ft::HandleKind::context> live;  // first: counted, and tagged while alive
  s2ft_device device{S2FT_DEVICE_CPU, 0};
  const s2ft::backend::Ops *ops = nullptr;
  s2ft::backend::Instance *instance = nullptr;
  // How s2ft_adapter_forward_mixed adds deltas (S2FT_DELTA_PATH_*, set by
  // s2ft_context_set_delta_path).
  int32_t delta_path = S2FT_DELTA_PATH_AUTO;

  s2ft_context() = default;
  s2ft_context(const s2ft_context &) = delete;
  s2ft_context &operator=(const s2ft_context &) = delete;
  ~s2ft_context() {
    if (instance != nullptr) ops->destroy(instance);
  }
};

namespace s2ft {

// Throws S2FT_ERR_INVALID_ARGUMENT "<name> is NULL" for a NULL context.
s2ft_context &require_context(s2ft_context *ctx, const char *name = "ctx");

// Runs one operation of the context's backend, ops->op(instance, args...),
// and turns a failed status into an Error carrying the backend's message.
template <typename... P, typename... A>
void run(const s2ft_context &ctx, s2ft_status (*backend::Ops::*op)(backend::Instance *, P...), A &&...args) {
  backend::check(*ctx.ops, (ctx.ops->*op)(ctx.instance, std::forward<A>(args)...));
}

}  // namespace s2ft
