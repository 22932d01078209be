// The training loop every method shares: forward, backward, one AdamW step,
// with linear warm-up then cosine decay of the learning rate (constant after
// warm-up with final_lr_ratio = 1).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "batch.hpp"
#include "fine_tuning.hpp"
#include "llama_model.hpp"

namespace ft {

struct TrainSettings {
  int64_t steps = 100;
  double lr = 1e-3;
  double warmup = 0.1;         // fraction of the steps
  int64_t warmup_steps = -1;   // >= 0: this many steps instead of the fraction
  double final_lr_ratio = 0.1;  // the cosine ends at lr * final_lr_ratio
};

struct TrainStats {
  std::vector<double> losses;     // one per step taken
  double seconds_per_step = 0.0;  // wall time of forward + backward + step
  int64_t activation_bytes = 0;   // saved activations of a training forward
};

// The learning rate of step `step` (0-based).
double learning_rate(const TrainSettings &s, int64_t step);

using BatchSource = std::function<Batch(int64_t step)>;
// Called after every step; returning false ends training early.
using StepObserver = std::function<bool(int64_t step, double loss, double lr)>;

// Trains `model` with `method` (already attached) on batches from `next`.
TrainStats train(LlamaModel<float> &model, FineTuning &method, const BatchSource &next, const TrainSettings &s,
                 const StepObserver &observe = nullptr);

}  // namespace ft
