// Unstructured sparse fine-tuning of one projection through libs2ft (LIFT,
// SpIEL): W is trained at a set of entries only. The forward is the plain
// dense product (the trained entries sit in W); the backward gives
// dx = dy W and the gradient at the entries only,
//   g[j] = sum_t dy[t, r_j] x[t, c_j]          (s2ft_backward_sparse, SDDMM)
// so the [out, in] weight gradient is never formed. The forward keeps x.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include <s2ft/s2ft.h>

#include "projection.hpp"

namespace ft {

struct SparseSetDeleter {
  void operator()(s2ft_sparse_set *p) const { s2ft_sparse_set_destroy(p); }
};
using SparseSetPtr = std::unique_ptr<s2ft_sparse_set, SparseSetDeleter>;

class SparseProjection : public Projection<float> {
 public:
  // `indices`: the trained entries' flat indices r * in + c, ascending.
  SparseProjection(s2ft_context *ctx, float *w, int64_t out, int64_t in, const std::vector<int64_t> &indices);

  void forward(const float *x, int64_t n, float *y, bool training) override;
  void backward(const float *dy, int64_t n, float *dx, bool accumulate_dx) override;
  int64_t saved_bytes() const override { return static_cast<int64_t>(saved_.size() * sizeof(float)); }
  void zero_grad() override { std::fill(grad_.begin(), grad_.end(), 0.0f); }

  // Moves training to the entries of `set` (made for this weight's shape);
  // the gradient restarts at zero with the set's count.
  void reset(SparseSetPtr set);
  const s2ft_sparse_set *set() const { return set_.get(); }
  int64_t count() const { return static_cast<int64_t>(grad_.size()); }
  float *weight() const { return w_mut_; }
  s2ft_tensor weight_tensor() const;
  // The gradient to pass to the optimizer for this parameter ([1, count]).
  s2ft_tensor grad_tensor() const;

  // Called after each backward with the layer's input x [n, in] and output
  // gradient dy [n, out] (SpIEL's schedule observes them).
  std::function<void(const s2ft_tensor &x, const s2ft_tensor &dy)> observer;

 private:
  s2ft_context *ctx_;
  float *w_mut_;
  SparseSetPtr set_;
  std::vector<float> saved_;  // x
  std::vector<float> grad_;   // [count]
};

}  // namespace ft
