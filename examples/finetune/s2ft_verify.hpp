// What S2FT promises after training, checked on the weights themselves:
//  - every weight outside the selected lines is bit-identical to the base;
//  - the exported adapter merged into the base (s2ft_model +
//    s2ft_adapter_apply, what `s2ft merge` does) gives the fine-tuned model.
#pragma once

#include <cstdint>
#include <string>

#include <s2ft/s2ft.h>

#include "batch.hpp"
#include "llama_weights.hpp"

namespace ft {

struct FrozenCheck {
  int64_t trained_elements = 0;   // elements of the selected lines
  int64_t changed_trained = 0;    // of those, how many differ from the base
  int64_t changed_frozen = 0;     // elements outside the selection that differ (must be 0)
  std::string first_changed;      // where the first frozen change is, if any
};

// Compares `trained` with `base` (both in base order) bit for bit.
FrozenCheck check_frozen(const LlamaConfig &c, const s2ft_selection *sel, const LlamaWeights<float> &base,
                         const LlamaWeights<float> &trained);

// A copy of `base` (base order) with `adapter` merged at scale 1.
LlamaWeights<float> merge_adapter(s2ft_context *ctx, const LlamaConfig &c, const LlamaWeights<float> &base,
                                  const s2ft_adapter *adapter);

// The largest |logit difference| between two models on `b`.
double max_logit_difference(const LlamaConfig &c, LlamaWeights<float> &a, LlamaWeights<float> &b, const Batch &batch);

}  // namespace ft
