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

// A sparse parameter's axis (internal: the public S2FT_AXIS_* are 0 and 1).
constexpr int32_t kAxisEntries = 2;

// One registered parameter: the trained lines of one weight, or its
// trained entries. A slice is a [rows, cols] matrix ([out, k] for columns,
// [k, in] for rows); a sparse parameter is [1, count], its `lines` the
// entries' flat indices into the weight (ascending). Its state tensors
// (moments, momentum, ages, an f32 master for 16-bit weights: compact f32
// of the parameter's shape; SM3's accumulators: one per row and column of
// the slice, or of the whole weight for a sparse parameter) are the
// backend's `state`, on the context's device. get/set read the weight
// itself, so only on the CPU.
struct OptimizerParam {
  Matrix weight;                 // the whole weight (borrowed memory)
  int32_t axis = S2FT_AXIS_COLUMNS;  // S2FT_AXIS_COLUMNS, S2FT_AXIS_ROWS or kAxisEntries
  std::vector<int64_t> lines;    // weight column (or row) of each slice line; flat index of each entry
  int64_t rows = 0, cols = 0;    // the parameter's shape
  backend::Object state;         // the backend's state of this parameter

  bool sparse() const { return axis == kAxisEntries; }
  size_t size() const { return static_cast<size_t>(rows * cols); }
  bool has_master() const { return weight.dtype != S2FT_F32; }
  // Parameter element (i, j) lives at weight element (weight_row(i, j), weight_col(i, j)).
  int64_t weight_row(int64_t i, int64_t j) const {
    return axis == S2FT_AXIS_ROWS ? lines[static_cast<size_t>(i)]
           : sparse()             ? lines[static_cast<size_t>(j)] / weight.cols
                                  : i;
  }
  int64_t weight_col(int64_t /*i*/, int64_t j) const {
    return axis == S2FT_AXIS_COLUMNS ? lines[static_cast<size_t>(j)]
           : sparse()                ? lines[static_cast<size_t>(j)] % weight.cols
                                     : j;
  }
  float get(int64_t i, int64_t j) const { return weight.get(weight_row(i, j), weight_col(i, j)); }
  void set(int64_t i, int64_t j, float x) const { weight.set(weight_row(i, j), weight_col(i, j), x); }
  // SM3: the accumulators' extents, and the row and column accumulator of element (i, j).
  int64_t acc_rows() const { return sparse() ? weight.rows : rows; }
  int64_t acc_cols() const { return sparse() ? weight.cols : cols; }
  int64_t acc_row(int64_t i, int64_t j) const { return sparse() ? weight_row(i, j) : i; }
  int64_t acc_col(int64_t i, int64_t j) const { return sparse() ? weight_col(i, j) : j; }
  // The number of floats of state tensor `which`.
  size_t state_size(backend::StateTensor which) const {
    if (which == backend::StateTensor::row_acc) return static_cast<size_t>(acc_rows());
    if (which == backend::StateTensor::col_acc) return static_cast<size_t>(acc_cols());
    return size();
  }
};

// Which state tensors a parameter carries under the given options.
inline bool uses_adam_moments(const s2ft_optimizer_options &o) { return o.kind == S2FT_OPTIMIZER_ADAMW; }
inline bool uses_momentum(const s2ft_optimizer_options &o) {
  return (o.kind == S2FT_OPTIMIZER_SGD || o.kind == S2FT_OPTIMIZER_SM3) && o.momentum != 0.0;
}
inline bool uses_sm3(const s2ft_optimizer_options &o) { return o.kind == S2FT_OPTIMIZER_SM3; }
inline bool uses_age(const s2ft_optimizer_options &o, const OptimizerParam &p) {
  return o.kind == S2FT_OPTIMIZER_ADAMW && o.age_bias_correction != 0 && p.sparse();
}
inline bool has_state(const s2ft_optimizer_options &o, const OptimizerParam &p, backend::StateTensor which) {
  switch (which) {
    case backend::StateTensor::m:
    case backend::StateTensor::v: return uses_adam_moments(o);
    case backend::StateTensor::momentum: return uses_momentum(o);
    case backend::StateTensor::master: return p.has_master();
    case backend::StateTensor::age: return uses_age(o, p);
    case backend::StateTensor::row_acc:
    case backend::StateTensor::col_acc: return uses_sm3(o);
  }
  return false;
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

struct s2ft_sparse_set;

namespace s2ft {
// The number of completed steps; with steps pending this reads the
// backend's count (synchronising) and caches it.
int64_t current_steps(const s2ft_optimizer &opt);

// True when a and b view the same elements of the same memory the same way.
bool same_view(const Matrix &a, const Matrix &b);

// Sparse parameter `index` of opt: S2FT_ERR_INVALID_ARGUMENT (naming
// `name`) when the index is out of range or names a slice.
OptimizerParam &sparse_param(s2ft_optimizer &opt, int64_t index, const char *name);

// s2ft_optimizer_sparse_reindex: moves sparse parameter `index` to `set`
// (checked here: device, shape, no entry of another parameter of the same
// weight), or throws with nothing changed. The second form takes valid
// flat indices (ascending, in range) instead of a set, `what` naming them.
void sparse_reindex(s2ft_optimizer &opt, int64_t index, const s2ft_sparse_set *set, const char *set_name);
void sparse_reindex(s2ft_optimizer &opt, int64_t index, std::vector<int64_t> lines, const char *what);

// The flat indices trained by the other sparse parameters of `index`'s
// weight, ascending; throws S2FT_ERR_INVALID_ARGUMENT when a slice
// parameter trains lines of that weight (`what` says who asks).
std::vector<int64_t> other_sparse_entries(const s2ft_optimizer &opt, int64_t index, const char *what);

// A state tensor of parameter `index` to host (p.state_size(which) floats,
// synchronising), and back (queued).
std::vector<float> read_param_state(const s2ft_optimizer &opt, int64_t index, backend::StateTensor which);
void write_param_state(const s2ft_optimizer &opt, int64_t index, backend::StateTensor which,
                       const std::vector<float> &values);
}  // namespace s2ft
