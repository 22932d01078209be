// A float64 reference LLaMA decoder block, written for clarity, not speed:
//   h  = RMSNorm(x) * attn_norm
//   q, k, v = h Wq^T, h Wk^T, h Wv^T           (weights [out, in])
//   RoPE on q and k (Hugging Face rotate-half convention, positions 0..T-1)
//   a  = causal grouped-query attention       (query head h reads KV head h / r)
//   x1 = x + a Wo^T
//   h2 = RMSNorm(x1) * ffn_norm
//   y  = x1 + (silu(h2 Wg^T) * (h2 Wu^T)) Wd^T (SwiGLU)
// All arrays are row-major std::vector<double>.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace s2ft_ref {

struct BlockShape {
  int64_t d_model = 0, n_heads = 0, n_kv_heads = 0, head_dim = 0, d_ff = 0;
  double rms_eps = 1e-5;
  double rope_theta = 10000.0;
};

struct BlockWeights {
  std::vector<double> attn_norm;  // [d_model]
  std::vector<double> q;          // [n_heads*hd, d_model]
  std::vector<double> k;          // [n_kv*hd, d_model]
  std::vector<double> v;          // [n_kv*hd, d_model]
  std::vector<double> o;          // [d_model, n_heads*hd]
  std::vector<double> ffn_norm;   // [d_model]
  std::vector<double> gate;       // [d_ff, d_model]
  std::vector<double> up;         // [d_ff, d_model]
  std::vector<double> down;       // [d_model, d_ff]
};

// Inputs of the trainable projections, captured during a forward.
struct BlockTaps {
  std::vector<double> attn_input;  // [T, d_model]: RMSNorm(x) * attn_norm, the input of q/k/v_proj
  std::vector<double> o_input;     // [T, n_heads*hd]: attention output before o_proj
  std::vector<double> ffn_input;   // [T, d_model]: RMSNorm(x1) * ffn_norm, the input of gate/up_proj
  std::vector<double> down_input;  // [T, d_ff]: silu(gate) * up before down_proj
};

// y[T, out] = x[T, in] W^T with W [out, in].
inline std::vector<double> linear(const std::vector<double> &x, int64_t T, int64_t in, const std::vector<double> &w,
                                  int64_t out) {
  std::vector<double> y(static_cast<size_t>(T * out), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t o = 0; o < out; ++o) {
      double s = 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[static_cast<size_t>(t * in + i)] * w[static_cast<size_t>(o * in + i)];
      y[static_cast<size_t>(t * out + o)] = s;
    }
  return y;
}

// x / sqrt(mean(x^2) + eps) * g, per row.
inline std::vector<double> rms_norm(const std::vector<double> &x, int64_t T, int64_t d, const std::vector<double> &g,
                                    double eps) {
  std::vector<double> y(x.size());
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0.0;
    for (int64_t i = 0; i < d; ++i) ss += x[static_cast<size_t>(t * d + i)] * x[static_cast<size_t>(t * d + i)];
    const double inv = 1.0 / std::sqrt(ss / static_cast<double>(d) + eps);
    for (int64_t i = 0; i < d; ++i)
      y[static_cast<size_t>(t * d + i)] = x[static_cast<size_t>(t * d + i)] * inv * g[static_cast<size_t>(i)];
  }
  return y;
}

// Rotate-half RoPE in place on x [T, n_heads*hd]: inside each head, the pair
// (i, i + hd/2) is rotated by pos * theta^(-2i/hd).
inline void rope(std::vector<double> &x, int64_t T, int64_t n_heads, int64_t hd, double theta) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < n_heads; ++h) {
      double *p = &x[static_cast<size_t>((t * n_heads + h) * hd)];
      for (int64_t i = 0; i < half; ++i) {
        const double freq = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
        const double c = std::cos(static_cast<double>(t) * freq), s = std::sin(static_cast<double>(t) * freq);
        const double a = p[i], b = p[i + half];
        p[i] = a * c - b * s;
        p[i + half] = b * c + a * s;
      }
    }
}

inline double silu(double v) { return v / (1.0 + std::exp(-v)); }

// The block's output [T, d_model] for input x [T, d_model].
inline std::vector<double> llama_block(const BlockShape &s, const BlockWeights &w, const std::vector<double> &x,
                                       int64_t T, BlockTaps *taps = nullptr) {
  const int64_t d = s.d_model, hd = s.head_dim, nq = s.n_heads * hd, nkv = s.n_kv_heads * hd;
  const int64_t r = s.n_heads / s.n_kv_heads;

  const std::vector<double> h = rms_norm(x, T, d, w.attn_norm, s.rms_eps);
  std::vector<double> q = linear(h, T, d, w.q, nq);
  std::vector<double> k = linear(h, T, d, w.k, nkv);
  const std::vector<double> v = linear(h, T, d, w.v, nkv);
  rope(q, T, s.n_heads, hd, s.rope_theta);
  rope(k, T, s.n_kv_heads, hd, s.rope_theta);

  std::vector<double> att(static_cast<size_t>(T * nq), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> p(static_cast<size_t>(T));
  for (int64_t hq = 0; hq < s.n_heads; ++hq) {
    const int64_t g = hq / r;
    for (int64_t t = 0; t < T; ++t) {
      double mx = -INFINITY;
      for (int64_t u = 0; u <= t; ++u) {
        double dot = 0.0;
        for (int64_t i = 0; i < hd; ++i)
          dot += q[static_cast<size_t>(t * nq + hq * hd + i)] * k[static_cast<size_t>(u * nkv + g * hd + i)];
        p[static_cast<size_t>(u)] = dot * scale;
        mx = std::max(mx, p[static_cast<size_t>(u)]);
      }
      double sum = 0.0;
      for (int64_t u = 0; u <= t; ++u) sum += (p[static_cast<size_t>(u)] = std::exp(p[static_cast<size_t>(u)] - mx));
      for (int64_t u = 0; u <= t; ++u)
        for (int64_t i = 0; i < hd; ++i)
          att[static_cast<size_t>(t * nq + hq * hd + i)] +=
              p[static_cast<size_t>(u)] / sum * v[static_cast<size_t>(u * nkv + g * hd + i)];
    }
  }
  const std::vector<double> ao = linear(att, T, nq, w.o, d);
  std::vector<double> x1(x);
  for (size_t i = 0; i < x1.size(); ++i) x1[i] += ao[i];

  const std::vector<double> h2 = rms_norm(x1, T, d, w.ffn_norm, s.rms_eps);
  const std::vector<double> gt = linear(h2, T, d, w.gate, s.d_ff);
  const std::vector<double> upv = linear(h2, T, d, w.up, s.d_ff);
  std::vector<double> act(gt.size());
  for (size_t i = 0; i < act.size(); ++i) act[i] = silu(gt[i]) * upv[i];
  const std::vector<double> f = linear(act, T, s.d_ff, w.down, d);
  for (size_t i = 0; i < x1.size(); ++i) x1[i] += f[i];
  if (taps != nullptr) {
    taps->attn_input = h;
    taps->o_input = att;
    taps->ffn_input = h2;
    taps->down_input = act;
  }
  return x1;
}

}  // namespace s2ft_ref
