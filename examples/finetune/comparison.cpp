#include "comparison.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iomanip>
#include <memory>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "fine_tuning.hpp"
#include "llama_model.hpp"
#include "peak_memory.hpp"
#include "s2ft_check.hpp"
#include "s2ft_verify.hpp"
#include "synthetic_tasks.hpp"
#include "trainer.hpp"

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
  s.pretrain_max_steps = 40;
  s.finetune_steps = 12;
  s.seeds = 1;
  s.eval_batches = 2;
  s.batch = 16;
  return s;
}

namespace {

constexpr int kMethods = 3;
const char *const kMethodNames[kMethods] = {"s2ft", "full", "lora"};

// One fine-tuning run's outcome; a plain struct so a child can send it
// through a pipe.
struct RunResult {
  int ok = 0;
  char error[256] = {};
  int64_t params = 0, grad_bytes = 0, optimizer_bytes = 0, activation_bytes = 0, peak_rss = 0;
  double seconds_per_step = 0, acc_a = 0, acc_b = 0, loss_first = 0, loss_last = 0;
  // S2FT only.
  int64_t frozen_changed = -1, trained_changed = 0, trained_elements = 0;
  double merge_difference = -1;
};

struct Shared {
  const ComparisonSettings &s;
  const SyntheticTasks &tasks;
  const LlamaConfig &cfg;
  const LlamaWeights<float> &pretrained;
  std::vector<Batch> eval_a, eval_b, calibration;
  int64_t lora_rank = 1;
};

double mean_of(const std::vector<double> &v, size_t from, size_t to) {
  double sum = 0.0;
  for (size_t i = from; i < to; ++i) sum += v[i];
  return sum / static_cast<double>(std::max<size_t>(1, to - from));
}

RunResult fine_tune(const Shared &sh, int method, int64_t seed) {
  RunResult r;
  s2ft_context *ctx_raw = nullptr;
  s2ft_check(s2ft_context_create(nullptr, &ctx_raw), "s2ft_context_create");
  ContextPtr ctx(ctx_raw);
  LlamaWeights<float> w = sh.pretrained;
  LlamaModel<float> model(sh.cfg, w);
  const OptimizerSettings opt;
  std::unique_ptr<FineTuning> m;
  S2ftFineTuning *s2ft = nullptr;
  double lr = 0;
  if (method == 0) {
    S2ftSettings ss = sh.s.s2ft;
    ss.seed = static_cast<uint64_t>(seed);
    auto p = std::make_unique<S2ftFineTuning>(ctx.get(), opt, ss, sh.calibration);
    s2ft = p.get();
    m = std::move(p);
    lr = sh.s.lr_s2ft;
  } else if (method == 1) {
    m = std::make_unique<FullFineTuning>(ctx.get(), opt);
    lr = sh.s.lr_full;
  } else {
    m = std::make_unique<LoraFineTuning>(ctx.get(), opt, sh.lora_rank, 2.0 * static_cast<double>(sh.lora_rank),
                                         static_cast<uint64_t>(seed));
    lr = sh.s.lr_lora;
  }
  m->attach(model);

  Rng rng(0x5EED0000u + static_cast<uint64_t>(seed));
  TrainSettings ts;
  ts.steps = sh.s.finetune_steps;
  ts.lr = lr;
  const TrainStats st = train(model, *m, [&](int64_t) { return sh.tasks.sample(Task::B, sh.s.batch, rng); }, ts);
  r.params = m->trainable_parameters();
  r.grad_bytes = m->gradient_bytes();
  r.optimizer_bytes = m->optimizer_bytes();
  r.activation_bytes = st.activation_bytes;
  r.seconds_per_step = st.seconds_per_step;
  const size_t n = st.losses.size(), k = std::max<size_t>(1, std::min<size_t>(5, n / 3));
  r.loss_first = mean_of(st.losses, 0, k);
  r.loss_last = mean_of(st.losses, n - k, n);
  r.acc_a = SyntheticTasks::accuracy(model, sh.eval_a);
  r.acc_b = SyntheticTasks::accuracy(model, sh.eval_b);
  r.peak_rss = peak_rss_bytes();  // before the checks below, which hold extra model copies

  if (s2ft != nullptr) {
    // The adapter is the trained slices minus the base slices, both in the
    // permuted order the training ran in; then back to base order.
    LlamaWeights<float> base_permuted = sh.pretrained;
    s2ft->permute(base_permuted, S2FT_PERMUTE_FORWARD);
    AdapterPtr adapter = s2ft->make_adapter(base_permuted, w, "task-b");
    s2ft->permute(w, S2FT_PERMUTE_INVERSE);
    const FrozenCheck fc = check_frozen(sh.cfg, s2ft->selection(), sh.pretrained, w);
    r.frozen_changed = fc.changed_frozen;
    r.trained_changed = fc.changed_trained;
    r.trained_elements = fc.trained_elements;
    LlamaWeights<float> merged = merge_adapter(ctx.get(), sh.cfg, sh.pretrained, adapter.get());
    r.merge_difference = max_logit_difference(sh.cfg, merged, w, sh.eval_b.front());
  }
  r.ok = 1;
  return r;
}

// Runs fine_tune in a child process (own peak RSS), or in-process.
RunResult run_isolated(const Shared &sh, int method, int64_t seed) {
  auto guarded = [&]() {
    try {
      return fine_tune(sh, method, seed);
    } catch (const std::exception &e) {
      RunResult r;
      std::snprintf(r.error, sizeof r.error, "%s", e.what());
      return r;
    }
  };
  if (!sh.s.fork_runs) return guarded();
  int fds[2];
  if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    close(fds[0]);
    const RunResult r = guarded();
    const char *p = reinterpret_cast<const char *>(&r);
    size_t left = sizeof r;
    while (left > 0) {
      const ssize_t w = write(fds[1], p, left);
      if (w <= 0) break;
      p += w;
      left -= static_cast<size_t>(w);
    }
    _exit(0);
  }
  close(fds[1]);
  RunResult r;
  char *p = reinterpret_cast<char *>(&r);
  size_t got = 0;
  while (got < sizeof r) {
    const ssize_t n = read(fds[0], p + got, sizeof r - got);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got != sizeof r) {
    RunResult bad;
    std::snprintf(bad.error, sizeof bad.error, "the run's process ended without a result (status %d)", status);
    return bad;
  }
  return r;
}

std::string mib(double bytes) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(2) << bytes / (1024.0 * 1024.0);
  return o.str();
}

std::string fixed(double v, int digits) {
  std::ostringstream o;
  o << std::fixed << std::setprecision(digits) << v;
  return o.str();
}

// "mean ± sd" over seeds.
std::string mean_sd(const std::vector<double> &v, int digits) {
  double m = 0, s = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  for (double x : v) s += (x - m) * (x - m);
  s = v.size() > 1 ? std::sqrt(s / static_cast<double>(v.size() - 1)) : 0.0;
  return fixed(m, digits) + (v.size() > 1 ? " ± " + fixed(s, digits) : "");
}

}  // namespace

int run_comparison(const ComparisonSettings &s, std::ostream &out) {
  const SyntheticTasks tasks(s.symbols, s.length, 20241124);
  LlamaConfig cfg = s.model;
  cfg.vocab = tasks.vocab();
  cfg.max_seq = std::max(cfg.max_seq, tasks.seq_len());
  cfg.check();

  // Pretraining on task A: every weight, from a seeded random init.
  LlamaWeights<float> pretrained = random_weights<float>(cfg, 1);
  std::vector<Batch> eval_a, eval_b, eval_c;
  {
    Rng er(777);
    for (int64_t i = 0; i < s.eval_batches; ++i) {
      eval_a.push_back(tasks.sample(Task::A, 64, er));
      eval_b.push_back(tasks.sample(Task::B, 64, er));
      eval_c.push_back(tasks.sample(Task::C, 64, er));
    }
  }
  out << "model: " << cfg.describe() << ", " << parameter_count(pretrained) << " parameters\n";
  out << "tasks: " << s.length << " of " << s.symbols << " symbols per sequence; pretraining: A (marker 1, "
      << "substitution pa on the first half of the symbols) and C (marker 2, copy); fine-tuning: B (marker 2, "
      << "substitution pb on the second half)\n";
  {
    s2ft_context *ctx_raw = nullptr;
    s2ft_check(s2ft_context_create(nullptr, &ctx_raw), "s2ft_context_create");
    ContextPtr ctx(ctx_raw);
    LlamaModel<float> model(cfg, pretrained);
    FullFineTuning full(ctx.get(), OptimizerSettings{});
    full.attach(model);
    Rng rng(42);
    TrainSettings ts;
    ts.steps = s.pretrain_max_steps;
    ts.lr = s.pretrain_lr;
    ts.warmup = 0.05;
    // Stop once tasks A and C are learnt (checked every 50 steps).
    train(model, full, [&](int64_t) { return tasks.sample_pretraining(s.batch, rng); }, ts,
          [&](int64_t step, double loss, double) {
            if ((step + 1) % 50 != 0 && step + 1 != ts.steps) return true;
            const double acc_a = SyntheticTasks::accuracy(model, eval_a);
            const double acc_c = SyntheticTasks::accuracy(model, eval_c);
            out << "pretraining on A and C: step " << step + 1 << ", loss " << fixed(loss, 4) << ", accuracy A "
                << fixed(acc_a, 4) << ", C " << fixed(acc_c, 4) << "\n";
            out.flush();
            return s.short_mode || std::min(acc_a, acc_c) < s.pretrain_target;
          });
  }
  // The pretrained model's weights are those after full training; the model
  // object is gone, so its projections no longer point at them.
  double base_a = 0, base_b = 0;
  {
    LlamaWeights<float> w = pretrained;
    LlamaModel<float> model(cfg, w);
    base_a = SyntheticTasks::accuracy(model, eval_a);
    base_b = SyntheticTasks::accuracy(model, eval_b);
  }
  out << "pretrained model: accuracy A " << fixed(base_a, 4) << ", accuracy B " << fixed(base_b, 4) << "\n";

  Shared sh{s, tasks, cfg, pretrained, eval_a, eval_b, {}, 1};
  {
    Rng cr(99);
    for (int i = 0; i < 4; ++i) sh.calibration.push_back(tasks.sample(Task::B, s.batch, cr));
  }
  // LoRA's rank: the nearest to S2FT's trainable parameter count.
  int64_t s2ft_params = 0;
  for (int t = 0; t < S2FT_NUM_TARGETS; ++t) {
    if (!(s.s2ft.targets & S2FT_TARGET_BIT(t))) continue;
    const int64_t unit = t == S2FT_TARGET_O ? (cfg.n_heads / cfg.n_kv_heads) * cfg.head_dim * cfg.d_model
                         : t == S2FT_TARGET_V ? cfg.head_dim * cfg.d_model
                                              : cfg.d_model;
    s2ft_params += s.s2ft.count[t] * unit * cfg.n_layers;
  }
  sh.lora_rank = std::max<int64_t>(
      1, std::llround(static_cast<double>(s2ft_params) / static_cast<double>(LoraFineTuning::parameters_per_rank(cfg))));
  out << "fine-tuning on B: " << s.finetune_steps << " steps of " << s.batch << " sequences, " << s.seeds
      << " seed(s); LoRA rank " << sh.lora_rank << " on q, k, v, up, down\n";

  std::vector<RunResult> results[kMethods];
  int failures = 0;
  for (int64_t seed = 1; seed <= s.seeds; ++seed)
    for (int m = 0; m < kMethods; ++m) {
      const RunResult r = run_isolated(sh, m, seed);
      if (!r.ok) {
        out << "FAIL " << kMethodNames[m] << " seed " << seed << ": " << r.error << "\n";
        ++failures;
        continue;
      }
      out << kMethodNames[m] << " seed " << seed << ": loss " << fixed(r.loss_first, 4) << " -> "
          << fixed(r.loss_last, 4) << ", accuracy B " << fixed(r.acc_b, 4) << ", A " << fixed(r.acc_a, 4) << ", "
          << fixed(1e3 * r.seconds_per_step, 1) << " ms/step\n";
      if (!(r.loss_last < r.loss_first)) {
        out << "FAIL " << kMethodNames[m] << ": the loss did not fall\n";
        ++failures;
      }
      if (m == 0) {
        out << "  s2ft checks: frozen weight elements changed " << r.frozen_changed << "; trained elements changed "
            << r.trained_changed << " of " << r.trained_elements << "; merged adapter vs fine-tuned model: max "
            << "|logit difference| " << r.merge_difference << "\n";
        if (r.frozen_changed != 0 || r.trained_changed == 0 || !(r.merge_difference <= 1e-4)) {
          out << "FAIL s2ft: frozen weights changed or the adapter does not reproduce the fine-tuned model\n";
          ++failures;
        }
      }
      out.flush();
      results[m].push_back(r);
    }

  // The verdict first, so that the table is the last thing printed.
  out << (failures == 0 ? "all checks passed\n" : "some checks FAILED\n");
  if (!s.short_mode) {
    out << "\n| method | trainable params | weight grads + optimizer state | saved activations | training state "
           "total | peak RSS | time/step | task-B accuracy | task-A accuracy after (before: "
        << fixed(base_a, 3) << ") |\n|---|---|---|---|---|---|---|---|---|\n";
    for (int m = 0; m < kMethods; ++m) {
      const auto &rs = results[m];
      if (rs.empty()) continue;
      std::vector<double> acc_a, acc_b, ms, rss;
      for (const RunResult &r : rs) {
        acc_a.push_back(r.acc_a);
        acc_b.push_back(r.acc_b);
        ms.push_back(1e3 * r.seconds_per_step);
        rss.push_back(static_cast<double>(r.peak_rss) / (1024.0 * 1024.0));
      }
      const RunResult &r = rs.front();
      out << "| " << kMethodNames[m] << (m == 2 ? " (r=" + std::to_string(sh.lora_rank) + ")" : std::string()) << " | "
          << r.params << " | " << mib(static_cast<double>(r.grad_bytes + r.optimizer_bytes)) << " MiB | "
          << mib(static_cast<double>(r.activation_bytes)) << " MiB | "
          << mib(static_cast<double>(r.grad_bytes + r.optimizer_bytes + r.activation_bytes)) << " MiB | "
          << mean_sd(rss, 1) << " MiB | " << mean_sd(ms, 1) << " ms | " << mean_sd(acc_b, 3) << " | "
          << mean_sd(acc_a, 3) << " |\n";
    }
    out << "(task-B accuracy before fine-tuning: " << fixed(base_b, 3) << "; means ± sd over " << s.seeds
        << " seeds)\n";
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace ft
