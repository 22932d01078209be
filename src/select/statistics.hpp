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

#include "backend/backend.hpp"
#include "s2ft/s2ft.h"

// The sums are accumulated by the context's backend, in one array of
// doubles (`sums`, on the context's device) where every record has a fixed
// place (`offset`); the host vectors are copies, refreshed by one
// (synchronising) read when a record is read (unit_sums) after the backend
// changed it (`stale`).
struct s2ft_statistics {
  s2ft::LiveHandle<s2ft::HandleKind::statistics> live;  // first: counted, and tagged while alive
  struct Record {
    bool present = false;
    mutable std::vector<double> sums;  // one per unit of the target
    mutable bool stale = false;        // the backend has newer sums
    int64_t offset = -1;               // the record's place in `sums` (-1: host only)
    int64_t rank = 0;                  // S2FT_STAT_PRINCIPAL: the rank r of W_r
  };
  // One record per statistic kind (S2FT_STAT_*) of one (layer, target).
  // PRINCIPAL records come from an SVD the backend returns to the host, so
  // they live on the host only (never stale, no place in `sums`).
  using TargetRecords = std::array<Record, 4>;

  s2ft_context *ctx = nullptr;  // for the GEMM backend; must outlive the statistics
  s2ft_model_shape shape{};
  // records[layer][target][kind]. Activations are stored only for O (per
  // query head) and DOWN (per channel); V and UP read them (see unit_sums).
  std::vector<std::array<TargetRecords, S2FT_NUM_TARGETS>> records;
  s2ft::backend::Object sums;  // every record's sums, made by the backend
  mutable bool stale = false;  // some record is stale
};

namespace s2ft {

// Units of a target as the statistics count them: query heads for O (always
// single heads), KV heads for V, channels for DOWN and UP.
int64_t statistic_units(const s2ft_model_shape &s, int32_t target);

// The per-unit sums of squares of `kind` for (layer, target), in statistic
// units. V activations are the sums over the O columns of each KV group's
// query heads; UP activations are DOWN's. Returns false when that statistic
// (or, for V/UP activations, the O/DOWN one it reads) was never recorded.
// This first refreshes the host copies of records the backend has changed
// since they were last read (synchronising on a device).
bool unit_sums(const s2ft_statistics &stats, int32_t layer, int32_t target, int32_t kind, std::vector<double> *out);

// "weight", "activation", "gradient", "principal".
const char *statistic_kind_name(int32_t kind);

// Says what to feed to fill a missing statistic, e.g.
// "no activation statistics for layer 3 target V (feed the o_proj input of
//  layer 3 with s2ft_statistics_add_activation(..., S2FT_TARGET_O, ...))".
std::string missing_statistic_message(int32_t layer, int32_t target, int32_t kind);

}  // namespace s2ft
