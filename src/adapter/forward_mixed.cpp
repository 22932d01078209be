// s2ft_adapter_forward_mixed: one linear layer for a batch whose row
// segments use different adapters, without merging anything.
//
//   Y = X W^T                                   one shared base GEMM [T,in]x[in,out]
//   column target (O, DOWN), lines S of adapter a, for the rows R of a group:
//     Y_R += (scale_a * X_R[:, S]) delta_a^T    gathered [n,k] x [k,out]
//   row target (V, UP):
//     P = X_R delta_a^T                         [n,in] x [in,k]
//     Y_R[:, S] += scale_a * P                  scatter-add into k output columns
//   sparse entries D_a of the adapter on (layer, weight), any of the seven:
//     Y_R += scale_a * X_R D_a^T
// S is the adapter's base-order lines, mapped through the permutation when
// the weight (and so x's columns or y's columns) are permuted; the sparse
// entries' flat indices are mapped through the permutation of the weight's
// rows and columns the same way. Consecutive
// segments with the same adapter form one group, which the context's
// backend adds in one product (the CPU: one GEMM per group; CUDA: a batched
// GEMV for decode rows, a grouped GEMM or cuSPARSE for prefill groups).
#include <cmath>
#include <string>
#include <vector>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "context.hpp"
#include "model_shape.hpp"
#include "train/linear_args.hpp"

namespace s2ft {
namespace {

std::string shape2(int64_t r, int64_t c) { return "[" + std::to_string(r) + ", " + std::to_string(c) + "]"; }

// An adapter's contribution to this layer: its entry, the entry's lines as
// positions in w, its sparse entries and their positions, and its scale.
struct Use {
  const AdapterEntry *entry = nullptr;  // NULL: no structured entry here
  std::vector<int64_t> positions;
  const SparseEntry *sparse = nullptr;  // NULL: no sparse entries here
  std::vector<int64_t> sparse_positions;
  float scale = 1.0f;
};

// Checks adapters[a] against the layer's weight and resolves its lines and scale.
Use check_adapter(const s2ft_adapter *ad, int64_t a, int32_t layer, int32_t target, const Matrix &w,
                  const s2ft_selection *perm, const double *scales) {
  const std::string name = "adapters[" + std::to_string(a) + "]";
  if (ad == nullptr) fail_arg(name + " is NULL but a segment uses it");
  if (layer >= ad->shape.n_layers)
    fail_arg("layer " + std::to_string(layer) + " is out of range [0, " + std::to_string(ad->shape.n_layers) +
             ") of " + name);
  int64_t rows, cols;
  weight_shape(ad->shape, target, &rows, &cols);
  if (rows != w.rows || cols != w.cols)
    fail_shape("w is " + shape2(w.rows, w.cols) + " but " + name + " is for a " + target_name(target) + " weight of " +
               shape2(rows, cols));
  if (perm != nullptr && !same_shape(ad->shape, perm->shape))
    fail_arg(name + " was made for model shape " + shape_string(ad->shape) + " but perm for " +
             shape_string(perm->shape));
  Use u;
  double s = scales != nullptr ? scales[a] : ad->default_scale;
  if (std::isnan(s)) s = ad->default_scale;  // as for s2ft_adapter_apply: NaN means the default
  if (!std::isfinite(s)) fail_arg("scales[" + std::to_string(a) + "] is infinite");
  u.scale = static_cast<float>(s);
  if (!ad->low_rank[static_cast<size_t>(layer)][static_cast<size_t>(target)].empty())
    fail(S2FT_ERR_UNSUPPORTED, name + " has a low-rank entry on layer " + std::to_string(layer) + " weight " +
                                   weight_name(target) +
                                   ", which the mixed forward does not add (apply the adapter to the weights, or "
                                   "serve it as a PEFT LoRA export)");
  const SparseEntry &sp = ad->sparse[static_cast<size_t>(layer)][static_cast<size_t>(target)];
  if (!sp.empty()) {
    if (sp.delta.size() != sp.indices.size()) fail_arg(name + "'s sparse entries have a delta of the wrong size");
    const ElementMap map = element_map(perm, ad->shape, layer, target);
    u.sparse_positions.resize(sp.indices.size());
    for (size_t j = 0; j < sp.indices.size(); ++j) {
      const int64_t n = sp.indices[j];
      if (n < 0 || n / cols >= rows) fail_arg(name + "'s sparse entry " + std::to_string(n) + " is out of range");
      u.sparse_positions[j] = map.position(n);
    }
    u.sparse = &sp;
  }
  if (target >= S2FT_NUM_TARGETS) return u;  // q, k, gate: sparse entries only
  const AdapterEntry &e = ad->layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
  if (e.empty()) return u;
  const int64_t n_lines = target_line_count(ad->shape, target), len = target_line_length(ad->shape, target);
  const int64_t k = static_cast<int64_t>(e.lines.size());
  if (e.delta.size() != static_cast<size_t>(k * len)) fail_arg(name + "'s entry has a delta of the wrong size");
  u.positions.resize(static_cast<size_t>(k));
  for (int64_t j = 0; j < k; ++j) {
    const int64_t line = e.lines[static_cast<size_t>(j)];
    if (line < 0 || line >= n_lines) fail_arg(name + "'s line " + std::to_string(line) + " is out of range");
    u.positions[static_cast<size_t>(j)] = perm != nullptr ? permuted_line(*perm, layer, target, line) : line;
  }
  u.entry = &e;
  return u;
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_adapter_forward_mixed(s2ft_context *ctx, int32_t layer, int32_t target,
                                                const s2ft_tensor *x, const s2ft_tensor *w,
                                                const s2ft_selection *perm, const s2ft_adapter *const *adapters,
                                                const double *scales, int64_t n_adapters, const int64_t *offsets,
                                                const int32_t *segment_adapter, int64_t n_segments, s2ft_tensor *y) {
  return s2ft::guard("s2ft_adapter_forward_mixed", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    check_weight_id(target, "target");
    if (layer < 0) fail_arg("layer " + std::to_string(layer) + " is negative");
    const LinearArgs args = check_linear(c, x, w, y);
    const Matrix &W = args.w, &X = args.x, &Y = args.y;
    const int64_t T = X.rows;
    if (perm != nullptr) {
      check_layer(perm->shape, layer);
      int64_t rows, cols;
      weight_shape(perm->shape, target, &rows, &cols);
      require_shape(W, "w", rows, cols);
    }
    if (n_adapters < 0) fail_arg("n_adapters " + std::to_string(n_adapters) + " is negative");
    if (n_adapters > 0) require_not_null(adapters, "adapters");
    if (n_segments < 0) fail_arg("n_segments " + std::to_string(n_segments) + " is negative");
    require_not_null(offsets, "offsets");
    if (n_segments > 0) require_not_null(segment_adapter, "segment_adapter");
    if (offsets[0] != 0) fail_arg("offsets[0] is " + std::to_string(offsets[0]) + ", not 0");
    for (int64_t j = 0; j < n_segments; ++j)
      if (offsets[j + 1] < offsets[j])
        fail_arg("offsets[" + std::to_string(j + 1) + "] = " + std::to_string(offsets[j + 1]) + " is below offsets[" +
                 std::to_string(j) + "] = " + std::to_string(offsets[j]));
    if (offsets[n_segments] != T)
      fail_arg("offsets[n_segments] = " + std::to_string(offsets[n_segments]) + " is not T = " + std::to_string(T) +
               " (the rows of x)");
    // Every adapter given must be for one model shape (and perm's, when
    // given), as s2ft_adapter_apply requires of adapter and model: w alone
    // does not show every dimension (o_proj says nothing of d_ff).
    const s2ft_adapter *first = nullptr;
    int64_t first_index = -1;
    require_live_or_null(perm, "perm");
    for (int64_t a = 0; a < n_adapters; ++a) {
      const s2ft_adapter *ad = require_live_or_null(adapters[a], ("adapters[" + std::to_string(a) + "]").c_str());
      if (ad == nullptr) continue;
      if (first == nullptr) {
        first = ad;
        first_index = a;
        continue;
      }
      if (!same_shape(ad->shape, first->shape))
        fail_arg("adapters[" + std::to_string(a) + "] was made for model shape " + shape_string(ad->shape) +
                 " but adapters[" + std::to_string(first_index) + "] for " + shape_string(first->shape));
    }
    std::vector<Use> uses(static_cast<size_t>(n_adapters));
    std::vector<char> checked(static_cast<size_t>(n_adapters), 0);
    for (int64_t j = 0; j < n_segments; ++j) {
      const int32_t a = segment_adapter[j];
      if (a < -1 || a >= n_adapters)
        fail_arg("segment_adapter[" + std::to_string(j) + "] = " + std::to_string(a) + " is out of range [-1, " +
                 std::to_string(n_adapters) + ")");
      if (a < 0 || checked[static_cast<size_t>(a)]) continue;
      uses[static_cast<size_t>(a)] = check_adapter(adapters[a], a, layer, target, W, perm, scales);
      checked[static_cast<size_t>(a)] = 1;
    }

    // Consecutive segments with one adapter form one group of rows; groups
    // without an adapter entry (structured or sparse) add nothing.
    std::vector<backend::MixedGroup> groups;
    for (int64_t j = 0; j < n_segments;) {
      const int32_t a = segment_adapter[j];
      int64_t end = j + 1;
      while (end < n_segments && segment_adapter[end] == a) ++end;
      const int64_t r0 = offsets[j], n = offsets[end] - r0;
      if (a >= 0 && n > 0 && (uses[static_cast<size_t>(a)].entry != nullptr || uses[static_cast<size_t>(a)].sparse != nullptr))
        groups.push_back({r0, n, a});
      j = end;
    }
    std::vector<backend::MixedAdapter> resolved(static_cast<size_t>(n_adapters));
    for (size_t a = 0; a < resolved.size(); ++a)
      if (uses[a].entry != nullptr || uses[a].sparse != nullptr)
        resolved[a] = backend::MixedAdapter{adapters[a],     uses[a].entry,  &uses[a].positions,
                                            uses[a].scale,   uses[a].sparse, &uses[a].sparse_positions};
    const bool columns = target < S2FT_NUM_TARGETS && target_axis(target) == S2FT_AXIS_COLUMNS;
    const backend::MixedCall call{layer, target, columns, perm, c.delta_path};
    run(c, &backend::Ops::forward_mixed, call, X, W, resolved, groups, Y);
  });
}

}  // extern "C"
