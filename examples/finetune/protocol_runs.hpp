// The runs of the fidelity protocol, shared by the synthetic comparison and
// the --model mode: one traced fine-tuning run, and every (seed, method,
// rate) of a comparison run a few at a time in forked processes.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <vector>

#include <s2ft/s2ft.h>

#include "batch.hpp"
#include "evaluation.hpp"
#include "fidelity_trace.hpp"
#include "fine_tuning.hpp"
#include "llama_model.hpp"
#include "methods.hpp"
#include "rng.hpp"

namespace ft {

// What every run of a comparison shares.
struct TracedRunSettings {
  const LlamaConfig *cfg = nullptr;
  const LlamaWeights<float> *base = nullptr;  // every run starts from these
  const std::vector<EvalSet> *sets = nullptr;
  const std::vector<Batch> *calibration = nullptr;  // S2FT's scored selection
  int64_t steps = 100;       // at most
  int64_t eval_every = 10;   // a trace point every this many steps (and at step 0)
  int64_t warmup_steps = 10;  // then a constant rate
  bool trace_last = false;   // also a point at the last step
  // With stop_rule: a run that meets it at step s stops at overtrain x s,
  // one that has not met it by match_within stops there.
  const MatchRule *stop_rule = nullptr;
  int64_t match_within = 0;
};

// The next training batch, drawn from the run's generator (seeded by the
// seed only, so every method sees the same batches in the same order).
using BatchDraw = std::function<Batch(Rng &rng)>;
// Called after training with the method, the trained weights and the run's
// context; may add to r.checks and clear r.checks_ok.
using RunCheck = std::function<void(FineTuning &method, LlamaWeights<float> &trained, s2ft_context *ctx, RunTrace &r)>;

// Fine-tunes a copy of the base weights with `spec` at `lr`, tracing it, and
// checks that its training loss fell.
RunTrace traced_run(const TracedRunSettings &s, const MethodSpec &spec, double lr, int64_t seed, const BatchDraw &draw,
                    const RunCheck &check = nullptr);

// One line per method: name, LoRA or SORSA rank, rates.
void print_methods(std::ostream &out, const std::vector<MethodSpec> &methods);

// Runs run(spec, lr, seed) for every seed in 1..seeds, method and rate (at
// most `jobs` at once, forked unless fork_runs is false), and returns the
// runs named by their (method, rate, seed) in that order; `progress` is
// called as each finishes, with how many have.
using RunOne = std::function<RunTrace(const MethodSpec &spec, double lr, int64_t seed)>;
std::vector<RunTrace> run_grid(const std::vector<MethodSpec> &methods, int64_t seeds, int jobs, bool fork_runs,
                               const RunOne &run,
                               const std::function<void(size_t finished, size_t total, const RunTrace &r)> &progress);

}  // namespace ft
