// The fidelity protocol's working parts on small models: the evaluation
// metrics against a float64 reference (KL(base || tuned) is 0 for the base
// itself and matches the formula otherwise), the method table (LoRA ranks
// matched to S2FT's parameter count, rate grids, names), the weights cache
// (round trip, and a damaged or foreign file is ignored, never trusted), and
// the forked run pool (results in order, a throwing or dying run is a failed
// run, not a dead comparison).
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "evaluation.hpp"
#include "fine_tuning.hpp"
#include "llama_model.hpp"
#include "methods.hpp"
#include "small_model.hpp"
#include "run_pool.hpp"
#include "synthetic_tasks.hpp"
#include "weights_cache.hpp"

namespace {

namespace fs = std::filesystem;
using ft::LlamaConfig;
using ft::LlamaModel;
using ft::LlamaWeights;
using ft::Proj;

LlamaConfig small_config() { return ft_test::small_gqa_config(); }

ft::Batch batch_with_targets(const LlamaConfig &c, uint64_t seed) {
  ft::Rng rng(seed);
  ft::Batch b;
  b.batch = 3;
  b.seq = 7;
  for (int64_t i = 0; i < b.batch * b.seq; ++i) {
    b.tokens.push_back(static_cast<int32_t>(rng.below(c.vocab)));
    // Some positions are not scored.
    b.targets.push_back(i % 3 == 1 ? -1 : static_cast<int32_t>(rng.below(c.vocab)));
  }
  return b;
}

// Accuracy, cross-entropy and KL(p || q) computed directly in double from
// both models' logits.
ft::SetMetrics reference_metrics(LlamaModel<float> &base, LlamaModel<float> &tuned, const ft::Batch &b) {
  const int64_t v = base.config().vocab;
  base.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
  const std::vector<float> zb = base.logits();
  tuned.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
  const std::vector<float> zt = tuned.logits();
  double right = 0, loss = 0, kl = 0, n = 0;
  for (size_t p = 0; p < b.targets.size(); ++p) {
    if (b.targets[p] < 0) continue;
    std::vector<double> pb(v), pt(v);
    double sb = 0, st = 0;
    for (int64_t i = 0; i < v; ++i) {
      pb[i] = std::exp(static_cast<double>(zb[p * v + i]));
      pt[i] = std::exp(static_cast<double>(zt[p * v + i]));
      sb += pb[i];
      st += pt[i];
    }
    int64_t arg = 0;
    for (int64_t i = 0; i < v; ++i) {
      pb[i] /= sb;
      pt[i] /= st;
      if (zt[p * v + i] > zt[p * v + arg]) arg = i;
      kl += pb[i] * std::log(pb[i] / pt[i]);
    }
    right += arg == b.targets[p];
    loss -= std::log(pt[static_cast<size_t>(b.targets[p])]);
    ++n;
  }
  return {right / n, loss / n, kl / n};
}

TEST(FidelityParts, MetricsMatchAFloat64Reference) {
  const LlamaConfig c = small_config();
  LlamaWeights<float> wb = ft::random_weights<float>(c, 3);
  LlamaWeights<float> wt = ft::random_weights<float>(c, 4);  // a different model
  LlamaModel<float> base(c, wb), tuned(c, wt);
  ft::EvalSet set;
  set.info = {"s", ft::SetRole::Retain, true};
  set.batches = {batch_with_targets(c, 1), batch_with_targets(c, 2)};
  ft::record_base(base, set);
  ASSERT_EQ(set.base_log_probs.size(), 2u);

  const ft::SetMetrics self = ft::evaluate(base, set);
  EXPECT_NEAR(self.kl, 0.0, 1e-6);

  const ft::SetMetrics m = ft::evaluate(tuned, set);
  // The reference over both batches: every batch has the same number of scored positions.
  const ft::SetMetrics r1 = reference_metrics(base, tuned, set.batches[0]);
  const ft::SetMetrics r2 = reference_metrics(base, tuned, set.batches[1]);
  EXPECT_NEAR(m.accuracy, (r1.accuracy + r2.accuracy) / 2, 1e-12);
  EXPECT_NEAR(m.loss, (r1.loss + r2.loss) / 2, 1e-5 * std::abs(r1.loss));
  EXPECT_GT(m.kl, 1e-3);
  EXPECT_NEAR(m.kl, (r1.kl + r2.kl) / 2, 1e-5 * std::abs(r1.kl) + 1e-6);

  // Without base log-probabilities there is no KL; without accuracy, none either.
  ft::EvalSet plain = set;
  plain.base_log_probs.clear();
  plain.info.has_accuracy = false;
  const ft::SetMetrics p = ft::evaluate(tuned, plain);
  EXPECT_TRUE(std::isnan(p.kl));
  EXPECT_TRUE(std::isnan(p.accuracy));
  EXPECT_NEAR(p.loss, m.loss, 1e-12);

  // Base log-probabilities of another set are refused, not read out of bounds.
  ft::EvalSet wrong = set;
  wrong.base_log_probs[1].resize(3);
  EXPECT_THROW(ft::evaluate(tuned, wrong), std::logic_error);
}

TEST(FidelityParts, AccuracyAgreesWithTheTasksOwnMeasure) {
  const ft::SyntheticTasks tasks(8, 3, 5);
  LlamaConfig c = small_config();
  c.vocab = tasks.vocab();
  LlamaWeights<float> w = ft::random_weights<float>(c, 6);
  LlamaModel<float> model(c, w);
  ft::Rng rng(9);
  ft::EvalSet set;
  set.info = {"B", ft::SetRole::New, true};
  set.batches = {tasks.sample(ft::Task::B, 16, rng), tasks.sample(ft::Task::B, 16, rng)};
  EXPECT_DOUBLE_EQ(ft::evaluate(model, set).accuracy, ft::SyntheticTasks::accuracy(model, set.batches));
}

TEST(FidelityParts, TheSplitCopyTasksUseTheirHalves) {
  const ft::SyntheticTasks tasks(10, 4, 5);
  ft::Rng rng(3);
  for (const auto &[task, lo, hi] : {std::make_tuple(ft::Task::C_LOW, 0, 5), std::make_tuple(ft::Task::C_HIGH, 5, 10)}) {
    const ft::Batch b = tasks.sample(task, 32, rng);
    for (int64_t r = 0; r < b.batch; ++r) {
      const int32_t *row = b.tokens.data() + r * b.seq;
      EXPECT_EQ(row[0], ft::SyntheticTasks::kMarker2);
      for (int64_t i = 0; i < 4; ++i) {
        const int64_t x = row[1 + i] - ft::SyntheticTasks::kFirstSymbol;
        EXPECT_GE(x, lo);
        EXPECT_LT(x, hi);
        EXPECT_EQ(row[6 + i], row[1 + i]);  // copied
      }
    }
  }
}

TEST(FidelityParts, MethodTableMatchesParametersAndRates) {
  LlamaConfig c = small_config();
  EXPECT_EQ(ft::lora_parameters_per_rank(c, {Proj::O, Proj::DOWN}),
            c.n_layers * (c.in_features(Proj::O) + c.out_features(Proj::O) + c.in_features(Proj::DOWN) +
                          c.out_features(Proj::DOWN)));
  const int64_t per = ft::lora_parameters_per_rank(c, ft::LoraFineTuning::kPaperTargets);
  EXPECT_EQ(ft::lora_rank_matching(c, ft::LoraFineTuning::kPaperTargets, 3 * per + per / 3), 3);
  EXPECT_EQ(ft::lora_rank_matching(c, ft::LoraFineTuning::kPaperTargets, 1), 1);  // at least 1
  EXPECT_THROW(ft::lora_rank_matching(c, {}, 100), std::invalid_argument);

  const std::vector<double> g = ft::rate_grid(1e-3, 2, 1);
  ASSERT_EQ(g.size(), 4u);
  EXPECT_DOUBLE_EQ(g[0], 2.5e-4);
  EXPECT_DOUBLE_EQ(g[3], 2e-3);
  EXPECT_THROW(ft::rate_grid(0.0, 1, 1), std::invalid_argument);

  ft::StandardMethods o;
  o.full_grid = {1e-4, 2e-4, 4e-4};
  o.lora_grid = o.s2ft_grid = {1e-3, 2e-3};
  o.best = {{"lora-od", 1e-3}};
  const std::vector<ft::MethodSpec> m = ft::standard_methods(c, o);
  std::vector<std::string> names;
  for (const auto &x : m) names.push_back(x.name);
  EXPECT_EQ(names, (std::vector<std::string>{"full", "lora-qkvud", "lora-od", "s2ft-random-small", "s2ft-act-min-small",
                                             "s2ft-random-large", "s2ft-act-min-large", "lift", "spiel-ag", "spiel-ma",
                                             "sorsa"}));
  EXPECT_EQ(m[0].lrs, std::vector<double>{2e-4});  // the grid's middle when no best is given
  EXPECT_EQ(m[2].lrs, std::vector<double>{1e-3});  // the named best
  // LoRA's ranks are matched to S2FT's small budget.
  const int64_t s2ft_small = ft::s2ft_parameter_count(c, m[3].s2ft);
  for (int i : {1, 2})
    EXPECT_EQ(m[i].lora_rank, ft::lora_rank_matching(c, m[i].lora_targets, s2ft_small));
  EXPECT_GT(ft::s2ft_parameter_count(c, m[5].s2ft), s2ft_small);  // the large budget
  EXPECT_EQ(m[3].s2ft.strategy, S2FT_STRATEGY_RANDOM);
  EXPECT_EQ(m[4].s2ft.strategy, S2FT_STRATEGY_ACTIVATION);

  o.grid = true;
  o.lr_scale = 2.0;
  EXPECT_EQ(ft::standard_methods(c, o)[0].lrs, (std::vector<double>{2e-4, 4e-4, 8e-4}));
  EXPECT_EQ(ft::pick_methods(m, {"lora-od", "full"})[0].name, "lora-od");
  EXPECT_EQ(ft::pick_methods(m, {}).size(), m.size());
  EXPECT_THROW(ft::pick_methods(m, {"nope"}), std::invalid_argument);

  // The bookkeeping of a built method agrees with the table.
  s2ft_context *ctx = nullptr;
  ASSERT_EQ(s2ft_context_create(nullptr, &ctx), S2FT_OK);
  LlamaWeights<float> w = ft::random_weights<float>(c, 2);
  LlamaModel<float> model(c, w);
  auto lora = ft::make_method(ctx, m[2], {}, 1);
  lora->attach(model);
  EXPECT_EQ(lora->trainable_parameters(), m[2].lora_rank * ft::lora_parameters_per_rank(c, m[2].lora_targets));
  lora.reset();
  s2ft_context_destroy(ctx);
}

TEST(FidelityParts, WeightsCacheRoundTripsAndIgnoresForeignFiles) {
  const LlamaConfig c = small_config();
  const fs::path dir = fs::temp_directory_path() / ("s2ft-weights-cache-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string path = (dir / "w.bin").string();
  LlamaWeights<float> w = ft::random_weights<float>(c, 8);
  const uint64_t key = ft::cache_key("settings A");
  EXPECT_NE(key, ft::cache_key("settings B"));
  ft::save_cached_weights(path, key, w);

  LlamaWeights<float> back;
  ASSERT_TRUE(ft::load_cached_weights(path, key, c, back));
  EXPECT_EQ(back.embed, w.embed);
  EXPECT_EQ(back.lm_head, w.lm_head);
  EXPECT_EQ(back.layers[1].down, w.layers[1].down);
  EXPECT_EQ(back.layers[0].ffn_norm, w.layers[0].ffn_norm);

  LlamaWeights<float> untouched = w;
  EXPECT_FALSE(ft::load_cached_weights(path, key + 1, c, untouched));  // another key
  LlamaConfig other = c;
  other.d_ff = 32;
  EXPECT_FALSE(ft::load_cached_weights(path, key, other, untouched));  // another shape
  EXPECT_FALSE(ft::load_cached_weights((dir / "missing.bin").string(), key, c, untouched));
  // Damaged: truncated, extended, garbage.
  const auto size = fs::file_size(path);
  fs::resize_file(path, size - 4);
  EXPECT_FALSE(ft::load_cached_weights(path, key, c, untouched));
  fs::resize_file(path, size + 4);
  EXPECT_FALSE(ft::load_cached_weights(path, key, c, untouched));
  { std::ofstream(path, std::ios::trunc) << "not a cache"; }
  EXPECT_FALSE(ft::load_cached_weights(path, key, c, untouched));
  EXPECT_FALSE(ft::load_cached_weights(dir.string(), key, c, untouched));  // a folder
  EXPECT_EQ(untouched.embed, w.embed);  // never partly overwritten
  fs::remove_all(dir);
}

ft::RunTrace run_named(const std::string &name) {
  ft::RunTrace r;
  r.method = name;
  r.points.resize(1);
  r.points[0].sets = {{0.5, 1.0, 0.25}};
  return r;
}

TEST(FidelityParts, RunPoolKeepsOrderAndSurvivesFailingRuns) {
  for (bool fork_runs : {true, false}) {
    std::vector<ft::RunFn> runs;
    for (int i = 0; i < 5; ++i) runs.push_back([i]() { return run_named("run" + std::to_string(i)); });
    runs.push_back([]() -> ft::RunTrace { throw std::runtime_error("bad settings"); });
    if (fork_runs) {
      runs.push_back([]() -> ft::RunTrace { std::abort(); });       // a crash
      runs.push_back([]() -> ft::RunTrace { _exit(7); });           // dies without a result
    }
    std::vector<size_t> done;
    const std::vector<ft::RunTrace> out =
        ft::run_all(runs, 3, fork_runs, [&](size_t i, const ft::RunTrace &) { done.push_back(i); });
    ASSERT_EQ(out.size(), runs.size());
    EXPECT_EQ(done.size(), runs.size());
    for (int i = 0; i < 5; ++i) {
      EXPECT_EQ(out[i].method, "run" + std::to_string(i));
      EXPECT_TRUE(out[i].error.empty());
      ASSERT_EQ(out[i].points.size(), 1u);
      EXPECT_EQ(out[i].points[0].sets[0].kl, 0.25);
    }
    EXPECT_EQ(out[5].error, "bad settings");
    if (fork_runs) {
      EXPECT_NE(out[6].error.find("signal"), std::string::npos) << out[6].error;
      EXPECT_NE(out[7].error.find("exit status 7"), std::string::npos) << out[7].error;
    }
  }
}

}  // namespace
