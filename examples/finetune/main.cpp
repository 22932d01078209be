// s2ft-finetune: fine-tune a LLaMA-architecture model on the CPU with S2FT
// through libs2ft, and compare it with full fine-tuning and LoRA.
//
//   s2ft-finetune                      the synthetic comparison (a table)
//   s2ft-finetune --short              a few steps of it, with checks (CI)
//   s2ft-finetune --model PATH --data FILE [...]
//                                      fine-tune a real checkpoint on a text
//                                      file, export the adapter, merge it
//                                      with libs2ft, show generations
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>

#include <s2ft/s2ft.h>

#include "comparison.hpp"
#include "real_finetune.hpp"

namespace {

const char kUsage[] =
    "usage: s2ft-finetune [--short] [--seeds N] [--steps N] [--lr-s2ft X] [--lr-full X] [--lr-lora X]\n"
    "                     [--s2ft-strategy random|weight|activation|weight-activation]\n"
    "                     [--s2ft-order largest|smallest] [--targets o,down[,v,up]]\n"
    "       s2ft-finetune --model PATH --data FILE [--tokenizer FILE] [--out DIR]\n"
    "                     [--steps N] [--lr X] [--seq N] [--batch N] [--seed N] [--targets LIST]\n"
    "\n"
    "Without --model: pretrain a small GQA model on synthetic task A, fine-tune it on the related\n"
    "task B with S2FT, full fine-tuning and LoRA (rank matched to S2FT's parameter count), and print\n"
    "a table of trainable parameters, training-state memory, peak RSS, time per step and accuracy\n"
    "on B and on A (forgetting), averaged over seeds (default 3). --short runs a few steps and checks\n"
    "that every method's loss falls and that S2FT leaves every frozen weight bit-identical.\n"
    "--targets chooses what S2FT trains (default o,down; v and up are the optional row targets).\n"
    "\n"
    "With --model: PATH is a Hugging Face checkpoint folder or a llama2.c .bin file; FILE is UTF-8\n"
    "text (blank lines separate documents); the tokenizer is llama2.c's format (default: tok512.bin\n"
    "beside the model). Writes the adapter and the selection to --out (default s2ft-finetune-out)\n"
    "and, for a Hugging Face folder, the merged checkpoint (OUT/merged, written by libs2ft as\n"
    "`s2ft merge` would); a llama2.c model is merged in memory only.\n";

bool parse_int(const char *text, int64_t lo, int64_t hi, int64_t *out) {
  char *end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_double(const char *text, double *out) {
  char *end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(v > 0.0) || v > 1.0) return false;
  *out = v;
  return true;
}

// "o,down,v" -> the mask of S2FT_TARGET_BIT()s; false on an unknown name.
bool parse_targets(const std::string &list, uint32_t *mask) {
  *mask = 0;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string name = list.substr(start, comma - start);
    const int t = name == "o" ? S2FT_TARGET_O : name == "v" ? S2FT_TARGET_V : name == "down" ? S2FT_TARGET_DOWN
                                                                           : name == "up"   ? S2FT_TARGET_UP
                                                                                            : -1;
    if (t < 0) return false;
    *mask |= S2FT_TARGET_BIT(t);
    start = comma + 1;
  }
  return *mask != 0;
}

int usage_error(const std::string &msg) {
  std::cerr << "s2ft-finetune: " << msg << "\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char **argv) {
  bool short_mode = false;
  int64_t seeds = -1, steps = -1;
  double lr_method[3] = {0, 0, 0};  // s2ft, full, lora
  int32_t strategy = -1, order = -1;
  uint32_t targets = 0;
  ft::RealFinetuneSettings real;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char * { return i + 1 < argc ? argv[++i] : nullptr; };
    const char *v = nullptr;
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--short") {
      short_mode = true;
    } else if (a == "--seeds") {
      if (!(v = value()) || !parse_int(v, 1, 100, &seeds)) return usage_error("--seeds needs 1..100");
    } else if (a == "--steps") {
      if (!(v = value()) || !parse_int(v, 1, 1000000, &steps)) return usage_error("--steps needs 1..1000000");
    } else if (a == "--lr-s2ft" || a == "--lr-full" || a == "--lr-lora") {
      const int m = a == "--lr-s2ft" ? 0 : a == "--lr-full" ? 1 : 2;
      if (!(v = value()) || !parse_double(v, &lr_method[m])) return usage_error(a + " needs a number in (0, 1]");
    } else if (a == "--s2ft-strategy") {
      v = value();
      const std::string n = v ? v : "";
      strategy = n == "random" ? S2FT_STRATEGY_RANDOM
                 : n == "weight" ? S2FT_STRATEGY_WEIGHT
                 : n == "activation" ? S2FT_STRATEGY_ACTIVATION
                 : n == "weight-activation" ? S2FT_STRATEGY_WEIGHT_ACT
                                            : -2;
      if (strategy == -2) return usage_error("--s2ft-strategy needs random, weight, activation or weight-activation");
    } else if (a == "--targets") {
      if (!(v = value()) || !parse_targets(v, &targets)) return usage_error("--targets needs a list of o, v, down, up");
    } else if (a == "--s2ft-order") {
      v = value();
      const std::string n = v ? v : "";
      order = n == "largest" ? S2FT_ORDER_LARGEST : n == "smallest" ? S2FT_ORDER_SMALLEST : -2;
      if (order == -2) return usage_error("--s2ft-order needs largest or smallest");
    } else if (a == "--model") {
      if (!(v = value())) return usage_error("--model needs a path");
      real.model = v;
    } else if (a == "--data") {
      if (!(v = value())) return usage_error("--data needs a file");
      real.data = v;
    } else if (a == "--tokenizer") {
      if (!(v = value())) return usage_error("--tokenizer needs a file");
      real.tokenizer = v;
    } else if (a == "--out") {
      if (!(v = value())) return usage_error("--out needs a folder");
      real.out = v;
    } else if (a == "--lr") {
      if (!(v = value()) || !parse_double(v, &real.lr)) return usage_error("--lr needs a number in (0, 1]");
    } else if (a == "--seq") {
      if (!(v = value()) || !parse_int(v, 2, 4096, &real.seq)) return usage_error("--seq needs 2..4096");
    } else if (a == "--batch") {
      if (!(v = value()) || !parse_int(v, 1, 1024, &real.batch)) return usage_error("--batch needs 1..1024");
    } else if (a == "--seed") {
      int64_t seed = 0;
      if (!(v = value()) || !parse_int(v, 0, INT64_MAX, &seed)) return usage_error("--seed needs a number >= 0");
      real.seed = static_cast<uint64_t>(seed);
    } else {
      return usage_error("unknown argument '" + a + "'");
    }
  }
  try {
    if (!real.model.empty() || !real.data.empty()) {
      if (real.model.empty() || real.data.empty()) return usage_error("--model and --data go together");
      if (short_mode || seeds > 0 || lr_method[0] > 0 || lr_method[1] > 0 || lr_method[2] > 0 || strategy >= 0 ||
          order >= 0)
        return usage_error("--short, --seeds, --lr-METHOD and --s2ft-* are for the synthetic comparison");
      if (steps > 0) real.steps = steps;
      if (targets != 0) real.targets = targets;
      return ft::run_real_finetune(real, std::cout);
    }
    ft::ComparisonSettings s = short_mode ? ft::ComparisonSettings::short_run() : ft::ComparisonSettings();
    if (seeds > 0) s.seeds = seeds;
    if (steps > 0) s.finetune_steps = steps;
    if (lr_method[0] > 0) s.lr_s2ft = lr_method[0];
    if (lr_method[1] > 0) s.lr_full = lr_method[1];
    if (lr_method[2] > 0) s.lr_lora = lr_method[2];
    if (strategy >= 0) s.s2ft.strategy = strategy;
    if (targets != 0) s.s2ft.targets = targets;
    if (order >= 0) s.s2ft.order = order;
    return ft::run_comparison(s, std::cout);
  } catch (const std::exception &e) {
    std::cerr << "s2ft-finetune: error: " << e.what() << "\n";
    return 1;
  }
}
