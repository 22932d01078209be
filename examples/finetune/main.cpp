// s2ft-finetune: fine-tune a LLaMA-architecture model on the CPU with S2FT
// through libs2ft, and compare it with full fine-tuning, LoRA, LIFT, SpIEL
// and SORSA.
//
//   s2ft-finetune                      the synthetic comparison (a table)
//   s2ft-finetune --short              a few steps of it, with checks (CI)
//   s2ft-finetune --model PATH --data FILE [...]
//                                      fine-tune a real checkpoint on a text
//                                      file, export the adapter, merge it
//                                      with libs2ft, show generations; then
//                                      every method on it (a table)
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include <s2ft/s2ft.h>

#include "comparison.hpp"
#include "real_finetune.hpp"

namespace {

const char kUsage[] =
    "usage: s2ft-finetune [--full | --short] [--grid] [--seeds N] [--steps N] [--target X] [--methods LIST]\n"
    "                     [--lr-scale X] [--jobs N] [--out DIR]\n"
    "                     [--s2ft-strategy random|weight|activation|weight-activation]\n"
    "                     [--s2ft-order largest|smallest] [--targets o,down[,v,up]]\n"
    "       s2ft-finetune --model PATH --data FILE [--tokenizer FILE] [--out DIR]\n"
    "                     [--steps N] [--lr X] [--seq N] [--batch N] [--seed N] [--targets LIST]\n"
    "                     [--seeds N] [--grid] [--methods LIST] [--lr-scale X] [--jobs N]\n"
    "                     [--eval-every N] [--target-loss X] [--retain-data FILE]\n"
    "\n"
    "Without --model: the fidelity protocol on synthetic tasks. A small GQA model is pretrained on\n"
    "tasks A and C (cached in --out), then fine-tuned on task B by full fine-tuning, LoRA on q,k,v,up,down\n"
    "and on o,down (ranks matched to S2FT's small budget), S2FT at two budgets with random and scored\n"
    "selection, LIFT, SpIEL-AG and SpIEL-MA with S2FT's small budget of entries, and SORSA (rank matched to\n"
    "the same budget). Each run is traced; methods are compared where B first reaches --target accuracy\n"
    "(default 0.9, within --steps, default 100) and after training on to 3x that step, each at its\n"
    "learning rate with the best retention at match. Default (about 2 minutes on 2 cores): each method\n"
    "at its best rate of the grid, one seed. --full: the whole protocol, every rate of each method's\n"
    "grid (5 rates x2 apart, as --grid) over 3 seeds (as --seeds 3). Writes OUT/traces.csv and\n"
    "OUT/results.csv (default OUT: s2ft-finetune-out) and prints the table. --methods picks some of:\n"
    "full, lora-qkvud, lora-od, s2ft-random-small, s2ft-act-min-small, s2ft-random-large,\n"
    "s2ft-act-min-large, lift, spiel-ag, spiel-ma, sorsa (the scored names follow --s2ft-strategy/--s2ft-order).\n"
    "--short: a few steps, one seed, two rates, with checks (CI).\n"
    "\n"
    "With --model: PATH is a Hugging Face checkpoint folder or a llama2.c .bin file; FILE is UTF-8\n"
    "text (blank lines separate documents); the tokenizer is llama2.c's format (default: tok512.bin\n"
    "beside the model). Writes the adapter and the selection to --out (default s2ft-finetune-out)\n"
    "and, for a Hugging Face folder, the merged checkpoint (OUT/merged, written by libs2ft as\n"
    "`s2ft merge` would); a llama2.c model is merged in memory only. --lr and --seed are that S2FT\n"
    "run's. Then the same methods as above fine-tune the checkpoint for --steps (default 300), over\n"
    "--seeds (default 1), each traced every --eval-every steps (default steps/10) on whole documents\n"
    "held out from FILE (about 1 in 10; loss, accuracy), on text the base model sampled before\n"
    "fine-tuning (KL(base || tuned) per token: forgetting) and, with --retain-data, on that text\n"
    "(loss and KL). Methods are matched where the held-out loss first reaches --target-loss (default:\n"
    "halfway from the base model's to the worst run's best) and at 3x that step. Writes\n"
    "OUT/traces.csv and OUT/results.csv and prints the table before the final verdict.\n";

bool parse_int(const char *text, int64_t lo, int64_t hi, int64_t *out) {
  char *end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_double(const char *text, double lo, double hi, double *out) {
  char *end = nullptr;
  const double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || !(v > lo) || v > hi) return false;
  *out = v;
  return true;
}

// "a,b,c" -> {"a", "b", "c"}; false on an empty name.
bool parse_list(const std::string &list, std::vector<std::string> *out) {
  out->clear();
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    out->push_back(list.substr(start, comma - start));
    if (out->back().empty()) return false;
    start = comma + 1;
  }
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
  bool short_mode = false, grid = false, full = false;
  int64_t seeds = -1, steps = -1, jobs = -1;
  double target = -1, lr_scale = -1;
  std::vector<std::string> methods;
  int32_t strategy = -1, order = -1;
  uint32_t targets = 0;
  std::string out_dir;
  ft::RealFinetuneSettings real;
  bool real_only = false;  // an option of the --model mode alone was given
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char * { return i + 1 < argc ? argv[++i] : nullptr; };
    const char *v = nullptr;
    if (a == "--help" || a == "-h") {
      std::cout << kUsage;
      return 0;
    } else if (a == "--short") {
      short_mode = true;
    } else if (a == "--grid") {
      grid = true;
    } else if (a == "--full") {
      full = true;
    } else if (a == "--seeds") {
      if (!(v = value()) || !parse_int(v, 1, 100, &seeds)) return usage_error("--seeds needs 1..100");
    } else if (a == "--jobs") {
      if (!(v = value()) || !parse_int(v, 1, 256, &jobs)) return usage_error("--jobs needs 1..256");
    } else if (a == "--steps") {
      if (!(v = value()) || !parse_int(v, 1, 1000000, &steps)) return usage_error("--steps needs 1..1000000");
    } else if (a == "--target") {
      if (!(v = value()) || !parse_double(v, 0.0, 1.0, &target)) return usage_error("--target needs a number in (0, 1]");
    } else if (a == "--lr-scale") {
      if (!(v = value()) || !parse_double(v, 0.0, 1e3, &lr_scale))
        return usage_error("--lr-scale needs a number in (0, 1000]");
    } else if (a == "--methods") {
      if (!(v = value()) || !parse_list(v, &methods)) return usage_error("--methods needs a comma-separated list");
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
      if (!(v = value()) || !*v) return usage_error("--out needs a folder");
      out_dir = v;
    } else if (a == "--lr") {
      if (!(v = value()) || !parse_double(v, 0.0, 1.0, &real.lr)) return usage_error("--lr needs a number in (0, 1]");
    } else if (a == "--seq") {
      if (!(v = value()) || !parse_int(v, 2, 4096, &real.seq)) return usage_error("--seq needs 2..4096");
    } else if (a == "--batch") {
      if (!(v = value()) || !parse_int(v, 1, 1024, &real.batch)) return usage_error("--batch needs 1..1024");
    } else if (a == "--target-loss") {
      if (!(v = value()) || !parse_double(v, 0.0, 1e6, &real.target_loss))
        return usage_error("--target-loss needs a number > 0");
      real_only = true;
    } else if (a == "--retain-data") {
      if (!(v = value()) || !*v) return usage_error("--retain-data needs a file");
      real.retain_data = v;
      real_only = true;
    } else if (a == "--eval-every") {
      if (!(v = value()) || !parse_int(v, 1, 1000000, &real.eval_every)) return usage_error("--eval-every needs 1..1000000");
      real_only = true;
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
      if (short_mode || full || target > 0 || strategy >= 0 || order >= 0)
        return usage_error("--short, --full, --target and --s2ft-* are for the synthetic comparison (with --model the target "
                           "is a held-out loss: --target-loss)");
      if (steps > 0) real.steps = steps;
      real.grid = grid;
      if (seeds > 0) real.seeds = seeds;
      if (jobs > 0) real.jobs = static_cast<int>(jobs);
      if (lr_scale > 0) real.lr_scale = lr_scale;
      real.methods = methods;
      if (targets != 0) real.targets = targets;
      if (!out_dir.empty()) real.out = out_dir;
      return ft::run_real_finetune(real, std::cout);
    }
    if (real_only) return usage_error("--target-loss, --retain-data and --eval-every are for --model");
    if (short_mode && full) return usage_error("--short and --full exclude each other");
    ft::ComparisonSettings s = short_mode ? ft::ComparisonSettings::short_run() : ft::ComparisonSettings();
    s.grid = grid || full;
    if (full) s.seeds = 3;
    if (seeds > 0) s.seeds = seeds;
    if (steps > 0) s.match_within = steps;
    if (jobs > 0) s.jobs = static_cast<int>(jobs);
    if (target > 0) s.rule.target = target;
    if (lr_scale > 0) s.lr_scale = lr_scale;
    if (strategy >= 0) s.s2ft.strategy = strategy;
    if (targets != 0) s.s2ft.targets = targets;
    if (order >= 0) s.s2ft.order = order;
    const std::vector<std::string> known = ft::comparison_method_names(s);
    for (const std::string &m : methods)
      if (std::find(known.begin(), known.end(), m) == known.end()) {
        std::string list;
        for (const std::string &k : known) list += (list.empty() ? "" : ", ") + k;
        return usage_error("--methods: unknown method '" + m + "' (known: " + list + ")");
      }
    s.methods = methods;
    if (!out_dir.empty()) s.out = out_dir;
    return ft::run_comparison(s, std::cout);
  } catch (const std::exception &e) {
    std::cerr << "s2ft-finetune: error: " << e.what() << "\n";
    return 1;
  }
}
