// The optimizer on a CUDA context (plain C++, no CUDA types):
// device state per parameter (moments, momentum, f32 master, slice lines),
// the optimizer's device step counter, and the fused step. Implemented in
// cuda_optimizer.cu; the rules are the CPU's (src/backend/cpu/optimizer.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "cuda_context.hpp"
#include "s2ft/s2ft.h"

namespace s2ft {

struct OptimizerParam;

namespace cuda {

// The optimizer's device step counter: the number of steps the device has
// applied (a step whose gradient norm is not finite is not applied).
struct OptimizerDeviceState;
// One parameter's device state: its slice lines and compact row-major f32
// [rows, cols] state tensors (the ones the options call for).
struct ParamDeviceState;

using backend::StateTensor;
using backend::StepReport;

// A step counter at 0. Allocates device memory (may synchronise).
std::shared_ptr<OptimizerDeviceState> create_optimizer_state(Context &ctx);

// State for parameter p (p.weight is a checked device view, p.lines its slice
// lines): moments and momentum at zero when `o` uses them, the master
// initialised from the weight's slice when the weight is f16/bf16. Allocates
// device memory (may synchronise); the initialisation is queued.
std::shared_ptr<ParamDeviceState> create_param_state(Context &ctx, const OptimizerParam &p,
                                                     const s2ft_optimizer_options &o);


// State for `next` (prev moved to new entries; source[e] is entry e's
// position in prev or -1): per-entry tensors gathered from prev's, zeros
// (masters: the weight's values) for new entries; SM3 accumulators copied.
// Allocates device memory (may synchronise); the copies are queued.
std::shared_ptr<ParamDeviceState> reindex_param_state(Context &ctx, const OptimizerParam &prev,
                                                      const OptimizerParam &next, const std::vector<int64_t> &source,
                                                      const s2ft_optimizer_options &o);

// One step over all parameters with gradients `grads` (checked device views
// of the slice shapes, f32 or the weight's dtype), learning rate `lr`.
// The global norm is reduced on the device (double) and decides, on the
// device, whether the update runs (it does not for a non-finite norm) and
// by how much gradients are clipped. `assumed_steps` is the host's count of
// earlier steps, used for AdamW's bias correction whenever the device
// agrees (the device computes its own otherwise).
// With `report`, the norm is downloaded (a synchronising copy) into
// *report before the update is queued, and no update is queued for a
// non-finite norm; without it nothing synchronises.
void optimizer_step(Context &ctx, OptimizerDeviceState &state, const std::vector<OptimizerParam> &params,
                    const std::vector<Matrix> &grads, const s2ft_optimizer_options &o, double lr,
                    int64_t assumed_steps, bool report, StepReport *out);

// The device's step count (synchronising).
int64_t download_steps(Context &ctx, const OptimizerDeviceState &state);
// Sets the device's step count (queued).
void upload_steps(Context &ctx, OptimizerDeviceState &state, int64_t steps);

// Copies a state tensor (p.state_size(which) floats) to the host (synchronising).
void download_state(Context &ctx, const ParamDeviceState &state, StateTensor which, float *host, size_t count);
// Copies host values into a state tensor (queued; `host` may be reused when
// the call returns).
void upload_state(Context &ctx, ParamDeviceState &state, StateTensor which, const float *host, size_t count);

// Writes p's master slice, rounded to the weight's dtype, into its weight
// (queued; nothing for f32 weights).
void write_master_to_weight(Context &ctx, const OptimizerParam &p);

}  // namespace cuda
}  // namespace s2ft
