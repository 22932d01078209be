// The optimizer object behind the opaque s2ft_optimizer handle: AdamW or SGD
// whose state covers only the trained slice of each weight.
#pragma once

#include "common/live_handles.hpp"
#include <cstdint>
#include <memory>
#include <vector>

#include "common/tensor.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {

namespace cuda {
struct OptimizerDeviceState;  // kernels/cuda_optimizer.hpp
struct ParamDeviceState;
}  // namespace cuda

// One registered parameter: the trained lines of one weight. The slice is a
// [rows, cols] matrix ([out, k] for columns, [k, in] for rows); all state
// vectors are compact row-major f32 of that shape (empty when unused). On a
// CUDA optimizer the weight is a device view, the state lives on the device
// (`dev`) and the host vectors stay empty; get/set must not be used there.
struct OptimizerParam {
  Matrix weight;                 // the whole weight (borrowed memory)
  int32_t axis = S2FT_AXIS_COLUMNS;
  std::vector<int64_t> lines;    // weight column (or row) of each slice line
  int64_t rows = 0, cols = 0;    // slice shape

  std::vector<float> m, v;       // AdamW first and second moments
  std::vector<float> momentum;   // SGD momentum buffer (momentum > 0 only)
  std::vector<float> master;     // f32 master slice for f16/bf16 weights
  std::shared_ptr<cuda::ParamDeviceState> dev;  // CUDA optimizers: the state above, on the device

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

// Writes a parameter's master slice, rounded, into its weight.
void write_master_to_weight(const OptimizerParam &p);

}  // namespace s2ft

struct s2ft_optimizer {
  s2ft::LiveHandle live;  // counted by s2ft_live_handles()
  s2ft_device device{S2FT_DEVICE_CPU, 0};
  s2ft_context *ctx = nullptr;  // the creating context (must outlive the optimizer)
  s2ft_optimizer_options options{};
  // Completed steps; AdamW's bias correction uses steps + 1. On CUDA the
  // device keeps the authoritative count (a step without clipping and
  // without a requested norm is skipped there when its gradient norm is not
  // finite, which the host cannot see without synchronising): while
  // `steps_pending`, `steps` assumes every such step was applied, and
  // current_steps() reads the device's count.
  mutable int64_t steps = 0;
  mutable bool steps_pending = false;
  std::shared_ptr<s2ft::cuda::OptimizerDeviceState> dev;  // CUDA optimizers
  std::vector<s2ft::OptimizerParam> params;

  bool on_cuda() const { return device.type == S2FT_DEVICE_CUDA; }
};

namespace s2ft {
// The number of completed steps; on CUDA with steps pending this reads the
// device's count (synchronising) and caches it.
int64_t current_steps(const s2ft_optimizer &opt);
}  // namespace s2ft
