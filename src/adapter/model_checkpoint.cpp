// Models over a checkpoint's weights, their layers, and applying adapter
// files in one call.
#include <cmath>
#include <vector>

#include "adapter/model.hpp"
#include "checkpoint/checkpoint.hpp"
#include "common/error.hpp"
#include "context.hpp"
#include "model_shape.hpp"

namespace s2ft {
namespace {

// Throws the error a nested public call recorded.
void check_call(s2ft_status st) {
  if (st != S2FT_OK) fail(st, s2ft_last_error());
}

// Frees the adapters a call loaded, whatever happens.
struct LoadedAdapters {
  std::vector<s2ft_adapter *> list;
  ~LoadedAdapters() {
    for (s2ft_adapter *a : list) s2ft_adapter_destroy(a);
  }
};

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_model_from_checkpoint(s2ft_context *ctx, s2ft_checkpoint *ckpt,
                                                const s2ft_model_shape *shape, const s2ft_selection *perm,
                                                s2ft_model **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_model_from_checkpoint", [&] {
    using namespace s2ft;
    require_not_null(out, "out");
    s2ft_context &c = require_context(ctx);
    s2ft_checkpoint &k = require_live(ckpt, "ckpt");
    if (c.device.type != S2FT_DEVICE_CPU)
      fail(S2FT_ERR_UNSUPPORTED, "a model from a checkpoint needs a CPU context (the weights are host memory); for " +
                                     device_name(c.device) + " copy them to the device and use s2ft_model_create");
    const s2ft_model_shape s = shape != nullptr ? *shape : checkpoint::model_shape(k);
    check_model_shape(&s, "shape");
    // Descriptors of the seven weights, in s2ft_layer_weights order (the
    // checkpoint's projection order; s2ft_model_create copies them). The
    // views map the file lazily: a model reads a weight only where an
    // adapter changes it.
    constexpr int kP = checkpoint::kNumProjections;
    std::vector<s2ft_tensor> tensors(static_cast<size_t>(s.n_layers) * kP);
    std::vector<s2ft_layer_weights> layers(static_cast<size_t>(s.n_layers));
    for (int32_t l = 0; l < s.n_layers; ++l) {
      s2ft_tensor *t = &tensors[static_cast<size_t>(l) * kP];
      for (int p = 0; p < kP; ++p) {
        const std::string name = checkpoint::projection_name(l, p);
        check_call(s2ft_checkpoint_tensor(ckpt, name.c_str(), &t[p]));
      }
      layers[static_cast<size_t>(l)] =
          s2ft_layer_weights{&t[checkpoint::kQ],    &t[checkpoint::kK],  &t[checkpoint::kV],   &t[checkpoint::kO],
                             &t[checkpoint::kGate], &t[checkpoint::kUp], &t[checkpoint::kDown]};
    }
    *out = make_model(ctx, &s, layers.data(), perm).release();
  });
}

S2FT_API s2ft_status s2ft_model_layer(s2ft_model *model, int32_t layer, s2ft_layer_weights *out) {
  return s2ft::guard("s2ft_model_layer", [&] {
    using namespace s2ft;
    s2ft_model &m = require_live(model, "model");
    require_not_null(out, "out");
    if (layer < 0 || layer >= m.shape.n_layers)
      fail_arg("layer " + std::to_string(layer) + " is out of range [0, " + std::to_string(m.shape.n_layers) + ")");
    auto &w = m.weights[static_cast<size_t>(layer)];
    auto at = [&](int32_t t) { return w[static_cast<size_t>(t)].present ? &w[static_cast<size_t>(t)].tensor : nullptr; };
    *out = s2ft_layer_weights{at(S2FT_WEIGHT_Q),    at(S2FT_WEIGHT_K),  at(S2FT_WEIGHT_V),   at(S2FT_WEIGHT_O),
                              at(S2FT_WEIGHT_GATE), at(S2FT_WEIGHT_UP), at(S2FT_WEIGHT_DOWN)};
  });
}

S2FT_API s2ft_status s2ft_model_apply_files(s2ft_model *model, const char *const *paths, const double *weights,
                                            int64_t n, uint32_t flags) {
  return s2ft::guard("s2ft_model_apply_files", [&] {
    using namespace s2ft;
    s2ft_model &m = require_live(model, "model");
    require_not_null(paths, "paths");
    if (n < 1) fail_arg("n is " + std::to_string(n) + "; at least one adapter file is needed");
    check_apply_flags(flags);
    LoadedAdapters loaded;
    for (int64_t i = 0; i < n; ++i) {
      if (paths[i] == nullptr) fail_arg("paths[" + std::to_string(i) + "] is NULL");
      s2ft_adapter *a = nullptr;
      check_call(s2ft_adapter_load(paths[i], &a));
      loaded.list.push_back(a);
    }
    std::unique_ptr<s2ft_adapter> result;
    double scale = std::nan("");
    if (n == 1) {
      result.reset(loaded.list[0]);
      loaded.list.clear();
      if (weights != nullptr) scale = weights[0];
    } else {
      s2ft_adapter *fused = nullptr;
      check_call(s2ft_adapter_fuse(loaded.list.data(), weights, n, &fused));
      result.reset(fused);
      scale = 1.0;  // the fused delta already holds the weights
    }
    transition(m, result.get(), resolve_scale(scale, *result), (flags & S2FT_APPLY_FORCE) != 0);
    m.owned = std::move(result);
  });
}

}  // extern "C"
