// Test-side helpers for adapters with unstructured sparse entries, written
// independently of the library: the seven weights' geometry, the
// whole-weight base fingerprint, element positions under a selection's
// permutation, the correctly rounded merge, a model's seven weights per
// layer, and a test adapter that keeps its delta densely in float64 so
// references are plain loops.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "support/target_geometry.hpp"
#include "support/test_util.hpp"

namespace s2ft_test {

inline const int32_t kWeights[] = {S2FT_WEIGHT_O, S2FT_WEIGHT_V, S2FT_WEIGHT_DOWN, S2FT_WEIGHT_UP,
                                   S2FT_WEIGHT_Q, S2FT_WEIGHT_K, S2FT_WEIGHT_GATE};

// [rows, cols] of any of the seven weights.
inline void full_shape(const s2ft_model_shape &s, int32_t w, int64_t *r, int64_t *c) {
  const int64_t q = int64_t{s.n_heads} * s.head_dim, kv = int64_t{s.n_kv_heads} * s.head_dim;
  switch (w) {
    case S2FT_WEIGHT_Q: *r = q, *c = s.d_model; break;
    case S2FT_WEIGHT_K: *r = kv, *c = s.d_model; break;
    case S2FT_WEIGHT_GATE: *r = s.d_ff, *c = s.d_model; break;
    default: weight_shape(s, w, r, c); break;
  }
}

inline s2ft_tensor *&field(s2ft_layer_weights &lw, int32_t w) {
  switch (w) {
    case S2FT_WEIGHT_O: return lw.o;
    case S2FT_WEIGHT_V: return lw.v;
    case S2FT_WEIGHT_DOWN: return lw.down;
    case S2FT_WEIGHT_UP: return lw.up;
    case S2FT_WEIGHT_Q: return lw.q;
    case S2FT_WEIGHT_K: return lw.k;
    default: return lw.gate;
  }
}

// The structured line flat index n of a [rows, cols] target weight lies on.
inline int64_t line_of(int32_t w, int64_t cols, int64_t n) { return by_columns(w) ? n % cols : n / cols; }

// ---- fingerprints (docs/adapter-format.md) -----------------------------------------

inline uint64_t fnv_byte(uint64_t h, unsigned b) { return (h ^ b) * 0x100000001b3ull; }
inline uint16_t bf16_word(float v) {
  if (std::isnan(v)) return 0x7fc0;
  return to_bf16(v);
}
inline uint64_t row_fingerprint(const HostMatrix &m, int64_t r) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int64_t c = 0; c < m.cols; ++c) {
    const uint16_t w = bf16_word(m.get(r, c));
    h = fnv_byte(fnv_byte(h, w & 0xffu), w >> 8);
  }
  return h == 0 ? 1 : h;
}
// The whole-weight fingerprint of a base-order weight.
inline uint64_t weight_fingerprint(const HostMatrix &m) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int64_t r = 0; r < m.rows; ++r) {
    const uint64_t f = row_fingerprint(m, r);
    for (int b = 0; b < 8; ++b) h = fnv_byte(h, static_cast<unsigned>((f >> (8 * b)) & 0xffu));
  }
  return h == 0 ? 1 : h;
}
// FNV-1a 64 of a byte string (golden files).
inline uint64_t fnv_bytes(const std::vector<uint8_t> &b) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (uint8_t x : b) h = fnv_byte(h, x);
  return h;
}

// ---- the seven weights of every layer -------------------------------------------------

struct AllWeights {
  s2ft_model_shape shape{};
  int32_t dtype = S2FT_F32;
  std::vector<std::array<HostMatrix, 7>> w;  // [layer][weight id]
  std::vector<s2ft_layer_weights> layers;

  AllWeights(const s2ft_model_shape &s, int32_t dt, uint64_t seed, double scale = 2.0) : shape(s), dtype(dt) {
    Random rng(seed);
    w.resize(static_cast<size_t>(s.n_layers));
    for (auto &l : w)
      for (int32_t id : kWeights) {
        int64_t r, c;
        full_shape(s, id, &r, &c);
        l[static_cast<size_t>(id)] = HostMatrix(dt, r, c);
        l[static_cast<size_t>(id)].fill_random(rng, scale);
      }
    bind();
  }
  AllWeights(const AllWeights &o) : shape(o.shape), dtype(o.dtype), w(o.w) { bind(); }
  AllWeights &operator=(const AllWeights &) = delete;
  void bind() {
    layers.assign(w.size(), s2ft_layer_weights{});
    for (size_t l = 0; l < w.size(); ++l)
      for (int32_t id : kWeights) field(layers[l], id) = &w[l][static_cast<size_t>(id)].t;
  }
  HostMatrix &at(int32_t layer, int32_t id) { return w[static_cast<size_t>(layer)][static_cast<size_t>(id)]; }
  const HostMatrix &at(int32_t layer, int32_t id) const { return w[static_cast<size_t>(layer)][static_cast<size_t>(id)]; }
  bool same_bytes(const AllWeights &o) const {
    for (size_t l = 0; l < w.size(); ++l)
      for (int32_t id : kWeights)
        if (w[l][static_cast<size_t>(id)].bytes != o.w[l][static_cast<size_t>(id)].bytes) return false;
    return true;
  }
  // s2ft_permute of every layer (all seven weights together).
  void permute(s2ft_context *ctx, const s2ft_selection *sel, int32_t direction) {
    for (size_t l = 0; l < layers.size(); ++l)
      EXPECT_EQ(s2ft_permute(ctx, sel, static_cast<int32_t>(l), &layers[l], direction), S2FT_OK) << s2ft_last_error();
  }
};

// ---- a test adapter -------------------------------------------------------------------

// What one (layer, weight) of a test adapter holds: structured lines (w < 4,
// ascending) with their delta, and sparse entries, all kept as a dense
// float64 delta in base order (the values are f32).
struct TestEntry {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> lines;    // structured, ascending
  std::vector<int64_t> indices;  // sparse, ascending
  std::vector<float> values;     // sparse deltas
  std::vector<double> dense;     // [rows * cols]
  std::vector<char> touched;     // [rows * cols]
  uint64_t fingerprint = 0;
};

struct TestAdapter {
  s2ft_adapter *a = nullptr;
  std::vector<std::array<TestEntry, 7>> e;  // [layer][weight id]
  TestAdapter() = default;
  TestAdapter(const TestAdapter &) = delete;
  TestAdapter &operator=(const TestAdapter &) = delete;
  ~TestAdapter() { s2ft_adapter_destroy(a); }
  TestEntry &at(int32_t l, int32_t w) { return e[static_cast<size_t>(l)][static_cast<size_t>(w)]; }
  const TestEntry &at(int32_t l, int32_t w) const { return e[static_cast<size_t>(l)][static_cast<size_t>(w)]; }
};

// What to put in one weight of every layer: `lines` structured lines (w < 4;
// shifted by the layer) and sparse entries with probability `density` among
// the elements not on those lines (at least one when density > 0; exactly
// one when density < 0).
struct WeightSpec {
  std::vector<int64_t> lines;
  double density = 0.0;
};

// Fills `ta` (created here) from specs[weight id]; fingerprints from `base`
// (base order) when it is not NULL. Sparse deltas are set as f32 [count]
// tensors, structured ones as s2ft_adapter_set does.
inline void make_test_adapter(TestAdapter &ta, const s2ft_model_shape &s, const std::array<WeightSpec, 7> &specs,
                              const AllWeights *base, uint64_t seed, const char *name, double delta_scale = 0.5,
                              double default_scale = 1.0) {
  ASSERT_EQ(s2ft_adapter_create(&s, name, default_scale, &ta.a), S2FT_OK) << s2ft_last_error();
  Random rng(seed);
  ta.e.assign(static_cast<size_t>(s.n_layers), {});
  for (int32_t l = 0; l < s.n_layers; ++l)
    for (int32_t w : kWeights) {
      TestEntry &te = ta.at(l, w);
      const WeightSpec &spec = specs[static_cast<size_t>(w)];
      full_shape(s, w, &te.rows, &te.cols);
      te.dense.assign(static_cast<size_t>(te.rows * te.cols), 0.0);
      te.touched.assign(te.dense.size(), 0);
      if (w < S2FT_NUM_TARGETS && !spec.lines.empty()) {
        const int64_t n = line_count(s, w), len = line_length(s, w);
        for (int64_t line : spec.lines) te.lines.push_back((line + l) % n);
        std::sort(te.lines.begin(), te.lines.end());
        te.lines.erase(std::unique(te.lines.begin(), te.lines.end()), te.lines.end());
        const int64_t k = static_cast<int64_t>(te.lines.size());
        HostMatrix d = by_columns(w) ? HostMatrix(S2FT_F32, len, k) : HostMatrix(S2FT_F32, k, len);
        d.fill_random(rng, delta_scale);
        for (int64_t j = 0; j < k; ++j)
          for (int64_t i = 0; i < len; ++i) {
            const int64_t r = by_columns(w) ? i : te.lines[static_cast<size_t>(j)];
            const int64_t c = by_columns(w) ? te.lines[static_cast<size_t>(j)] : i;
            te.dense[static_cast<size_t>(r * te.cols + c)] = by_columns(w) ? d.get(i, j) : d.get(j, i);
            te.touched[static_cast<size_t>(r * te.cols + c)] = 1;
          }
        ASSERT_EQ(s2ft_adapter_set(ta.a, l, w, te.lines.data(), k, &d.t, base ? &base->at(l, w).t : nullptr), S2FT_OK)
            << s2ft_last_error();
      }
      if (spec.density == 0.0) continue;
      std::vector<int64_t> free;
      for (int64_t n = 0; n < te.rows * te.cols; ++n)
        if (!te.touched[static_cast<size_t>(n)]) free.push_back(n);
      if (spec.density < 0) {
        te.indices.push_back(free[static_cast<size_t>(rng.below(static_cast<int64_t>(free.size())))]);
      } else {
        for (int64_t n : free)
          if (rng.uniform(0.0, 1.0) < spec.density) te.indices.push_back(n);
        if (te.indices.empty()) te.indices.push_back(free[static_cast<size_t>(rng.below(static_cast<int64_t>(free.size())))]);
      }
      for (int64_t n : te.indices) {
        const float v = static_cast<float>(rng.uniform() * delta_scale);
        te.values.push_back(v);
        te.dense[static_cast<size_t>(n)] = v;
        te.touched[static_cast<size_t>(n)] = 1;
      }
      const int64_t count = static_cast<int64_t>(te.indices.size());
      s2ft_tensor dt{};
      const int64_t shape1[1] = {count};
      EXPECT_EQ(s2ft_tensor_init(&dt, te.values.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, shape1), S2FT_OK);
      ASSERT_EQ(s2ft_adapter_set_sparse(ta.a, l, w, te.indices.data(), count, &dt, base ? &base->at(l, w).t : nullptr),
                S2FT_OK)
          << s2ft_last_error();
      if (base != nullptr) te.fingerprint = weight_fingerprint(base->at(l, w));
    }
}

// base + scale * delta of every adapter in `ads` with its scale, in base
// order; each adapter's merge rounded once to the dtype, in turn.
inline AllWeights merged(const AllWeights &base, const std::vector<const TestAdapter *> &ads,
                         const std::vector<double> &scales) {
  AllWeights out(base);
  for (size_t k = 0; k < ads.size(); ++k)
    for (int32_t l = 0; l < base.shape.n_layers; ++l)
      for (int32_t w : kWeights) {
        const TestEntry &te = ads[k]->at(l, w);
        HostMatrix &m = out.at(l, w);
        for (int64_t n = 0; n < te.rows * te.cols; ++n)
          if (te.touched[static_cast<size_t>(n)])
            m.set(n / te.cols, n % te.cols,
                  round_once(static_cast<double>(m.get(n / te.cols, n % te.cols)) + scales[k] * te.dense[static_cast<size_t>(n)],
                             m.dtype));
      }
  return out;
}

// A selection whose permutations move heads and channels of every layer
// (for kShape-like shapes: 4 query heads in 2 KV groups, d_ff >= 11).
inline void make_moving_selection(const s2ft_model_shape &s, s2ft_selection **out) {
  const int64_t o[2] = {1, 1}, v[2] = {1, 1}, down[8] = {2, 5, 9, 10, 0, 6, 7, 8}, up[6] = {7, 3, 8, 10, 1, 4};
  const int64_t *units[4] = {o, v, down, up};
  const int64_t n_units[4] = {1, 1, 4, 3};
  ASSERT_EQ(s2ft_selection_create(&s, S2FT_HEADS_BY_GROUP, units, n_units, out), S2FT_OK) << s2ft_last_error();
}

}  // namespace s2ft_test
