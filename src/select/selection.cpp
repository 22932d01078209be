// The selection object: explicit creation, accessors, and the derivation of
// the co-permutation that puts the selected units first.
//
// Why the permutation looks the way it does. A weight's trained part is a
// plain slice only if its selected lines are contiguous after permuting.
// Two targets share each permutation (DOWN and UP share the channel order,
// O and V the head order), so the order is built from classes:
//
//   channels:  [DOWN only | DOWN and UP | UP only | rest]
//     -> DOWN's channels are positions [0, |DOWN|),
//        UP's are [|DOWN only|, |DOWN u UP|): both contiguous.
//
//   heads: a valid head permutation must move whole KV groups (query head h
//   reads KV head h / r, r = n_heads / n_kv_heads), so the classes are over
//   KV groups:
//     [groups with O heads but not V | O and V | V only | rest]
//   and inside a group the O-selected query heads come first. Under
//   S2FT_HEADS_BY_GROUP every O group is complete, so O's columns are
//   positions [0, |O groups| * r) and V's rows [|O only|, |O u V|) KV heads:
//   both contiguous. Under S2FT_HEADS_SINGLE with r > 1 a partly selected
//   group leaves a gap, and the index path must be used for O.
//
// Each class keeps ascending base order, so the permutation is a pure
// function of the selected sets (a file can be checked against it).
#include "select/selection.hpp"

#include <algorithm>
#include <string>

#include "common/error.hpp"

namespace s2ft {

const char *target_name(int32_t target) {
  switch (target) {
    case S2FT_TARGET_O: return "O";
    case S2FT_TARGET_V: return "V";
    case S2FT_TARGET_DOWN: return "DOWN";
    case S2FT_TARGET_UP: return "UP";
    default: return "?";
  }
}

void check_layer(const s2ft_model_shape &shape, int32_t layer, const char *name) {
  if (layer < 0 || layer >= shape.n_layers)
    fail_arg(std::string(name) + " " + std::to_string(layer) + " is out of range [0, " +
             std::to_string(shape.n_layers) + ")");
}

void check_target(int32_t target, const char *name) {
  if (target < 0 || target >= S2FT_NUM_TARGETS)
    fail_arg(std::string(name) + " " + std::to_string(target) +
             " is not a target (S2FT_TARGET_O, _V, _DOWN or _UP: 0..3)");
}

void check_head_granularity(int32_t g, const char *name) {
  if (g != S2FT_HEADS_BY_GROUP && g != S2FT_HEADS_SINGLE)
    fail_arg(std::string(name) + " " + std::to_string(g) + " is not S2FT_HEADS_BY_GROUP (0) or S2FT_HEADS_SINGLE (1)");
}

const char *head_granularity_name(int32_t g) { return g == S2FT_HEADS_SINGLE ? "single" : "by_group"; }

int64_t selection_units(const s2ft_model_shape &s, int32_t target, int32_t head_granularity) {
  switch (target) {
    case S2FT_TARGET_O: return head_granularity == S2FT_HEADS_BY_GROUP ? s.n_kv_heads : s.n_heads;
    case S2FT_TARGET_V: return s.n_kv_heads;
    default: return s.d_ff;
  }
}

std::vector<int64_t> o_query_heads(const s2ft_model_shape &s, int32_t head_granularity, const LayerUnits &u) {
  const std::vector<int64_t> &o = u.units[S2FT_TARGET_O];
  if (head_granularity == S2FT_HEADS_SINGLE) return o;
  const int64_t r = heads_per_group(s);
  std::vector<int64_t> heads;
  heads.reserve(o.size() * static_cast<size_t>(r));
  for (int64_t g : o)
    for (int64_t j = 0; j < r; ++j) heads.push_back(g * r + j);
  return heads;
}

namespace {

// Stable order of indices [0, n) by class (0..3), ascending inside a class.
std::vector<int64_t> order_by_class(const std::vector<int> &cls) {
  std::vector<int64_t> order;
  order.reserve(cls.size());
  for (int c = 0; c < 4; ++c)
    for (size_t i = 0; i < cls.size(); ++i)
      if (cls[i] == c) order.push_back(static_cast<int64_t>(i));
  return order;
}

// The class of a unit picked by the "first" target a and/or the "second" b:
// a only, both, b only, neither.
int pair_class(bool a, bool b) { return a ? (b ? 1 : 0) : (b ? 2 : 3); }

Permutation from_order(std::vector<int64_t> order) {
  Permutation p;
  p.pos.assign(order.size(), 0);
  for (size_t i = 0; i < order.size(); ++i) p.pos[static_cast<size_t>(order[i])] = static_cast<int64_t>(i);
  p.order = std::move(order);
  return p;
}

}  // namespace

LayerPermutation derive_permutation(const s2ft_model_shape &s, int32_t head_granularity, const LayerUnits &u) {
  const int64_t r = heads_per_group(s);
  LayerPermutation lp;

  // Channels.
  std::vector<char> in_down(static_cast<size_t>(s.d_ff), 0), in_up(static_cast<size_t>(s.d_ff), 0);
  for (int64_t c : u.units[S2FT_TARGET_DOWN]) in_down[static_cast<size_t>(c)] = 1;
  for (int64_t c : u.units[S2FT_TARGET_UP]) in_up[static_cast<size_t>(c)] = 1;
  std::vector<int> ccls(static_cast<size_t>(s.d_ff));
  for (size_t c = 0; c < ccls.size(); ++c) ccls[c] = pair_class(in_down[c] != 0, in_up[c] != 0);
  lp.channels = from_order(order_by_class(ccls));

  // KV groups, then query heads inside each group.
  std::vector<char> o_head(static_cast<size_t>(s.n_heads), 0);
  for (int64_t h : o_query_heads(s, head_granularity, u)) o_head[static_cast<size_t>(h)] = 1;
  std::vector<char> o_group(static_cast<size_t>(s.n_kv_heads), 0), v_group(static_cast<size_t>(s.n_kv_heads), 0);
  for (int64_t h = 0; h < s.n_heads; ++h)
    if (o_head[static_cast<size_t>(h)]) o_group[static_cast<size_t>(h / r)] = 1;
  for (int64_t g : u.units[S2FT_TARGET_V]) v_group[static_cast<size_t>(g)] = 1;
  std::vector<int> gcls(static_cast<size_t>(s.n_kv_heads));
  for (size_t g = 0; g < gcls.size(); ++g) gcls[g] = pair_class(o_group[g] != 0, v_group[g] != 0);
  std::vector<int64_t> kv_order = order_by_class(gcls);

  std::vector<int64_t> head_order;
  head_order.reserve(static_cast<size_t>(s.n_heads));
  for (int64_t g : kv_order) {
    for (int64_t j = 0; j < r; ++j)
      if (o_head[static_cast<size_t>(g * r + j)]) head_order.push_back(g * r + j);
    for (int64_t j = 0; j < r; ++j)
      if (!o_head[static_cast<size_t>(g * r + j)]) head_order.push_back(g * r + j);
  }
  lp.kv_heads = from_order(std::move(kv_order));
  lp.heads = from_order(std::move(head_order));
  return lp;
}

void check_and_sort_units(const s2ft_model_shape &s, int32_t head_granularity, int32_t target,
                          std::vector<int64_t> &units, s2ft_status status, const std::string &where) {
  const int64_t n = selection_units(s, target, head_granularity);
  if (static_cast<int64_t>(units.size()) > n)
    fail(status, where + " lists " + std::to_string(units.size()) + " units but only " + std::to_string(n) +
                     " exist");
  for (int64_t v : units)
    if (v < 0 || v >= n)
      fail(status, where + ": index " + std::to_string(v) + " is out of range [0, " + std::to_string(n) + ")");
  std::sort(units.begin(), units.end());
  for (size_t i = 1; i < units.size(); ++i)
    if (units[i] == units[i - 1]) fail(status, where + ": index " + std::to_string(units[i]) + " appears twice");
}

std::unique_ptr<s2ft_selection> make_selection(const s2ft_model_shape &shape, int32_t head_granularity,
                                               std::vector<LayerUnits> layers, std::string options_json) {
  auto sel = std::make_unique<s2ft_selection>();
  sel->shape = shape;
  sel->head_granularity = head_granularity;
  sel->layers = std::move(layers);
  sel->options_json = std::move(options_json);
  sel->perms.reserve(sel->layers.size());
  for (const LayerUnits &u : sel->layers) {
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t)
      if (!u.units[static_cast<size_t>(t)].empty()) sel->targets |= S2FT_TARGET_BIT(t);
    sel->perms.push_back(derive_permutation(shape, head_granularity, u));
  }
  return sel;
}

const s2ft_selection &require_selection(const s2ft_selection *sel, const char *name) {
  require_live(sel, name);
  return *sel;
}

namespace {

// The selected lines of (layer, target) in base or permuted order, ascending.
std::vector<int64_t> selected_indices(const s2ft_selection &sel, int32_t layer, int32_t target, bool lines,
                                      bool permuted) {
  const LayerUnits &u = sel.layers[static_cast<size_t>(layer)];
  const LayerPermutation &p = sel.perms[static_cast<size_t>(layer)];
  std::vector<int64_t> units;
  const Permutation *perm = &p.channels;
  int64_t width = 1;  // lines per unit
  if (target == S2FT_TARGET_O) {
    units = o_query_heads(sel.shape, sel.head_granularity, u);
    perm = &p.heads;
    width = sel.shape.head_dim;
  } else {
    units = u.units[static_cast<size_t>(target)];
    if (target == S2FT_TARGET_V) {
      perm = &p.kv_heads;
      width = sel.shape.head_dim;
    }
  }
  if (permuted)
    for (int64_t &v : units) v = perm->pos[static_cast<size_t>(v)];
  std::sort(units.begin(), units.end());
  if (!lines) return units;
  std::vector<int64_t> out;
  out.reserve(units.size() * static_cast<size_t>(width));
  for (int64_t v : units)
    for (int64_t j = 0; j < width; ++j) out.push_back(v * width + j);
  return out;
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_selection_create(const s2ft_model_shape *shape, int32_t head_granularity,
                                           const int64_t *const units[S2FT_NUM_TARGETS],
                                           const int64_t n_units[S2FT_NUM_TARGETS], s2ft_selection **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_selection_create", [&] {
    s2ft::require_not_null(out, "out");
    s2ft::check_model_shape(shape, "shape");
    s2ft::check_head_granularity(head_granularity, "head_granularity");
    s2ft::require_not_null(units, "units");
    s2ft::require_not_null(n_units, "n_units");
    for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
      const std::string tn = s2ft::target_name(t);
      const int64_t avail = s2ft::selection_units(*shape, t, head_granularity);
      if (n_units[t] < 0 || n_units[t] > avail)
        s2ft::fail_arg("n_units[" + tn + "] is " + std::to_string(n_units[t]) + " but must be in [0, " +
                       std::to_string(avail) + "]");
      if (n_units[t] > 0 && units[t] == nullptr) s2ft::fail_arg("units[" + tn + "] is NULL but n_units[" + tn + "] > 0");
    }
    std::vector<s2ft::LayerUnits> layers(static_cast<size_t>(shape->n_layers));
    for (int32_t l = 0; l < shape->n_layers; ++l)
      for (int32_t t = 0; t < S2FT_NUM_TARGETS; ++t) {
        const int64_t n = n_units[t];
        std::vector<int64_t> &v = layers[static_cast<size_t>(l)].units[static_cast<size_t>(t)];
        if (n > 0) v.assign(units[t] + l * n, units[t] + (l + 1) * n);
        s2ft::check_and_sort_units(*shape, head_granularity, t, v, S2FT_ERR_INVALID_ARGUMENT,
                                   std::string("units[") + s2ft::target_name(t) + "] of layer " + std::to_string(l));
      }
    *out = s2ft::make_selection(*shape, head_granularity, std::move(layers), std::string()).release();
  });
}

S2FT_API void s2ft_selection_destroy(s2ft_selection *sel) {
  if (s2ft::destroyable(sel)) delete sel;
}

S2FT_API s2ft_status s2ft_selection_shape(const s2ft_selection *sel, s2ft_model_shape *out) {
  return s2ft::guard("s2ft_selection_shape", [&] {
    const s2ft_selection &s = s2ft::require_selection(sel);
    s2ft::require_not_null(out, "out");
    *out = s.shape;
  });
}

S2FT_API s2ft_status s2ft_selection_targets(const s2ft_selection *sel, uint32_t *out) {
  return s2ft::guard("s2ft_selection_targets", [&] {
    const s2ft_selection &s = s2ft::require_selection(sel);
    s2ft::require_not_null(out, "out");
    *out = s.targets;
  });
}

S2FT_API s2ft_status s2ft_selection_indices(const s2ft_selection *sel, int32_t layer, int32_t target, uint32_t flags,
                                            int64_t *out, int64_t capacity, int64_t *count) {
  return s2ft::guard("s2ft_selection_indices", [&] {
    const s2ft_selection &s = s2ft::require_selection(sel);
    s2ft::require_not_null(count, "count");
    s2ft::check_layer(s.shape, layer);
    s2ft::check_target(target);
    if ((flags & ~(S2FT_INDEX_LINES | S2FT_INDEX_PERMUTED)) != 0)
      s2ft::fail_arg("flags " + std::to_string(flags) +
                     " has unknown bits (combine S2FT_INDEX_UNITS/LINES with S2FT_INDEX_BASE/PERMUTED)");
    const std::vector<int64_t> v = s2ft::selected_indices(s, layer, target, (flags & S2FT_INDEX_LINES) != 0,
                                                          (flags & S2FT_INDEX_PERMUTED) != 0);
    const int64_t n = static_cast<int64_t>(v.size());
    if (out != nullptr) {
      if (capacity < n)
        s2ft::fail_arg("capacity " + std::to_string(capacity) + " is below the " + std::to_string(n) +
                       " indices of layer " + std::to_string(layer) + " target " + s2ft::target_name(target));
      std::copy(v.begin(), v.end(), out);
    }
    *count = n;
  });
}

S2FT_API s2ft_status s2ft_selection_range(const s2ft_selection *sel, int32_t layer, int32_t target, int64_t *begin,
                                          int64_t *count) {
  return s2ft::guard("s2ft_selection_range", [&] {
    const s2ft_selection &s = s2ft::require_selection(sel);
    s2ft::require_not_null(begin, "begin");
    s2ft::require_not_null(count, "count");
    s2ft::check_layer(s.shape, layer);
    s2ft::check_target(target);
    const std::vector<int64_t> v = s2ft::selected_indices(s, layer, target, true, true);
    if (v.empty()) {
      *begin = 0;
      *count = 0;
      return;
    }
    const int64_t n = static_cast<int64_t>(v.size());
    if (v.back() - v.front() + 1 != n)
      s2ft::fail(S2FT_ERR_STATE,
                 std::string("the permuted lines of layer ") + std::to_string(layer) + " target " +
                     s2ft::target_name(target) + " are not one contiguous range" +
                     (target == S2FT_TARGET_O && s.head_granularity == S2FT_HEADS_SINGLE
                          ? " (single query heads under grouped-query attention)"
                          : "") +
                     "; use s2ft_selection_indices() and the index path");
    *begin = v.front();
    *count = n;
  });
}

S2FT_API s2ft_status s2ft_selection_permutation(const s2ft_selection *sel, int32_t layer, int32_t kind, int64_t *out,
                                                int64_t capacity, int64_t *count) {
  return s2ft::guard("s2ft_selection_permutation", [&] {
    const s2ft_selection &s = s2ft::require_selection(sel);
    s2ft::require_not_null(count, "count");
    s2ft::check_layer(s.shape, layer);
    const s2ft::LayerPermutation &p = s.perms[static_cast<size_t>(layer)];
    const std::vector<int64_t> *v = nullptr;
    switch (kind) {
      case S2FT_PERM_HEADS: v = &p.heads.order; break;
      case S2FT_PERM_KV_HEADS: v = &p.kv_heads.order; break;
      case S2FT_PERM_CHANNELS: v = &p.channels.order; break;
      default:
        s2ft::fail_arg("kind " + std::to_string(kind) +
                       " is not S2FT_PERM_HEADS (0), S2FT_PERM_KV_HEADS (1) or S2FT_PERM_CHANNELS (2)");
    }
    const int64_t n = static_cast<int64_t>(v->size());
    if (out != nullptr) {
      if (capacity < n)
        s2ft::fail_arg("capacity " + std::to_string(capacity) + " is below the " + std::to_string(n) +
                       " entries of the permutation");
      std::copy(v->begin(), v->end(), out);
    }
    *count = n;
  });
}

}  // extern "C"
