// SORSA (Cao, 2024, arXiv 2409.00055) on one projection through libs2ft.
// At construction the weight W [out, in] is split by its SVD
// (s2ft_sorsa_init): the top-r singular triplets become the trained f32
// factors u [out, r], s [1, r] and vt [r, in], and W is overwritten in
// place by the frozen residual W_res = W - u diag(s) vt, so the model
// computes the same function before training. Then
//   y  = x W_res^T + ((x vt^T) * s) u^T                  (s2ft_sorsa_forward)
// and the backward gives dx and the factors' gradients     (s2ft_sorsa_backward)
// without ever forming the [out, in] product u diag(s) vt or its gradient.
// The forward keeps x and h = x vt^T ([n, r]) for the backward.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <s2ft/s2ft.h>

#include "projection.hpp"

namespace ft {

class SorsaProjection : public Projection<float> {
 public:
  // `w` [out, in] becomes the residual; rank in [1, min(out, in)].
  SorsaProjection(s2ft_context *ctx, float *w, int64_t out, int64_t in, int64_t rank);

  void forward(const float *x, int64_t n, float *y, bool training) override;
  void backward(const float *dy, int64_t n, float *dx, bool accumulate_dx) override;
  int64_t saved_bytes() const override {
    return static_cast<int64_t>((x_.size() + h_.size()) * sizeof(float));
  }
  void zero_grad() override;

  int64_t rank() const { return rank_; }
  // The trained factors and their gradients, as the optimizer sees them.
  std::vector<float> u, s, vt;                 // [out, r], [1, r], [r, in]
  std::vector<float> grad_u, grad_s, grad_vt;  // same shapes
  s2ft_tensor u_tensor() const;
  s2ft_tensor s_tensor() const;
  s2ft_tensor vt_tensor() const;
  // The frozen residual (the model's weight storage).
  s2ft_tensor residual_tensor() const;

 private:
  s2ft_context *ctx_;
  float *w_mut_;
  int64_t rank_;
  std::vector<float> x_, h_;  // saved input and x vt^T
};

}  // namespace ft
