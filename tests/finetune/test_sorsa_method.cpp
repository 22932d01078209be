// SORSA in the example (sorsa_projection.*, sorsa_method.*): the split
// leaves the model's function unchanged; the projection's forward and
// backward are those of W_res + U diag(S) V^T, checked against a plain
// float64 reference; training lowers the loss while the decoupled
// regularizer keeps U and V near orthonormal (and is a no-op at gamma 0);
// the parameter count and the rank matched to S2FT's small budget.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "comparison.hpp"
#include "fine_tuning.hpp"
#include "methods.hpp"
#include "rng.hpp"
#include "small_model.hpp"
#include "sorsa_method.hpp"
#include "trainer.hpp"

namespace {

using ft::LlamaConfig;
using ft::LlamaModel;
using ft::LlamaWeights;
using ft::Proj;
using ft_test::Context;
using ft_test::random_batch;

std::vector<float> normal_values(size_t n, ft::Rng &rng) {
  std::vector<float> v(n);
  for (float &x : v) x = static_cast<float>(rng.normal());
  return v;
}

double max_abs(const std::vector<float> &v) {
  double m = 0.0;
  for (float x : v) m = std::max(m, std::fabs(static_cast<double>(x)));
  return m;
}

// ||U^T U - I||_F and ||V^T V - I||_F (V^T = vt) in double.
double gram_error(const float *a, int64_t rows, int64_t cols, bool columns) {
  const int64_t r = columns ? cols : rows, len = columns ? rows : cols;
  auto at = [&](int64_t k, int64_t i) { return static_cast<double>(columns ? a[i * cols + k] : a[k * cols + i]); };
  double sum = 0.0;
  for (int64_t j = 0; j < r; ++j)
    for (int64_t k = 0; k < r; ++k) {
      double g = 0.0;
      for (int64_t i = 0; i < len; ++i) g += at(j, i) * at(k, i);
      const double e = g - (j == k ? 1.0 : 0.0);
      sum += e * e;
    }
  return std::sqrt(sum);
}

double worst_gram_error(const ft::SorsaFineTuning &m) {
  double worst = 0.0;
  for (const ft::SorsaProjection *p : m.projections()) {
    worst = std::max(worst, gram_error(p->u.data(), p->out(), p->rank(), true));
    worst = std::max(worst, gram_error(p->vt.data(), p->rank(), p->in(), false));
  }
  return worst;
}

ft::SorsaSettings settings(int64_t rank, double gamma = ft::kSorsaGammaPerLr) {
  ft::SorsaSettings s;
  s.rank = rank;
  s.gamma = gamma;
  return s;
}

TEST(SorsaMethod, AttachKeepsTheModelsOutputs) {
  const LlamaConfig c = ft_test::small_gqa_config();
  Context ctx;
  const LlamaWeights<float> base = ft::random_weights<float>(c, 21);
  LlamaWeights<float> wb = base, ws = base;
  LlamaModel<float> untouched(c, wb), split(c, ws);
  ft::SorsaFineTuning m(ctx.ctx, ft::OptimizerSettings{}, settings(3));
  m.attach(split);
  ASSERT_EQ(m.projections().size(), ft::kSorsaTargets.size() * static_cast<size_t>(c.n_layers));

  const ft::Batch b = random_batch(c, 3, 9, 5);
  untouched.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
  split.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
  const std::vector<float> &lu = untouched.logits(), &ls = split.logits();
  ASSERT_EQ(lu.size(), ls.size());
  double diff = 0.0;
  for (size_t i = 0; i < lu.size(); ++i) diff = std::max(diff, std::fabs(static_cast<double>(lu[i]) - ls[i]));
  EXPECT_LE(diff, 1e-4 * max_abs(lu));

  // The weights became residuals that, with the factors, give the weights
  // back; nothing outside the projections changed.
  size_t at = 0;
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (Proj p : ft::kSorsaTargets) {
      const ft::SorsaProjection &sp = *m.projections()[at++];
      const std::vector<float> &w0 = base.layers[static_cast<size_t>(l)].weight(p);
      const std::vector<float> &wr = ws.layers[static_cast<size_t>(l)].weight(p);
      EXPECT_NE(wr, w0);
      const int64_t out = c.out_features(p), in = c.in_features(p), r = sp.rank();
      double worst = 0.0;
      for (int64_t o = 0; o < out; ++o)
        for (int64_t i = 0; i < in; ++i) {
          double v = wr[static_cast<size_t>(o * in + i)];
          for (int64_t k = 0; k < r; ++k)
            v += double(sp.u[static_cast<size_t>(o * r + k)]) * sp.s[static_cast<size_t>(k)] *
                 sp.vt[static_cast<size_t>(k * in + i)];
          worst = std::max(worst, std::fabs(v - w0[static_cast<size_t>(o * in + i)]));
        }
      EXPECT_LE(worst, 1e-5 * max_abs(w0)) << l << " " << ft::proj_name(p);
      // Singular values in descending order, factors orthonormal.
      for (int64_t k = 1; k < r; ++k) EXPECT_GE(sp.s[static_cast<size_t>(k - 1)], sp.s[static_cast<size_t>(k)]);
      EXPECT_LE(gram_error(sp.u.data(), out, r, true), 1e-5);
      EXPECT_LE(gram_error(sp.vt.data(), r, in, false), 1e-5);
    }
  EXPECT_EQ(ws.embed, base.embed);
  EXPECT_EQ(ws.lm_head, base.lm_head);
  EXPECT_EQ(ws.final_norm, base.final_norm);
  EXPECT_EQ(ws.layers[0].attn_norm, base.layers[0].attn_norm);
}

TEST(SorsaMethod, ProjectionMatchesAFloat64Reference) {
  Context ctx;
  const int64_t out = 9, in = 13, r = 3, n = 6;
  ft::Rng rng(17);
  const std::vector<float> w0 = normal_values(out * in, rng), x = normal_values(n * in, rng),
                           dy = normal_values(n * out, rng);
  std::vector<float> w = w0;
  ft::SorsaProjection p(ctx.ctx, w.data(), out, in, r);
  EXPECT_EQ(p.rank(), r);

  // W_eff = W_res + U diag(S) V^T and dW = dy^T x, in double.
  std::vector<double> weff(out * in), dw(out * in, 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      double v = w[o * in + i];
      for (int64_t k = 0; k < r; ++k) v += double(p.u[o * r + k]) * p.s[k] * p.vt[k * in + i];
      weff[o * in + i] = v;
      for (int64_t t = 0; t < n; ++t) dw[o * in + i] += double(dy[t * out + o]) * x[t * in + i];
    }
  auto near = [](double got, double ref, double scale) { return std::fabs(got - ref) <= 1e-4 * scale; };

  std::vector<float> y(n * out, NAN);
  p.forward(x.data(), n, y.data(), true);
  EXPECT_EQ(p.saved_bytes(), static_cast<int64_t>((n * in + n * r) * sizeof(float)));
  std::vector<double> yref(n * out, 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t o = 0; o < out; ++o)
      for (int64_t i = 0; i < in; ++i) yref[t * out + o] += double(x[t * in + i]) * weff[o * in + i];
  double yscale = 0.0;
  for (double v : yref) yscale = std::max(yscale, std::fabs(v));
  for (size_t j = 0; j < y.size(); ++j) {
    EXPECT_TRUE(near(y[j], yref[j], yscale)) << j << ": " << y[j] << " vs " << yref[j];
    // The split reproduces the original weight's output too.
    double orig = 0.0;
    for (int64_t i = 0; i < in; ++i) orig += double(x[(j / out) * in + i]) * w0[(j % out) * in + i];
    EXPECT_TRUE(near(y[j], orig, yscale)) << j;
  }

  std::vector<float> dx(n * in, NAN);
  p.zero_grad();
  p.backward(dy.data(), n, dx.data(), false);
  // dx = dy W_eff; with W_p = U S V^T: dU = dW V S, dS_k = u_k^T dW v_k, dV^T = S U^T dW.
  std::vector<double> dxref(n * in, 0.0), du(out * r, 0.0), ds(r, 0.0), dvt(r * in, 0.0);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t i = 0; i < in; ++i)
      for (int64_t o = 0; o < out; ++o) dxref[t * in + i] += double(dy[t * out + o]) * weff[o * in + i];
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i)
      for (int64_t k = 0; k < r; ++k) {
        du[o * r + k] += dw[o * in + i] * p.vt[k * in + i] * p.s[k];
        ds[k] += double(p.u[o * r + k]) * dw[o * in + i] * p.vt[k * in + i];
        dvt[k * in + i] += double(p.s[k]) * p.u[o * r + k] * dw[o * in + i];
      }
  auto check = [&](const std::vector<float> &got, const std::vector<double> &ref, const char *what) {
    ASSERT_EQ(got.size(), ref.size()) << what;
    double scale = 0.0;
    for (double v : ref) scale = std::max(scale, std::fabs(v));
    for (size_t j = 0; j < got.size(); ++j) EXPECT_TRUE(near(got[j], ref[j], scale)) << what << " " << j;
  };
  check(dx, dxref, "dx");
  check(p.grad_u, du, "du");
  check(p.grad_s, ds, "ds");
  check(p.grad_vt, dvt, "dvt");

  // A second backward adds to the gradients and, when asked, to dx; an
  // evaluation forward in between does not disturb what it saved.
  std::vector<float> yeval(n * out);
  p.forward(dx.data(), n, yeval.data(), false);
  std::vector<float> dx2 = dx;
  p.backward(dy.data(), n, dx2.data(), true);
  for (size_t j = 0; j < dx2.size(); ++j) EXPECT_NEAR(dx2[j], 2.0 * dx[j], 1e-5 * (1.0 + std::fabs(dx[j])));
  for (size_t j = 0; j < du.size(); ++j) EXPECT_NEAR(p.grad_u[j], 2.0 * du[j], 2e-4 * (1.0 + std::fabs(du[j])));
  p.zero_grad();
  EXPECT_EQ(max_abs(p.grad_u) + max_abs(p.grad_s) + max_abs(p.grad_vt), 0.0);

  EXPECT_THROW(ft::SorsaProjection(ctx.ctx, w.data(), out, in, 0), std::invalid_argument);
  EXPECT_THROW(ft::SorsaProjection(ctx.ctx, w.data(), out, in, out + 1), std::invalid_argument);
}

struct SorsaRun {
  std::vector<double> losses;
  double gram_error = 0.0;
  double reported_error = 0.0;
};

// Trains the small model on one fixed batch (so the loss must fall) at a
// high rate, where AdamW moves the factors far from orthonormal (the
// regularizer's rate is 13.3 x 1e-2, below the 1/4 where its step would
// overshoot).
SorsaRun train_sorsa(double gamma, int64_t steps) {
  const LlamaConfig c = ft_test::small_gqa_config();
  Context ctx;
  LlamaWeights<float> w = ft::random_weights<float>(c, 31);
  LlamaModel<float> model(c, w);
  ft::SorsaFineTuning m(ctx.ctx, ft::OptimizerSettings{}, settings(2, gamma));
  m.attach(model);
  const ft::Batch b = random_batch(c, 4, 8, 77);
  ft::TrainSettings ts;
  ts.steps = steps;
  ts.lr = 1e-2;
  ts.warmup_steps = 2;
  ts.final_lr_ratio = 1.0;
  SorsaRun r;
  r.losses = ft::train(model, m, [&](int64_t) { return b; }, ts).losses;
  r.gram_error = worst_gram_error(m);
  r.reported_error = m.max_orthonormality_error();
  return r;
}

TEST(SorsaMethod, TrainingLowersTheLossAndTheRegularizerKeepsTheFactorsOrthonormal) {
  const int64_t steps = 100;
  const SorsaRun reg = train_sorsa(ft::kSorsaGammaPerLr, steps), plain = train_sorsa(0.0, steps);
  for (const SorsaRun *r : {&reg, &plain}) {
    ASSERT_EQ(r->losses.size(), static_cast<size_t>(steps));
    EXPECT_LT(r->losses.back(), r->losses.front() - 0.15);
  }
  // Without the regularizer AdamW drifts the factors off orthonormal; with
  // it they stay near.
  EXPECT_GT(plain.gram_error, 1.0);
  EXPECT_LT(reg.gram_error, 0.1);
  EXPECT_LT(reg.gram_error, 0.05 * plain.gram_error);
  // The method's own measure is the sum of both norms of the worst projection.
  EXPECT_GE(reg.reported_error, reg.gram_error * (1 - 1e-6));
  EXPECT_LE(reg.reported_error, 2 * reg.gram_error * (1 + 1e-6));
}

TEST(SorsaMethod, RegularizerStepIsANoOpAtGammaZero) {
  const LlamaConfig c = ft_test::small_gqa_config();
  for (double gamma : {0.0, ft::kSorsaGammaPerLr}) {
    SCOPED_TRACE(gamma);
    Context ctx;
    LlamaWeights<float> w = ft::random_weights<float>(c, 41);
    LlamaModel<float> model(c, w);
    ft::SorsaFineTuning m(ctx.ctx, ft::OptimizerSettings{}, settings(2, gamma));
    m.attach(model);
    // Move the factors off orthonormal so that R > 0.
    ft::Rng rng(3);
    for (ft::SorsaProjection *p : m.projections())
      for (std::vector<float> *f : {&p->u, &p->vt})
        for (float &v : *f) v += static_cast<float>(0.05 * rng.normal());
    std::vector<std::vector<float>> before;
    for (const ft::SorsaProjection *p : m.projections()) {
      before.push_back(p->u);
      before.push_back(p->vt);
    }
    const double err = worst_gram_error(m);
    ASSERT_GT(err, 0.01);
    const double value = m.regularize(1e-2);
    size_t at = 0;
    bool same = true;
    for (const ft::SorsaProjection *p : m.projections()) {
      same = same && p->u == before[at] && p->vt == before[at + 1];
      at += 2;
    }
    if (gamma == 0.0) {
      EXPECT_TRUE(same);
      EXPECT_EQ(value, 0.0);
    } else {
      EXPECT_FALSE(same);
      EXPECT_GT(value, 0.0);
      EXPECT_LT(worst_gram_error(m), err);  // one step towards orthonormal
    }
  }
  Context ctx;
  EXPECT_THROW(ft::SorsaFineTuning(ctx.ctx, ft::OptimizerSettings{}, settings(0)), std::invalid_argument);
  EXPECT_THROW(ft::SorsaFineTuning(ctx.ctx, ft::OptimizerSettings{}, settings(1, -1.0)), std::invalid_argument);
}

TEST(SorsaMethod, ParametersAndRankMatchTheSmallBudget) {
  const LlamaConfig c = ft_test::small_gqa_config();
  int64_t per_layer = 0;
  for (Proj p : ft::kSorsaTargets) per_layer += c.out_features(p) + c.in_features(p) + 1;
  const int64_t per_rank = ft::sorsa_parameters_per_rank(c);
  EXPECT_EQ(per_rank, per_layer * c.n_layers);
  EXPECT_EQ(ft::sorsa_rank_matching(c, 3 * per_rank + per_rank / 3), 3);
  EXPECT_EQ(ft::sorsa_rank_matching(c, 3 * per_rank + 2 * per_rank / 3), 4);
  EXPECT_EQ(ft::sorsa_rank_matching(c, 1), 1);  // at least 1
  // At most the smallest min(out, in): k and v are [8, 16] here.
  EXPECT_EQ(ft::sorsa_rank_matching(c, 1000 * per_rank), 8);

  // The comparison lists SORSA last, its rank matched to S2FT's small budget.
  ft::StandardMethods o;
  o.s2ft.count[S2FT_TARGET_O] = 1;
  o.s2ft.count[S2FT_TARGET_DOWN] = 4;
  o.full_grid = {1e-4};
  o.lora_grid = o.s2ft_grid = {1e-3, 2e-3, 4e-3};
  o.best = {{"sorsa", 5e-4}};
  const std::vector<ft::MethodSpec> m = ft::standard_methods(c, o);
  const ft::MethodSpec &sorsa = m.back();
  EXPECT_EQ(sorsa.name, "sorsa");
  EXPECT_EQ(sorsa.kind, ft::MethodKind::Sorsa);
  EXPECT_EQ(sorsa.sorsa.rank, ft::sorsa_rank_matching(c, ft::s2ft_parameter_count(c, m[3].s2ft)));
  EXPECT_EQ(sorsa.lrs, std::vector<double>{5e-4});
  o.grid = true;
  EXPECT_EQ(ft::standard_methods(c, o).back().lrs, o.lora_grid);  // LoRA's family grid

  // The built method trains r * sum(out + in + 1) parameters.
  Context ctx;
  LlamaWeights<float> w = ft::random_weights<float>(c, 2);
  LlamaModel<float> model(c, w);
  auto built = ft::make_method(ctx.ctx, sorsa, {}, 1);
  built->attach(model);
  EXPECT_STREQ(built->name(), "sorsa");
  EXPECT_EQ(built->trainable_parameters(), sorsa.sorsa.rank * per_rank);

  // The comparison's model: S2FT's small budget of 24,576 parameters gives
  // rank 3, 27,828 parameters.
  ft::ComparisonSettings cs;
  LlamaConfig cc = cs.model;
  cc.vocab = 20;  // the vocabulary does not enter the projections
  ASSERT_EQ(ft::s2ft_parameter_count(cc, cs.s2ft), 24576);
  EXPECT_EQ(ft::sorsa_rank_matching(cc, 24576), 3);
  EXPECT_EQ(3 * ft::sorsa_parameters_per_rank(cc), 27828);
}

}  // namespace
