#include "fine_tuning.hpp"

#include <cmath>
#include <stdexcept>

#include "rng.hpp"
#include "s2ft_check.hpp"

namespace ft {

FineTuning::FineTuning(s2ft_context *ctx, const OptimizerSettings &settings) : ctx_(ctx) {
  s2ft_optimizer_options o;
  s2ft_check(s2ft_optimizer_options_init(&o, S2FT_OPTIMIZER_OPTIONS_VERSION), "s2ft_optimizer_options_init");
  o.kind = settings.kind;
  o.weight_decay = settings.weight_decay;
  o.max_grad_norm = settings.max_grad_norm;
  s2ft_optimizer *opt = nullptr;
  s2ft_check(s2ft_optimizer_create(ctx, &o, &opt), "s2ft_optimizer_create");
  opt_.reset(opt);
}

void FineTuning::add(float *weight, int64_t rows, int64_t cols, const s2ft_slice *slice, const s2ft_tensor &grad) {
  s2ft_tensor w = f32_tensor(weight, rows, cols);
  int64_t index = 0;
  s2ft_check(s2ft_optimizer_add_param(opt_.get(), &w, slice, &index), "s2ft_optimizer_add_param");
  grads_.push_back(grad);
  const int64_t elements = grad.shape[0] * grad.shape[1];
  trained_ += elements;
  grad_bytes_ += elements * static_cast<int64_t>(sizeof(float));
}

void FineTuning::add_dense(float *weight, const float *grad, int64_t rows, int64_t cols) {
  // A whole tensor is the column slice [0, cols) of itself.
  s2ft_slice all{};
  all.axis = S2FT_AXIS_COLUMNS;
  all.begin = 0;
  all.count = cols;
  add(weight, rows, cols, &all, f32_tensor(grad, rows, cols));
}

int64_t FineTuning::add_sparse(float *weight, int64_t rows, int64_t cols, const s2ft_sparse_set *set,
                               const s2ft_tensor &grad) {
  s2ft_tensor w = f32_tensor(weight, rows, cols);
  int64_t index = 0;
  s2ft_check(s2ft_optimizer_add_sparse(opt_.get(), &w, set, &index), "s2ft_optimizer_add_sparse");
  if (index != static_cast<int64_t>(grads_.size())) throw std::logic_error("add_sparse: parameter index out of order");
  grads_.push_back(grad);
  trained_ += grad.shape[1];
  grad_bytes_ += grad.shape[1] * static_cast<int64_t>(sizeof(float));
  return index;
}

void FineTuning::set_grad(int64_t index, const s2ft_tensor &grad) {
  s2ft_tensor &g = grads_.at(static_cast<size_t>(index));
  const int64_t before = g.shape[0] * g.shape[1], after = grad.shape[0] * grad.shape[1];
  trained_ += after - before;
  grad_bytes_ += (after - before) * static_cast<int64_t>(sizeof(float));
  g = grad;
}

double FineTuning::step(double lr) {
  before_step(steps_, lr);
  double norm = 0.0;
  s2ft_check(s2ft_optimizer_step(opt_.get(), lr, grads_.data(), static_cast<int64_t>(grads_.size()), &norm),
             "s2ft_optimizer_step");
  after_step(++steps_);
  return norm;
}

void FullFineTuning::attach(LlamaModel<float> &model) {
  const LlamaConfig &c = model.config();
  model.set_train_dense(true);
  LlamaWeights<float> &w = model.weights();
  LlamaWeights<float> &g = model.dense_grads();
  add_dense(w.embed.data(), g.embed.data(), c.vocab, c.d_model);
  if (!c.tied) add_dense(w.lm_head.data(), g.lm_head.data(), c.vocab, c.d_model);
  add_dense(w.final_norm.data(), g.final_norm.data(), 1, c.d_model);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const size_t li = static_cast<size_t>(l);
    add_dense(w.layers[li].attn_norm.data(), g.layers[li].attn_norm.data(), 1, c.d_model);
    add_dense(w.layers[li].ffn_norm.data(), g.layers[li].ffn_norm.data(), 1, c.d_model);
    for (int p = 0; p < kNumProj; ++p) {
      const Proj pp = static_cast<Proj>(p);
      const int64_t out = model.config().out_features(pp), in = model.config().in_features(pp);
      float *wp = model.weight(l, pp).data();
      auto proj = std::make_unique<DenseProjection<float>>(wp, out, in);
      add_dense(wp, proj->grad.data(), out, in);
      model.set_projection(l, pp, std::move(proj));
    }
  }
}

const std::vector<Proj> LoraFineTuning::kPaperTargets = {Proj::Q, Proj::K, Proj::V, Proj::UP, Proj::DOWN};

LoraFineTuning::LoraFineTuning(s2ft_context *ctx, const OptimizerSettings &opt, int64_t rank, double alpha,
                               uint64_t seed, std::vector<Proj> targets)
    : FineTuning(ctx, opt), rank_(rank), alpha_(alpha), seed_(seed), targets_(std::move(targets)) {
  if (rank < 1) throw std::invalid_argument("LoRA rank must be >= 1, got " + std::to_string(rank));
  if (!(alpha > 0.0)) throw std::invalid_argument("LoRA alpha must be > 0");
  if (targets_.empty()) throw std::invalid_argument("LoRA needs at least one target projection");
}

void LoraFineTuning::attach(LlamaModel<float> &model) {
  Rng rng(seed_);
  for (int64_t l = 0; l < model.config().n_layers; ++l)
    for (Proj p : targets_) {
      const int64_t out = model.config().out_features(p), in = model.config().in_features(p);
      auto proj = std::make_unique<LoraProjection<float>>(model.weight(l, p).data(), out, in, rank_, alpha_);
      const double bound = 1.0 / std::sqrt(static_cast<double>(in));
      for (float &a : proj->a) a = static_cast<float>(bound * (2.0 * rng.uniform() - 1.0));
      add_dense(proj->a.data(), proj->grad_a.data(), rank_, in);
      add_dense(proj->b.data(), proj->grad_b.data(), out, rank_);
      model.set_projection(l, p, std::move(proj));
    }
}

}  // namespace ft
