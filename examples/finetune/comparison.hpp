// The default demonstration, a fair test of what fine-tuning methods learn
// and what they forget (the fidelity protocol, fidelity_trace.hpp):
//  - a small GQA model is pretrained for a fixed number of steps on tasks A
//    and C (cached, so that every method and invocation starts from the
//    same weights);
//  - each method fine-tunes it on task B at its best learning rate, or with
//    --grid over its grid of rates (x2 apart; constant after warm-up), for
//    one seed or more (--full: the grid and 3 seeds), with the same data
//    order for every method; every run is traced: B's held-out
//    accuracy and loss and, for each retention set, accuracy, loss and
//    KL(base || tuned);
//  - methods are compared at matched learning (the first point where B
//    reaches the target) and after training on to 3x that step, each at the
//    rate with its best retention at match;
//  - every trace goes to OUT/traces.csv, every run's outcome to
//    OUT/results.csv, and the table to the output.
// Each run is a forked child process (its own peak RSS), a few at a time.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "fidelity_trace.hpp"
#include "llama_config.hpp"
#include "s2ft_method.hpp"

namespace ft {

struct ComparisonSettings {
  LlamaConfig model;  // vocab is set from the tasks
  int64_t symbols = 32, length = 8, batch = 32;
  int64_t eval_batches = 2;  // of 64 sequences per evaluation set
  int64_t pretrain_steps = 200;
  double pretrain_lr = 2e-3;
  // Fine-tuning: a run that has not matched by `match_within` steps stops
  // there; one that matched at step s stops at rule.overtrain x s.
  int64_t match_within = 100, eval_every = 10, warmup_steps = 10;
  MatchRule rule;  // set 0 is task B; target 0.9 accuracy, over-training at 3x
  int64_t seeds = 1;  // the whole protocol (--full): 3
  bool grid = false;  // every method over its grid of rates (else its best rate only)
  // S2FT's scored selection (strategy, order, targets) and its small budget
  // (units per layer); the large budget has large_factor x the DOWN/UP units
  // and twice the O/V units (at most all).
  S2ftSettings s2ft;
  int64_t large_factor = 4;
  std::vector<std::string> methods;  // names to run; empty: all
  double lr_scale = 1.0;             // every rate (and grid) multiplied by this
  std::string out = "s2ft-finetune-out";
  int jobs = 2;
  bool fork_runs = true;
  bool short_mode = false;  // CI: a few steps, one seed, two rates; checks, no table

  ComparisonSettings();
  // The short (CI) variant.
  static ComparisonSettings short_run();
};

// The names of the methods the comparison runs with settings `s` (all of
// them, whatever s.methods holds), in table order.
std::vector<std::string> comparison_method_names(const ComparisonSettings &s);

// Runs the comparison, printing progress and the table to `out`. Returns 0,
// or 1 when a check failed (a run failed, a loss did not fall, S2FT changed
// a frozen weight or its merged adapter does not reproduce the model).
int run_comparison(const ComparisonSettings &s, std::ostream &out);

}  // namespace ft
