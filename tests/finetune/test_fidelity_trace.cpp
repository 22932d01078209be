// The fidelity protocol's bookkeeping on crafted traces whose answers are
// known by construction: where a run first matches and where over-training
// is measured, retention means per role, the learning rate summarize()
// picks, the report and CSV files, and the run text a forked child hands
// back (including what parse_run does with text it did not make).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fidelity_trace.hpp"

namespace {

namespace fs = std::filesystem;
using ft::MatchRule;
using ft::RunTrace;
using ft::SetInfo;
using ft::SetMetrics;
using ft::SetRole;
using ft::TracePoint;

// ---- helpers ------------------------------------------------------------------

SetMetrics metrics(double accuracy, double loss = NAN, double kl = NAN) {
  SetMetrics m;
  m.accuracy = accuracy;
  m.loss = loss;
  m.kl = kl;
  return m;
}

TracePoint point(int64_t step, std::vector<SetMetrics> sets) {
  TracePoint p;
  p.step = step;
  p.lr = step == 0 ? 0.0 : 1e-3;
  p.train_loss = 1.0 / (static_cast<double>(step) + 1.0);
  p.sets = std::move(sets);
  return p;
}

// A trace with one set (the new task), whose accuracy at each step is given.
RunTrace new_task_trace(const std::vector<std::pair<int64_t, double>> &acc) {
  RunTrace r;
  r.method = "m";
  for (const auto &[step, a] : acc) r.points.push_back(point(step, {metrics(a, 1.0 - a)}));
  return r;
}

const std::vector<SetInfo> kSets = {{"task-b", SetRole::New, true}, {"task-a", SetRole::Retain, true}};

// Traced every 10 steps to step 100: the new task is at 0.2 until
// `match_step` (never with -1), then 0.95; the retained set is at
// `keep` (KL 1 - keep) after step 0.
RunTrace run_with(const std::string &method, double lr, int64_t seed, int64_t match_step, double keep,
                  int64_t last_step = 100) {
  RunTrace r;
  r.method = method;
  r.lr = lr;
  r.seed = seed;
  r.params = 1000 + seed;
  r.state_bytes = 2 * 1024 * 1024;
  r.peak_rss = (100 + seed) * 1024 * 1024;
  r.seconds_per_step = 0.01 * static_cast<double>(seed);
  for (int64_t s = 0; s <= last_step; s += 10) {
    const double a = match_step > 0 && s >= match_step ? 0.95 : 0.2;
    const double k = s == 0 ? 1.0 : keep;
    r.points.push_back(point(s, {metrics(a, 1.0 - a, 0.0), metrics(k, 2.0 - k, 1.0 - k)}));
  }
  return r;
}

bool same_bits(double a, double b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::memcmp(&a, &b, sizeof a) == 0;
}

void expect_same_run(const RunTrace &a, const RunTrace &b) {
  EXPECT_EQ(a.method, b.method);
  EXPECT_TRUE(same_bits(a.lr, b.lr)) << a.lr << " vs " << b.lr;
  EXPECT_EQ(a.seed, b.seed);
  EXPECT_EQ(a.params, b.params);
  EXPECT_EQ(a.state_bytes, b.state_bytes);
  EXPECT_EQ(a.peak_rss, b.peak_rss);
  EXPECT_TRUE(same_bits(a.seconds_per_step, b.seconds_per_step)) << a.seconds_per_step << " vs " << b.seconds_per_step;
  EXPECT_EQ(a.error, b.error);
  EXPECT_EQ(a.checks, b.checks);
  EXPECT_EQ(a.checks_ok, b.checks_ok);
  ASSERT_EQ(a.points.size(), b.points.size());
  for (size_t i = 0; i < a.points.size(); ++i) {
    const TracePoint &p = a.points[i], &q = b.points[i];
    EXPECT_EQ(p.step, q.step) << "point " << i;
    EXPECT_TRUE(same_bits(p.lr, q.lr)) << "point " << i;
    EXPECT_TRUE(same_bits(p.train_loss, q.train_loss)) << "point " << i;
    ASSERT_EQ(p.sets.size(), q.sets.size()) << "point " << i;
    for (size_t j = 0; j < p.sets.size(); ++j) {
      EXPECT_TRUE(same_bits(p.sets[j].accuracy, q.sets[j].accuracy)) << "point " << i << " set " << j;
      EXPECT_TRUE(same_bits(p.sets[j].loss, q.sets[j].loss)) << "point " << i << " set " << j;
      EXPECT_TRUE(same_bits(p.sets[j].kl, q.sets[j].kl)) << "point " << i << " set " << j;
    }
  }
}

// A fresh folder under the system temp dir, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("ft_trace_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  std::string operator/(const std::string &name) const { return (path_ / name).string(); }
  const fs::path &path() const { return path_; }

 private:
  fs::path path_;
};

std::vector<std::string> read_lines(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::vector<std::string> lines;
  std::string l;
  while (std::getline(in, l)) lines.push_back(l);
  return lines;
}

// Splits on every comma, keeping empty fields (including a trailing one).
std::vector<std::string> fields(const std::string &line) {
  std::vector<std::string> out(1);
  for (char c : line) {
    if (c == ',') out.emplace_back();
    else out.back() += c;
  }
  return out;
}

// ---- matching ---------------------------------------------------------------------

TEST(FidelityTrace, RoleNames) {
  EXPECT_STREQ(ft::role_name(SetRole::New), "new");
  EXPECT_STREQ(ft::role_name(SetRole::Retain), "retain");
  EXPECT_STREQ(ft::role_name(SetRole::Contradicted), "contradicted");
}

TEST(FidelityTrace, MeetsByAccuracyAndByLoss) {
  MatchRule rule;
  rule.set = 1;
  rule.target = 0.9;
  const TracePoint p = point(5, {metrics(0.0, 9.0), metrics(0.9, 0.3)});
  EXPECT_TRUE(ft::meets(rule, p));  // equal to the target counts
  rule.target = 0.90001;
  EXPECT_FALSE(ft::meets(rule, p));
  rule.set = 0;
  rule.target = 0.0;
  EXPECT_TRUE(ft::meets(rule, p));

  MatchRule by_loss;
  by_loss.by_loss = true;
  by_loss.set = 1;
  by_loss.target = 0.3;
  EXPECT_TRUE(ft::meets(by_loss, p));  // equal counts
  by_loss.target = 0.29;
  EXPECT_FALSE(ft::meets(by_loss, p));
  by_loss.set = 0;
  by_loss.target = 10.0;
  EXPECT_TRUE(ft::meets(by_loss, p));
}

TEST(FidelityTrace, MeetsNeverOnNaNOrAMissingSet) {
  MatchRule rule;
  rule.target = 0.0;  // anything that is a number meets it
  EXPECT_FALSE(ft::meets(rule, point(5, {metrics(NAN, 0.1)})));
  rule.by_loss = true;
  rule.target = 100.0;
  EXPECT_FALSE(ft::meets(rule, point(5, {metrics(1.0, NAN)})));
  EXPECT_TRUE(ft::meets(rule, point(5, {metrics(NAN, 1.0)})));  // only the rule's metric matters

  MatchRule out_of_range;
  out_of_range.target = 0.0;
  out_of_range.set = 1;
  EXPECT_FALSE(ft::meets(out_of_range, point(5, {metrics(1.0, 0.0)})));
  out_of_range.set = -1;
  EXPECT_FALSE(ft::meets(out_of_range, point(5, {metrics(1.0, 0.0)})));
  EXPECT_FALSE(ft::meets(out_of_range, point(5, {})));

  MatchRule nan_target;
  nan_target.target = NAN;
  EXPECT_FALSE(ft::meets(nan_target, point(5, {metrics(1.0, 0.0)})));
}

TEST(FidelityTrace, MatchIsTheFirstQualifyingPointAndStepZeroNeverCounts) {
  // Step 0 meets the target (the base model already knows it), step 20 is
  // the first after it that does; 30 and 40 qualify too but come later.
  const RunTrace r = new_task_trace({{0, 1.0}, {10, 0.5}, {20, 0.91}, {30, 0.97}, {40, 0.99}, {60, 0.99}, {70, 1.0}});
  MatchRule rule;
  rule.target = 0.9;
  const ft::MatchPoints mp = ft::find_match(r, rule);
  EXPECT_EQ(mp.match, 2);
  EXPECT_EQ(mp.over, 5);  // step 60 = 3 x 20 exactly

  const RunTrace only_base = new_task_trace({{0, 1.0}, {10, 0.1}, {20, 0.2}});
  const ft::MatchPoints none = ft::find_match(only_base, rule);
  EXPECT_EQ(none.match, -1);
  EXPECT_EQ(none.over, -1);
}

TEST(FidelityTrace, MatchByLoss) {
  // Loss = 1 - accuracy in new_task_trace: 0.9, 0.6, 0.25, 0.1.
  const RunTrace r = new_task_trace({{0, 0.1}, {10, 0.4}, {20, 0.75}, {30, 0.9}, {90, 0.9}});
  MatchRule rule;
  rule.by_loss = true;
  rule.target = 0.3;
  const ft::MatchPoints mp = ft::find_match(r, rule);
  EXPECT_EQ(mp.match, 2);
  EXPECT_EQ(mp.over, 4);  // step 90 >= 60, the first such
  rule.target = 0.2;
  EXPECT_EQ(ft::find_match(r, rule).match, 3);
}

TEST(FidelityTrace, NoMatchGivesMinusOneTwice) {
  const RunTrace r = new_task_trace({{0, 0.1}, {10, 0.5}, {20, 0.89}, {30, 0.8999}});
  MatchRule rule;
  rule.target = 0.9;
  const ft::MatchPoints mp = ft::find_match(r, rule);
  EXPECT_EQ(mp.match, -1);
  EXPECT_EQ(mp.over, -1);
  EXPECT_EQ(ft::find_match(RunTrace{}, rule).match, -1);
}

TEST(FidelityTrace, OverTrainingPoint) {
  MatchRule rule;
  rule.target = 0.9;
  rule.overtrain = 3;
  // The first point at or after 60 is 61 (59 is short of it).
  const RunTrace after = new_task_trace({{0, 0}, {20, 0.95}, {40, 0.9}, {59, 0.9}, {61, 0.9}, {80, 0.9}});
  EXPECT_EQ(ft::find_match(after, rule).match, 1);
  EXPECT_EQ(ft::find_match(after, rule).over, 4);
  // The trace ends before 3 x 20.
  const RunTrace short_trace = new_task_trace({{0, 0}, {20, 0.95}, {40, 0.9}, {59, 0.9}});
  EXPECT_EQ(ft::find_match(short_trace, rule).match, 1);
  EXPECT_EQ(ft::find_match(short_trace, rule).over, -1);
  // Whether the new task still meets the target there does not matter.
  const RunTrace forgot = new_task_trace({{0, 0}, {20, 0.95}, {60, 0.1}});
  EXPECT_EQ(ft::find_match(forgot, rule).over, 2);
  // overtrain 1: the match point itself; 2: step 40.
  rule.overtrain = 1;
  EXPECT_EQ(ft::find_match(after, rule).over, 1);
  rule.overtrain = 2;
  EXPECT_EQ(ft::find_match(after, rule).over, 2);
  // A product beyond int64 is never reached (and must not wrap around).
  rule.overtrain = std::numeric_limits<int64_t>::max() / 10;
  EXPECT_EQ(ft::find_match(after, rule).over, -1);
}

TEST(FidelityTrace, NaNMetricsNeverMatch) {
  const RunTrace r = new_task_trace({{0, NAN}, {10, NAN}, {20, NAN}, {30, 0.95}});
  MatchRule rule;
  rule.target = 0.0;
  EXPECT_EQ(ft::find_match(r, rule).match, 3);
  rule.by_loss = true;
  rule.target = 100.0;  // losses are 1 - NaN = NaN, then 0.05
  EXPECT_EQ(ft::find_match(r, rule).match, 3);
}

// ---- retention --------------------------------------------------------------------

TEST(FidelityTrace, RetentionAveragesPerRole) {
  const std::vector<SetInfo> sets = {{"new", SetRole::New, true},
                                     {"a", SetRole::Retain, true},
                                     {"text", SetRole::Retain, false},
                                     {"b", SetRole::Retain, true},
                                     {"contra", SetRole::Contradicted, true}};
  // "text" has an accuracy number, which must not be averaged in; "b" has
  // NaN loss and KL, which are skipped.
  const TracePoint p =
      point(10, {metrics(0.99, 0.01, 0.5), metrics(0.8, 1.0, 0.1), metrics(0.0, 3.0, 0.3), metrics(0.6, NAN, NAN),
                 metrics(0.25, 4.0, 2.0)});
  const ft::Retention r = ft::retention_at(p, sets, SetRole::Retain);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.7);
  EXPECT_DOUBLE_EQ(r.loss, 2.0);
  EXPECT_DOUBLE_EQ(r.kl, 0.2);
  const ft::Retention c = ft::retention_at(p, sets, SetRole::Contradicted);
  EXPECT_DOUBLE_EQ(c.accuracy, 0.25);
  EXPECT_DOUBLE_EQ(c.loss, 4.0);
  EXPECT_DOUBLE_EQ(c.kl, 2.0);
  const ft::Retention n = ft::retention_at(p, sets, SetRole::New);
  EXPECT_DOUBLE_EQ(n.accuracy, 0.99);

  // No set of the role, or only sets without accuracy: NaN.
  const std::vector<SetInfo> text_only = {{"new", SetRole::New, true}, {"text", SetRole::Retain, false}};
  const TracePoint q = point(10, {metrics(0.5, 1.0, 0.0), metrics(0.9, 2.0, 0.4)});
  const ft::Retention t = ft::retention_at(q, text_only, SetRole::Retain);
  EXPECT_TRUE(std::isnan(t.accuracy));
  EXPECT_DOUBLE_EQ(t.kl, 0.4);
  const ft::Retention none = ft::retention_at(q, text_only, SetRole::Contradicted);
  EXPECT_TRUE(std::isnan(none.accuracy) && std::isnan(none.loss) && std::isnan(none.kl));
  // A point with fewer metrics than sets (a failed run's last point).
  const ft::Retention partial = ft::retention_at(point(10, {metrics(0.5)}), sets, SetRole::Retain);
  EXPECT_TRUE(std::isnan(partial.accuracy));
}

TEST(FidelityTrace, RetentionScore) {
  ft::Retention r;
  r.accuracy = 0.8;
  r.kl = 0.3;
  EXPECT_DOUBLE_EQ(ft::retention_score(r), 0.8);
  r.accuracy = NAN;
  EXPECT_DOUBLE_EQ(ft::retention_score(r), -0.3);
  r.kl = NAN;
  EXPECT_TRUE(std::isnan(ft::retention_score(r)));
}

// ---- summarize --------------------------------------------------------------------

TEST(FidelityTrace, SummarizePrefersAllSeedsMatchedOverBetterRetention) {
  MatchRule rule;
  std::vector<RunTrace> runs;
  // 2e-3 retains better but its seed 3 never reaches the target.
  for (int64_t seed = 1; seed <= 3; ++seed) runs.push_back(run_with("s2ft", 2e-3, seed, seed == 3 ? -1 : 20, 0.95));
  for (int64_t seed = 1; seed <= 3; ++seed) runs.push_back(run_with("s2ft", 1e-3, seed, 40, 0.80));
  const auto s = ft::summarize(runs, kSets, rule);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_DOUBLE_EQ(s[0].best_lr, 1e-3);
  EXPECT_EQ(s[0].runs, 3);
  EXPECT_EQ(s[0].matched, 3);

  // Neither rate matches every seed: the one that matched more wins.
  runs.clear();
  for (int64_t seed = 1; seed <= 3; ++seed) runs.push_back(run_with("lora", 1e-3, seed, seed == 1 ? 20 : -1, 0.99));
  for (int64_t seed = 1; seed <= 3; ++seed) runs.push_back(run_with("lora", 3e-3, seed, seed == 3 ? -1 : 20, 0.5));
  const auto t = ft::summarize(runs, kSets, rule);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_DOUBLE_EQ(t[0].best_lr, 3e-3);
  EXPECT_EQ(t[0].matched, 2);
  EXPECT_EQ(t[0].match_step.size(), 2u);
  EXPECT_EQ(t[0].ms_per_step.size(), 3u);  // every run that finished, matched or not

  // Rates with different numbers of runs: all of 2 beats 3 of 4.
  runs.clear();
  for (int64_t seed = 1; seed <= 4; ++seed) runs.push_back(run_with("full", 1e-3, seed, seed == 4 ? -1 : 20, 0.99));
  for (int64_t seed = 1; seed <= 2; ++seed) runs.push_back(run_with("full", 2e-3, seed, 20, 0.5));
  const auto u = ft::summarize(runs, kSets, rule);
  EXPECT_DOUBLE_EQ(u[0].best_lr, 2e-3);
  EXPECT_EQ(u[0].runs, 2);
}

TEST(FidelityTrace, SummarizePicksBestRetentionAmongFullyMatched) {
  MatchRule rule;
  std::vector<RunTrace> runs;
  const double keep[3] = {0.80, 0.90, 0.85};
  const double lrs[3] = {1e-3, 2e-3, 4e-3};
  for (int i = 0; i < 3; ++i)
    for (int64_t seed = 1; seed <= 2; ++seed) runs.push_back(run_with("full", lrs[i], seed, 30, keep[i]));
  const auto s = ft::summarize(runs, kSets, rule);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_DOUBLE_EQ(s[0].best_lr, 2e-3);
  ASSERT_EQ(s[0].retain_match.size(), 2u);
  EXPECT_DOUBLE_EQ(s[0].retain_match[0].accuracy, 0.90);

  // Without accuracy on the retained set, the lowest KL wins (KL = 1 - keep).
  const std::vector<SetInfo> kl_only = {{"task-b", SetRole::New, true}, {"text", SetRole::Retain, false}};
  const auto k = ft::summarize(runs, kl_only, rule);
  EXPECT_DOUBLE_EQ(k[0].best_lr, 2e-3);
  EXPECT_TRUE(std::isnan(k[0].retain_match[0].accuracy));
}

TEST(FidelityTrace, SummarizeTieGoesToTheSmallerRate) {
  MatchRule rule;
  std::vector<RunTrace> runs;
  // The larger rate comes first, so first-seen order would pick it.
  for (double lr : {4e-3, 1e-3, 2e-3})
    for (int64_t seed = 1; seed <= 2; ++seed) runs.push_back(run_with("s2ft", lr, seed, 20, 0.9));
  const auto s = ft::summarize(runs, kSets, rule);
  EXPECT_DOUBLE_EQ(s[0].best_lr, 1e-3);

  // Nothing matched anywhere: still the smaller rate.
  runs.clear();
  for (double lr : {4e-3, 2e-3})
    for (int64_t seed = 1; seed <= 2; ++seed) runs.push_back(run_with("s2ft", lr, seed, -1, 0.9));
  const auto n = ft::summarize(runs, kSets, rule);
  EXPECT_DOUBLE_EQ(n[0].best_lr, 2e-3);
  EXPECT_EQ(n[0].matched, 0);
  EXPECT_TRUE(n[0].match_step.empty());
  EXPECT_TRUE(n[0].retain_match.empty());
}

TEST(FidelityTrace, SummarizeNaNRetentionRanksLast) {
  MatchRule rule;
  std::vector<RunTrace> runs;
  // At 1e-3 one seed's retained metrics are NaN (its evaluation failed):
  // the rate cannot be scored, so 2e-3 with poorer retention wins.
  for (int64_t seed = 1; seed <= 2; ++seed) {
    RunTrace r = run_with("s2ft", 1e-3, seed, 20, 0.99);
    if (seed == 2)
      for (TracePoint &p : r.points) p.sets[1] = metrics(NAN, NAN, NAN);
    runs.push_back(r);
  }
  for (int64_t seed = 1; seed <= 2; ++seed) runs.push_back(run_with("s2ft", 2e-3, seed, 20, 0.5));
  EXPECT_DOUBLE_EQ(ft::summarize(runs, kSets, rule)[0].best_lr, 2e-3);
}

TEST(FidelityTrace, SummarizeCountsFailedRunsAsNotMatched) {
  MatchRule rule;
  std::vector<RunTrace> runs;
  // At 1e-3 every trace reaches the target, but seed 2 failed afterwards.
  for (int64_t seed = 1; seed <= 3; ++seed) {
    RunTrace r = run_with("s2ft", 1e-3, seed, 20, 0.99);
    if (seed == 2) r.error = "child killed by signal 9";
    runs.push_back(r);
  }
  for (int64_t seed = 1; seed <= 3; ++seed) runs.push_back(run_with("s2ft", 2e-3, seed, 20, 0.7));
  const auto s = ft::summarize(runs, kSets, rule);
  EXPECT_DOUBLE_EQ(s[0].best_lr, 2e-3);

  // Alone, the failed run is counted but not matched, and not timed.
  runs.resize(3);
  const auto t = ft::summarize(runs, kSets, rule);
  EXPECT_DOUBLE_EQ(t[0].best_lr, 1e-3);
  EXPECT_EQ(t[0].runs, 3);
  EXPECT_EQ(t[0].matched, 2);
  EXPECT_EQ(t[0].match_step.size(), 2u);
  ASSERT_EQ(t[0].ms_per_step.size(), 2u);
  EXPECT_DOUBLE_EQ(t[0].ms_per_step[1], 30.0);  // seed 3's, seed 2 skipped

  // The sizes come from a run that finished, though a failed one came first.
  runs[0].error = "out of memory";
  runs[0].params = 0;
  runs[0].state_bytes = 0;
  const auto f = ft::summarize(runs, kSets, rule);
  EXPECT_EQ(f[0].params, 1003);
  EXPECT_EQ(f[0].state_bytes, 2 * 1024 * 1024);
  EXPECT_EQ(f[0].matched, 1);
}

TEST(FidelityTrace, SummarizeKeepsMethodOrderAndFillsTheSummary) {
  MatchRule rule;
  rule.overtrain = 3;
  std::vector<RunTrace> runs;
  runs.push_back(run_with("zeta", 4e-3, 1, 20, 0.9));
  runs.push_back(run_with("alpha", 1e-3, 1, 20, 0.9));
  runs.push_back(run_with("zeta", 1e-3, 1, 20, 0.5));
  runs.push_back(run_with("zeta", 2e-3, 1, 20, 0.5));
  runs.push_back(run_with("mid", 1e-3, 1, 20, 0.9));
  // zeta's second seed at 4e-3 matches at 30 and its trace ends at 80,
  // before 3 x 30: no over-training point.
  runs.push_back(run_with("zeta", 4e-3, 2, 30, 0.7, 80));
  const std::vector<SetInfo> sets = {
      {"task-b", SetRole::New, true}, {"task-a", SetRole::Retain, true}, {"task-c", SetRole::Contradicted, true}};
  for (RunTrace &r : runs)
    for (TracePoint &p : r.points) p.sets.push_back(metrics(0.125, 3.0, 0.5));

  const auto s = ft::summarize(runs, sets, rule);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[0].method, "zeta");
  EXPECT_EQ(s[1].method, "alpha");
  EXPECT_EQ(s[2].method, "mid");

  const ft::MethodSummary &z = s[0];
  EXPECT_DOUBLE_EQ(z.best_lr, 4e-3);
  EXPECT_EQ(z.runs, 2);
  EXPECT_EQ(z.matched, 2);
  EXPECT_EQ(z.params, 1001);  // the first run at the chosen rate
  EXPECT_EQ(z.state_bytes, 2 * 1024 * 1024);
  ASSERT_EQ(z.ms_per_step.size(), 2u);
  EXPECT_DOUBLE_EQ(z.ms_per_step[0], 10.0);
  EXPECT_DOUBLE_EQ(z.ms_per_step[1], 20.0);
  ASSERT_EQ(z.peak_rss_mib.size(), 2u);
  EXPECT_DOUBLE_EQ(z.peak_rss_mib[0], 101.0);
  EXPECT_DOUBLE_EQ(z.peak_rss_mib[1], 102.0);
  ASSERT_EQ(z.match_step.size(), 2u);
  EXPECT_DOUBLE_EQ(z.match_step[0], 20.0);
  EXPECT_DOUBLE_EQ(z.match_step[1], 30.0);
  ASSERT_EQ(z.retain_match.size(), 2u);
  EXPECT_DOUBLE_EQ(z.retain_match[1].accuracy, 0.7);
  ASSERT_EQ(z.contra_match.size(), 2u);
  EXPECT_DOUBLE_EQ(z.contra_match[0].accuracy, 0.125);
  EXPECT_DOUBLE_EQ(z.contra_match[0].kl, 0.5);
  ASSERT_EQ(z.retain_over.size(), 1u);
  ASSERT_EQ(z.contra_over.size(), 1u);
  EXPECT_DOUBLE_EQ(z.retain_over[0].accuracy, 0.9);
  ASSERT_EQ(z.lrs_tried.size(), 3u);
  EXPECT_DOUBLE_EQ(z.lrs_tried[0], 1e-3);
  EXPECT_DOUBLE_EQ(z.lrs_tried[1], 2e-3);
  EXPECT_DOUBLE_EQ(z.lrs_tried[2], 4e-3);
  EXPECT_EQ(s[1].lrs_tried.size(), 1u);
  EXPECT_TRUE(ft::summarize({}, sets, rule).empty());
}

// ---- formatting -------------------------------------------------------------------

TEST(FidelityTrace, MeanSd) {
  EXPECT_EQ(ft::mean_sd({}, 3), "-");
  EXPECT_EQ(ft::mean_sd({0.5}, 3), "0.500");
  EXPECT_EQ(ft::mean_sd({0.0}, 0), "0");
  EXPECT_EQ(ft::mean_sd({1.0, 2.0, 3.0}, 2), "2.00 ± 1.00");  // sample sd: sqrt(2 / 2)
  EXPECT_EQ(ft::mean_sd({1.0, 3.0}, 1), "2.0 ± 1.4");
  EXPECT_EQ(ft::mean_sd({1.0, NAN, 3.0}, 3), "2.000 ± 1.414");
  EXPECT_EQ(ft::mean_sd({NAN, 4.0}, 1), "4.0");
  EXPECT_EQ(ft::mean_sd({NAN, NAN}, 1), "-");
  EXPECT_EQ(ft::mean_sd({-0.25, -0.75}, 2), "-0.50 ± 0.35");
}

ft::MethodSummary summary_for_report() {
  ft::MethodSummary s;
  s.method = "s2ft";
  s.best_lr = 2e-3;
  s.runs = 3;
  s.matched = 2;
  s.params = 12345;
  s.state_bytes = 3 * 1024 * 1024 / 2;
  s.ms_per_step = {10.0, 12.0, 14.0};
  s.match_step = {100.0, 200.0};
  ft::Retention a, b;
  a.accuracy = 0.9;
  a.kl = 0.01;
  a.loss = 1.0;
  b.accuracy = 0.8;
  b.kl = 0.03;
  b.loss = 2.0;
  s.retain_match = {a, b};
  s.retain_over = {b};
  s.contra_match = {a};
  s.lrs_tried = {5e-4, 1e-3, 2e-3, 4e-3};
  return s;
}

std::vector<std::string> split_lines(const std::string &s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  std::string l;
  while (std::getline(in, l)) out.push_back(l);
  return out;
}

TEST(FidelityTrace, ReportTable) {
  MatchRule rule;
  rule.set = 0;
  rule.target = 0.9;
  rule.overtrain = 3;
  std::ostringstream out;
  ft::print_report(out, {summary_for_report()}, kSets, rule);
  const auto lines = split_lines(out.str());
  ASSERT_EQ(lines.size(), 4u) << out.str();
  EXPECT_EQ(lines[0],
            "| method | trainable params | training state | time/step | best lr (of grid) | steps to match | "
            "retention at match | retention after 3x |");
  EXPECT_EQ(lines[1], "|---|---|---|---|---|---|---|---|");
  EXPECT_EQ(lines[2],
            "| s2ft | 12345 | 1.50 MiB | 12.0 ± 2.0 ms | 2e-03 (5e-04..4e-03) | 150 ± 71 (2/3) | "
            "acc 0.850 ± 0.071, KL 0.0200 ± 0.0141 | acc 0.800, KL 0.0300 |");
  EXPECT_EQ(lines[3],
            "matched learning: the first traced point where task-b accuracy >= 0.9; after 3x: the first traced "
            "point at or after 3x that step; retention = mean over task-a; means ± sd over seeds");
}

TEST(FidelityTrace, ReportContradictedColumnsAndKLOnlyRetention) {
  MatchRule rule;
  rule.by_loss = true;
  rule.target = 0.5;
  rule.overtrain = 4;
  const std::vector<SetInfo> sets = {{"task-b", SetRole::New, true},
                                     {"stories", SetRole::Retain, false},
                                     {"wiki", SetRole::Retain, false},
                                     {"old-b", SetRole::Contradicted, true}};
  ft::MethodSummary s = summary_for_report();
  s.method = "lo|ra";
  s.lrs_tried = {2.5e-3};
  s.best_lr = 2.5e-3;
  std::ostringstream out;
  ft::print_report(out, {s}, sets, rule);
  const auto lines = split_lines(out.str());
  ASSERT_EQ(lines.size(), 4u) << out.str();
  EXPECT_EQ(lines[0],
            "| method | trainable params | training state | time/step | best lr (of grid) | steps to match | "
            "retention at match | retention after 4x | contradicted at match | contradicted after 4x |");
  EXPECT_EQ(lines[1], "|---|---|---|---|---|---|---|---|---|---|");
  EXPECT_EQ(lines[2],
            "| lo\\|ra | 12345 | 1.50 MiB | 12.0 ± 2.0 ms | 2.5e-03 | 150 ± 71 (2/3) | "
            "KL 0.0200 ± 0.0141, loss 1.5000 ± 0.7071 | KL 0.0300, loss 2.0000 | acc 0.900, KL 0.0100 | - |");
  EXPECT_EQ(lines[3],
            "matched learning: the first traced point where task-b loss <= 0.5; after 4x: the first traced point "
            "at or after 4x that step; retention = mean over stories, wiki; contradicted = mean over old-b; "
            "means ± sd over seeds");
}

// ---- CSV --------------------------------------------------------------------------

std::vector<RunTrace> csv_runs() {
  std::vector<RunTrace> runs;
  runs.push_back(run_with("s2ft", 1e-3, 1, 20, 0.9));
  runs.push_back(run_with("s2ft", 2e-3, 1, 30, 0.8, 60));  // no over-training point (90)
  runs.push_back(run_with("full", 1e-3, 7, -1, 0.6, 30));  // never matches
  runs[0].points[1].sets[1].kl = NAN;                       // step 10, task-a
  runs[0].points[0].train_loss = NAN;
  return runs;
}

TEST(FidelityTrace, TracesCsv) {
  TempDir dir;
  const std::string path = dir / "traces.csv";
  const auto runs = csv_runs();
  std::ofstream(path) << "old content\n";  // replaced whole
  ft::write_traces_csv(path, runs, kSets);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const auto lines = read_lines(path);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines[0], "method,lr,seed,step,step_lr,train_loss,set,role,accuracy,loss,kl");
  // (11 + 7 + 4 points) x 2 sets.
  ASSERT_EQ(lines.size(), 1u + 2u * (11u + 7u + 4u));
  for (const std::string &l : lines) EXPECT_EQ(fields(l).size(), 11u) << l;

  const auto first = fields(lines[1]);  // s2ft, step 0, task-b
  EXPECT_EQ(first[0], "s2ft");
  EXPECT_DOUBLE_EQ(std::stod(first[1]), 1e-3);
  EXPECT_EQ(first[2], "1");
  EXPECT_EQ(first[3], "0");
  EXPECT_EQ(first[4], "0");
  EXPECT_EQ(first[5], "");  // NaN train loss
  EXPECT_EQ(first[6], "task-b");
  EXPECT_EQ(first[7], "new");
  EXPECT_DOUBLE_EQ(std::stod(first[8]), 0.2);
  const auto nan_kl = fields(lines[4]);  // s2ft, step 10, task-a
  EXPECT_EQ(nan_kl[3], "10");
  EXPECT_EQ(nan_kl[6], "task-a");
  EXPECT_EQ(nan_kl[7], "retain");
  EXPECT_DOUBLE_EQ(std::stod(nan_kl[8]), 0.9);
  EXPECT_DOUBLE_EQ(std::stod(nan_kl[9]), 1.1);
  EXPECT_EQ(nan_kl[10], "");
  const auto last = fields(lines.back());  // full, seed 7, step 30, task-a
  EXPECT_EQ(last[0], "full");
  EXPECT_EQ(last[2], "7");
  EXPECT_EQ(last[3], "30");
  EXPECT_EQ(last[6], "task-a");
  // Doubles are written so that they read back exactly.
  EXPECT_EQ(std::stod(first[1]), 1e-3);
  EXPECT_EQ(std::stod(fields(lines[3])[5]), 1.0 / 11.0);
}

TEST(FidelityTrace, ResultsCsv) {
  TempDir dir;
  const std::string path = dir / "results.csv";
  const auto runs = csv_runs();
  MatchRule rule;
  rule.target = 0.9;
  const auto summaries = ft::summarize(runs, kSets, rule);
  ASSERT_EQ(summaries.size(), 2u);
  ASSERT_DOUBLE_EQ(summaries[0].best_lr, 1e-3);  // s2ft: both match, 0.9 retains better
  ft::write_results_csv(path, runs, kSets, rule, summaries);
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  const auto lines = read_lines(path);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0],
            "method,lr,seed,params,state_bytes,ms_per_step,peak_rss_mib,match_step,over_step,"
            "new_match,retain_acc_match,retain_loss_match,retain_kl_match,contra_acc_match,"
            "retain_acc_over,retain_loss_over,retain_kl_over,contra_acc_over,best_lr");
  for (const std::string &l : lines) EXPECT_EQ(fields(l).size(), 19u) << l;

  const auto a = fields(lines[1]);
  EXPECT_EQ(a[0], "s2ft");
  EXPECT_EQ(a[2], "1");
  EXPECT_EQ(a[3], "1001");
  EXPECT_EQ(a[4], std::to_string(2 * 1024 * 1024));
  EXPECT_DOUBLE_EQ(std::stod(a[5]), 10.0);
  EXPECT_DOUBLE_EQ(std::stod(a[6]), 101.0);
  EXPECT_EQ(a[7], "20");
  EXPECT_EQ(a[8], "60");
  EXPECT_DOUBLE_EQ(std::stod(a[9]), 0.95);
  EXPECT_DOUBLE_EQ(std::stod(a[10]), 0.9);
  EXPECT_DOUBLE_EQ(std::stod(a[11]), 1.1);
  EXPECT_DOUBLE_EQ(std::stod(a[12]), 0.1);
  EXPECT_EQ(a[13], "");  // no contradicted set
  EXPECT_DOUBLE_EQ(std::stod(a[14]), 0.9);
  EXPECT_EQ(a[17], "");
  EXPECT_EQ(a[18], "1");

  const auto b = fields(lines[2]);  // matched at 30, trace ends at 60 < 90
  EXPECT_EQ(b[7], "30");
  EXPECT_EQ(b[8], "-1");
  EXPECT_DOUBLE_EQ(std::stod(b[10]), 0.8);
  EXPECT_EQ(b[14], "");
  EXPECT_EQ(b[15], "");
  EXPECT_EQ(b[16], "");
  EXPECT_EQ(b[18], "0");

  const auto c = fields(lines[3]);  // never matched; its method's only rate
  EXPECT_EQ(c[0], "full");
  EXPECT_EQ(c[7], "-1");
  EXPECT_EQ(c[8], "-1");
  for (int i = 9; i <= 17; ++i) EXPECT_EQ(c[static_cast<size_t>(i)], "") << "column " << i;
  EXPECT_EQ(c[18], "1");

  // By loss, new_match is the new task's loss at the match point.
  MatchRule by_loss;
  by_loss.by_loss = true;
  by_loss.target = 0.1;
  ft::write_results_csv(path, runs, kSets, by_loss, ft::summarize(runs, kSets, by_loss));
  const auto l = read_lines(path);
  ASSERT_EQ(l.size(), 4u);
  EXPECT_EQ(fields(l[1])[7], "20");
  EXPECT_DOUBLE_EQ(std::stod(fields(l[1])[9]), 1.0 - 0.95);
}

TEST(FidelityTrace, CsvRefusesUnsafeNamesAndReportsIOFailure) {
  TempDir dir;
  const std::string path = dir / "out.csv";
  MatchRule rule;
  for (const char *bad : {"lo,ra", "say \"hi\"", "two\nlines", "cr\r"}) {
    std::vector<RunTrace> runs = {run_with(bad, 1e-3, 1, 20, 0.9)};
    EXPECT_THROW(ft::write_traces_csv(path, runs, kSets), std::invalid_argument) << bad;
    EXPECT_THROW(ft::write_results_csv(path, runs, kSets, rule, ft::summarize(runs, kSets, rule)),
                 std::invalid_argument)
        << bad;
    EXPECT_FALSE(fs::exists(path)) << bad;
    EXPECT_FALSE(fs::exists(path + ".tmp")) << bad;
  }
  const std::vector<SetInfo> bad_sets = {{"b,new", SetRole::New, true}, {"a", SetRole::Retain, true}};
  EXPECT_THROW(ft::write_traces_csv(path, {run_with("s2ft", 1e-3, 1, 20, 0.9)}, bad_sets), std::invalid_argument);
  // A point with more metrics than there are sets has no names for them.
  EXPECT_THROW(ft::write_traces_csv(path, {run_with("s2ft", 1e-3, 1, 20, 0.9)}, {kSets[0]}), std::invalid_argument);

  const std::string missing = (dir.path() / "no" / "such" / "dir" / "t.csv").string();
  try {
    ft::write_traces_csv(missing, csv_runs(), kSets);
    ADD_FAILURE() << "no exception";
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find(missing), std::string::npos) << e.what();
  }
  EXPECT_THROW(ft::write_results_csv(missing, csv_runs(), kSets, rule, {}), std::runtime_error);

  // The temporary file can be written but not renamed over a folder.
  const std::string folder = dir / "taken";
  fs::create_directories(fs::path(folder) / "inside");
  EXPECT_THROW(ft::write_traces_csv(folder, csv_runs(), kSets), std::runtime_error);
  EXPECT_FALSE(fs::exists(folder + ".tmp"));
  EXPECT_TRUE(fs::is_directory(fs::path(folder) / "inside"));
}

// ---- run text ---------------------------------------------------------------------

RunTrace odd_run() {
  RunTrace r;
  r.method = "s2ft, \"quoted\"\nsecond line\r\t% %41 π ✓";
  r.lr = -1.2345678901234567e-300;
  r.seed = std::numeric_limits<int64_t>::min();
  r.params = std::numeric_limits<int64_t>::max();
  r.state_bytes = -1;
  r.peak_rss = 0;
  r.seconds_per_step = std::numeric_limits<double>::denorm_min();
  for (int c = 0; c < 256; ++c) r.error += static_cast<char>(c);  // every byte
  r.checks = "frozen weights: 0 changed\nmerged adapter: max |diff| 1e-7\n";
  r.checks_ok = false;
  r.points.push_back(point(0, {}));
  TracePoint p = point(std::numeric_limits<int64_t>::max(),
                       {metrics(NAN, -NAN, 1.7976931348623157e308), metrics(-0.0, INFINITY, -INFINITY),
                        metrics(0.1, 1.0 / 3.0, 2.2250738585072014e-308)});
  p.lr = 1e300;
  p.train_loss = NAN;
  r.points.push_back(p);
  r.points.push_back(point(-5, {metrics(0.5, 0.25, 0.125)}));
  return r;
}

TEST(FidelityTrace, SerializeRoundTrip) {
  const RunTrace r = odd_run();
  const std::string text = ft::serialize_run(r);
  // The text is lines of plain ASCII whatever the strings hold.
  for (char c : text) EXPECT_TRUE(c == '\n' || (c >= 0x20 && c < 0x7f)) << static_cast<int>(c);
  const RunTrace back = ft::parse_run(text);
  expect_same_run(r, back);
  EXPECT_TRUE(std::signbit(back.points[1].sets[1].accuracy));  // -0.0 kept
  EXPECT_EQ(ft::serialize_run(back), text);

  // The defaults and a run with no points.
  expect_same_run(RunTrace{}, ft::parse_run(ft::serialize_run(RunTrace{})));
  RunTrace empty_strings = run_with("", 0.0, 0, 20, 0.9);
  empty_strings.points.clear();
  expect_same_run(empty_strings, ft::parse_run(ft::serialize_run(empty_strings)));
  // An ordinary run.
  const RunTrace plain = run_with("lora", 2e-3, 3, 40, 0.85);
  expect_same_run(plain, ft::parse_run(ft::serialize_run(plain)));
}

// parse_run must give std::runtime_error, whose message names the problem
// (`want`, where given); anything else (another exception, a crash, a
// sanitizer report) fails the test.
void expect_rejected(const std::string &text, const std::string &why, const std::string &want = "parse_run") {
  try {
    (void)ft::parse_run(text);
    ADD_FAILURE() << "accepted: " << why;
  } catch (const std::runtime_error &e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << why << ": " << e.what();
  }
}

std::string replace_line(const std::string &text, const std::string &prefix, const std::string &with) {
  const size_t at = text.find("\n" + prefix);
  EXPECT_NE(at, std::string::npos) << prefix;
  if (at == std::string::npos) return text;
  const size_t end = text.find('\n', at + 1);
  return text.substr(0, at + 1) + with + text.substr(end);
}

TEST(FidelityTrace, ParseRejectsTruncatedText) {
  const std::string text = ft::serialize_run(odd_run());
  // Every proper prefix, including those cut inside a number, a string
  // escape or before the final line break.
  for (size_t n = 0; n < text.size(); ++n)
    expect_rejected(text.substr(0, n), "prefix of " + std::to_string(n), n == 0 ? "truncated" : "line ");
  expect_rejected(text.substr(0, text.size() - 1), "no final line break", "truncated");
  // Whole lines missing from the middle.
  const std::string plain = ft::serialize_run(run_with("s2ft", 1e-3, 1, 20, 0.9));
  size_t start = 0;
  int removed = 0;
  while (start < plain.size()) {
    const size_t end = plain.find('\n', start);
    expect_rejected(plain.substr(0, start) + plain.substr(end + 1), "line " + std::to_string(removed));
    start = end + 1;
    ++removed;
  }
  EXPECT_GT(removed, 20);
}

TEST(FidelityTrace, ParseRejectsMalformedText) {
  const std::string good = ft::serialize_run(run_with("s2ft", 1e-3, 1, 20, 0.9));
  ASSERT_NO_THROW(ft::parse_run(good));
  expect_rejected("", "empty");
  expect_rejected("hello world\n", "garbage");
  expect_rejected(std::string(1000, '\0'), "zeros");
  expect_rejected("s2ft-run-trace 2" + good.substr(good.find('\n')), "another version");
  expect_rejected(good + "point 1 2 3 4\n", "text after end", "after 'end'");
  expect_rejected(good + "\n", "an empty line after end", "after 'end'");
  // Counts.
  expect_rejected(replace_line(good, "points ", "points 99999999999999999999"), "count overflows int64");
  expect_rejected(replace_line(good, "points ", "points 1000000000000000"), "absurd count", "more than the text holds");
  expect_rejected(replace_line(good, "points ", "points -1"), "negative count");
  expect_rejected(replace_line(good, "points ", "points 12"), "one point too many");
  expect_rejected(replace_line(good, "points ", "points 10"), "one point too few");
  expect_rejected(replace_line(good, "points ", "points 0x10"), "hex count");
  expect_rejected(replace_line(good, "point 0 ", "point 0 0 1 4611686018427387904"), "absurd set count");
  expect_rejected(replace_line(good, "point 0 ", "point 0 0 1 3"), "set count one too many");
  expect_rejected(replace_line(good, "point 0 ", "point 0 0 1"), "too few values");
  expect_rejected(replace_line(good, "point 0 ", "point 0 0 1 2 5"), "too many values");
  expect_rejected(replace_line(good, "point 0 ", "point 0  0 1 2"), "double space", "empty value");
  expect_rejected(replace_line(good, "point 0 ", "point 0 0 1 2 "), "trailing space");
  // Numbers.
  expect_rejected(replace_line(good, "lr ", "lr 1.5x"), "trailing junk in a double");
  expect_rejected(replace_line(good, "lr ", "lr "), "empty double");
  expect_rejected(replace_line(good, "lr ", "lr 1e99999"), "double out of range");
  expect_rejected(replace_line(good, "seed ", "seed 1.5"), "fractional integer");
  expect_rejected(replace_line(good, "seed ", "seed 9223372036854775808"), "integer overflow");
  expect_rejected(replace_line(good, "seed ", "seed +1"), "plus sign");
  expect_rejected(replace_line(good, "checks_ok ", "checks_ok 2"), "bool out of range");
  expect_rejected(replace_line(good, "set ", "set 0.1 0.2"), "set with two values");
  expect_rejected(replace_line(good, "set ", "set 0.1 0.2 zero"), "set with a word");
  // Strings.
  expect_rejected(replace_line(good, "method ", "method bad%"), "escape cut short", "two hex digits");
  expect_rejected(replace_line(good, "method ", "method bad%4"), "escape with one digit", "two hex digits");
  expect_rejected(replace_line(good, "method ", "method bad%G0"), "escape with a non-hex digit", "two hex digits");
  expect_rejected(replace_line(good, "method ", "method bad%0G"), "escape with a non-hex digit", "two hex digits");
  expect_rejected(replace_line(good, "method ", "method caf\xc3\xa9"), "an unescaped non-ASCII byte", "escaped");
  expect_rejected(replace_line(good, "method ", "method tab\there"), "an unescaped control byte", "escaped");
  expect_rejected(replace_line(good, "method ", "method"), "no space after the key");
  expect_rejected(replace_line(good, "method ", "methods x"), "another key");
  // Line breaks other than '\n'.
  std::string crlf;
  for (char c : good) crlf += c == '\n' ? std::string("\r\n") : std::string(1, c);
  expect_rejected(crlf, "CRLF line breaks");
  // Values that read back but are not spelt as serialize_run spells them.
  ASSERT_NE(good.find("\nlr 0.001\n"), std::string::npos);
  expect_rejected(replace_line(good, "lr ", "lr 1e-3"), "another spelling of a double");
  expect_rejected(replace_line(good, "seed ", "seed 01"), "a leading zero");
  expect_rejected(replace_line(good, "state_bytes ", "state_bytes -0"), "minus zero as an integer");
  expect_rejected(replace_line(good, "method ", "method s2f%74"), "an escape that was not needed");
  expect_rejected(replace_line(good, "method ", "method a%0ab"), "a lower-case escape");
  expect_rejected(replace_line(good, "point 0 ", "point 0 0 nan(1) 2"), "a NaN with a payload");
  EXPECT_EQ(ft::parse_run(replace_line(good, "method ", "method a,%25%0Ab")).method, "a,%\nb");
}

TEST(FidelityTrace, ParseSurvivesRandomDamage) {
  const std::string good = ft::serialize_run(odd_run());
  uint64_t state = 12345;
  auto next = [&state]() {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  int rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string t = good;
    const int edits = 1 + static_cast<int>(next() % 4);
    for (int e = 0; e < edits && !t.empty(); ++e) {
      const size_t at = next() % t.size();
      switch (next() % 4) {
        case 0:
          t[at] = static_cast<char>(next() & 0xff);
          break;
        case 1:
          t.erase(at, 1 + next() % 8);
          break;
        case 2:
          t.insert(at, 1, static_cast<char>(next() & 0xff));
          break;
        default:
          t.insert(at, t.substr(next() % t.size(), next() % 32));
          break;
      }
    }
    try {
      (void)ft::parse_run(t);
    } catch (const std::runtime_error &) {
      ++rejected;
    }
  }
  // Most edits break something; the point is that none crashed.
  EXPECT_GT(rejected, 2000);
}

}  // namespace
