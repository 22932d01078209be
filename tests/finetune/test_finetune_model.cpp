// The example's LLaMA model (examples/finetune): its forward against the
// independent float64 reference in tests/support, its backward against
// central finite differences (float64, tiny GQA configs, every parameter),
// LoRA's gradients likewise, and S2FT projections against the dense
// gradient they are a slice of.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "llama_model.hpp"
#include "s2ft_projection.hpp"
#include "support/llama_model_ref.hpp"
#include "support/test_util.hpp"

namespace {

using ft::LlamaConfig;
using ft::LlamaModel;
using ft::LlamaWeights;
using ft::Proj;

LlamaConfig tiny_config(bool tied) {
  LlamaConfig c;
  c.vocab = 11;
  c.d_model = 12;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;  // GQA, 2 query heads per KV head
  c.head_dim = 4;    // q width 16 != d_model
  c.d_ff = 10;
  c.max_seq = 16;
  c.tied = tied;
  return c;
}

// Random weights of a larger spread than training init, so every path
// (attention softmax, SwiGLU) is far from linear; norm gains away from 1.
LlamaWeights<double> spread_weights(const LlamaConfig &c, uint64_t seed) {
  LlamaWeights<double> w = ft::random_weights<double>(c, seed);
  s2ft_test::Random rng(seed + 1);
  auto spread = [&](std::vector<double> &v, double s) {
    for (double &x : v) x = s * rng.uniform();
  };
  spread(w.embed, 1.0);
  spread(w.lm_head, 0.5);
  for (double &g : w.final_norm) g = rng.uniform(0.5, 1.5);
  for (auto &l : w.layers) {
    for (double &g : l.attn_norm) g = rng.uniform(0.5, 1.5);
    for (double &g : l.ffn_norm) g = rng.uniform(0.5, 1.5);
    for (auto *m : {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down}) spread(*m, 0.6);
  }
  return w;
}

struct Batch {
  int64_t batch = 2, seq = 5;
  std::vector<int32_t> tokens, targets;
};

Batch random_batch(const LlamaConfig &c, uint64_t seed) {
  Batch b;
  s2ft_test::Random rng(seed);
  for (int64_t i = 0; i < b.batch * b.seq; ++i) {
    b.tokens.push_back(static_cast<int32_t>(rng.below(c.vocab)));
    b.targets.push_back(i % 3 == 1 ? -1 : static_cast<int32_t>(rng.below(c.vocab)));  // some positions unscored
  }
  return b;
}

s2ft_ref::ModelWeights to_ref(const LlamaWeights<double> &w) {
  s2ft_ref::ModelWeights r;
  r.embed = w.embed;
  r.final_norm = w.final_norm;
  r.lm_head = w.head();
  for (const auto &l : w.layers) r.layers.push_back({l.attn_norm, l.q, l.k, l.v, l.o, l.ffn_norm, l.gate, l.up, l.down});
  return r;
}

TEST(FinetuneModel, ForwardMatchesFloat64Reference) {
  for (bool tied : {true, false}) {
    const LlamaConfig c = tiny_config(tied);
    LlamaWeights<double> w = spread_weights(c, 3);
    LlamaModel<double> model(c, w);
    const std::vector<int32_t> tokens = {3, 1, 4, 1, 5, 9, 2};
    model.forward(tokens.data(), 1, 7, nullptr, false);
    s2ft_ref::BlockShape s;
    s.d_model = c.d_model;
    s.n_heads = c.n_heads;
    s.n_kv_heads = c.n_kv_heads;
    s.head_dim = c.head_dim;
    s.d_ff = c.d_ff;
    const std::vector<double> ref =
        s2ft_ref::llama_forward(s, c.vocab, to_ref(w), std::vector<int64_t>(tokens.begin(), tokens.end()));
    ASSERT_EQ(model.logits().size(), ref.size());
    EXPECT_LT(s2ft_test::rel_error(model.logits(), ref), 1e-12) << "tied " << tied;
  }
}

// The model's loss as a function of its weights, for finite differences.
double loss_of(LlamaModel<double> &model, const Batch &b) {
  return model.forward(b.tokens.data(), b.batch, b.seq, b.targets.data(), false);
}

// Central differences (L(w + h) - L(w - h)) / 2h against `analytic` for
// every element of `param`; the error budget is the O(h^2) truncation.
void expect_gradient(LlamaModel<double> &model, const Batch &b, std::vector<double> &param,
                     const std::vector<double> &analytic, const std::string &name) {
  ASSERT_EQ(param.size(), analytic.size()) << name;
  const double h = 1e-5;
  double worst = 0.0;
  for (size_t i = 0; i < param.size(); ++i) {
    const double saved = param[i];
    param[i] = saved + h;
    const double up = loss_of(model, b);
    param[i] = saved - h;
    const double down = loss_of(model, b);
    param[i] = saved;
    const double fd = (up - down) / (2 * h);
    worst = std::max(worst, std::fabs(fd - analytic[i]) / (1e-6 + std::fabs(fd)));
    ASSERT_NEAR(analytic[i], fd, 1e-8 + 1e-6 * std::fabs(fd)) << name << "[" << i << "]";
  }
  // Gradients that are all zero would pass trivially.
  double norm = 0.0;
  for (double g : analytic) norm += g * g;
  EXPECT_GT(norm, 1e-12) << name << " has a zero gradient";
  (void)worst;
}

TEST(FinetuneModel, FullBackwardMatchesFiniteDifferences) {
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    const LlamaConfig c = tiny_config(tied);
    LlamaWeights<double> w = spread_weights(c, 7);
    LlamaModel<double> model(c, w);
    std::vector<ft::DenseProjection<double> *> dense;
    for (int64_t l = 0; l < c.n_layers; ++l)
      for (int p = 0; p < ft::kNumProj; ++p) {
        const Proj pp = static_cast<Proj>(p);
        auto proj = std::make_unique<ft::DenseProjection<double>>(model.weight(l, pp).data(), model.config().out_features(pp),
                                                                  model.config().in_features(pp));
        dense.push_back(proj.get());
        model.set_projection(l, pp, std::move(proj));
      }
    model.set_train_dense(true);
    const Batch b = random_batch(c, 11);
    model.zero_grad();
    model.forward(b.tokens.data(), b.batch, b.seq, b.targets.data(), true);
    model.backward();
    const LlamaWeights<double> g = model.dense_grads();
    expect_gradient(model, b, w.embed, g.embed, "embed");
    if (!tied) expect_gradient(model, b, w.lm_head, g.lm_head, "lm_head");
    expect_gradient(model, b, w.final_norm, g.final_norm, "final_norm");
    for (int64_t l = 0; l < c.n_layers; ++l) {
      const std::string at = "layer " + std::to_string(l) + " ";
      expect_gradient(model, b, w.layers[l].attn_norm, g.layers[l].attn_norm, at + "attn_norm");
      expect_gradient(model, b, w.layers[l].ffn_norm, g.layers[l].ffn_norm, at + "ffn_norm");
      for (int p = 0; p < ft::kNumProj; ++p) {
        const Proj pp = static_cast<Proj>(p);
        expect_gradient(model, b, model.weight(l, pp), dense[l * ft::kNumProj + p]->grad, at + ft::proj_name(pp));
      }
    }
  }
}

TEST(FinetuneModel, LoraBackwardMatchesFiniteDifferences) {
  const LlamaConfig c = tiny_config(true);
  LlamaWeights<double> w = spread_weights(c, 5);
  LlamaModel<double> model(c, w);
  std::vector<std::pair<std::string, ft::LoraProjection<double> *>> lora;
  s2ft_test::Random rng(9);
  for (int64_t l = 0; l < c.n_layers; ++l)
    for (Proj pp : {Proj::Q, Proj::K, Proj::V, Proj::UP, Proj::DOWN}) {
      auto proj = std::make_unique<ft::LoraProjection<double>>(model.weight(l, pp).data(), model.config().out_features(pp),
                                                               model.config().in_features(pp), 3, 6.0);
      for (double &x : proj->a) x = rng.uniform(-0.5, 0.5);
      for (double &x : proj->b) x = rng.uniform(-0.5, 0.5);  // nonzero so that dA is nonzero
      lora.emplace_back("layer " + std::to_string(l) + " " + ft::proj_name(pp), proj.get());
      model.set_projection(l, pp, std::move(proj));
    }
  const Batch b = random_batch(c, 13);
  model.zero_grad();
  model.forward(b.tokens.data(), b.batch, b.seq, b.targets.data(), true);
  model.backward();
  for (auto &[name, p] : lora) {
    const std::vector<double> ga = p->grad_a, gb = p->grad_b;
    expect_gradient(model, b, p->a, ga, name + " A");
    expect_gradient(model, b, p->b, gb, name + " B");
  }
}

// Runs one training step of a float model with the given projection in
// (layer 1, p) and dense projections elsewhere; returns dx reaching layer 0
// through the dense gradient of layer 0's q_proj (which sees it).
struct FloatRun {
  std::vector<float> q0_grad;  // depends on the dx that flowed through (1, p)
  std::vector<float> grad;     // the projection's own gradient
  int64_t saved = 0;
};

template <typename MakeProj>
FloatRun float_step(const LlamaConfig &c, LlamaWeights<float> &w, Proj p, MakeProj make) {
  LlamaModel<float> model(c, w);
  auto q0 = std::make_unique<ft::DenseProjection<float>>(model.weight(0, Proj::Q).data(), model.config().out_features(Proj::Q),
                                                         model.config().in_features(Proj::Q));
  ft::DenseProjection<float> *q0p = q0.get();
  model.set_projection(0, Proj::Q, std::move(q0));
  FloatRun r;
  auto proj = make(model);
  auto *raw = proj.get();
  model.set_projection(1, p, std::move(proj));
  const Batch b = random_batch(c, 17);
  model.zero_grad();
  model.forward(b.tokens.data(), b.batch, b.seq, b.targets.data(), true);
  r.saved = model.projection(1, p).saved_bytes();
  model.backward();
  r.q0_grad = q0p->grad;
  if constexpr (std::is_same_v<std::remove_pointer_t<decltype(raw)>, ft::S2ftProjection>)
    r.grad = raw->grad();
  else
    r.grad = raw->grad;
  return r;
}

TEST(FinetuneModel, S2ftProjectionIsASliceOfTheDenseGradient) {
  const LlamaConfig c = tiny_config(true);
  LlamaWeights<float> w = ft::convert_weights<float>(spread_weights(c, 21));
  s2ft_context *ctx = nullptr;
  ASSERT_EQ(s2ft_context_create(nullptr, &ctx), S2FT_OK);
  struct Case {
    Proj p;
    int32_t axis;
    std::vector<int64_t> lines;
  };
  const std::vector<Case> cases = {
      {Proj::O, S2FT_AXIS_COLUMNS, {4, 5, 6, 7}},              // one head, contiguous
      {Proj::O, S2FT_AXIS_COLUMNS, {13, 0, 9}},                // index path, any order
      {Proj::DOWN, S2FT_AXIS_COLUMNS, {0}},                    // k = 1
      {Proj::DOWN, S2FT_AXIS_COLUMNS, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},  // k = all
      {Proj::V, S2FT_AXIS_ROWS, {2, 7}},
      {Proj::UP, S2FT_AXIS_ROWS, {9, 3, 4}},
  };
  for (const Case &cs : cases) {
    SCOPED_TRACE(std::string(ft::proj_name(cs.p)) + " k=" + std::to_string(cs.lines.size()));
    const FloatRun dense = float_step(c, w, cs.p, [&](LlamaModel<float> &m) {
      return std::make_unique<ft::DenseProjection<float>>(m.weight(1, cs.p).data(), m.config().out_features(cs.p),
                                                          m.config().in_features(cs.p));
    });
    const FloatRun sparse = float_step(c, w, cs.p, [&](LlamaModel<float> &m) {
      return std::make_unique<ft::S2ftProjection>(ctx, m.weight(1, cs.p).data(), m.config().out_features(cs.p),
                                                  m.config().in_features(cs.p), cs.axis, cs.lines);
    });
    // The slice of the dense gradient, in the order of `lines`.
    const int64_t out = static_cast<int64_t>(cs.p == Proj::O || cs.p == Proj::DOWN ? c.d_model
                                                                                    : (cs.p == Proj::V ? c.kv_dim() : c.d_ff));
    const int64_t in = static_cast<int64_t>(dense.grad.size()) / out;
    const int64_t k = static_cast<int64_t>(cs.lines.size());
    std::vector<double> expect, got(sparse.grad.begin(), sparse.grad.end());
    if (cs.axis == S2FT_AXIS_COLUMNS) {
      for (int64_t o = 0; o < out; ++o)
        for (int64_t j = 0; j < k; ++j) expect.push_back(dense.grad[o * in + cs.lines[j]]);
      EXPECT_EQ(sparse.saved, static_cast<int64_t>(2 * 5 * k * sizeof(float)));  // x[:, S] only
    } else {
      for (int64_t j = 0; j < k; ++j)
        for (int64_t i = 0; i < in; ++i) expect.push_back(dense.grad[cs.lines[j] * in + i]);
      EXPECT_EQ(sparse.saved, dense.saved);  // rows need the whole input
    }
    EXPECT_LT(s2ft_test::rel_error(got, expect), 1e-5);
    EXPECT_LT(s2ft_test::rel_error(std::vector<double>(sparse.q0_grad.begin(), sparse.q0_grad.end()),
                                   std::vector<double>(dense.q0_grad.begin(), dense.q0_grad.end())),
              1e-5);
  }
  s2ft_context_destroy(ctx);
}

TEST(FinetuneModel, RejectsBadInputs) {
  const LlamaConfig c = tiny_config(false);
  LlamaWeights<double> w = spread_weights(c, 1);
  LlamaModel<double> model(c, w);
  std::vector<int32_t> tok = {1, 2, 11}, tgt = {1, 2, 3};
  EXPECT_THROW(model.forward(tok.data(), 1, 3, nullptr, false), std::out_of_range);  // token 11 >= vocab
  tok[2] = -1;
  EXPECT_THROW(model.forward(tok.data(), 1, 3, nullptr, false), std::out_of_range);
  tok[2] = 3;
  tgt[1] = 11;
  EXPECT_THROW(model.forward(tok.data(), 1, 3, tgt.data(), false), std::out_of_range);
  tgt[1] = -2;
  EXPECT_THROW(model.forward(tok.data(), 1, 3, tgt.data(), false), std::out_of_range);
  EXPECT_THROW(model.forward(tok.data(), 1, 3, nullptr, true), std::invalid_argument);
  EXPECT_THROW(model.forward(tok.data(), 0, 3, nullptr, false), std::invalid_argument);
  EXPECT_THROW(model.forward(nullptr, 1, 3, nullptr, false), std::invalid_argument);
  EXPECT_THROW(model.backward(), std::logic_error);
  EXPECT_THROW(model.set_projection(0, Proj::O, std::make_unique<ft::Projection<double>>(w.layers[0].o.data(), 3, 3)),
               std::invalid_argument);
  EXPECT_THROW(model.set_projection(0, Proj::O, nullptr), std::invalid_argument);
  EXPECT_THROW(model.projection(2, Proj::O), std::out_of_range);

  LlamaWeights<double> bad = w;
  bad.layers[1].down.pop_back();
  EXPECT_THROW(LlamaModel<double>(c, bad), std::invalid_argument);
  bad = w;
  bad.lm_head.clear();  // untied config without an output layer
  EXPECT_THROW(LlamaModel<double>(c, bad), std::invalid_argument);
  LlamaConfig odd = c;
  odd.n_heads = 3;
  EXPECT_THROW(LlamaModel<double>(odd, w), std::runtime_error);
}

}  // namespace
