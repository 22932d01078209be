#include "sorsa_projection.hpp"

#include <stdexcept>
#include <string>

#include "s2ft_check.hpp"

namespace ft {

SorsaProjection::SorsaProjection(s2ft_context *ctx, float *w, int64_t out, int64_t in, int64_t rank)
    : Projection<float>(w, out, in), ctx_(ctx), w_mut_(w), rank_(rank) {
  if (rank < 1 || rank > std::min(out, in))
    throw std::invalid_argument("SorsaProjection: rank " + std::to_string(rank) + " outside [1, min(out, in)]");
  u.assign(static_cast<size_t>(out * rank), 0.0f);
  s.assign(static_cast<size_t>(rank), 0.0f);
  vt.assign(static_cast<size_t>(rank * in), 0.0f);
  grad_u.assign(u.size(), 0.0f);
  grad_s.assign(s.size(), 0.0f);
  grad_vt.assign(vt.size(), 0.0f);
  s2ft_tensor tw = residual_tensor(), tu = u_tensor(), ts = s_tensor(), tvt = vt_tensor();
  s2ft_check(s2ft_sorsa_init(ctx_, &tw, static_cast<int32_t>(rank), &tu, &ts, &tvt), "s2ft_sorsa_init");
}

void SorsaProjection::forward(const float *x, int64_t n, float *y, bool training) {
  const s2ft_tensor tx = f32_tensor(x, n, in_), tw = residual_tensor(), tu = u_tensor(), ts = s_tensor(),
                    tvt = vt_tensor();
  s2ft_tensor ty = f32_tensor(y, n, out_);
  if (!training) {  // evaluation: keep what the last training forward saved for its backward
    s2ft_check(s2ft_sorsa_forward(ctx_, &tx, &tw, &tu, &ts, &tvt, &ty, nullptr), "s2ft_sorsa_forward");
    return;
  }
  h_.resize(static_cast<size_t>(n * rank_));
  s2ft_tensor th = f32_tensor(h_.data(), n, rank_);
  s2ft_check(s2ft_sorsa_forward(ctx_, &tx, &tw, &tu, &ts, &tvt, &ty, &th), "s2ft_sorsa_forward");
  x_.assign(x, x + n * in_);
}

void SorsaProjection::backward(const float *dy, int64_t n, float *dx, bool accumulate_dx) {
  const s2ft_tensor tx = f32_tensor(x_.data(), n, in_), tw = residual_tensor(), tu = u_tensor(), ts = s_tensor(),
                    tvt = vt_tensor(), th = f32_tensor(h_.data(), n, rank_), tdy = f32_tensor(dy, n, out_);
  s2ft_tensor tdx = f32_tensor(dx, n, in_), tdu = f32_tensor(grad_u.data(), out_, rank_),
              tds = f32_tensor(grad_s.data(), 1, rank_), tdvt = f32_tensor(grad_vt.data(), rank_, in_);
  // The factors' gradients accumulate, as every projection's do, until zero_grad.
  const uint32_t flags = S2FT_ACCUMULATE_DW | (accumulate_dx ? S2FT_ACCUMULATE_DX : 0u);
  s2ft_check(s2ft_sorsa_backward(ctx_, &tx, &tw, &tu, &ts, &tvt, &th, &tdy, &tdx, &tdu, &tds, &tdvt, flags),
             "s2ft_sorsa_backward");
}

void SorsaProjection::zero_grad() {
  std::fill(grad_u.begin(), grad_u.end(), 0.0f);
  std::fill(grad_s.begin(), grad_s.end(), 0.0f);
  std::fill(grad_vt.begin(), grad_vt.end(), 0.0f);
}

s2ft_tensor SorsaProjection::u_tensor() const { return f32_tensor(u.data(), out_, rank_); }
s2ft_tensor SorsaProjection::s_tensor() const { return f32_tensor(s.data(), 1, rank_); }
s2ft_tensor SorsaProjection::vt_tensor() const { return f32_tensor(vt.data(), rank_, in_); }
s2ft_tensor SorsaProjection::residual_tensor() const { return f32_tensor(w_mut_, out_, in_); }

}  // namespace ft
