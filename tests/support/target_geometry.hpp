// The tests' own statement of each target's weight geometry (independent of
// the library's src/adapter/geometry.cpp, which the tests check).
#pragma once

#include <cstdint>
#include <vector>

#include "s2ft/s2ft.h"

namespace s2ft_test {

inline const int32_t kTargets[] = {S2FT_TARGET_O, S2FT_TARGET_V, S2FT_TARGET_DOWN, S2FT_TARGET_UP};

// O and DOWN train columns (inputs); V and UP train rows (outputs).
inline bool by_columns(int32_t t) { return t == S2FT_TARGET_O || t == S2FT_TARGET_DOWN; }

// [rows, cols] of o_proj, v_proj, down_proj, up_proj.
inline void weight_shape(const s2ft_model_shape &s, int32_t t, int64_t *r, int64_t *c) {
  const int64_t q = int64_t{s.n_heads} * s.head_dim, kv = int64_t{s.n_kv_heads} * s.head_dim;
  if (t == S2FT_TARGET_O) *r = s.d_model, *c = q;
  else if (t == S2FT_TARGET_V) *r = kv, *c = s.d_model;
  else if (t == S2FT_TARGET_DOWN) *r = s.d_model, *c = s.d_ff;
  else *r = s.d_ff, *c = s.d_model;
}

// Lines along the trained axis, and the length of one line.
inline int64_t line_count(const s2ft_model_shape &s, int32_t t) {
  int64_t r, c;
  weight_shape(s, t, &r, &c);
  return by_columns(t) ? c : r;
}
inline int64_t line_length(const s2ft_model_shape &s, int32_t t) {
  int64_t r, c;
  weight_shape(s, t, &r, &c);
  return by_columns(t) ? r : c;
}

// Where base line `line` of (layer, target) sits in a weight permuted by
// `sel` (NULL: base order, the line itself); -1 when the selection's
// permutation does not name the line's unit.
inline int64_t permuted_position(const s2ft_selection *sel, int32_t layer, int32_t target, int64_t line,
                                 int32_t head_dim) {
  if (sel == nullptr) return line;
  const int32_t kind = target == S2FT_TARGET_O   ? S2FT_PERM_HEADS
                       : target == S2FT_TARGET_V ? S2FT_PERM_KV_HEADS
                                                 : S2FT_PERM_CHANNELS;
  int64_t n = 0;
  if (s2ft_selection_permutation(sel, layer, kind, nullptr, 0, &n) != S2FT_OK) return -1;
  std::vector<int64_t> order(static_cast<size_t>(n));
  if (s2ft_selection_permutation(sel, layer, kind, order.data(), n, &n) != S2FT_OK) return -1;
  const int64_t width = kind == S2FT_PERM_CHANNELS ? 1 : head_dim;
  for (int64_t p = 0; p < n; ++p)
    if (order[static_cast<size_t>(p)] == line / width) return p * width + line % width;
  return -1;
}

}  // namespace s2ft_test
