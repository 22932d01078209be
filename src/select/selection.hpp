// The selection object behind the opaque s2ft_selection handle: which units
// of each layer are trained, and the co-permutation that brings them to the
// front. Also the per-target helpers shared by statistics, selection and
// permutation.
#pragma once

#include "common/live_handles.hpp"
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "model_shape.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {

// "O", "V", "DOWN", "UP" (or "?" for anything else).
const char *target_name(int32_t target);

// Throws S2FT_ERR_INVALID_ARGUMENT unless 0 <= layer < shape.n_layers.
void check_layer(const s2ft_model_shape &shape, int32_t layer, const char *name = "layer");
// Throws S2FT_ERR_INVALID_ARGUMENT unless target is one of S2FT_TARGET_*.
void check_target(int32_t target, const char *name = "target");
// Throws S2FT_ERR_INVALID_ARGUMENT unless g is S2FT_HEADS_BY_GROUP or S2FT_HEADS_SINGLE.
void check_head_granularity(int32_t g, const char *name);

// "by_group" or "single" (the names used in selection files).
const char *head_granularity_name(int32_t g);

// Query heads per KV head (r = n_heads / n_kv_heads).
inline int64_t heads_per_group(const s2ft_model_shape &s) { return s.n_heads / s.n_kv_heads; }

// Units one layer offers for `target` in selection terms: for O, KV groups
// under S2FT_HEADS_BY_GROUP and query heads under S2FT_HEADS_SINGLE; KV heads
// for V; channels for DOWN and UP.
int64_t selection_units(const s2ft_model_shape &s, int32_t target, int32_t head_granularity);

// Selected units of one layer, ascending, in base order and in the terms of
// selection_units().
struct LayerUnits {
  std::array<std::vector<int64_t>, S2FT_NUM_TARGETS> units;
};

// The co-permutations of one layer. order[p] is the base index of the unit at
// position p after permuting; pos is its inverse (pos[order[p]] == p).
struct Permutation {
  std::vector<int64_t> order, pos;
};
struct LayerPermutation {
  Permutation heads, kv_heads, channels;
};

// The query heads O trains in a layer, ascending (a BY_GROUP unit g stands
// for heads [g*r, (g+1)*r)).
std::vector<int64_t> o_query_heads(const s2ft_model_shape &s, int32_t head_granularity, const LayerUnits &u);

// Derives the layer's co-permutation from its selected units (the rules are
// spelled out in selection.cpp and docs/selection-format.md).
LayerPermutation derive_permutation(const s2ft_model_shape &s, int32_t head_granularity, const LayerUnits &u);

// Sorts `units` and checks every index is in [0, selection_units()) and
// appears once; on failure throws `status` with a message that starts with
// `where` (e.g. "units[O] of layer 2").
void check_and_sort_units(const s2ft_model_shape &s, int32_t head_granularity, int32_t target,
                          std::vector<int64_t> &units, s2ft_status status, const std::string &where);

}  // namespace s2ft

struct s2ft_selection {
  s2ft::LiveHandle<s2ft::HandleKind::selection> live;  // first: counted, and tagged while alive
  s2ft_model_shape shape{};
  int32_t head_granularity = S2FT_HEADS_BY_GROUP;
  uint32_t targets = 0;  // targets with at least one unit in some layer
  std::vector<s2ft::LayerUnits> layers;
  std::vector<s2ft::LayerPermutation> perms;
  // The options the selection was made with, as a compact JSON object; empty
  // when it was made from explicit indices. Informative only (the file
  // keeps it so a run can be traced back).
  std::string options_json;
};

namespace s2ft {

// Builds a selection from validated, sorted units (one LayerUnits per layer)
// and derives every layer's permutation.
std::unique_ptr<s2ft_selection> make_selection(const s2ft_model_shape &shape, int32_t head_granularity,
                                               std::vector<LayerUnits> layers, std::string options_json);

// Reads a selection from the text of a selection file with every check that
// s2ft_selection_load makes (it is the same code after the file is read), so
// that in-memory callers such as the fuzzers need no file; `what` names the
// text in messages. Throws s2ft::Error (S2FT_ERR_FORMAT).
std::unique_ptr<s2ft_selection> selection_from_text(const std::string &text, const std::string &what);

// Throws S2FT_ERR_INVALID_ARGUMENT "<name> is NULL" for a NULL selection.
const s2ft_selection &require_selection(const s2ft_selection *sel, const char *name = "sel");

}  // namespace s2ft
