// Fine-tuning a real checkpoint on a text file, in two parts.
//
// 1. S2FT end to end: load (Hugging Face folder or llama2.c file) ->
//    tokenize -> calibrate, select, permute, train through libs2ft -> export
//    the adapter -> merge it into the unpermuted base with libs2ft (a Hugging
//    Face folder: written to OUT/merged and reloaded; a llama2.c file: in
//    memory) -> check the merged model reproduces the fine-tuned one ->
//    sample before and after.
// 2. The fidelity protocol on the same checkpoint and text
//    (real_comparison.hpp): every method of the comparison, traced, with
//    forgetting measured as KL(base || tuned) on text the base model wrote.
#pragma once

#include <cmath>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace ft {

struct RealFinetuneSettings {
  std::string model, data, tokenizer, out = "s2ft-finetune-out";
  int64_t steps = 300, seq = 64, batch = 8;  // both parts
  double lr = 3e-3;                          // the S2FT run of part 1
  uint64_t seed = 0;                         // the S2FT run of part 1
  uint32_t targets = 0;  // S2FT_TARGET_BIT mask; 0 = O and DOWN

  // Part 2, the comparison.
  bool compare = true;
  int64_t seeds = 1;                 // runs per method and rate (seeds 1..N)
  bool grid = false;                 // each method over its grid of 4 rates, else its best rate
  int jobs = 2;                      // runs at once, each in a forked process
  std::vector<std::string> methods;  // names to run; empty: all
  double lr_scale = 1.0;             // every rate of the comparison times this
  double target_loss = NAN;          // held-out loss that counts as learnt; NaN: from the runs
  std::string retain_data;           // optional text like the base model's training data
  int64_t eval_every = 0;            // 0: steps / 10 (at least 1)
};

// Returns 0 on success, 1 when a check fails; throws on bad input.
int run_real_finetune(const RealFinetuneSettings &s, std::ostream &out);

}  // namespace ft
