// The tests' own statement of each target's weight geometry (independent of
// the library's src/adapter/geometry.cpp, which the tests check).
#pragma once

#include <cstdint>

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

}  // namespace s2ft_test
