#include "llama_model.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace ft {

namespace {

template <typename T>
void require_size(const std::vector<T> &v, int64_t expected, const std::string &name) {
  if (static_cast<int64_t>(v.size()) != expected)
    throw std::invalid_argument("LlamaModel: " + name + " has " + std::to_string(v.size()) + " values, expected " +
                                std::to_string(expected));
}

template <typename T>
void zero(std::vector<T> &v) {
  std::fill(v.begin(), v.end(), T(0));
}

}  // namespace

template <typename T>
LlamaModel<T>::LlamaModel(const LlamaConfig &c, LlamaWeights<T> &w) : cfg_(c), w_(w) {
  cfg_.check();
  const int64_t d = c.d_model;
  require_size(w.embed, c.vocab * d, "embed");
  require_size(w.final_norm, d, "final_norm");
  require_size(w.lm_head, c.tied ? 0 : c.vocab * d, "lm_head");
  if (static_cast<int64_t>(w.layers.size()) != c.n_layers)
    throw std::invalid_argument("LlamaModel: " + std::to_string(w.layers.size()) + " layers, config says " +
                                std::to_string(c.n_layers));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string at = "layer " + std::to_string(l) + " ";
    require_size(w.layers[static_cast<size_t>(l)].attn_norm, d, at + "attn_norm");
    require_size(w.layers[static_cast<size_t>(l)].ffn_norm, d, at + "ffn_norm");
    for (int p = 0; p < kNumProj; ++p)
      require_size(weight(l, static_cast<Proj>(p)), cfg_.out_features(static_cast<Proj>(p)) * cfg_.in_features(static_cast<Proj>(p)),
                   at + proj_name(static_cast<Proj>(p)));
  }
  proj_.resize(static_cast<size_t>(c.n_layers * kNumProj));
  reset_projections();
  acts_.resize(static_cast<size_t>(c.n_layers));
}

template <typename T>
size_t LlamaModel<T>::index(int64_t layer, Proj p) const {
  if (layer < 0 || layer >= cfg_.n_layers)
    throw std::out_of_range("LlamaModel: layer " + std::to_string(layer) + " is outside [0, " +
                            std::to_string(cfg_.n_layers) + ")");
  return static_cast<size_t>(layer * kNumProj + static_cast<int>(p));
}

template <typename T>
void LlamaModel<T>::set_projection(int64_t layer, Proj p, std::unique_ptr<Projection<T>> proj) {
  if (!proj || proj->out() != cfg_.out_features(p) || proj->in() != cfg_.in_features(p))
    throw std::invalid_argument(std::string("LlamaModel::set_projection: ") + proj_name(p) +
                                " needs a projection of shape [" + std::to_string(cfg_.out_features(p)) + ", " +
                                std::to_string(cfg_.in_features(p)) + "]");
  proj_[index(layer, p)] = std::move(proj);
}

template <typename T>
void LlamaModel<T>::reset_projections() {
  for (int64_t l = 0; l < cfg_.n_layers; ++l)
    for (int p = 0; p < kNumProj; ++p) {
      const Proj pp = static_cast<Proj>(p);
      proj_[index(l, pp)] = std::make_unique<Projection<T>>(weight(l, pp).data(), cfg_.out_features(pp), cfg_.in_features(pp));
    }
}

template <typename T>
void LlamaModel<T>::set_train_dense(bool on) {
  train_dense_ = on;
  if (!on) {
    grads_ = LlamaWeights<T>{};
    return;
  }
  // Only the dense parts are used: the projections' gradients live in the
  // projections.
  grads_.embed.assign(w_.embed.size(), T(0));
  grads_.final_norm.assign(w_.final_norm.size(), T(0));
  grads_.lm_head.assign(w_.lm_head.size(), T(0));
  grads_.layers.assign(w_.layers.size(), LayerWeights<T>{});
  for (auto &l : grads_.layers) {
    l.attn_norm.assign(static_cast<size_t>(cfg_.d_model), T(0));
    l.ffn_norm.assign(static_cast<size_t>(cfg_.d_model), T(0));
  }
}

template <typename T>
void LlamaModel<T>::zero_grad() {
  zero(grads_.embed);
  zero(grads_.final_norm);
  zero(grads_.lm_head);
  for (auto &l : grads_.layers) {
    zero(l.attn_norm);
    zero(l.ffn_norm);
  }
  for (auto &p : proj_) p->zero_grad();
}

template <typename T>
void LlamaModel<T>::check_tokens(const int32_t *tokens, int64_t count) const {
  for (int64_t i = 0; i < count; ++i)
    if (tokens[i] < 0 || tokens[i] >= cfg_.vocab)
      throw std::out_of_range("LlamaModel: token " + std::to_string(tokens[i]) + " at position " + std::to_string(i) +
                              " is outside the vocabulary [0, " + std::to_string(cfg_.vocab) + ")");
}

template <typename T>
const RopeTable &LlamaModel<T>::rope(int64_t seq) {
  if (rope_.max_pos < seq) rope_ = RopeTable(std::max(seq, cfg_.max_seq), cfg_.head_dim, cfg_.rope_theta);
  return rope_;
}

template <typename T>
double LlamaModel<T>::forward(const int32_t *tokens, int64_t batch, int64_t seq, const int32_t *targets,
                              bool training) {
  if (tokens == nullptr || batch <= 0 || seq <= 0)
    throw std::invalid_argument("LlamaModel::forward: tokens must be a non-empty [batch, seq] array");
  if (training && targets == nullptr) throw std::invalid_argument("LlamaModel::forward: training needs targets");
  const int64_t n = batch * seq, d = cfg_.d_model, qw = cfg_.q_dim(), kw = cfg_.kv_dim(), ff = cfg_.d_ff;
  check_tokens(tokens, n);
  const RopeTable &rt = rope(seq);
  const AttentionShape as{batch, seq, cfg_.n_heads, cfg_.n_kv_heads, cfg_.head_dim};
  tokens_.assign(tokens, tokens + n);
  batch_ = batch;
  seq_ = seq;
  trained_forward_ = training;
  const auto sz = [](int64_t v) { return static_cast<size_t>(v); };
  h_.resize(sz(n * d));
  a_.resize(sz(n * qw));
  act_.resize(sz(n * ff));
  tmp_.resize(sz(n * d));

  std::vector<T> x(sz(n * d));
  for (int64_t i = 0; i < n; ++i)
    std::copy_n(w_.embed.begin() + tokens[i] * d, d, x.begin() + i * d);

  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    LayerActs &A = acts_[sz(l)];
    const LayerWeights<T> &lw = w_.layers[sz(l)];
    auto run = [&](Proj p, const T *in, T *out) {
      if (tap_) tap_(l, p, in, n);
      projection(l, p).forward(in, n, out, training);
    };
    A.x = x;
    A.rstd1.resize(sz(n));
    A.q.resize(sz(n * qw));
    A.k.resize(sz(n * kw));
    A.v.resize(sz(n * kw));
    A.probs.resize(sz(as.probs_size()));
    rms_norm_forward(x.data(), lw.attn_norm.data(), h_.data(), A.rstd1.data(), n, d, cfg_.rms_eps);
    run(Proj::Q, h_.data(), A.q.data());
    run(Proj::K, h_.data(), A.k.data());
    run(Proj::V, h_.data(), A.v.data());
    rope_apply(A.q.data(), batch, seq, cfg_.n_heads, rt, false);
    rope_apply(A.k.data(), batch, seq, cfg_.n_kv_heads, rt, false);
    attention_forward(as, A.q.data(), A.k.data(), A.v.data(), A.probs.data(), a_.data());
    run(Proj::O, a_.data(), tmp_.data());
    for (int64_t i = 0; i < n * d; ++i) x[sz(i)] += tmp_[sz(i)];

    A.x1 = x;
    A.rstd2.resize(sz(n));
    A.g.resize(sz(n * ff));
    A.u.resize(sz(n * ff));
    rms_norm_forward(x.data(), lw.ffn_norm.data(), h_.data(), A.rstd2.data(), n, d, cfg_.rms_eps);
    run(Proj::GATE, h_.data(), A.g.data());
    run(Proj::UP, h_.data(), A.u.data());
    swiglu_forward(A.g.data(), A.u.data(), act_.data(), n * ff);
    run(Proj::DOWN, act_.data(), tmp_.data());
    for (int64_t i = 0; i < n * d; ++i) x[sz(i)] += tmp_[sz(i)];
  }

  xf_ = std::move(x);
  rstdf_.resize(sz(n));
  hf_.resize(sz(n * d));
  rms_norm_forward(xf_.data(), w_.final_norm.data(), hf_.data(), rstdf_.data(), n, d, cfg_.rms_eps);
  logits_.resize(sz(n * cfg_.vocab));
  linear_forward(hf_.data(), w_.head().data(), logits_.data(), n, d, cfg_.vocab);
  if (targets == nullptr) return 0.0;
  for (int64_t i = 0; i < n; ++i)
    if (targets[i] < -1 || targets[i] >= cfg_.vocab)
      throw std::out_of_range("LlamaModel::forward: target " + std::to_string(targets[i]) + " at position " +
                              std::to_string(i) + " is neither -1 nor in the vocabulary");
  dlogits_ = logits_;
  int64_t counted = 0;
  const double loss = cross_entropy_and_grad(dlogits_.data(), targets, n, cfg_.vocab, &counted);
  if (!training) dlogits_.clear();
  return loss;
}

template <typename T>
void LlamaModel<T>::backward() {
  if (!trained_forward_) throw std::logic_error("LlamaModel::backward: needs a training forward first");
  trained_forward_ = false;
  const int64_t batch = batch_, seq = seq_, n = batch * seq, d = cfg_.d_model, ff = cfg_.d_ff;
  const RopeTable &rt = rope(seq);
  const AttentionShape as{batch, seq, cfg_.n_heads, cfg_.n_kv_heads, cfg_.head_dim};
  const auto sz = [](int64_t v) { return static_cast<size_t>(v); };
  dx_.assign(sz(n * d), T(0));
  dh_.resize(sz(n * d));
  dq_.resize(sz(n * cfg_.q_dim()));
  dk_.resize(sz(n * cfg_.kv_dim()));
  dv_.resize(sz(n * cfg_.kv_dim()));
  da_.resize(sz(n * cfg_.q_dim()));
  dact_.resize(sz(n * ff));
  dg_.resize(sz(n * ff));
  du_.resize(sz(n * ff));
  scratch_.resize(sz(seq));

  // Output layer and final norm: dhf = dz head;  dhead += dz^T hf.
  linear_backward_input(dlogits_.data(), w_.head().data(), dh_.data(), n, d, cfg_.vocab);
  if (train_dense_) {
    std::vector<T> &dhead = cfg_.tied ? grads_.embed : grads_.lm_head;
    linear_backward_weight(dlogits_.data(), hf_.data(), dhead.data(), n, d, cfg_.vocab);
  }
  rms_norm_backward(xf_.data(), w_.final_norm.data(), rstdf_.data(), dh_.data(), dx_.data(),
                    train_dense_ ? grads_.final_norm.data() : nullptr, n, d);

  for (int64_t l = cfg_.n_layers - 1; l >= 0; --l) {
    LayerActs &A = acts_[sz(l)];
    const LayerWeights<T> &lw = w_.layers[sz(l)];
    LayerWeights<T> *lg = train_dense_ ? &grads_.layers[sz(l)] : nullptr;
    // FFN: x = x1 + Down(silu(g) * u). dx holds dL/dx; the residual passes it to x1.
    projection(l, Proj::DOWN).backward(dx_.data(), n, dact_.data(), false);
    swiglu_backward(A.g.data(), A.u.data(), dact_.data(), dg_.data(), du_.data(), n * ff);
    projection(l, Proj::GATE).backward(dg_.data(), n, dh_.data(), false);
    projection(l, Proj::UP).backward(du_.data(), n, dh_.data(), true);
    rms_norm_backward(A.x1.data(), lw.ffn_norm.data(), A.rstd2.data(), dh_.data(), dx_.data(),
                      lg ? lg->ffn_norm.data() : nullptr, n, d);
    // Attention: x1 = x + O(attn(rope(q), rope(k), v)).
    projection(l, Proj::O).backward(dx_.data(), n, da_.data(), false);
    attention_backward(as, A.q.data(), A.k.data(), A.v.data(), A.probs.data(), da_.data(), dq_.data(), dk_.data(),
                       dv_.data(), scratch_.data());
    rope_apply(dq_.data(), batch, seq, cfg_.n_heads, rt, true);
    rope_apply(dk_.data(), batch, seq, cfg_.n_kv_heads, rt, true);
    projection(l, Proj::Q).backward(dq_.data(), n, dh_.data(), false);
    projection(l, Proj::K).backward(dk_.data(), n, dh_.data(), true);
    projection(l, Proj::V).backward(dv_.data(), n, dh_.data(), true);
    rms_norm_backward(A.x.data(), lw.attn_norm.data(), A.rstd1.data(), dh_.data(), dx_.data(),
                      lg ? lg->attn_norm.data() : nullptr, n, d);
  }
  if (train_dense_)
    for (int64_t i = 0; i < n; ++i) {
      T *row = grads_.embed.data() + tokens_[sz(i)] * d;
      for (int64_t j = 0; j < d; ++j) row[j] += dx_[sz(i * d + j)];
    }
}

template <typename T>
int64_t LlamaModel<T>::saved_activation_bytes() const {
  size_t values = xf_.size() + rstdf_.size() + dlogits_.size() + (train_dense_ ? hf_.size() : 0);
  for (const LayerActs &A : acts_)
    for (const std::vector<T> *v : {&A.x, &A.rstd1, &A.q, &A.k, &A.v, &A.probs, &A.x1, &A.rstd2, &A.g, &A.u})
      values += v->size();
  int64_t bytes = static_cast<int64_t>(values * sizeof(T));
  for (const auto &p : proj_) bytes += p->saved_bytes();
  return bytes;
}

template class LlamaModel<float>;
template class LlamaModel<double>;

}  // namespace ft
