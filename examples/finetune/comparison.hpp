// The default demonstration: pretrain a small GQA model on synthetic task A,
// fine-tune it on the related task B with S2FT, full fine-tuning and LoRA
// (rank matched to S2FT's trainable parameters) from the same weights, over
// several seeds, and tabulate cost and outcome. Each fine-tuning run is a
// forked child process so its peak RSS is its own.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "llama_config.hpp"
#include "s2ft_method.hpp"

namespace ft {

struct ComparisonSettings {
  LlamaConfig model;  // vocab is set from the tasks
  int64_t symbols = 32, length = 8, batch = 32, eval_batches = 8;
  int64_t pretrain_max_steps = 1000;
  double pretrain_target = 0.99;  // stop pretraining at this task-A accuracy
  double pretrain_lr = 2e-3;
  int64_t finetune_steps = 100;
  double lr_full = 3e-4, lr_lora = 2e-3, lr_s2ft = 2e-3;
  int64_t seeds = 3;
  S2ftSettings s2ft;
  bool short_mode = false;  // CI: a few steps, assertions instead of a table
  bool fork_runs = true;

  ComparisonSettings();
  // The short (CI) variant: tiny steps, one seed.
  static ComparisonSettings short_run();
};

// Runs the comparison, printing progress and the table to `out`. Returns 0,
// or 1 when a check failed (the loss did not fall, S2FT changed a frozen
// weight, or the merged adapter does not reproduce the fine-tuned model).
int run_comparison(const ComparisonSettings &s, std::ostream &out);

}  // namespace ft
