// What the fidelity protocol records of a fine-tuning run, and what it
// concludes from the records. A run is traced at regular steps: its
// new-task metrics and, for every retention set, accuracy, loss and
// KL(base || tuned). The comparison is made at matched learning: the first
// traced point where the new task reaches its target (the "match"), and
// again at `overtrain` times that step (training on past the point a user
// needed, as a fixed-epoch recipe does). Per method, the learning rate with
// the best retention at match is reported, as mean ± sd over seeds.
//
// Everything here is plain data and arithmetic (no model), so the matched-
// point logic and the CSV files can be tested on crafted traces.
#pragma once

#include <cmath>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace ft {

// What an evaluation set measures: the new task, something the new task
// need not change (forgetting it is a loss), or something it contradicts
// (it must change; reported apart).
enum class SetRole { New, Retain, Contradicted };
const char *role_name(SetRole role);

struct SetInfo {
  std::string name;
  SetRole role = SetRole::Retain;
  bool has_accuracy = true;  // false: only loss and KL mean something (e.g. sampled text)
};

struct SetMetrics {
  double accuracy = NAN;  // fraction of scored positions whose most likely token is the target
  double loss = NAN;      // mean cross-entropy over the scored positions
  double kl = NAN;        // mean KL(base || tuned) over the scored positions, nats
};

struct TracePoint {
  int64_t step = 0;         // steps taken (0: before fine-tuning)
  double lr = 0.0;          // learning rate of the last step (0 at step 0)
  double train_loss = NAN;  // mean training loss of the steps since the previous point
  std::vector<SetMetrics> sets;  // one per evaluation set, in the protocol's order
};

// One fine-tuning run: a method at a learning rate and a seed.
struct RunTrace {
  std::string method;
  double lr = 0.0;
  int64_t seed = 0;
  int64_t params = 0;             // trainable parameters
  int64_t state_bytes = 0;        // weight gradients + optimizer state + saved activations
  int64_t peak_rss = 0;           // bytes, of the run's own process
  double seconds_per_step = 0.0;  // forward + backward + optimizer step, evaluation excluded
  std::vector<TracePoint> points;
  std::string error;   // not empty: the run failed and the rest is incomplete
  std::string checks;  // what the run checked of itself (S2FT: frozen weights, merged adapter)
  bool checks_ok = true;
};

// When the new task counts as learnt: set `set`'s accuracy >= target, or
// with by_loss its loss <= target.
struct MatchRule {
  int32_t set = 0;
  bool by_loss = false;
  double target = 0.9;
  int64_t overtrain = 3;  // the over-training point is at overtrain x the match step
};

// Whether point p meets the rule (a NaN metric never does).
bool meets(const MatchRule &rule, const TracePoint &p);

// Indices into a trace's points; -1 where there is none.
struct MatchPoints {
  int64_t match = -1;  // the first point after step 0 that meets the rule
  int64_t over = -1;   // the first point at or after overtrain x the match step
};
MatchPoints find_match(const RunTrace &run, const MatchRule &rule);

// The retention measures of one point, averaged over the sets of a role
// (NaN when no set of that role has the measure).
struct Retention {
  double accuracy = NAN, loss = NAN, kl = NAN;
};
Retention retention_at(const TracePoint &p, const std::vector<SetInfo> &sets, SetRole role);

// A score where higher is better retention: the mean retained accuracy
// where the retention sets have accuracy, else minus the mean KL.
double retention_score(const Retention &r);

// Per method: the learning rate chosen and its runs' outcomes over seeds.
struct MethodSummary {
  std::string method;
  double best_lr = 0.0;
  int64_t runs = 0, matched = 0;  // at best_lr: runs, and runs that reached the target
  int64_t params = 0, state_bytes = 0;
  std::vector<double> ms_per_step, peak_rss_mib, match_step;
  // At match and after over-training, per seed that reached each point.
  std::vector<Retention> retain_match, retain_over, contra_match, contra_over;
  std::vector<double> lrs_tried;
};

// Groups runs by method (in first-seen order) and, per method, picks the
// learning rate whose runs (a) all reached the target, or failing that the
// most of them did, then (b) had the best mean retention_score at match.
// Failed runs (error set) count as not matched.
std::vector<MethodSummary> summarize(const std::vector<RunTrace> &runs, const std::vector<SetInfo> &sets,
                                     const MatchRule &rule);

// v with `digits` decimals ("%.*f"), and a learning rate as short as it can
// be without lying ("2e-03", but "2.5e-03" where one digit would round it).
std::string fixed(double v, int digits);
std::string rate_text(double v);

// "mean ± sd" (sample sd; only the mean for one value; "-" for none).
std::string mean_sd(const std::vector<double> &v, int digits);

// The markdown table of the comparison: per method parameters, training
// state, time per step, best learning rate, steps to match, retention at
// match and after over-training (and the contradicted sets, if any).
void print_report(std::ostream &out, const std::vector<MethodSummary> &summaries, const std::vector<SetInfo> &sets,
                  const MatchRule &rule);

// traces.csv: one row per (run, traced point, evaluation set):
//   method,lr,seed,step,step_lr,train_loss,set,role,accuracy,loss,kl
void write_traces_csv(const std::string &path, const std::vector<RunTrace> &runs, const std::vector<SetInfo> &sets);
// results.csv: one row per run with its match and over-training points:
//   method,lr,seed,params,state_bytes,ms_per_step,peak_rss_mib,match_step,over_step,
//   new_match,retain_acc_match,retain_loss_match,retain_kl_match,contra_acc_match,
//   retain_acc_over,retain_loss_over,retain_kl_over,contra_acc_over,best_lr
// (steps -1 and empty metrics where a point was not reached; best_lr 1 on the
// rows of the rate the summary chose).
void write_results_csv(const std::string &path, const std::vector<RunTrace> &runs, const std::vector<SetInfo> &sets,
                       const MatchRule &rule, const std::vector<MethodSummary> &summaries);

// A run as text and back, so that a forked child can hand it to its parent.
// parse_run throws std::runtime_error on text that serialize_run did not make.
std::string serialize_run(const RunTrace &run);
RunTrace parse_run(const std::string &text);

}  // namespace ft
