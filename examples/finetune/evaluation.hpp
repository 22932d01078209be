// Evaluation sets of the fidelity protocol and the metrics of a model on
// them: accuracy and cross-entropy at the scored positions, and
// KL(base || tuned), the divergence of the fine-tuned model's next-token
// distribution from the base model's at the same positions (the measure of
// forgetting that needs no labels).
#pragma once

#include <cstdint>
#include <vector>

#include "batch.hpp"
#include "fidelity_trace.hpp"
#include "llama_model.hpp"

namespace ft {

struct EvalSet {
  SetInfo info;
  std::vector<Batch> batches;
  // The base model's log-probabilities at each batch's scored positions, in
  // order ([scored, vocab] per batch); filled by record_base().
  std::vector<std::vector<float>> base_log_probs;
};

// Runs the base model over the set and keeps its log-probabilities.
void record_base(LlamaModel<float> &base, EvalSet &set);

// The model's metrics on the set (kl needs record_base() first; NaN without).
SetMetrics evaluate(LlamaModel<float> &model, const EvalSet &set);

// The model's metrics on every set, in order.
std::vector<SetMetrics> evaluate_all(LlamaModel<float> &model, const std::vector<EvalSet> &sets);

// log softmax of one row of logits, in double.
void log_softmax(const float *logits, int64_t n, std::vector<double> &out);

}  // namespace ft
