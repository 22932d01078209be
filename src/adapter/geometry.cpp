// Tensor names, line mapping under a permutation, base-line fingerprints
// and the entries' delta range, shared by adapters, models and the forward.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "common/fingerprint.hpp"
#include "select/selection.hpp"

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

s2ft_tensor *layer_weight(const s2ft_layer_weights &w, int32_t weight) {
  switch (weight) {
    case S2FT_WEIGHT_Q: return w.q;
    case S2FT_WEIGHT_K: return w.k;
    case S2FT_WEIGHT_GATE: return w.gate;
    default: return target_weight(w, weight);
  }
}

const char *weight_field(int32_t weight) {
  switch (weight) {
    case S2FT_WEIGHT_O: return "o";
    case S2FT_WEIGHT_V: return "v";
    case S2FT_WEIGHT_DOWN: return "down";
    case S2FT_WEIGHT_UP: return "up";
    case S2FT_WEIGHT_Q: return "q";
    case S2FT_WEIGHT_K: return "k";
    default: return "gate";
  }
}

std::string weight_tensor_stem(int32_t layer, int32_t weight) {
  const std::string l = "model.layers." + std::to_string(layer);
  switch (weight) {
    case S2FT_WEIGHT_Q: return l + ".self_attn.q_proj";
    case S2FT_WEIGHT_K: return l + ".self_attn.k_proj";
    case S2FT_WEIGHT_GATE: return l + ".mlp.gate_proj";
    default: return target_tensor_stem(layer, weight);
  }
}

ElementMap element_map(const s2ft_selection *sel, const s2ft_model_shape &shape, int32_t layer, int32_t weight) {
  ElementMap m;
  int64_t rows, cols;
  weight_shape(shape, weight, &rows, &cols);
  m.n_cols = cols;
  if (sel == nullptr) return m;
  const LayerPermutation &p = sel->perms[static_cast<size_t>(layer)];
  const int64_t hd = shape.head_dim;
  // Heads span head_dim lines; channels are one line each.
  const auto by_unit = [](const Permutation &perm, int64_t width, int64_t n) {
    std::vector<int64_t> out(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = perm.pos[static_cast<size_t>(i / width)] * width + i % width;
    return out;
  };
  switch (weight) {
    case S2FT_WEIGHT_Q: m.rows = by_unit(p.heads, hd, rows); break;
    case S2FT_WEIGHT_K:
    case S2FT_WEIGHT_V: m.rows = by_unit(p.kv_heads, hd, rows); break;
    case S2FT_WEIGHT_O: m.cols = by_unit(p.heads, hd, cols); break;
    case S2FT_WEIGHT_GATE:
    case S2FT_WEIGHT_UP: m.rows = by_unit(p.channels, 1, rows); break;
    default: m.cols = by_unit(p.channels, 1, cols); break;  // DOWN
  }
  return m;
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

uint64_t combine_row_fingerprints(const std::vector<uint64_t> &rows) {
  uint64_t h = fingerprint::kOffset;
  for (uint64_t r : rows) h = fingerprint::mix_u64(h, r);
  return fingerprint::finish(h);
}

uint64_t weight_fingerprint(const Matrix &w) {
  std::vector<uint64_t> rows(static_cast<size_t>(w.rows));
  for (int64_t r = 0; r < w.rows; ++r) rows[static_cast<size_t>(r)] = line_fingerprint(w, S2FT_AXIS_ROWS, r);
  return combine_row_fingerprints(rows);
}

}  // namespace s2ft

namespace {

double max_abs_of(const std::vector<float> &v) {
  double m = 0.0;
  for (float d : v) m = std::max(m, std::fabs(static_cast<double>(d)));
  return m;
}

}  // namespace

double s2ft_adapter::max_abs_delta(int32_t layer, int32_t target) const {
  std::lock_guard<std::mutex> lock(mirror_mutex);
  if (max_abs_revision != revision) {
    max_abs.assign(layers.size(), {});
    for (size_t l = 0; l < layers.size(); ++l) {
      for (size_t t = 0; t < S2FT_NUM_TARGETS; ++t) max_abs[l][t] = max_abs_of(layers[l][t].delta);
      if (l < sparse.size())
        for (size_t w = 0; w < S2FT_NUM_WEIGHTS; ++w) max_abs[l][S2FT_NUM_TARGETS + w] = max_abs_of(sparse[l][w].delta);
    }
    max_abs_revision = revision;
  }
  return max_abs[static_cast<size_t>(layer)][static_cast<size_t>(target)];
}

double s2ft_adapter::max_abs_sparse_delta(int32_t layer, int32_t weight) const {
  max_abs_delta(layer, 0);  // fills the table when stale
  std::lock_guard<std::mutex> lock(mirror_mutex);
  return max_abs[static_cast<size_t>(layer)][static_cast<size_t>(S2FT_NUM_TARGETS + weight)];
}

bool s2ft_adapter::has_low_rank() const {
  for (const auto &l : low_rank)
    for (const s2ft::LowRankEntry &e : l)
      if (!e.empty()) return true;
  return false;
}

bool s2ft_adapter::has_sparse() const {
  for (const auto &l : sparse)
    for (const s2ft::SparseEntry &e : l)
      if (!e.empty()) return true;
  return false;
}
