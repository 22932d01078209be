#include "sparse_projection.hpp"

#include <stdexcept>

#include "s2ft_check.hpp"

namespace ft {

SparseProjection::SparseProjection(s2ft_context *ctx, float *w, int64_t out, int64_t in,
                                   const std::vector<int64_t> &indices)
    : Projection<float>(w, out, in), ctx_(ctx), w_mut_(w) {
  if (indices.empty()) throw std::invalid_argument("SparseProjection: no trained entries");
  s2ft_sparse_set *set = nullptr;
  s2ft_check(s2ft_sparse_set_create(ctx, out, in, indices.data(), static_cast<int64_t>(indices.size()), &set),
             "s2ft_sparse_set_create");
  reset(SparseSetPtr(set));
}

void SparseProjection::reset(SparseSetPtr set) {
  int64_t count = 0;
  s2ft_check(s2ft_sparse_set_count(set.get(), &count), "s2ft_sparse_set_count");
  set_ = std::move(set);
  grad_.assign(static_cast<size_t>(count), 0.0f);
}

void SparseProjection::forward(const float *x, int64_t n, float *y, bool training) {
  Projection<float>::forward(x, n, y, training);
  if (training) saved_.assign(x, x + n * in_);
}

void SparseProjection::backward(const float *dy, int64_t n, float *dx, bool accumulate_dx) {
  const s2ft_tensor tx = f32_tensor(saved_.data(), n, in_), tdy = f32_tensor(dy, n, out_);
  const s2ft_tensor tw = weight_tensor();
  s2ft_tensor tdx = f32_tensor(dx, n, in_), tg = grad_tensor();
  const uint32_t flags = S2FT_ACCUMULATE_DW | (accumulate_dx ? S2FT_ACCUMULATE_DX : 0u);
  s2ft_check(s2ft_backward_sparse(ctx_, set_.get(), &tx, &tdy, &tw, &tdx, &tg, flags), "s2ft_backward_sparse");
  if (observer) observer(tx, tdy);
}

s2ft_tensor SparseProjection::weight_tensor() const { return f32_tensor(w_mut_, out_, in_); }

s2ft_tensor SparseProjection::grad_tensor() const { return f32_tensor(grad_.data(), 1, count()); }

}  // namespace ft
