// The example's unstructured sparse methods (LIFT, SpIEL-AG, SpIEL-MA):
// how the entries are split over the weights, that the projection's
// gradient is the dense weight gradient at its entries, and what training
// may change: SpIEL resets dropped entries to base, so after any number of
// reselections a weight differs from its base only at its current entries;
// LIFT's first entries are s2ft_lift_select's and its refresh keeps the
// count; everything outside the projections stays bit-identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <vector>

#include "fine_tuning.hpp"
#include "methods.hpp"
#include "rng.hpp"
#include "small_model.hpp"
#include "sparse_method.hpp"
#include "trainer.hpp"

namespace {

using ft::LlamaConfig;
using ft::LlamaModel;
using ft::LlamaWeights;
using ft::Proj;
using ft::SparseKind;

const std::vector<Proj> kAll = {Proj::Q, Proj::K, Proj::V, Proj::O, Proj::GATE, Proj::UP, Proj::DOWN};

using ft_test::Context;
using ft_test::random_batch;

std::vector<int64_t> set_indices(const s2ft_sparse_set *set) {
  int64_t n = 0;
  EXPECT_EQ(s2ft_sparse_set_count(set, &n), S2FT_OK);
  std::vector<int64_t> idx(static_cast<size_t>(n));
  EXPECT_EQ(s2ft_sparse_set_indices(set, idx.data(), n), S2FT_OK);
  return idx;
}

TEST(SparseMethods, CountsFollowOutPlusIn) {
  const LlamaConfig c = ft_test::small_gqa_config();
  const int64_t budget = 700;
  const std::vector<int64_t> n = ft::sparse_counts(c, kAll, budget);
  ASSERT_EQ(n.size(), kAll.size() * static_cast<size_t>(c.n_layers));
  int64_t sum = 0, span = 0;
  for (Proj p : kAll) span += c.out_features(p) + c.in_features(p);
  for (size_t i = 0; i < n.size(); ++i) {
    const Proj p = kAll[i % kAll.size()];
    const double share = budget * static_cast<double>(c.out_features(p) + c.in_features(p)) /
                         static_cast<double>(span * c.n_layers);
    EXPECT_EQ(n[i], std::llround(share)) << i;
    sum += n[i];
  }
  EXPECT_LE(std::llabs(sum - budget), static_cast<long long>(n.size()));
  // At least one entry per weight, at most all of it.
  for (int64_t k : ft::sparse_counts(c, kAll, 1)) EXPECT_EQ(k, 1);
  const std::vector<int64_t> all = ft::sparse_counts(c, {Proj::O}, int64_t{1} << 40);
  for (int64_t k : all) EXPECT_EQ(k, c.out_features(Proj::O) * c.in_features(Proj::O));
  EXPECT_THROW(ft::sparse_counts(c, {}, 10), std::invalid_argument);
}

TEST(SparseMethods, ProjectionGradientIsTheDenseGradientAtItsEntries) {
  Context ctx;
  const int64_t out = 7, in = 11, n = 5;
  ft::Rng rng(3);
  std::vector<float> w(out * in), x(n * in), dy(n * out);
  for (float &v : w) v = static_cast<float>(rng.normal());
  for (float &v : x) v = static_cast<float>(rng.normal());
  for (float &v : dy) v = static_cast<float>(rng.normal());
  const std::vector<int64_t> idx = {0, 5, 12, 40, 76};
  ft::SparseProjection p(ctx.ctx, w.data(), out, in, idx);
  std::vector<float> y(n * out, NAN), dx(n * in, NAN);
  p.forward(x.data(), n, y.data(), true);
  p.zero_grad();
  p.backward(dy.data(), n, dx.data(), false);
  const s2ft_tensor g = p.grad_tensor();
  const float *grad = static_cast<const float *>(g.data);
  for (size_t j = 0; j < idx.size(); ++j) {
    const int64_t r = idx[j] / in, col = idx[j] % in;
    double ref = 0.0;
    for (int64_t t = 0; t < n; ++t) ref += double(dy[t * out + r]) * double(x[t * in + col]);
    EXPECT_NEAR(grad[j], ref, 1e-5 * (1.0 + std::fabs(ref))) << j;
  }
  for (int64_t t = 0; t < n; ++t)
    for (int64_t col = 0; col < in; ++col) {
      double ref = 0.0;
      for (int64_t r = 0; r < out; ++r) ref += double(dy[t * out + r]) * double(w[r * in + col]);
      EXPECT_NEAR(dx[t * in + col], ref, 1e-5 * (1.0 + std::fabs(ref)));
    }
  EXPECT_THROW(ft::SparseProjection(ctx.ctx, w.data(), out, in, {}), std::invalid_argument);
}

struct TrainedRun {
  LlamaWeights<float> base, trained;
  std::vector<std::vector<int64_t>> sets;  // each projection's entries after training
  ft::SparseFineTuning::Stats stats;
  int64_t params = 0;
};

TrainedRun train_sparse(const ft::SparseSettings &s, int64_t steps) {
  const LlamaConfig c = ft_test::small_gqa_config();
  Context ctx;
  TrainedRun r;
  r.base = ft::random_weights<float>(c, 11);
  r.trained = r.base;
  LlamaModel<float> model(c, r.trained);
  ft::SparseFineTuning m(ctx.ctx, ft::OptimizerSettings{}, s);
  m.attach(model);
  ft::TrainSettings ts;
  ts.steps = steps;
  ts.lr = 1e-2;
  ts.warmup_steps = 1;
  const ft::TrainStats st =
      ft::train(model, m, [&](int64_t step) { return random_batch(c, 2, 6, 100 + static_cast<uint64_t>(step)); }, ts);
  EXPECT_EQ(st.losses.size(), static_cast<size_t>(steps));
  for (const ft::SparseProjection *p : m.projections()) r.sets.push_back(set_indices(p->set()));
  r.stats = m.stats();
  r.params = m.trainable_parameters();
  return r;
}

// Every weight outside the projections is bit-identical; a projection weight
// differs from its base only at `allowed` entries (when given), and somewhere.
void expect_changes_within(const TrainedRun &r, bool check_sets) {
  const LlamaConfig c = ft_test::small_gqa_config();
  EXPECT_EQ(r.trained.embed, r.base.embed);
  EXPECT_EQ(r.trained.lm_head, r.base.lm_head);
  EXPECT_EQ(r.trained.final_norm, r.base.final_norm);
  size_t at = 0;
  int64_t changed = 0;
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const auto &b = r.base.layers[static_cast<size_t>(l)], &t = r.trained.layers[static_cast<size_t>(l)];
    EXPECT_EQ(t.attn_norm, b.attn_norm);
    EXPECT_EQ(t.ffn_norm, b.ffn_norm);
    for (Proj p : kAll) {
      const std::set<int64_t> allowed(r.sets[at].begin(), r.sets[at].end());
      ++at;
      const std::vector<float> &bw = b.weight(p), &tw = t.weight(p);
      for (size_t i = 0; i < bw.size(); ++i) {
        if (bw[i] == tw[i]) continue;
        ++changed;
        if (check_sets) {
          EXPECT_TRUE(allowed.count(static_cast<int64_t>(i)))
              << "layer " << l << " " << ft::proj_name(p) << " entry " << i;
        }
      }
    }
  }
  EXPECT_GT(changed, 0);
}

TEST(SparseMethods, LiftTrainsItsPrincipalEntriesOnly) {
  const LlamaConfig c = ft_test::small_gqa_config();
  ft::SparseSettings s;
  s.kind = SparseKind::Lift;
  s.budget = 300;
  s.lift_rank = 2;
  const TrainedRun r = train_sparse(s, 6);
  expect_changes_within(r, true);
  int64_t total = 0;
  for (int64_t k : ft::sparse_counts(c, kAll, s.budget)) total += k;
  EXPECT_EQ(r.params, total);
  EXPECT_EQ(r.stats.refreshes, 0);
  // The entries are LIFT's principal weights of the base weights.
  Context ctx;
  size_t at = 0;
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (Proj p : kAll) {
      std::vector<float> w = r.base.layers[static_cast<size_t>(l)].weight(p);
      s2ft_tensor t;
      ASSERT_EQ(s2ft_tensor_cpu_f32_2d(&t, w.data(), c.out_features(p), c.in_features(p)), S2FT_OK);
      s2ft_lift_options o;
      ASSERT_EQ(s2ft_lift_options_init(&o, S2FT_LIFT_OPTIONS_VERSION), S2FT_OK);
      o.rank = 2;
      o.count = static_cast<int64_t>(r.sets[at].size());
      std::vector<int64_t> idx(r.sets[at].size());
      int64_t got = 0;
      ASSERT_EQ(s2ft_lift_select(ctx.ctx, &t, &o, idx.data(), o.count, &got), S2FT_OK);
      EXPECT_EQ(idx, r.sets[at]) << l << " " << ft::proj_name(p);
      ++at;
    }
}

TEST(SparseMethods, LiftRefreshKeepsTheCount) {
  ft::SparseSettings s;
  s.kind = SparseKind::Lift;
  s.budget = 300;
  s.lift_rank = 2;
  s.refresh_every = 3;
  const TrainedRun r = train_sparse(s, 7);
  EXPECT_EQ(r.stats.refreshes, 2);  // after steps 3 and 6
  int64_t total = 0;
  for (const auto &set : r.sets) total += static_cast<int64_t>(set.size());
  EXPECT_EQ(r.params, total);
  expect_changes_within(r, false);  // entries that left keep their trained values, as in LIFT
}

TEST(SparseMethods, SpielMovesEntriesAndResetsTheDropped) {
  for (SparseKind kind : {SparseKind::SpielAg, SparseKind::SpielMa}) {
    SCOPED_TRACE(ft::sparse_kind_name(kind));
    ft::SparseSettings s;
    s.kind = kind;
    s.budget = 300;
    s.reselect_every = 4;
    s.accumulate = 2;
    s.total_steps = 12;
    s.seed = 5;
    const TrainedRun r = train_sparse(s, 12);
    // Reselections after steps 2 (p = 1: the random start replaced), 6
    // (p = 0.2 (1 - 6/12) = 0.1: about 2 of ~21 entries per weight) and 10
    // (p = 0.2 (1 - 10/12): floor(p k) = 0, nothing moves).
    EXPECT_EQ(r.stats.refreshes, 2);
    EXPECT_GT(r.stats.replaced, 0);
    expect_changes_within(r, true);  // dropped entries are back at their base values
  }
}

TEST(SparseMethods, TheComparisonListsThemWithS2ftsBudget) {
  const LlamaConfig c = ft_test::small_gqa_config();
  ft::StandardMethods o;
  o.s2ft.count[S2FT_TARGET_O] = 1;
  o.s2ft.count[S2FT_TARGET_DOWN] = 4;
  o.full_grid = o.lora_grid = o.s2ft_grid = {1e-3};
  o.run_steps = 50;
  const std::vector<ft::MethodSpec> m = ft::standard_methods(c, o);
  const int64_t matched = ft::s2ft_parameter_count(c, m[3].s2ft);
  int found = 0;
  for (const ft::MethodSpec &x : m) {
    if (x.kind != ft::MethodKind::Sparse) continue;
    ++found;
    EXPECT_EQ(x.name, ft::sparse_kind_name(x.sparse.kind));
    EXPECT_EQ(x.sparse.budget, matched);
    EXPECT_EQ(x.sparse.total_steps, 50);
    EXPECT_EQ(x.sparse.targets.size(), kAll.size());
  }
  EXPECT_EQ(found, 3);
}

}  // namespace
