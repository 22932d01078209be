// Tensor names, line mapping under a permutation, base-line fingerprints
// and the entries' delta range, shared by adapters, models and the forward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "common/fingerprint.hpp"

namespace s2ft {

s2ft_tensor *target_weight(const s2ft_layer_weights &w, int32_t target) {
  switch (target) {
    case S2FT_TARGET_O: return w.o;
    case S2FT_TARGET_V: return w.v;
    case S2FT_TARGET_DOWN: return w.down;
    default: return w.up;
  }
}

std::string target_tensor_stem(int32_t layer, int32_t target) {
  const std::string l = "model.layers." + std::to_string(layer);
  switch (target) {
    case S2FT_TARGET_O: return l + ".self_attn.o_proj";
    case S2FT_TARGET_V: return l + ".self_attn.v_proj";
    case S2FT_TARGET_DOWN: return l + ".mlp.down_proj";
    default: return l + ".mlp.up_proj";
  }
}

// Heads span head_dim lines each (O columns by query head, V rows by KV
// head); channels are one line each.
int64_t permuted_line(const s2ft_selection &sel, int32_t layer, int32_t target, int64_t line) {
  const LayerPermutation &p = sel.perms[static_cast<size_t>(layer)];
  const int64_t hd = sel.shape.head_dim;
  switch (target) {
    case S2FT_TARGET_O: return p.heads.pos[static_cast<size_t>(line / hd)] * hd + line % hd;
    case S2FT_TARGET_V: return p.kv_heads.pos[static_cast<size_t>(line / hd)] * hd + line % hd;
    default: return p.channels.pos[static_cast<size_t>(line)];
  }
}

uint64_t line_fingerprint(const Matrix &w, int32_t axis, int64_t line) {
  uint64_t h = fingerprint::kOffset;
  const int64_t n = axis == S2FT_AXIS_COLUMNS ? w.rows : w.cols;
  for (int64_t i = 0; i < n; ++i) {
    const float v = axis == S2FT_AXIS_COLUMNS ? w.get(i, line) : w.get(line, i);  // exact widening
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    h = fingerprint::mix(h, fingerprint::word(bits));
  }
  return fingerprint::finish(h);
}

}  // namespace s2ft

double s2ft_adapter::max_abs_delta(int32_t layer, int32_t target) const {
  std::lock_guard<std::mutex> lock(mirror_mutex);
  if (max_abs_revision != revision) {
    max_abs.assign(layers.size(), {});
    for (size_t l = 0; l < layers.size(); ++l)
      for (size_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        double m = 0.0;
        for (float d : layers[l][t].delta) m = std::max(m, std::fabs(static_cast<double>(d)));
        max_abs[l][t] = m;
      }
    max_abs_revision = revision;
  }
  return max_abs[static_cast<size_t>(layer)][static_cast<size_t>(target)];
}
