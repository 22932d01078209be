// Checks on the model shape that every selection and permutation relies on.
#pragma once

#include "s2ft/s2ft.h"

namespace s2ft {

// Throws S2FT_ERR_INVALID_ARGUMENT naming `name` and the bad field: NULL, a
// field <= 0, or n_heads not a multiple of n_kv_heads.
void check_model_shape(const s2ft_model_shape *shape, const char *name);

}  // namespace s2ft
