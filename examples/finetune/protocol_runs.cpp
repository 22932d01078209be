#include "protocol_runs.hpp"

#include <memory>
#include <ostream>

#include "peak_memory.hpp"
#include "run_pool.hpp"
#include "s2ft_check.hpp"
#include "s2ft_handles.hpp"
#include "trainer.hpp"

namespace ft {

RunTrace traced_run(const TracedRunSettings &s, const MethodSpec &spec, double lr, int64_t seed, const BatchDraw &draw,
                    const RunCheck &check) {
  RunTrace r;
  r.method = spec.name;
  r.lr = lr;
  r.seed = seed;
  s2ft_context *ctx_raw = nullptr;
  s2ft_check(s2ft_context_create(nullptr, &ctx_raw), "s2ft_context_create");
  ContextPtr ctx(ctx_raw);
  LlamaWeights<float> w = *s.base;
  LlamaModel<float> model(*s.cfg, w);
  std::unique_ptr<FineTuning> m = make_method(ctx.get(), spec, *s.calibration, static_cast<uint64_t>(seed));
  m->attach(model);

  TracePoint start;
  start.sets = evaluate_all(model, *s.sets);
  r.points.push_back(start);

  Rng rng(0x5EED0000u + static_cast<uint64_t>(seed));
  TrainSettings ts;
  ts.steps = s.steps;
  ts.lr = lr;
  ts.warmup_steps = s.warmup_steps;
  ts.final_lr_ratio = 1.0;  // constant after warm-up: no schedule decides where a run is at its best
  int64_t stop_at = s.stop_rule ? s.match_within : s.steps;
  bool matched = false;
  double loss_sum = 0.0;
  int64_t loss_count = 0;
  const TrainStats st = train(
      model, *m, [&](int64_t) { return draw(rng); }, ts,
      [&](int64_t step, double loss, double step_lr) {
        loss_sum += loss;
        ++loss_count;
        const int64_t taken = step + 1;
        if (taken % s.eval_every == 0 || (s.trace_last && taken == ts.steps)) {
          TracePoint p;
          p.step = taken;
          p.lr = step_lr;
          p.train_loss = loss_sum / static_cast<double>(loss_count);
          loss_sum = 0.0;
          loss_count = 0;
          p.sets = evaluate_all(model, *s.sets);
          if (s.stop_rule && !matched && meets(*s.stop_rule, p)) {
            matched = true;
            stop_at = s.stop_rule->overtrain * taken;
          }
          r.points.push_back(std::move(p));
        }
        return taken < stop_at;
      });
  r.params = m->trainable_parameters();
  r.state_bytes = m->gradient_bytes() + m->optimizer_bytes() + st.activation_bytes;
  r.seconds_per_step = st.seconds_per_step;
  r.peak_rss = peak_rss_bytes();  // before any check, which may hold extra model copies

  if (r.points.size() >= 3 && !(r.points.back().train_loss < r.points[1].train_loss)) {
    r.checks = "the training loss did not fall (" + fixed(r.points[1].train_loss, 4) + " over the first " +
               std::to_string(r.points[1].step) + " steps, " + fixed(r.points.back().train_loss, 4) + " at step " +
               std::to_string(r.points.back().step) + ")";
    r.checks_ok = false;
  }
  if (check) check(*m, w, ctx.get(), r);
  return r;
}

void print_methods(std::ostream &out, const std::vector<MethodSpec> &methods) {
  for (const MethodSpec &m : methods) {
    out << "  " << m.name << ": ";
    if (m.kind == MethodKind::Lora) out << "rank " << m.lora_rank << ", ";
    if (m.kind == MethodKind::Sorsa) out << "rank " << m.sorsa.rank << ", ";
    out << "rates";
    for (double lr : m.lrs) out << " " << rate_text(lr);
    out << "\n";
  }
  out << std::flush;
}

std::vector<RunTrace> run_grid(const std::vector<MethodSpec> &methods, int64_t seeds, int jobs, bool fork_runs,
                               const RunOne &run,
                               const std::function<void(size_t finished, size_t total, const RunTrace &r)> &progress) {
  struct Job {
    const MethodSpec *spec;
    double lr;
    int64_t seed;
  };
  std::vector<Job> grid;
  for (int64_t seed = 1; seed <= seeds; ++seed)
    for (const MethodSpec &m : methods)
      for (double lr : m.lrs) grid.push_back({&m, lr, seed});
  std::vector<RunFn> fns;
  for (const Job &j : grid) fns.push_back([&run, j]() { return run(*j.spec, j.lr, j.seed); });
  auto name = [&](size_t i, RunTrace &r) {  // a run that failed early, or whose process died, has no name
    r.method = grid[i].spec->name;
    r.lr = grid[i].lr;
    r.seed = grid[i].seed;
  };
  size_t finished = 0;
  std::vector<RunTrace> runs = run_all(fns, jobs, fork_runs, [&](size_t i, const RunTrace &r) {
    RunTrace named = r;
    name(i, named);
    if (progress) progress(++finished, grid.size(), named);
  });
  for (size_t i = 0; i < runs.size(); ++i) name(i, runs[i]);
  return runs;
}

}  // namespace ft
