// The element-wise and row-wise layers of a LLaMA block, forward and
// backward. Activations are row-major [n, width] with n = batch * seq_len.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace ft {

// RMSNorm: y = x * r * g with r = 1 / sqrt(mean(x^2) + eps) per row.
// Saves r (one value per row) for the backward.
template <typename T>
void rms_norm_forward(const T *x, const T *g, T *y, T *rstd, int64_t n, int64_t d, double eps) {
  for (int64_t i = 0; i < n; ++i) {
    const T *xi = x + i * d;
    double ss = 0.0;
    for (int64_t j = 0; j < d; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    const T r = static_cast<T>(1.0 / std::sqrt(ss / static_cast<double>(d) + eps));
    rstd[i] = r;
    for (int64_t j = 0; j < d; ++j) y[i * d + j] = xi[j] * r * g[j];
  }
}

// With xh = x r:  dx_j = r (g_j dy_j - xh_j mean_i(g_i dy_i xh_i)),  dg += sum_rows dy * xh.
// dx is accumulated (the residual stream adds its own gradient); dg may be null.
template <typename T>
void rms_norm_backward(const T *x, const T *g, const T *rstd, const T *dy, T *dx, T *dg, int64_t n, int64_t d) {
  for (int64_t i = 0; i < n; ++i) {
    const T *xi = x + i * d, *dyi = dy + i * d;
    const T r = rstd[i];
    double dot = 0.0;
    for (int64_t j = 0; j < d; ++j) dot += static_cast<double>(g[j]) * dyi[j] * xi[j] * r;
    const T mean = static_cast<T>(dot / static_cast<double>(d));
    for (int64_t j = 0; j < d; ++j) {
      const T xh = xi[j] * r;
      dx[i * d + j] += r * (g[j] * dyi[j] - xh * mean);
      if (dg != nullptr) dg[j] += dyi[j] * xh;
    }
  }
}

// Rotary position embedding, Hugging Face rotate-half convention: inside each
// head the pair (i, i + hd/2) at position p is rotated by the angle
// p * theta^(-2i/hd). The tables hold cos and sin per (position, i).
struct RopeTable {
  int64_t max_pos = 0, half = 0;
  std::vector<double> cos, sin;
  RopeTable() = default;
  RopeTable(int64_t positions, int64_t head_dim, double theta) : max_pos(positions), half(head_dim / 2) {
    cos.resize(static_cast<size_t>(max_pos * half));
    sin.resize(cos.size());
    for (int64_t p = 0; p < max_pos; ++p)
      for (int64_t i = 0; i < half; ++i) {
        const double a = static_cast<double>(p) * std::pow(theta, -2.0 * static_cast<double>(i) /
                                                                       static_cast<double>(2 * half));
        cos[static_cast<size_t>(p * half + i)] = std::cos(a);
        sin[static_cast<size_t>(p * half + i)] = std::sin(a);
      }
  }
};

// Rotates x [batch * seq, heads * hd] in place; `inverse` rotates by the
// opposite angle, which is the backward (a rotation's transpose).
template <typename T>
void rope_apply(T *x, int64_t batch, int64_t seq, int64_t heads, const RopeTable &rt, bool inverse) {
  const int64_t half = rt.half, hd = 2 * half;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t p = 0; p < seq; ++p) {
      const double *c = &rt.cos[static_cast<size_t>(p * half)], *s = &rt.sin[static_cast<size_t>(p * half)];
      for (int64_t h = 0; h < heads; ++h) {
        T *v = x + ((b * seq + p) * heads + h) * hd;
        for (int64_t i = 0; i < half; ++i) {
          const T ci = static_cast<T>(c[i]), si = static_cast<T>(inverse ? -s[i] : s[i]);
          const T a = v[i], bb = v[i + half];
          v[i] = a * ci - bb * si;
          v[i + half] = bb * ci + a * si;
        }
      }
    }
}

// SwiGLU: act = silu(g) * u with silu(g) = g sigmoid(g).
template <typename T>
void swiglu_forward(const T *g, const T *u, T *act, int64_t count) {
  for (int64_t i = 0; i < count; ++i) act[i] = g[i] / (T(1) + std::exp(-g[i])) * u[i];
}

// dg = dact * u * silu'(g) with silu'(g) = s (1 + g (1 - s)), s = sigmoid(g);
// du = dact * silu(g).
template <typename T>
void swiglu_backward(const T *g, const T *u, const T *dact, T *dg, T *du, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    const T s = T(1) / (T(1) + std::exp(-g[i]));
    dg[i] = dact[i] * u[i] * s * (T(1) + g[i] * (T(1) - s));
    du[i] = dact[i] * g[i] * s;
  }
}

// Mean cross-entropy over the rows whose target is >= 0:
//   loss = -(1/N) sum_i log softmax(z_i)[t_i].
// Overwrites logits z [n, vocab] with dL/dz = (softmax(z) - onehot(t)) / N
// (rows without a target get 0). Returns the loss (0 when N == 0) and the
// number of counted rows in *counted.
template <typename T>
double cross_entropy_and_grad(T *z, const int32_t *targets, int64_t n, int64_t vocab, int64_t *counted) {
  int64_t N = 0;
  for (int64_t i = 0; i < n; ++i) N += targets[i] >= 0;
  *counted = N;
  double loss = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    T *zi = z + i * vocab;
    if (targets[i] < 0) {
      for (int64_t j = 0; j < vocab; ++j) zi[j] = T(0);
      continue;
    }
    T mx = zi[0];
    for (int64_t j = 1; j < vocab; ++j) mx = std::max(mx, zi[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < vocab; ++j) sum += std::exp(static_cast<double>(zi[j] - mx));
    loss += std::log(sum) - static_cast<double>(zi[targets[i]] - mx);
    for (int64_t j = 0; j < vocab; ++j)
      zi[j] = static_cast<T>(std::exp(static_cast<double>(zi[j] - mx)) / sum / static_cast<double>(N));
    zi[targets[i]] -= static_cast<T>(1.0 / static_cast<double>(N));
  }
  return N > 0 ? loss / static_cast<double>(N) : 0.0;
}

}  // namespace ft
