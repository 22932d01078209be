// Checks on the model shape that every selection and permutation relies on,
// and the per-target weight geometry that follows from it.
#pragma once

#include <cstdint>
#include <string>

#include "s2ft/s2ft.h"

namespace s2ft {

// Throws S2FT_ERR_INVALID_ARGUMENT naming `name` and the bad field: NULL, a
// field <= 0, or n_heads not a multiple of n_kv_heads.
void check_model_shape(const s2ft_model_shape *shape, const char *name);

// True when every field of a and b is equal.
bool same_shape(const s2ft_model_shape &a, const s2ft_model_shape &b);
// "{n_layers 2, d_model 13, n_heads 4, n_kv_heads 2, head_dim 3, d_ff 11}", for messages.
std::string shape_string(const s2ft_model_shape &s);

// ---- per-target weight geometry ----------------------------------------------

// S2FT_AXIS_COLUMNS for O and DOWN (inputs trained), S2FT_AXIS_ROWS for V and UP.
int32_t target_axis(int32_t target);
// The [out, in] shape of the target's weight (o_proj, v_proj, down_proj, up_proj).
void target_weight_shape(const s2ft_model_shape &s, int32_t target, int64_t *rows, int64_t *cols);
// Lines along the trained axis (columns of O/DOWN, rows of V/UP).
int64_t target_line_count(const s2ft_model_shape &s, int32_t target);
// Length of one line (rows of the weight for a column target, columns for a row target).
int64_t target_line_length(const s2ft_model_shape &s, int32_t target);
// Lines per selection unit: head_dim for the head targets (O, V), 1 for channels.
int64_t target_unit_width(const s2ft_model_shape &s, int32_t target);

// ---- per-weight geometry (the seven weights, S2FT_WEIGHT_*) -------------------------

// Throws S2FT_ERR_INVALID_ARGUMENT unless weight is one of S2FT_WEIGHT_*.
void check_weight_id(int32_t weight, const char *name = "weight");
// "O", "V", "DOWN", "UP", "Q", "K", "GATE" (or "?" for anything else).
const char *weight_name(int32_t weight);
// The [out, in] shape of the weight (the targets' as target_weight_shape).
void weight_shape(const s2ft_model_shape &s, int32_t weight, int64_t *rows, int64_t *cols);
// rows * cols of the weight, or INT64_MAX when that does not fit in 64 bits
// (a shape no memory could hold; every flat index below it is in range).
int64_t weight_elements(const s2ft_model_shape &s, int32_t weight);

}  // namespace s2ft
