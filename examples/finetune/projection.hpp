// The seven linear projections of a LLaMA block, y = x W^T with W [out, in],
// and how each fine-tuning method trains them. The base class is a frozen
// projection: it computes y and, in the backward, only dx = dy W (no weight
// gradient, nothing saved). Methods subclass it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "gemm.hpp"
#include "llama_config.hpp"

namespace ft {

template <typename T>
class Projection {
 public:
  // `w` is [out, in] and must stay where it is while the projection lives
  // (optimizers update it in place).
  Projection(const T *w, int64_t out, int64_t in) : w_(w), out_(out), in_(in) {}
  virtual ~Projection() = default;
  Projection(const Projection &) = delete;
  Projection &operator=(const Projection &) = delete;

  int64_t out() const { return out_; }
  int64_t in() const { return in_; }

  // y [n, out] = x [n, in] W^T. In training the projection keeps what its
  // backward needs.
  virtual void forward(const T *x, int64_t n, T *y, bool training) {
    (void)training;
    linear_forward(x, w_, y, n, in_, out_);
  }
  // dx [n, in] = dy W (added to dx when accumulate_dx), plus the method's
  // parameter gradients, accumulated.
  virtual void backward(const T *dy, int64_t n, T *dx, bool accumulate_dx) {
    linear_backward_input(dy, w_, dx, n, in_, out_, accumulate_dx);
  }
  // Bytes of activations kept from the last training forward for backward.
  virtual int64_t saved_bytes() const { return 0; }
  // Sets the method's parameter gradients to zero (before a step's backward).
  virtual void zero_grad() {}

 protected:
  const T *w_;
  int64_t out_, in_;
};

// Full fine-tuning: saves the whole input and forms the whole dW = dy^T x.
template <typename T>
class DenseProjection : public Projection<T> {
 public:
  DenseProjection(const T *w, int64_t out, int64_t in)
      : Projection<T>(w, out, in), grad(static_cast<size_t>(out * in), T(0)) {}

  void forward(const T *x, int64_t n, T *y, bool training) override {
    Projection<T>::forward(x, n, y, training);
    if (training) saved_.assign(x, x + n * this->in_);
  }
  void backward(const T *dy, int64_t n, T *dx, bool accumulate_dx) override {
    Projection<T>::backward(dy, n, dx, accumulate_dx);
    linear_backward_weight(dy, saved_.data(), grad.data(), n, this->in_, this->out_);
  }
  int64_t saved_bytes() const override { return static_cast<int64_t>(saved_.size() * sizeof(T)); }
  void zero_grad() override { std::fill(grad.begin(), grad.end(), T(0)); }

  std::vector<T> grad;  // [out, in]

 private:
  std::vector<T> saved_;
};

// LoRA: y = x W^T + s (x A^T) B^T with A [r, in], B [out, r], s = alpha / r;
// W is frozen. B starts at zero so training starts from the base model.
// Backward, with u = x A^T and du = s dy B:
//   dx = dy W + du A,   dB += s dy^T u,   dA += du^T x.
template <typename T>
class LoraProjection : public Projection<T> {
 public:
  LoraProjection(const T *w, int64_t out, int64_t in, int64_t rank, double alpha)
      : Projection<T>(w, out, in),
        a(static_cast<size_t>(rank * in), T(0)),
        b(static_cast<size_t>(out * rank), T(0)),
        grad_a(a.size(), T(0)),
        grad_b(b.size(), T(0)),
        rank_(rank),
        scale_(static_cast<T>(alpha / static_cast<double>(rank))) {}

  int64_t rank() const { return rank_; }
  T scale() const { return scale_; }

  std::vector<T> a, b, grad_a, grad_b;  // A [r, in], B [out, r] and their gradients

  void forward(const T *x, int64_t n, T *y, bool training) override {
    Projection<T>::forward(x, n, y, training);
    u_.resize(static_cast<size_t>(n * rank_));
    linear_forward(x, a.data(), u_.data(), n, this->in_, rank_);
    gemm<T>(false, true, n, this->out_, rank_, scale_, u_.data(), rank_, b.data(), rank_, T(1), y, this->out_);
    if (training) x_.assign(x, x + n * this->in_);
  }
  void backward(const T *dy, int64_t n, T *dx, bool accumulate_dx) override {
    Projection<T>::backward(dy, n, dx, accumulate_dx);
    du_.resize(static_cast<size_t>(n * rank_));
    gemm<T>(false, false, n, rank_, this->out_, scale_, dy, this->out_, b.data(), rank_, T(0), du_.data(), rank_);
    gemm<T>(true, false, this->out_, rank_, n, scale_, dy, this->out_, u_.data(), rank_, T(1), grad_b.data(), rank_);
    linear_backward_weight(du_.data(), x_.data(), grad_a.data(), n, this->in_, rank_);
    linear_backward_input(du_.data(), a.data(), dx, n, this->in_, rank_, true);
  }
  int64_t saved_bytes() const override { return static_cast<int64_t>((x_.size() + u_.size()) * sizeof(T)); }
  void zero_grad() override {
    std::fill(grad_a.begin(), grad_a.end(), T(0));
    std::fill(grad_b.begin(), grad_b.end(), T(0));
  }

 private:
  int64_t rank_;
  T scale_;
  std::vector<T> x_, u_, du_;  // saved input, saved x A^T, scratch s dy B
};

}  // namespace ft
