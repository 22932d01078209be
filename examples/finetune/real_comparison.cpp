#include "real_comparison.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "evaluation.hpp"
#include "fine_tuning.hpp"
#include "generate.hpp"
#include "llama_model.hpp"
#include "methods.hpp"
#include "protocol_runs.hpp"
#include "s2ft_check.hpp"
#include "s2ft_handles.hpp"
#include "trainer.hpp"

namespace fs = std::filesystem;

namespace ft {

namespace {

constexpr int64_t kBaseSamples = 16;  // sequences the base model writes for the KL set
constexpr int64_t kMaxEvalBatches = 8;

// Per family, the rate run by default and the center of the --grid rates
// (center/4 .. 2 center), measured on stories260K-hf with pip-stories.txt
// over 200 steps at rates 1.6e-5 .. 8e-3 (README.md, "The --model mode"):
// the rate with the best retention at the halfway target that still
// reaches the family's lowest held-out loss within the run. Higher rates
// learn no better (the same minimum or worse, then over-fit the 25
// stories) and move the model further; full fine-tuning at 2e-3 diverges.
StandardMethods method_options(const RealFinetuneSettings &s, const LlamaConfig &cfg) {
  StandardMethods o;
  o.s2ft = real_s2ft_settings(cfg, s.targets);
  // Families' best rates (a method of the family runs its family's rate).
  o.full_grid = rate_grid(6.25e-5, 2, 1);
  o.lora_grid = rate_grid(1e-3, 2, 1);
  o.s2ft_grid = o.lora_grid;
  o.sm3_grid = rate_grid(8e-3, 2, 1);
  o.run_steps = s.steps;
  for (const MethodSpec &m : standard_methods(cfg, o))
    o.best[m.name] = m.kind == MethodKind::Full ? 3.125e-5 : m.name == "spiel-ma" ? 8e-3 : 5e-4;
  o.grid = s.grid;
  o.lr_scale = s.lr_scale;
  return o;
}

// Rows of `windows` (each seq + 1 tokens: inputs, then the last target) in
// batches of `batch`, every position scored.
std::vector<Batch> batches_of(const std::vector<std::vector<int32_t>> &windows, int64_t batch) {
  std::vector<Batch> out;
  for (const std::vector<int32_t> &w : windows) {
    if (out.empty() || out.back().batch == batch) {
      out.emplace_back();
      out.back().seq = static_cast<int64_t>(w.size()) - 1;
    }
    Batch &b = out.back();
    b.tokens.insert(b.tokens.end(), w.begin(), w.end() - 1);
    b.targets.insert(b.targets.end(), w.begin() + 1, w.end());
    ++b.batch;
  }
  return out;
}

int64_t positions(const EvalSet &e) {
  int64_t n = 0;
  for (const Batch &b : e.batches) n += b.batch * b.seq;
  return n;
}

struct Shared {
  const RealFinetuneSettings &s;
  const LlamaConfig &cfg;
  const LlamaWeights<float> &base;
  const TextData &data;
  const std::vector<EvalSet> &sets;
  std::vector<Batch> calibration;
  int64_t eval_every = 1, warmup_steps = 1;
};

// One run: the method at `lr` from the base weights for all of s.steps,
// traced at step 0, every eval_every steps and at the last step.
RunTrace fine_tune(const Shared &sh, const MethodSpec &spec, double lr, int64_t seed) {
  TracedRunSettings t;
  t.cfg = &sh.cfg;
  t.base = &sh.base;
  t.sets = &sh.sets;
  t.calibration = &sh.calibration;
  t.steps = sh.s.steps;
  t.eval_every = sh.eval_every;
  t.warmup_steps = sh.warmup_steps;
  t.trace_last = true;
  return traced_run(t, spec, lr, seed, [&sh](Rng &rng) { return sh.data.sample(sh.s.batch, sh.s.seq, rng); });
}

// The lowest held-out loss of a run's trace (NaN for a failed run).
double best_new_loss(const RunTrace &r, int32_t set) {
  double best = NAN;
  if (!r.error.empty()) return best;
  for (const TracePoint &p : r.points) {
    const double l = p.sets[static_cast<size_t>(set)].loss;
    if (!std::isnan(l) && !(l >= best)) best = l;
  }
  return best;
}

// How low a method got the held-out loss at its best rate, counting each
// rate by its worst seed (a failed seed makes the rate count as not
// learning at all).
struct MethodFloor {
  std::string method;
  double lr = 0.0, loss = NAN;
};
std::vector<MethodFloor> method_floors(const std::vector<RunTrace> &runs, int32_t set) {
  std::vector<MethodFloor> per_rate;  // worst seed per (method, rate)
  for (const RunTrace &r : runs) {
    double b = best_new_loss(r, set);
    if (std::isnan(b)) b = INFINITY;
    auto it = std::find_if(per_rate.begin(), per_rate.end(),
                           [&](const MethodFloor &f) { return f.method == r.method && f.lr == r.lr; });
    if (it == per_rate.end())
      per_rate.push_back({r.method, r.lr, b});
    else
      it->loss = std::max(it->loss, b);
  }
  std::vector<MethodFloor> floors;  // best rate per method
  for (const MethodFloor &f : per_rate) {
    if (!std::isfinite(f.loss)) continue;
    auto it = std::find_if(floors.begin(), floors.end(), [&](const MethodFloor &g) { return g.method == f.method; });
    if (it == floors.end())
      floors.push_back(f);
    else if (f.loss < it->loss)
      *it = f;
  }
  return floors;
}

// One line per finished run. The target is not known yet, so the line
// says how far the run got rather than where it matched.
void print_run(std::ostream &out, const RunTrace &r, const std::vector<SetInfo> &sets) {
  out << r.method << " lr " << rate_text(r.lr) << " seed " << r.seed << ": ";
  if (!r.error.empty()) {
    out << "FAILED: " << r.error << "\n";
    return;
  }
  size_t best = 0;
  for (size_t i = 0; i < r.points.size(); ++i)
    if (r.points[i].sets[0].loss < r.points[best].sets[0].loss) best = i;
  const TracePoint &last = r.points.back();
  out << sets[0].name << " loss " << fixed(r.points.front().sets[0].loss, 4) << " -> best "
      << fixed(r.points[best].sets[0].loss, 4) << " (step " << r.points[best].step << "), " << fixed(last.sets[0].loss, 4)
      << " at step " << last.step;
  for (size_t k = 1; k < sets.size(); ++k) out << "; " << sets[k].name << " KL " << fixed(last.sets[k].kl, 4);
  out << "; " << fixed(1e3 * r.seconds_per_step, 1) << " ms/step\n";
  if (!r.checks.empty()) out << "  checks: " << r.checks << "\n";
}

void describe_set(std::ostream &out, const EvalSet &e, const SetMetrics &base, const std::string &what) {
  out << "  " << e.info.name << " (" << role_name(e.info.role) << "): " << what << "; " << e.batches.size()
      << " batch(es), " << positions(e) << " scored positions; base model: loss " << fixed(base.loss, 4);
  if (e.info.has_accuracy) out << ", accuracy " << fixed(base.accuracy, 4);
  out << "\n";
}

}  // namespace

S2ftSettings real_s2ft_settings(const LlamaConfig &c, uint32_t targets) {
  S2ftSettings ss;
  ss.count[S2FT_TARGET_O] = 1;                                        // one KV group of query heads per layer
  ss.count[S2FT_TARGET_DOWN] = std::max<int64_t>(1, c.d_ff / 20);     // ~5% of the FFN channels
  ss.count[S2FT_TARGET_V] = 1;                                        // one KV head
  ss.count[S2FT_TARGET_UP] = ss.count[S2FT_TARGET_DOWN];
  if (targets != 0) ss.targets = targets;
  return ss;
}

std::vector<MethodSpec> real_comparison_methods(const RealFinetuneSettings &s, const LlamaConfig &c) {
  return pick_methods(standard_methods(c, method_options(s, c)), s.methods);
}

int run_real_comparison(const RealFinetuneSettings &s, const LlamaConfig &cfg, const LlamaWeights<float> &base,
                        const Tokenizer &tok, const TextData &data, std::ostream &out) {
  if (s.steps < 1 || s.seeds < 1) throw std::invalid_argument("run_real_comparison: steps and seeds must be >= 1");
  const std::vector<MethodSpec> methods = real_comparison_methods(s, cfg);
  fs::create_directories(s.out);
  out << std::defaultfloat << std::setprecision(6);  // whatever the caller left set

  out << "\n== comparison: every method on " << s.data << " (the fidelity protocol) ==\n";
  // The sets, each scored by the base model before any fine-tuning.
  std::vector<EvalSet> sets;
  std::vector<std::string> what;
  {
    EvalSet held;
    held.info = {"held-out", SetRole::New, true};
    // A short held-out part still gets one (shorter) window rather than none.
    const int64_t seq = std::min(s.seq, data.eval_tokens() - 1);
    if (seq < 1)
      throw std::invalid_argument(s.data + ": no held-out text to compare the methods on (needs at least two "
                                           "documents separated by blank lines)");
    held.batches = data.eval_batches(s.batch, seq, kMaxEvalBatches);
    sets.push_back(std::move(held));
    what.push_back(std::to_string(data.eval_documents()) + " whole documents of " + std::to_string(data.documents()) +
                   " held out from training");
  }
  LlamaWeights<float> base_copy = base;
  LlamaModel<float> base_model(cfg, base_copy);
  {
    EvalSet samples;
    samples.info = {"base-samples", SetRole::Retain, false};
    // A fixed seed: every run, seed and invocation is scored on the same text.
    Rng rng(0xBA5E5A3Du);
    std::vector<std::vector<int32_t>> seqs;
    for (int64_t i = 0; i < kBaseSamples; ++i) seqs.push_back(generate_sampled(base_model, {tok.bos()}, s.seq, rng));
    samples.batches = batches_of(seqs, s.batch);
    sets.push_back(std::move(samples));
    what.push_back(std::to_string(kBaseSamples) + " sequences of " + std::to_string(s.seq) +
                   " tokens the base model sampled from BOS at temperature 1");
    out << "  a base-model sample: " << tok.decode(seqs.front()) << "\n";
  }
  if (!s.retain_data.empty()) {
    const TextData retain(s.retain_data, tok, 1.0);  // all of it is evaluation text
    EvalSet r;
    r.info = {"retain-text", SetRole::Retain, false};
    r.batches = retain.eval_batches(s.batch, std::min(s.seq, retain.eval_tokens() - 1), kMaxEvalBatches);
    sets.push_back(std::move(r));
    what.push_back(s.retain_data + ", " + std::to_string(retain.documents()) + " documents");
  }
  std::vector<SetInfo> infos;
  double base_loss = NAN;
  for (size_t k = 0; k < sets.size(); ++k) {
    record_base(base_model, sets[k]);
    const SetMetrics m = evaluate(base_model, sets[k]);
    if (k == 0) base_loss = m.loss;
    describe_set(out, sets[k], m, what[k]);
    infos.push_back(sets[k].info);
  }

  Shared sh{s, cfg, base, data, sets, {}};
  sh.eval_every = s.eval_every > 0 ? s.eval_every : std::max<int64_t>(1, s.steps / 10);
  sh.warmup_steps = std::min<int64_t>(10, std::max<int64_t>(1, s.steps / 10));
  {
    // The scored selection is calibrated on training text, the same for every run.
    Rng cr(99);
    for (int i = 0; i < 4; ++i) sh.calibration.push_back(data.sample(s.batch, s.seq, cr));
  }
  out << "fine-tuning on the training documents: " << s.batch << " windows of " << s.seq << " tokens per step, "
      << s.steps << " steps, constant rate after " << sh.warmup_steps << " warm-up steps, traced every "
      << sh.eval_every << " steps; " << s.seeds << " seed(s) (the same data order for every method); " << s.jobs
      << " run(s) at once\n";
  print_methods(out, methods);
  const std::vector<RunTrace> runs = run_grid(
      methods, s.seeds, s.jobs, true,
      [&sh](const MethodSpec &spec, double lr, int64_t seed) { return fine_tune(sh, spec, lr, seed); },
      [&](size_t finished, size_t total, const RunTrace &r) {
        out << "[" << finished << "/" << total << "] ";
        print_run(out, r, infos);
        out << std::flush;
      });
  int failures = 0;
  for (const RunTrace &r : runs)
    if (!r.error.empty() || !r.checks_ok) ++failures;

  MatchRule rule;
  rule.set = 0;
  rule.by_loss = true;
  rule.overtrain = 3;
  if (!std::isnan(s.target_loss)) {
    rule.target = s.target_loss;
    out << "target: held-out loss <= " << fixed(rule.target, 4) << " (--target-loss)";
  } else {
    // Halfway from the base model to the worst method's best: every
    // method has a rate at which all its seeds reach it, and it is far
    // enough from the base model that reaching it means learning. A
    // method's best is its best rate's worst seed, so that one diverging
    // rate of a --grid does not pull the target back to the base model.
    const std::vector<MethodFloor> floors = method_floors(runs, rule.set);
    const MethodFloor *worst = nullptr;
    for (const MethodFloor &f : floors)
      if (!worst || f.loss > worst->loss) worst = &f;
    rule.target = worst ? base_loss - 0.5 * (base_loss - worst->loss) : base_loss;
    out << "target: held-out loss <= " << fixed(rule.target, 4) << ", halfway from the base model's "
        << fixed(base_loss, 4);
    if (worst)
      out << " to the worst method's best, " << fixed(worst->loss, 4) << " (" << worst->method << " at lr "
          << rate_text(worst->lr) << ", the lowest held-out loss of its worst seed)";
    else
      out << " (no run finished)";
  }
  out << "; over-training: " << rule.overtrain << "x the step of the match\n";

  const std::vector<MethodSummary> summaries = summarize(runs, infos, rule);
  const std::string traces = (fs::path(s.out) / "traces.csv").string();
  const std::string results = (fs::path(s.out) / "results.csv").string();
  write_traces_csv(traces, runs, infos);
  write_results_csv(results, runs, infos, rule, summaries);
  out << "wrote " << traces << " and " << results << " (plot: python3 examples/finetune/plot_fidelity.py " << s.out
      << ")\n\n";
  print_report(out, summaries, infos, rule);
  if (failures > 0) out << failures << " of " << runs.size() << " comparison run(s) failed their checks\n";
  return failures;
}

}  // namespace ft
