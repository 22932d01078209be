// Causal grouped-query attention over a batch of equal-length sequences.
// q [B*L, H*hd], k and v [B*L, G*hd] with H = r G: query head h reads KV
// head h / r. Per sequence and head:
//   S = q k^T / sqrt(hd) (positions u <= t only),  P = softmax_rows(S),  a = P v.
// The forward keeps P ([B, H, L, L], upper triangle unused) for the backward.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace ft {

struct AttentionShape {
  int64_t batch, seq, heads, kv_heads, head_dim;
  int64_t q_width() const { return heads * head_dim; }
  int64_t kv_width() const { return kv_heads * head_dim; }
  int64_t probs_size() const { return batch * heads * seq * seq; }
};

template <typename T>
void attention_forward(const AttentionShape &s, const T *q, const T *k, const T *v, T *probs, T *out) {
  const int64_t L = s.seq, hd = s.head_dim, qw = s.q_width(), kw = s.kv_width(), r = s.heads / s.kv_heads;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / r;
      T *P = probs + (b * s.heads + h) * L * L;
      for (int64_t t = 0; t < L; ++t) {
        const T *qt = q + (b * L + t) * qw + h * hd;
        T *pt = P + t * L;
        T mx = -INFINITY;
        for (int64_t u = 0; u <= t; ++u) {
          const T *ku = k + (b * L + u) * kw + g * hd;
          T dot = 0;
          for (int64_t i = 0; i < hd; ++i) dot += qt[i] * ku[i];
          pt[u] = dot * scale;
          mx = std::max(mx, pt[u]);
        }
        T sum = 0;
        for (int64_t u = 0; u <= t; ++u) sum += (pt[u] = std::exp(pt[u] - mx));
        T *at = out + (b * L + t) * qw + h * hd;
        std::fill(at, at + hd, T(0));
        for (int64_t u = 0; u <= t; ++u) {
          pt[u] /= sum;
          const T *vu = v + (b * L + u) * kw + g * hd;
          for (int64_t i = 0; i < hd; ++i) at[i] += pt[u] * vu[i];
        }
      }
    }
}

// Given da (gradient of `out`):
//   dP[t,u] = da_t . v_u,   dv_u = sum_t P[t,u] da_t,
//   dS[t,u] = P[t,u] (dP[t,u] - sum_u' P[t,u'] dP[t,u']),
//   dq_t = scale sum_u dS[t,u] k_u,   dk_u = scale sum_t dS[t,u] q_t.
// dq, dk and dv are overwritten. `scratch` holds L values.
template <typename T>
void attention_backward(const AttentionShape &s, const T *q, const T *k, const T *v, const T *probs, const T *da,
                        T *dq, T *dk, T *dv, T *scratch) {
  const int64_t L = s.seq, hd = s.head_dim, qw = s.q_width(), kw = s.kv_width(), r = s.heads / s.kv_heads;
  const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(hd)));
  std::fill(dq, dq + s.batch * L * qw, T(0));
  std::fill(dk, dk + s.batch * L * kw, T(0));
  std::fill(dv, dv + s.batch * L * kw, T(0));
  T *dP = scratch;
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t h = 0; h < s.heads; ++h) {
      const int64_t g = h / r;
      const T *P = probs + (b * s.heads + h) * L * L;
      for (int64_t t = 0; t < L; ++t) {
        const T *dat = da + (b * L + t) * qw + h * hd, *pt = P + t * L, *qt = q + (b * L + t) * qw + h * hd;
        T row = 0;
        for (int64_t u = 0; u <= t; ++u) {
          const T *vu = v + (b * L + u) * kw + g * hd;
          T *dvu = dv + (b * L + u) * kw + g * hd;
          T dot = 0;
          for (int64_t i = 0; i < hd; ++i) {
            dot += dat[i] * vu[i];
            dvu[i] += pt[u] * dat[i];
          }
          dP[u] = dot;
          row += pt[u] * dot;
        }
        T *dqt = dq + (b * L + t) * qw + h * hd;
        for (int64_t u = 0; u <= t; ++u) {
          const T ds = pt[u] * (dP[u] - row) * scale;
          const T *ku = k + (b * L + u) * kw + g * hd;
          T *dku = dk + (b * L + u) * kw + g * hd;
          for (int64_t i = 0; i < hd; ++i) {
            dqt[i] += ds * ku[i];
            dku[i] += ds * qt[i];
          }
        }
      }
    }
}

}  // namespace ft
