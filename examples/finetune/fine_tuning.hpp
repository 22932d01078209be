// The three ways the example fine-tunes a model, behind one interface so that
// one training loop runs them all and their costs are counted the same way:
//  - FullFineTuning: every weight (projections, embedding, norms, head);
//  - LoraFineTuning: low-rank adapters on q, k, v, up and down projections
//    (the paper's LoRA baseline), base weights frozen;
//  - S2ftFineTuning (s2ft_method.hpp): selected heads and channels through
//    libs2ft;
//  - SparseFineTuning (sparse_method.hpp): unstructured entries (LIFT,
//    SpIEL) through libs2ft's sparse sets;
//  - SorsaFineTuning (sorsa_method.hpp): trained singular vectors and
//    values (SORSA) through libs2ft's SORSA calls.
// Every method trains with libs2ft's AdamW (the same optimizer code for all;
// SpIEL-MA with libs2ft's SM3, as its authors do), gradients in f32,
// global-norm clipping.
#pragma once

#include <cstdint>
#include <vector>

#include <s2ft/s2ft.h>

#include "llama_model.hpp"
#include "s2ft_handles.hpp"

namespace ft {

struct OptimizerSettings {
  int32_t kind = S2FT_OPTIMIZER_ADAMW;  // or S2FT_OPTIMIZER_SM3 (SpIEL-MA)
  double weight_decay = 0.0;
  double max_grad_norm = 1.0;
};

class FineTuning {
 public:
  FineTuning(s2ft_context *ctx, const OptimizerSettings &opt);
  virtual ~FineTuning() = default;
  FineTuning(const FineTuning &) = delete;
  FineTuning &operator=(const FineTuning &) = delete;

  virtual const char *name() const = 0;
  // Installs the method's projections into `model` (which must outlive the
  // method) and registers what it trains with the optimizer.
  virtual void attach(LlamaModel<float> &model) = 0;

  // Parameters the optimizer updates.
  int64_t trainable_parameters() const { return trained_; }
  // Bytes of the weight gradients the method allocated (f32).
  int64_t gradient_bytes() const { return grad_bytes_; }
  // Bytes of optimizer state: AdamW's two f32 moments per trained element
  // (libs2ft keeps no master copy for f32 weights).
  int64_t optimizer_bytes() const { return 2 * trained_ * static_cast<int64_t>(sizeof(float)); }

  // The method's own work before a step (before_step), one AdamW step with
  // the gradients of the last backward, then its work after a step
  // (after_step); returns the global gradient norm before clipping.
  double step(double lr);

 protected:
  // Registers rows x cols `weight` (all of it, or the lines of `slice`) with
  // its gradient tensor `grad`.
  void add(float *weight, int64_t rows, int64_t cols, const s2ft_slice *slice, const s2ft_tensor &grad);
  // Registers a whole tensor of `count` values (a vector counts as [1, count]).
  void add_dense(float *weight, const float *grad, int64_t rows, int64_t cols);
  // Registers the entries of `weight` at `set` with their gradient `grad`
  // ([1, count]); returns the optimizer's parameter index (also the slot of
  // its gradient for set_grad).
  int64_t add_sparse(float *weight, int64_t rows, int64_t cols, const s2ft_sparse_set *set, const s2ft_tensor &grad);
  // Replaces the gradient of parameter `index` after its entries moved
  // (s2ft_optimizer_sparse_reindex), keeping the counts right.
  void set_grad(int64_t index, const s2ft_tensor &grad);
  // What a method does after the backward and before each optimizer step
  // (`steps` done so far, `lr` the step's rate), e.g. SORSA's decoupled
  // regularizer update.
  virtual void before_step(int64_t steps, double lr) {
    (void)steps;
    (void)lr;
  }
  // What a method does after each optimizer step (`steps` done so far).
  virtual void after_step(int64_t steps) { (void)steps; }
  s2ft_optimizer *optimizer() const { return opt_.get(); }

  s2ft_context *ctx_;

 private:
  OptimizerPtr opt_;
  std::vector<s2ft_tensor> grads_;
  int64_t trained_ = 0, grad_bytes_ = 0;
  int64_t steps_ = 0;
};

class FullFineTuning : public FineTuning {
 public:
  using FineTuning::FineTuning;
  const char *name() const override { return "full"; }
  void attach(LlamaModel<float> &model) override;
};

class LoraFineTuning : public FineTuning {
 public:
  // The projections LoRA adapts by default, as in the paper's baseline.
  static const std::vector<Proj> kPaperTargets;  // q, k, v, up, down

  // alpha / rank scales the low-rank update; A is initialised uniform in
  // +-1/sqrt(in) from `seed`, B at zero. `targets`: the adapted projections.
  LoraFineTuning(s2ft_context *ctx, const OptimizerSettings &opt, int64_t rank, double alpha, uint64_t seed,
                 std::vector<Proj> targets = kPaperTargets);
  const char *name() const override { return "lora"; }
  void attach(LlamaModel<float> &model) override;
  int64_t rank() const { return rank_; }
  const std::vector<Proj> &targets() const { return targets_; }

 private:
  int64_t rank_;
  double alpha_;
  uint64_t seed_;
  std::vector<Proj> targets_;
};

}  // namespace ft
