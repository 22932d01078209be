// The optimizer object behind the opaque s2ft_optimizer handle: AdamW or SGD
// whose state covers only the trained slice of each weight.
#pragma once

#include "common/live_handles.hpp"
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {

// One registered parameter: the trained lines of one weight. The slice is a
// [rows, cols] matrix ([out, k] for columns, [k, in] for rows); its state
// tensors (moments, momentum, an f32 master for 16-bit weights; compact
// row-major f32 of that shape) are the backend's `state`, on the context's
// device. get/set read the weight itself, so only on the CPU.
struct OptimizerParam {
  Matrix weight;                 // the whole weight (borrowed memory)
  int32_t axis = S2FT_AXIS_COLUMNS;
  std::vector<int64_t> lines;    // weight column (or row) of each slice line
  int64_t rows = 0, cols = 0;    // slice shape
  backend::Object state;         // the backend's state of this parameter

  size_t size() const { return static_cast<size_t>(rows * cols); }
  bool has_master() const { return weight.dtype != S2FT_F32; }
  // Slice element (i, j) lives at weight element (row(i, j), col(i, j)).
  int64_t weight_row(int64_t i) const { return axis == S2FT_AXIS_ROWS ? lines[static_cast<size_t>(i)] : i; }
  int64_t weight_col(int64_t j) const { return axis == S2FT_AXIS_COLUMNS ? lines[static_cast<size_t>(j)] : j; }
  float get(int64_t i, int64_t j) const { return weight.get(weight_row(i), weight_col(j)); }
  void set(int64_t i, int64_t j, float x) const { weight.set(weight_row(i), weight_col(j), x); }
};

// Which state tensors a parameter carries under the given options.
inline bool uses_adam_moments(const s2ft_optimizer_options &o) { return o.kind == S2FT_OPTIMIZER_ADAMW; }
inline bool uses_momentum(const s2ft_optimizer_options &o) {
  return o.kind == S2FT_OPTIMIZER_SGD && o.momentum != 0.0;
}

}  // namespace s2ft

struct s2ft_optimizer {
  s2ft::LiveHandle<s2ft::HandleKind::optimizer> live;  // first: counted, and tagged while alive
  s2ft_device device{S2FT_DEVICE_CPU, 0};
  s2ft_context *ctx = nullptr;  // the creating context (must outlive the optimizer)
  s2ft_optimizer_options options{};
  // Completed steps; AdamW's bias correction uses steps + 1. On a device
  // the backend keeps the authoritative count (a step without clipping and
  // without a requested norm is skipped there when its gradient norm is not
  // finite, which the host cannot see without synchronising): while
  // `steps_pending`, `steps` assumes every such step was applied, and
  // current_steps() reads the backend's count.
  mutable int64_t steps = 0;
  mutable bool steps_pending = false;
  s2ft::backend::Object state;  // the backend's step counter
  std::vector<s2ft::OptimizerParam> params;
};

namespace s2ft {
// The number of completed steps; with steps pending this reads the
// backend's count (synchronising) and caches it.
int64_t current_steps(const s2ft_optimizer &opt);
}  // namespace s2ft
