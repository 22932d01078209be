// Validation of s2ft_model_shape, shared by every function that takes one.
#include "model_shape.hpp"

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

}  // namespace s2ft

extern "C" S2FT_API s2ft_status s2ft_model_shape_check(const s2ft_model_shape *shape) {
  return s2ft::guard("s2ft_model_shape_check", [&] { s2ft::check_model_shape(shape, "shape"); });
}
