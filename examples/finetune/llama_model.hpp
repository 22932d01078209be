// A LLaMA-architecture decoder with forward and backward on the CPU:
//   x = embed[tokens]
//   per block:  x1 = x + O(attention(rope(Q h), rope(K h), V h)),  h = RMSNorm(x) g1
//               x  = x1 + Down(silu(Gate h2) * Up h2),             h2 = RMSNorm(x1) g2
//   logits = (RMSNorm(x) gf) head^T        (head = embed when tied)
//   loss = mean cross-entropy over the positions that have a target.
// The seven projections of every block are Projection objects, frozen by
// default; a fine-tuning method swaps in its own (full, LoRA, S2FT). The
// embedding, norm gains and output layer get gradients only when dense
// training is on (full fine-tuning). The model borrows the weights.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "attention.hpp"
#include "layers.hpp"
#include "llama_config.hpp"
#include "llama_weights.hpp"
#include "projection.hpp"

namespace ft {

template <typename T>
class LlamaModel {
 public:
  // `w` must match `c` (checked) and outlive the model.
  LlamaModel(const LlamaConfig &c, LlamaWeights<T> &w);

  const LlamaConfig &config() const { return cfg_; }
  LlamaWeights<T> &weights() { return w_; }

  // The weight of projection `p` in `layer` (shape: config().out_features(p), in_features(p)).
  std::vector<T> &weight(int64_t layer, Proj p) { return w_.layers.at(static_cast<size_t>(layer)).weight(p); }

  Projection<T> &projection(int64_t layer, Proj p) { return *proj_[index(layer, p)]; }
  void set_projection(int64_t layer, Proj p, std::unique_ptr<Projection<T>> proj);
  // Every projection back to frozen.
  void reset_projections();

  // Gradients for the embedding, the norm gains and the output layer.
  void set_train_dense(bool on);
  bool train_dense() const { return train_dense_; }
  LlamaWeights<T> &dense_grads() { return grads_; }

  // Called with every projection's input during forward (e.g. to collect
  // calibration statistics); Q, K and V share one input, as do Gate and Up.
  using InputTap = std::function<void(int64_t layer, Proj p, const T *x, int64_t n)>;
  void set_input_tap(InputTap tap) { tap_ = std::move(tap); }

  // Runs tokens [batch, seq] (each in [0, vocab)). With targets ([batch,
  // seq], -1 = no target) returns the mean cross-entropy, else 0. Training
  // keeps what backward() needs.
  double forward(const int32_t *tokens, int64_t batch, int64_t seq, const int32_t *targets, bool training);
  // Logits [batch * seq, vocab] of the last forward.
  const std::vector<T> &logits() const { return logits_; }
  // Gradients of the last training forward's loss, accumulated into the
  // projections' gradients and (with dense training) dense_grads().
  void backward();
  // Sets every gradient (dense and projections') to zero.
  void zero_grad();

  // Bytes of activations the last training forward kept for backward:
  // what the block needs whatever is trained (residual inputs, RMSNorm
  // scales, q/k/v, attention probabilities, gate/up outputs, final norm,
  // logit gradients) plus what each projection kept for its own gradients.
  int64_t saved_activation_bytes() const;

 private:
  struct LayerActs {
    std::vector<T> x, rstd1, q, k, v, probs, x1, rstd2, g, u;
  };
  size_t index(int64_t layer, Proj p) const;
  void check_tokens(const int32_t *tokens, int64_t count) const;
  const RopeTable &rope(int64_t seq);

  LlamaConfig cfg_;
  LlamaWeights<T> &w_;
  LlamaWeights<T> grads_;
  bool train_dense_ = false;
  std::vector<std::unique_ptr<Projection<T>>> proj_;
  InputTap tap_;
  RopeTable rope_;

  // Last forward.
  std::vector<int32_t> tokens_;
  int64_t batch_ = 0, seq_ = 0;
  bool trained_forward_ = false;
  std::vector<LayerActs> acts_;
  std::vector<T> xf_, rstdf_, hf_, logits_, dlogits_;
  // Scratch.
  std::vector<T> h_, a_, act_, tmp_, dx_, dh_, dq_, dk_, dv_, da_, dact_, dg_, du_, scratch_;
};

extern template class LlamaModel<float>;
extern template class LlamaModel<double>;

}  // namespace ft
