#include "comparison.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "evaluation.hpp"
#include "fine_tuning.hpp"
#include "llama_model.hpp"
#include "methods.hpp"
#include "protocol_runs.hpp"
#include "s2ft_check.hpp"
#include "s2ft_verify.hpp"
#include "synthetic_tasks.hpp"
#include "trainer.hpp"
#include "weights_cache.hpp"

namespace fs = std::filesystem;

namespace ft {

ComparisonSettings::ComparisonSettings() {
  model.d_model = 128;
  model.n_layers = 4;
  model.n_heads = 8;
  model.n_kv_heads = 4;  // grouped-query attention
  model.head_dim = 16;
  model.d_ff = 344;
  model.max_seq = 64;
  model.tied = false;
}

ComparisonSettings ComparisonSettings::short_run() {
  ComparisonSettings s;
  s.short_mode = true;
  s.pretrain_steps = 100;
  s.match_within = 24;
  s.eval_every = 4;
  s.warmup_steps = 2;
  s.rule.target = 0.3;  // from chance (1/16), reached in a few steps at some rates, not at all
  s.seeds = 1;
  s.eval_batches = 1;
  s.batch = 16;
  return s;
}

namespace {

// The learning-rate grids (x2 apart, --grid) and each method's best rate of
// its grid by retention at match (3 seeds, docs/benchmarks.md), run by
// default.
StandardMethods method_options(const ComparisonSettings &s) {
  StandardMethods o;
  o.s2ft = s.s2ft;
  o.large_factor = s.large_factor;
  o.full_grid = rate_grid(2.5e-4, 3, 1);  // 3.1e-5 .. 5e-4
  o.lora_grid = rate_grid(2e-3, 3, 1);    // 2.5e-4 .. 4e-3
  o.s2ft_grid = o.lora_grid;
  o.sparse_grid = o.lora_grid;
  o.sm3_grid = rate_grid(1.6e-2, 3, 1);  // 2e-3 .. 3.2e-2
  o.best = {{"full", 6.25e-5},          {"lora-qkvud", 1e-3},         {"lora-od", 5e-4},
            {"s2ft-random-small", 1e-3}, {"s2ft-act-min-small", 1e-3}, {"s2ft-random-large", 2.5e-4},
            {"s2ft-act-min-large", 5e-4}, {"lift", 1e-3},               {"spiel-ag", 1e-3},
            {"spiel-ma", 8e-3},           {"sorsa", 5e-4}};
  o.run_steps = s.match_within * s.rule.overtrain;
  o.grid = s.grid;
  o.two_rates = s.short_mode;
  o.lr_scale = s.lr_scale;
  return o;
}

struct Shared {
  const ComparisonSettings &s;
  const SyntheticTasks &tasks;
  const LlamaConfig &cfg;
  const LlamaWeights<float> &pretrained;
  const std::vector<EvalSet> &sets;
  std::vector<Batch> calibration;
};

// One run: the method at `lr` from the pretrained weights, traced, stopped
// at rule.overtrain x the match step (or at match_within without a match).
// S2FT runs also check what S2FT promises: every weight outside the
// selected lines is bit-identical to the base, and the exported adapter
// merged into the base gives the fine-tuned model.
RunTrace fine_tune(const Shared &sh, const MethodSpec &spec, double lr, int64_t seed) {
  const ComparisonSettings &s = sh.s;
  TracedRunSettings t;
  t.cfg = &sh.cfg;
  t.base = &sh.pretrained;
  t.sets = &sh.sets;
  t.calibration = &sh.calibration;
  t.steps = s.match_within * s.rule.overtrain;
  t.eval_every = s.eval_every;
  t.warmup_steps = s.warmup_steps;
  t.stop_rule = &s.rule;
  t.match_within = s.match_within;
  RunCheck check;
  if (spec.kind == MethodKind::S2ft)
    check = [&sh](FineTuning &method, LlamaWeights<float> &w, s2ft_context *ctx, RunTrace &r) {
      auto &s2ft = static_cast<S2ftFineTuning &>(method);
      // The adapter is the trained slices minus the base slices, both in
      // the permuted order the training ran in; then back to base order.
      LlamaWeights<float> base_permuted = sh.pretrained;
      s2ft.permute(base_permuted, S2FT_PERMUTE_FORWARD);
      AdapterPtr adapter = s2ft.make_adapter(base_permuted, w, "task-b");
      s2ft.permute(w, S2FT_PERMUTE_INVERSE);
      const FrozenCheck fc = check_frozen(sh.cfg, s2ft.selection(), sh.pretrained, w);
      LlamaWeights<float> merged = merge_adapter(ctx, sh.cfg, sh.pretrained, adapter.get());
      const double diff = max_logit_difference(sh.cfg, merged, w, sh.sets.front().batches.front());
      std::ostringstream c;
      c << (r.checks.empty() ? "" : "; ") << "frozen weight elements changed " << fc.changed_frozen
        << ", trained elements changed " << fc.changed_trained << " of " << fc.trained_elements
        << ", merged adapter vs fine-tuned model max |logit difference| " << diff;
      if (fc.changed_frozen != 0 || fc.changed_trained == 0 || !(diff <= 1e-4)) {
        c << " (FAILED: frozen weights changed or the adapter does not reproduce the model)";
        r.checks_ok = false;
      }
      r.checks += c.str();
    };
  if (spec.kind == MethodKind::Sorsa)
    check = [](FineTuning &method, LlamaWeights<float> &, s2ft_context *, RunTrace &r) {
      // How far the trained singular vectors drifted from orthonormal: what
      // the regularizer holds in check (reported, not a pass/fail check).
      const double e = static_cast<SorsaFineTuning &>(method).max_orthonormality_error();
      r.checks += std::string(r.checks.empty() ? "" : "; ") + "SORSA factors: max ||U^T U - I||_F + ||V^T V - I||_F " +
                  fixed(e, 4);
    };
  return traced_run(t, spec, lr, seed, [&sh](Rng &rng) { return sh.tasks.sample(Task::B, sh.s.batch, rng); }, check);
}

// One line per finished run.
void print_run(std::ostream &out, const RunTrace &r, const std::vector<SetInfo> &sets, const MatchRule &rule) {
  out << r.method << " lr " << rate_text(r.lr) << " seed " << r.seed << ": ";
  if (!r.error.empty()) {
    out << "FAILED: " << r.error << "\n";
    return;
  }
  const MatchPoints mp = find_match(r, rule);
  auto describe = [&](int64_t i) {
    const TracePoint &p = r.points[static_cast<size_t>(i)];
    std::string d = "step " + std::to_string(p.step) + ": " + sets[static_cast<size_t>(rule.set)].name + " " +
                    fixed(p.sets[static_cast<size_t>(rule.set)].accuracy, 3);
    for (size_t k = 0; k < sets.size(); ++k)
      if (static_cast<int32_t>(k) != rule.set)
        d += ", " + sets[k].name + " " + fixed(p.sets[k].accuracy, 3) + " (KL " + fixed(p.sets[k].kl, 3) + ")";
    return d;
  };
  if (mp.match < 0)
    out << "no match in " << r.points.back().step << " steps (last " << describe(static_cast<int64_t>(r.points.size()) - 1)
        << ")";
  else
    out << "match at " << describe(mp.match) << "; after "
        << (mp.over >= 0 ? describe(mp.over) : std::string("over-training: not reached"));
  out << "; " << fixed(1e3 * r.seconds_per_step, 1) << " ms/step\n";
  if (!r.checks.empty()) out << "  checks: " << r.checks << "\n";
}

LlamaWeights<float> pretrained_weights(const ComparisonSettings &s, const SyntheticTasks &tasks, const LlamaConfig &cfg,
                                       std::ostream &out) {
  std::ostringstream key_text;
  key_text << "synthetic-v1 " << cfg.describe() << " symbols " << s.symbols << " length " << s.length << " batch "
           << s.batch << " steps " << s.pretrain_steps << " lr " << rate_text(s.pretrain_lr);
  const uint64_t key = cache_key(key_text.str());
  char name[64];
  std::snprintf(name, sizeof name, "pretrained-%016llx.bin", static_cast<unsigned long long>(key));
  const std::string path = (fs::path(s.out) / name).string();
  LlamaWeights<float> w;
  if (load_cached_weights(path, key, cfg, w)) {
    out << "pretrained model: " << path << " (cached)\n";
    return w;
  }
  // Every weight, from a seeded init, for a fixed number of steps.
  w = random_weights<float>(cfg, 1);
  s2ft_context *ctx_raw = nullptr;
  s2ft_check(s2ft_context_create(nullptr, &ctx_raw), "s2ft_context_create");
  ContextPtr ctx(ctx_raw);
  {
    LlamaModel<float> model(cfg, w);
    FullFineTuning full(ctx.get(), OptimizerSettings{});
    full.attach(model);
    Rng rng(42);
    TrainSettings ts;
    ts.steps = s.pretrain_steps;
    ts.lr = s.pretrain_lr;
    ts.warmup = 0.05;
    train(model, full, [&](int64_t) { return tasks.sample_pretraining(s.batch, rng); }, ts,
          [&](int64_t step, double loss, double) {
            if ((step + 1) % 50 == 0 || step + 1 == ts.steps)
              out << "pretraining on A and C: step " << step + 1 << ", loss " << fixed(loss, 4) << "\n" << std::flush;
            return true;
          });
  }
  save_cached_weights(path, key, w);
  out << "pretrained model: wrote " << path << "\n";
  return w;
}

}  // namespace

std::vector<std::string> comparison_method_names(const ComparisonSettings &s) {
  LlamaConfig cfg = s.model;
  cfg.vocab = SyntheticTasks(s.symbols, s.length, 1).vocab();
  std::vector<std::string> names;
  for (const MethodSpec &m : standard_methods(cfg, method_options(s))) names.push_back(m.name);
  return names;
}

int run_comparison(const ComparisonSettings &s, std::ostream &out) {
  const SyntheticTasks tasks(s.symbols, s.length, 20241124);
  LlamaConfig cfg = s.model;
  cfg.vocab = tasks.vocab();
  cfg.max_seq = std::max(cfg.max_seq, tasks.seq_len());
  cfg.check();
  if (s.rule.set != 0) throw std::invalid_argument("run_comparison: the match rule must be on set 0 (task B)");
  fs::create_directories(s.out);

  const std::vector<MethodSpec> methods = pick_methods(standard_methods(cfg, method_options(s)), s.methods);

  out << "model: " << cfg.describe() << "\n";
  out << "tasks: " << s.length << " of " << s.symbols << " symbols per sequence; pretraining (" << s.pretrain_steps
      << " steps): A (marker 1, substitution pa on the first half of the symbols) and C (marker 2, copy); "
      << "fine-tuning: B (marker 2, substitution pb on the second half)\n";
  const LlamaWeights<float> pretrained = pretrained_weights(s, tasks, cfg, out);

  // B is what is learnt; A and copy on A's inputs (C_low) need not change;
  // copy on B's inputs (C_high) is what B contradicts.
  std::vector<EvalSet> sets(4);
  sets[0].info = {"B", SetRole::New, true};
  sets[1].info = {"A", SetRole::Retain, true};
  sets[2].info = {"C_low", SetRole::Retain, true};
  sets[3].info = {"C_high", SetRole::Contradicted, true};
  const Task set_task[4] = {Task::B, Task::A, Task::C_LOW, Task::C_HIGH};
  {
    Rng er(777);
    for (int64_t i = 0; i < s.eval_batches; ++i)
      for (size_t k = 0; k < sets.size(); ++k) sets[k].batches.push_back(tasks.sample(set_task[k], 64, er));
    LlamaWeights<float> w = pretrained;
    LlamaModel<float> base(cfg, w);
    out << "pretrained model:";
    for (EvalSet &e : sets) {
      record_base(base, e);
      out << " " << e.info.name << " " << fixed(evaluate(base, e).accuracy, 4);
    }
    out << "\n";
  }
  std::vector<SetInfo> infos;
  for (const EvalSet &e : sets) infos.push_back(e.info);

  Shared sh{s, tasks, cfg, pretrained, sets, {}};
  {
    Rng cr(99);
    for (int i = 0; i < 4; ++i) sh.calibration.push_back(tasks.sample(Task::B, s.batch, cr));
  }
  out << "fine-tuning on B: " << s.batch << " sequences per step, constant rate after " << s.warmup_steps
      << " warm-up steps, traced every " << s.eval_every << " steps; match: B accuracy >= " << s.rule.target
      << " (within " << s.match_within << " steps), then on to " << s.rule.overtrain << "x that step; " << s.seeds
      << " seed(s)\n";
  print_methods(out, methods);
  const std::vector<RunTrace> runs = run_grid(
      methods, s.seeds, s.jobs, s.fork_runs,
      [&sh](const MethodSpec &spec, double lr, int64_t seed) { return fine_tune(sh, spec, lr, seed); },
      [&](size_t finished, size_t total, const RunTrace &r) {
        out << "[" << finished << "/" << total << "] ";
        print_run(out, r, infos, s.rule);
        out << std::flush;
      });
  int failures = 0;
  for (const RunTrace &r : runs)
    if (!r.error.empty() || !r.checks_ok) ++failures;

  const std::vector<MethodSummary> summaries = summarize(runs, infos, s.rule);
  const std::string traces = (fs::path(s.out) / "traces.csv").string();
  const std::string results = (fs::path(s.out) / "results.csv").string();
  write_traces_csv(traces, runs, infos);
  write_results_csv(results, runs, infos, s.rule, summaries);
  out << "wrote " << traces << " and " << results << " (plot: python3 examples/finetune/plot_fidelity.py " << s.out
      << ")\n";
  // The verdict first, so that the table is the last thing printed.
  out << (failures == 0 ? "all checks passed\n" : "some checks FAILED\n");
  if (!s.short_mode) {
    out << "\n";
    print_report(out, summaries, infos, s.rule);
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace ft
