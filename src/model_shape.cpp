// Validation of s2ft_model_shape, shared by every function that takes one.
#include "model_shape.hpp"

#include <cstdint>
#include <cstdio>
#include <string>

#include "common/error.hpp"

namespace s2ft {

void check_model_shape(const s2ft_model_shape *shape, const char *name) {
  const std::string n(name);
  if (shape == nullptr) fail_arg(n + " is NULL");
  const struct {
    const char *field;
    int32_t value;
  } fields[] = {{"n_layers", shape->n_layers}, {"d_model", shape->d_model},   {"n_heads", shape->n_heads},
                {"n_kv_heads", shape->n_kv_heads}, {"head_dim", shape->head_dim}, {"d_ff", shape->d_ff}};
  for (const auto &f : fields)
    if (f.value <= 0) fail_arg(n + "->" + f.field + " must be positive, got " + std::to_string(f.value));
  if (shape->n_heads % shape->n_kv_heads != 0)
    fail_arg(n + "->n_heads (" + std::to_string(shape->n_heads) + ") must be a multiple of n_kv_heads (" +
             std::to_string(shape->n_kv_heads) + ")");
}

bool same_shape(const s2ft_model_shape &a, const s2ft_model_shape &b) {
  return a.n_layers == b.n_layers && a.d_model == b.d_model && a.n_heads == b.n_heads &&
         a.n_kv_heads == b.n_kv_heads && a.head_dim == b.head_dim && a.d_ff == b.d_ff;
}

std::string shape_string(const s2ft_model_shape &s) {
  char b[160];
  std::snprintf(b, sizeof b, "{n_layers %d, d_model %d, n_heads %d, n_kv_heads %d, head_dim %d, d_ff %d}",
                s.n_layers, s.d_model, s.n_heads, s.n_kv_heads, s.head_dim, s.d_ff);
  return b;
}

int32_t target_axis(int32_t target) {
  return target == S2FT_TARGET_O || target == S2FT_TARGET_DOWN ? S2FT_AXIS_COLUMNS : S2FT_AXIS_ROWS;
}

void target_weight_shape(const s2ft_model_shape &s, int32_t target, int64_t *rows, int64_t *cols) {
  const int64_t q = static_cast<int64_t>(s.n_heads) * s.head_dim, kv = static_cast<int64_t>(s.n_kv_heads) * s.head_dim;
  switch (target) {
    case S2FT_TARGET_O: *rows = s.d_model, *cols = q; break;
    case S2FT_TARGET_V: *rows = kv, *cols = s.d_model; break;
    case S2FT_TARGET_DOWN: *rows = s.d_model, *cols = s.d_ff; break;
    default: *rows = s.d_ff, *cols = s.d_model; break;
  }
}

int64_t target_line_count(const s2ft_model_shape &s, int32_t target) {
  int64_t r, c;
  target_weight_shape(s, target, &r, &c);
  return target_axis(target) == S2FT_AXIS_COLUMNS ? c : r;
}

int64_t target_line_length(const s2ft_model_shape &s, int32_t target) {
  int64_t r, c;
  target_weight_shape(s, target, &r, &c);
  return target_axis(target) == S2FT_AXIS_COLUMNS ? r : c;
}

int64_t target_unit_width(const s2ft_model_shape &s, int32_t target) {
  return target == S2FT_TARGET_O || target == S2FT_TARGET_V ? s.head_dim : 1;
}

void check_weight_id(int32_t weight, const char *name) {
  if (weight < 0 || weight >= S2FT_NUM_WEIGHTS)
    fail_arg(std::string(name) + " " + std::to_string(weight) + " is not one of S2FT_WEIGHT_* [0, " +
             std::to_string(S2FT_NUM_WEIGHTS) + ")");
}

const char *weight_name(int32_t weight) {
  switch (weight) {
    case S2FT_WEIGHT_O: return "O";
    case S2FT_WEIGHT_V: return "V";
    case S2FT_WEIGHT_DOWN: return "DOWN";
    case S2FT_WEIGHT_UP: return "UP";
    case S2FT_WEIGHT_Q: return "Q";
    case S2FT_WEIGHT_K: return "K";
    case S2FT_WEIGHT_GATE: return "GATE";
    default: return "?";
  }
}

void weight_shape(const s2ft_model_shape &s, int32_t weight, int64_t *rows, int64_t *cols) {
  const int64_t q = static_cast<int64_t>(s.n_heads) * s.head_dim, kv = static_cast<int64_t>(s.n_kv_heads) * s.head_dim;
  switch (weight) {
    case S2FT_WEIGHT_Q: *rows = q, *cols = s.d_model; break;
    case S2FT_WEIGHT_K: *rows = kv, *cols = s.d_model; break;
    case S2FT_WEIGHT_GATE: *rows = s.d_ff, *cols = s.d_model; break;
    default: target_weight_shape(s, weight, rows, cols); break;
  }
}

int64_t weight_elements(const s2ft_model_shape &s, int32_t weight) {
  int64_t r, c;
  weight_shape(s, weight, &r, &c);
  if (r <= 0 || c <= 0) return 0;
  if (r > INT64_MAX / c) return INT64_MAX;
  return r * c;
}

}  // namespace s2ft

extern "C" S2FT_API s2ft_status s2ft_model_shape_check(const s2ft_model_shape *shape) {
  return s2ft::guard("s2ft_model_shape_check", [&] { s2ft::check_model_shape(shape, "shape"); });
}
