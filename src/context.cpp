// Contexts: a device, its backend (the CPU's, or a module loaded on first
// use) and the backend's instance; the stream and workspace settings.
#include "context.hpp"

#include <memory>
#include <string>

#include "backend/loader.hpp"
#include "common/error.hpp"
#include "common/options.hpp"

namespace s2ft {

s2ft_context &require_context(s2ft_context *ctx, const char *name) {
  require_live(ctx, name);
  return *ctx;
}

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_device_count(int32_t device_type, int32_t *out) {
  return s2ft::guard("s2ft_device_count", [&] {
    s2ft::require_not_null(out, "out");
    *out = 0;
    if (device_type != S2FT_DEVICE_CPU && device_type != S2FT_DEVICE_CUDA)
      s2ft::fail_arg("device_type must be S2FT_DEVICE_CPU or S2FT_DEVICE_CUDA, got " + std::to_string(device_type));
    // No usable backend means no devices, not an error; the message says why.
    std::string why;
    const s2ft::backend::Ops *ops = s2ft::backend::find_ops(device_type, &why);
    int32_t n = 0;
    if (ops != nullptr && ops->device_count(&n) != S2FT_OK) {
      why = ops->last_error();
      ops = nullptr;
    }
    if (ops == nullptr) {
      s2ft::set_error(S2FT_ERR_UNSUPPORTED, "s2ft_device_count: no " + s2ft::device_type_name(device_type) +
                                                " devices usable: " + why);
      return;
    }
    *out = n;
  });
}

S2FT_API s2ft_status s2ft_context_options_init(s2ft_context_options *opts, uint32_t version) {
  return s2ft::guard("s2ft_context_options_init", [&] {
    s2ft::require_not_null(opts, "opts");
    s2ft::check_init_version(version, S2FT_CONTEXT_OPTIONS_VERSION);
    *opts = s2ft_context_options{};
    opts->version = version;
    opts->device_type = S2FT_DEVICE_CPU;
  });
}

S2FT_API s2ft_status s2ft_context_create(const s2ft_context_options *opts, s2ft_context **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_context_create", [&] {
    s2ft::require_not_null(out, "out");
    s2ft_context_options o;
    s2ft_context_options_init(&o, S2FT_CONTEXT_OPTIONS_VERSION);
    if (opts != nullptr) {
      s2ft::check_options_version(opts->version, S2FT_CONTEXT_OPTIONS_VERSION, "s2ft_context_options_init");
      o = *opts;
    }
    if (o.device_type != S2FT_DEVICE_CPU && o.device_type != S2FT_DEVICE_CUDA)
      s2ft::fail_arg("opts->device_type must be S2FT_DEVICE_CPU or S2FT_DEVICE_CUDA, got " +
                     std::to_string(o.device_type));
    if (o.device_id < 0) s2ft::fail_arg("opts->device_id must be >= 0");
    if (o.num_threads < 0) s2ft::fail_arg("opts->num_threads must be >= 0");
    if (o.device_type == S2FT_DEVICE_CPU && o.device_id != 0) s2ft::fail_arg("opts->device_id must be 0 for the CPU");
    auto ctx = std::make_unique<s2ft_context>();
    ctx->device = s2ft_device{o.device_type, o.device_id};
    ctx->ops = &s2ft::backend::ops_for(o.device_type);
    s2ft::backend::check(*ctx->ops, ctx->ops->create(o.device_id, o.num_threads, &ctx->instance));
    *out = ctx.release();
  });
}

S2FT_API void s2ft_context_destroy(s2ft_context *ctx) {
  if (s2ft::destroyable(ctx)) delete ctx;
}

S2FT_API s2ft_status s2ft_context_device(const s2ft_context *ctx, s2ft_device *out) {
  return s2ft::guard("s2ft_context_device", [&] {
    s2ft::require_live(ctx, "ctx");
    s2ft::require_not_null(out, "out");
    *out = ctx->device;
  });
}

S2FT_API s2ft_status s2ft_context_set_stream(s2ft_context *ctx, void *stream) {
  return s2ft::guard("s2ft_context_set_stream", [&] {
    s2ft::run(s2ft::require_context(ctx), &s2ft::backend::Ops::set_stream, stream);
  });
}

S2FT_API s2ft_status s2ft_context_stream(const s2ft_context *ctx, void **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_context_stream", [&] {
    s2ft::require_live(ctx, "ctx");
    s2ft::require_not_null(out, "out");
    s2ft::run(*ctx, &s2ft::backend::Ops::stream, out);
  });
}

S2FT_API s2ft_status s2ft_context_set_workspace(s2ft_context *ctx, void *workspace, size_t bytes) {
  return s2ft::guard("s2ft_context_set_workspace", [&] {
    s2ft::run(s2ft::require_context(ctx), &s2ft::backend::Ops::set_workspace, workspace, bytes);
  });
}

S2FT_API s2ft_status s2ft_context_workspace_needed(const s2ft_context *ctx, size_t *out) {
  return s2ft::guard("s2ft_context_workspace_needed", [&] {
    s2ft::require_live(ctx, "ctx");
    s2ft::require_not_null(out, "out");
    s2ft::run(*ctx, &s2ft::backend::Ops::workspace_needed, out);
  });
}

S2FT_API s2ft_status s2ft_context_set_delta_path(s2ft_context *ctx, int32_t path) {
  return s2ft::guard("s2ft_context_set_delta_path", [&] {
    s2ft_context &c = s2ft::require_context(ctx);
    if (path != S2FT_DELTA_PATH_AUTO && path != S2FT_DELTA_PATH_DENSE && path != S2FT_DELTA_PATH_SPARSE)
      s2ft::fail_arg("path must be S2FT_DELTA_PATH_AUTO, S2FT_DELTA_PATH_DENSE or S2FT_DELTA_PATH_SPARSE, got " +
                     std::to_string(path));
    if (path == S2FT_DELTA_PATH_SPARSE && !(c.ops->capabilities & s2ft::backend::kCapSparseDeltaPath))
      s2ft::fail(S2FT_ERR_UNSUPPORTED, std::string("S2FT_DELTA_PATH_SPARSE needs a CUDA context; the ") +
                                           c.ops->name + " backend has only the dense path");
    c.delta_path = path;
  });
}

S2FT_API s2ft_status s2ft_context_synchronize(s2ft_context *ctx) {
  return s2ft::guard("s2ft_context_synchronize", [&] {
    s2ft::run(s2ft::require_context(ctx), &s2ft::backend::Ops::synchronize);
  });
}

}  // extern "C"
