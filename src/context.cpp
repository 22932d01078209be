// Context creation: picks and initialises the backend for the requested device.
#include "context.hpp"

#include <string>

#include "common/error.hpp"
#include "common/options.hpp"
#include "common/tensor.hpp"

#ifdef S2FT_WITH_CUDA
#include "cuda_probe.h"
#endif

namespace s2ft {

s2ft_context &require_context(s2ft_context *ctx, const char *name) {
  require_not_null(ctx, name);
  return *ctx;
}

namespace {

void check_cuda_device(int32_t id) {
#ifdef S2FT_WITH_CUDA
  int count = 0;
  std::string why;
  if (!s2ft_cuda_probe_device_count(&count, &why))
    fail(S2FT_ERR_UNSUPPORTED, "no usable CUDA runtime or driver: " + why);
  if (id >= count)
    fail_arg("opts->device_id " + std::to_string(id) + " is out of range: " + std::to_string(count) +
             " CUDA device(s) present");
  fail(S2FT_ERR_UNSUPPORTED,
       "this version of libs2ft has no CUDA compute backend yet; create a CPU context (device_type S2FT_DEVICE_CPU)");
#else
  (void)id;
  fail(S2FT_ERR_UNSUPPORTED, "libs2ft was built without CUDA (S2FT_WITH_CUDA=OFF); only CPU contexts are available");
#endif
}

}  // namespace
}  // namespace s2ft

extern "C" {

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
    if (o.device_id < 0) s2ft::fail_arg("opts->device_id must be >= 0");
    if (o.num_threads < 0) s2ft::fail_arg("opts->num_threads must be >= 0");
    auto ctx = std::make_unique<s2ft_context>();
    ctx->device = s2ft_device{o.device_type, o.device_id};
    if (o.device_type == S2FT_DEVICE_CPU) {
      if (o.device_id != 0) s2ft::fail_arg("opts->device_id must be 0 for the CPU");
      ctx->backend = s2ft::make_cpu_backend(o.num_threads);
    } else if (o.device_type == S2FT_DEVICE_CUDA) {
      s2ft::check_cuda_device(o.device_id);
    } else {
      s2ft::fail_arg("opts->device_type must be S2FT_DEVICE_CPU or S2FT_DEVICE_CUDA, got " +
                     std::to_string(o.device_type));
    }
    *out = ctx.release();
  });
}

S2FT_API void s2ft_context_destroy(s2ft_context *ctx) { delete ctx; }

S2FT_API s2ft_status s2ft_context_device(const s2ft_context *ctx, s2ft_device *out) {
  return s2ft::guard("s2ft_context_device", [&] {
    s2ft::require_not_null(ctx, "ctx");
    s2ft::require_not_null(out, "out");
    *out = ctx->device;
  });
}

}  // extern "C"
