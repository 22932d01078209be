// Fine-tuning a real checkpoint on a text file with S2FT, end to end:
// load (Hugging Face folder or llama2.c file) -> tokenize -> calibrate,
// select, permute, train through libs2ft -> export the adapter -> merge it
// into the unpermuted base with libs2ft (a Hugging Face folder: written to
// OUT/merged and reloaded; a llama2.c file: in memory) -> check the merged
// model reproduces the fine-tuned one -> sample before and after.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

namespace ft {

struct RealFinetuneSettings {
  std::string model, data, tokenizer, out = "s2ft-finetune-out";
  int64_t steps = 300, seq = 64, batch = 8;
  double lr = 3e-3;
  uint64_t seed = 0;
  uint32_t targets = 0;  // S2FT_TARGET_BIT mask; 0 = O and DOWN
};

// Returns 0 on success, 1 when a check fails; throws on bad input.
int run_real_finetune(const RealFinetuneSettings &s, std::ostream &out);

}  // namespace ft
