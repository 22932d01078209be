#include "s2ft_projection.hpp"

#include <algorithm>
#include <stdexcept>

#include "s2ft_check.hpp"

namespace ft {

S2ftProjection::S2ftProjection(s2ft_context *ctx, float *w, int64_t out, int64_t in, int32_t axis,
                               std::vector<int64_t> lines)
    : Projection<float>(w, out, in), ctx_(ctx), w_mut_(w), lines_(std::move(lines)) {
  if (lines_.empty()) throw std::invalid_argument("S2ftProjection: no trained lines");
  const int64_t k = static_cast<int64_t>(lines_.size());
  slice_.axis = axis;
  slice_.count = k;
  bool run = true;
  for (int64_t i = 1; i < k; ++i) run = run && lines_[static_cast<size_t>(i)] == lines_[0] + i;
  if (run) {
    slice_.begin = lines_[0];
    slice_.indices = nullptr;
  } else {
    slice_.indices = lines_.data();
  }
  grad_.assign(static_cast<size_t>(axis == S2FT_AXIS_COLUMNS ? out * k : k * in), 0.0f);
}

void S2ftProjection::forward(const float *x, int64_t n, float *y, bool training) {
  const s2ft_tensor tx = f32_tensor(x, n, in_), tw = f32_tensor(w_, out_, in_);
  s2ft_tensor ty = f32_tensor(y, n, out_);
  if (training && slice_.axis == S2FT_AXIS_COLUMNS) {
    saved_.resize(static_cast<size_t>(n * slice_.count));
    s2ft_tensor ts = f32_tensor(saved_.data(), n, slice_.count);
    s2ft_check(s2ft_forward_partial(ctx_, &slice_, &tx, &tw, &ty, &ts), "s2ft_forward_partial");
    return;
  }
  s2ft_check(s2ft_forward_partial(ctx_, &slice_, &tx, &tw, &ty, nullptr), "s2ft_forward_partial");
  if (training) saved_.assign(x, x + n * in_);  // a row slice's dW needs the whole input
}

void S2ftProjection::backward(const float *dy, int64_t n, float *dx, bool accumulate_dx) {
  const int64_t k = slice_.count;
  const s2ft_tensor tw = f32_tensor(w_, out_, in_), tdy = f32_tensor(dy, n, out_);
  const s2ft_tensor tx = slice_.axis == S2FT_AXIS_COLUMNS ? f32_tensor(saved_.data(), n, k)
                                                          : f32_tensor(saved_.data(), n, in_);
  s2ft_tensor tdx = f32_tensor(dx, n, in_), tg = grad_tensor();
  const uint32_t flags = S2FT_ACCUMULATE_DW | (accumulate_dx ? S2FT_ACCUMULATE_DX : 0u);
  s2ft_check(s2ft_backward_partial(ctx_, &slice_, &tw, &tx, &tdy, &tdx, &tg, flags), "s2ft_backward_partial");
}

s2ft_tensor S2ftProjection::grad_tensor() const {
  const int64_t k = slice_.count;
  return slice_.axis == S2FT_AXIS_COLUMNS ? f32_tensor(grad_.data(), out_, k) : f32_tensor(grad_.data(), k, in_);
}

void S2ftProjection::add_to(s2ft_optimizer *opt) {
  s2ft_tensor tw = f32_tensor(w_mut_, out_, in_);
  int64_t index = 0;
  s2ft_check(s2ft_optimizer_add_param(opt, &tw, &slice_, &index), "s2ft_optimizer_add_param");
}

}  // namespace ft
