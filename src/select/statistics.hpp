// The calibration statistics behind the opaque s2ft_statistics handle:
// per-unit sums of squares of weights, input activations and weight
// gradients, accumulated in double.
#pragma once

#include "common/live_handles.hpp"
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "s2ft/s2ft.h"

namespace s2ft {
namespace cuda {
struct StatisticsArena;  // kernels/cuda_statistics.hpp
}  // namespace cuda
}  // namespace s2ft

// On a CUDA context the sums are accumulated on the device, in one arena of
// doubles (`arena`) where every record has a fixed place (`offset`); the
// host vectors are copies, refreshed by one synchronising download when a
// record is read (unit_sums) after the device changed it (`stale`).
struct s2ft_statistics {
  s2ft::LiveHandle live;  // counted by s2ft_live_handles()
  struct Record {
    bool present = false;
    mutable std::vector<double> sums;  // one per unit of the target
    mutable bool stale = false;        // CUDA: the device has newer sums
    int64_t offset = -1;               // CUDA: the record's place in the arena
  };
  // One record per statistic kind (S2FT_STAT_*) of one (layer, target).
  using TargetRecords = std::array<Record, 3>;

  s2ft_context *ctx = nullptr;  // for the GEMM backend; must outlive the statistics
  s2ft_model_shape shape{};
  // records[layer][target][kind]. Activations are stored only for O (per
  // query head) and DOWN (per channel); V and UP read them (see unit_sums).
  std::vector<std::array<TargetRecords, S2FT_NUM_TARGETS>> records;
  std::shared_ptr<s2ft::cuda::StatisticsArena> arena;  // CUDA contexts
  mutable bool stale = false;                           // CUDA: some record is stale
};

namespace s2ft {

// Units of a target as the statistics count them: query heads for O (always
// single heads), KV heads for V, channels for DOWN and UP.
int64_t statistic_units(const s2ft_model_shape &s, int32_t target);

// The per-unit sums of squares of `kind` for (layer, target), in statistic
// units. V activations are the sums over the O columns of each KV group's
// query heads; UP activations are DOWN's. Returns false when that statistic
// (or, for V/UP activations, the O/DOWN one it reads) was never recorded.
// On a CUDA context this first refreshes the host copies of records the
// device has changed since they were last read (synchronising).
bool unit_sums(const s2ft_statistics &stats, int32_t layer, int32_t target, int32_t kind, std::vector<double> *out);

// "weight", "activation", "gradient".
const char *statistic_kind_name(int32_t kind);

// Says what to feed to fill a missing statistic, e.g.
// "no activation statistics for layer 3 target V (feed the o_proj input of
//  layer 3 with s2ft_statistics_add_activation(..., S2FT_TARGET_O, ...))".
std::string missing_statistic_message(int32_t layer, int32_t target, int32_t kind);

}  // namespace s2ft
