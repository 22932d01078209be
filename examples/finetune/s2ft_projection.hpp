// S2FT on one projection, through libs2ft: only the selected lines of W are
// trained. For a column slice S (o_proj, down_proj) the forward keeps
// x[:, S] ([n, k]) instead of x, and the backward forms dW[:, S] = dy^T x_S;
// for a row slice (v_proj, up_proj) it keeps x and forms dW[S, :] =
// dy[:, S]^T x. dx = dy W goes through the whole frozen weight either way.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <s2ft/s2ft.h>

#include "projection.hpp"

namespace ft {

class S2ftProjection : public Projection<float> {
 public:
  // `lines` are the trained lines (columns for S2FT_AXIS_COLUMNS, rows for
  // S2FT_AXIS_ROWS); when they form one ascending run (a permuted model) the
  // contiguous path is used, else the index path.
  S2ftProjection(s2ft_context *ctx, float *w, int64_t out, int64_t in, int32_t axis, std::vector<int64_t> lines);

  void forward(const float *x, int64_t n, float *y, bool training) override;
  void backward(const float *dy, int64_t n, float *dx, bool accumulate_dx) override;
  int64_t saved_bytes() const override { return static_cast<int64_t>(saved_.size() * sizeof(float)); }
  void zero_grad() override { std::fill(grad_.begin(), grad_.end(), 0.0f); }

  // Registers the slice with `opt`; the gradient to pass for it is grad().
  void add_to(s2ft_optimizer *opt);
  const std::vector<float> &grad() const { return grad_; }
  s2ft_tensor grad_tensor() const;
  int64_t trained_elements() const { return static_cast<int64_t>(grad_.size()); }
  const s2ft_slice &slice() const { return slice_; }

 private:
  s2ft_context *ctx_;
  float *w_mut_;
  std::vector<int64_t> lines_;
  s2ft_slice slice_{};
  std::vector<float> saved_;  // x[:, S] for columns, x for rows
  std::vector<float> grad_;   // [out, k] or [k, in]
};

}  // namespace ft
