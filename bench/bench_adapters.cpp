// Adapter switching and mixed-adapter serving, each against its usual
// alternative, side by side in one run.
//
// (1) Switch. A LLaMA-2-7B-shaped model (d_model 4096, 32 heads of 128,
//     d_ff 11008), f32, o_proj and down_proj of --layers layers. Adapters A
//     and B train the paper's budget on disjoint lines: 5% of heads (2 heads,
//     256 O columns) and 2% of channels (220 DOWN columns).
//     S2FT: s2ft_adapter_switch(A -> B) (restores A's lines, merges B's).
//     LoRA: the same switch for LoRA adapters of equal parameter count per
//     weight, r * (out + in) ~= k * out (O: r = 128, DOWN: r = 60):
//     unmerge W -= B_A A_A, then merge W += B_B A_B. Each is ONE BLAS sgemm
//     accumulating straight into W (beta = 1), reached through the public API:
//     s2ft_backward_partial's dx += dy w with dx = W [out, in], dy = B
//     [out, r] (negated for the unmerge) and w = A [r, in]; the weight
//     gradient that call also computes is a [r, 1] by-product of a 1-column
//     slice (negligible). So the baseline is the fastest possible dense
//     merge on this machine's BLAS, not a strawman.
//     Times are per --layers layers and scaled linearly to a 32-layer model.
// (2) Mixed forward. One down_proj (W [4096, 11008], f32), 8 adapters of
//     220 channels, T = 8 segments x 64 tokens, one adapter per segment.
//     Mixed: one s2ft_adapter_forward_mixed call.
//     Merged loop: for each request, apply its adapter to the weight, run
//     the layer's forward (s2ft_forward_partial) on its 64 rows, remove it.
//
//   s2ft-bench-adapters [--layers N] [--reps N] [--seg-tokens N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "s2ft/s2ft.h"

#include "bench_host.hpp"

namespace {

using bench::check;
using bench::median;

// SplitMix64 in [-scale, scale).
struct Random {
  uint64_t s;
  float next(float scale = 1.0f) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return scale * static_cast<float>(static_cast<double>((z ^ (z >> 31)) >> 11) / 4503599627370496.0 - 1.0);
  }
};

// A compact row-major f32 matrix and its descriptor.
struct F32 {
  std::vector<float> v;
  s2ft_tensor t{};
  F32(int64_t rows, int64_t cols, Random *rng, float scale = 1.0f) : v(static_cast<size_t>(rows * cols)) {
    if (rng != nullptr)
      for (float &x : v) x = rng->next(scale);
    check(s2ft_tensor_cpu_f32_2d(&t, v.data(), rows, cols), "tensor");
  }
  // Rows [r0, r0 + n) as a view.
  s2ft_tensor rows(int64_t r0, int64_t n) const {
    s2ft_tensor s = t;
    s.shape[0] = n;
    s.byte_offset = static_cast<uint64_t>(r0 * t.strides[0]) * sizeof(float);
    return s;
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <typename F>
double time_median(int reps, F &&f) {
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f(i);
    t.push_back(seconds_since(t0));
  }
  return median(t);
}

struct AdapterHandle {
  s2ft_adapter *a = nullptr;
  ~AdapterHandle() { s2ft_adapter_destroy(a); }
};

// `count` distinct channels out of n from a seeded shuffle, skipping `avoid`.
std::vector<int64_t> pick_channels(int64_t n, int64_t count, uint64_t seed, const std::vector<int64_t> &avoid) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[static_cast<size_t>(i)] = i;
  Random rng{seed};
  for (int64_t i = n - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>((rng.next() + 1.0f) * 0.5f * static_cast<float>(i + 1)) % (i + 1);
    std::swap(all[static_cast<size_t>(i)], all[static_cast<size_t>(j)]);
  }
  std::vector<int64_t> out;
  for (int64_t c : all) {
    if (static_cast<int64_t>(out.size()) == count) break;
    if (std::find(avoid.begin(), avoid.end(), c) == avoid.end()) out.push_back(c);
  }
  return out;
}

// LoRA factors of one weight: B [out, r], -B (for the unmerge), A [r, in].
struct Lora {
  F32 b, neg_b, a;
  Lora(int64_t out, int64_t in, int64_t r, Random &rng)
      : b(out, r, &rng, 0.01f), neg_b(out, r, nullptr), a(r, in, &rng, 0.01f) {
    for (size_t i = 0; i < b.v.size(); ++i) neg_b.v[i] = -b.v[i];
  }
};

// W += B A (or -= with neg) as one accumulating sgemm: s2ft_backward_partial's
// dx += dy w with dx = W, dy = B, w = A. The 1-column slice makes its
// weight-gradient output a [r, 1] by-product.
void lora_merge(s2ft_context *ctx, s2ft_tensor *w, const s2ft_tensor &b, const s2ft_tensor &a, F32 &x1, F32 &dw1) {
  const s2ft_slice one{S2FT_AXIS_COLUMNS, 0, 1, nullptr};
  check(s2ft_backward_partial(ctx, &one, &a, &x1.t, &b, w, &dw1.t, S2FT_ACCUMULATE_DX), "lora merge");
}

// scattered: DOWN channels spread over d_ff, as in a base-order (published)
// checkpoint; otherwise contiguous, as in a model permuted by its selection.
void bench_switch(s2ft_context *ctx, int32_t layers, int reps, bool scattered) {
  const s2ft_model_shape shape{layers, 4096, 32, 32, 128, 11008};
  const int64_t d = shape.d_model, q = int64_t{shape.n_heads} * shape.head_dim, ff = shape.d_ff;
  const int64_t k_o = 2 * shape.head_dim, k_down = 220;  // 5% of 32 heads, 2% of 11008 channels
  std::printf("(1) adapter switch, LLaMA-2-7B shape, f32, O and DOWN of %d layers\n", layers);
  std::printf("    S2FT: O %lld columns, DOWN %lld columns per layer (%s); A and B disjoint\n",
              static_cast<long long>(k_o), static_cast<long long>(k_down),
              scattered ? "channels scattered over d_ff: base-order model" : "contiguous: permuted model");

  Random rng{1};
  std::vector<std::unique_ptr<F32>> o, down;
  std::vector<s2ft_layer_weights> lw(static_cast<size_t>(layers));
  for (int32_t l = 0; l < layers; ++l) {
    o.push_back(std::make_unique<F32>(d, q, &rng, 0.02f));
    down.push_back(std::make_unique<F32>(d, ff, &rng, 0.02f));
    lw[static_cast<size_t>(l)] = s2ft_layer_weights{};
    lw[static_cast<size_t>(l)].o = &o.back()->t;
    lw[static_cast<size_t>(l)].down = &down.back()->t;
  }

  // Adapters A (heads 0, 1 and one channel set) and B (heads 2, 3 and a disjoint set).
  AdapterHandle A, B;
  check(s2ft_adapter_create(&shape, "A", 1.0, &A.a), "adapter A");
  check(s2ft_adapter_create(&shape, "B", 1.0, &B.a), "adapter B");
  for (int32_t l = 0; l < layers; ++l) {
    std::vector<int64_t> oa, ob;
    for (int64_t i = 0; i < k_o; ++i) oa.push_back(i), ob.push_back(k_o + i);
    std::vector<int64_t> da, db;
    if (scattered) {
      da = pick_channels(ff, k_down, 10 + static_cast<uint64_t>(l), {});
      db = pick_channels(ff, k_down, 100 + static_cast<uint64_t>(l), da);
    } else {
      for (int64_t i = 0; i < k_down; ++i) da.push_back(i), db.push_back(k_down + i);
    }
    F32 delta_o(d, k_o, &rng, 0.001f), delta_d(d, k_down, &rng, 0.001f);
    check(s2ft_adapter_set(A.a, l, S2FT_TARGET_O, oa.data(), k_o, &delta_o.t, &o[static_cast<size_t>(l)]->t), "set");
    check(s2ft_adapter_set(B.a, l, S2FT_TARGET_O, ob.data(), k_o, &delta_o.t, &o[static_cast<size_t>(l)]->t), "set");
    check(s2ft_adapter_set(A.a, l, S2FT_TARGET_DOWN, da.data(), k_down, &delta_d.t, &down[static_cast<size_t>(l)]->t), "set");
    check(s2ft_adapter_set(B.a, l, S2FT_TARGET_DOWN, db.data(), k_down, &delta_d.t, &down[static_cast<size_t>(l)]->t), "set");
  }
  s2ft_model *model = nullptr;
  check(s2ft_model_create(ctx, &shape, lw.data(), nullptr, &model), "model");
  check(s2ft_adapter_apply(model, A.a, 1.0, 0), "apply A");

  // Alternate A -> B and B -> A so every timed call is a real switch.
  auto s2ft_switch = [&](uint32_t flags) {
    return time_median(reps, [&](int i) { check(s2ft_adapter_switch(model, i % 2 ? A.a : B.a, 1.0, flags), "switch"); });
  };
  s2ft_switch(0);  // warm-up
  const double t_switch = s2ft_switch(0);
  const double t_switch_force = s2ft_switch(S2FT_APPLY_FORCE);
  s2ft_model_destroy(model);  // the weights keep an adapter: fine for a benchmark

  // Bytes the switch moves per element of a line (f32): restoring A's line
  // reads the saved copy and writes W (8); merging B's reads W, saves it,
  // reads delta, writes W (16); the fingerprint check reads the saved copy (4).
  const double elems = static_cast<double>(layers) * static_cast<double>(d * (k_o + k_down));
  const double bytes = elems * (8 + 16);
  const double bytes_checked = elems * (8 + 16 + 4);

  // LoRA of the same parameter count per weight.
  const int64_t r_o = static_cast<int64_t>(std::lround(static_cast<double>(k_o * d) / static_cast<double>(d + q)));
  const int64_t r_down = static_cast<int64_t>(std::lround(static_cast<double>(k_down * d) / static_cast<double>(d + ff)));
  std::printf("    LoRA: O r = %lld, DOWN r = %lld (r * (out + in) ~= k * out)\n", static_cast<long long>(r_o),
              static_cast<long long>(r_down));
  std::vector<std::unique_ptr<Lora>> lo_a, lo_b, ld_a, ld_b;
  for (int32_t l = 0; l < layers; ++l) {
    lo_a.push_back(std::make_unique<Lora>(d, q, r_o, rng));
    lo_b.push_back(std::make_unique<Lora>(d, q, r_o, rng));
    ld_a.push_back(std::make_unique<Lora>(d, ff, r_down, rng));
    ld_b.push_back(std::make_unique<Lora>(d, ff, r_down, rng));
  }
  F32 x1(d, 1, &rng), dw_o(r_o, 1, nullptr), dw_d(r_down, 1, nullptr);
  auto lora_switch = [&](int i) {  // unmerge old, merge new, every layer
    for (int32_t l = 0; l < layers; ++l) {
      const size_t s = static_cast<size_t>(l);
      const Lora &oo = i % 2 ? *lo_b[s] : *lo_a[s], &on = i % 2 ? *lo_a[s] : *lo_b[s];
      const Lora &dd = i % 2 ? *ld_b[s] : *ld_a[s], &dn = i % 2 ? *ld_a[s] : *ld_b[s];
      lora_merge(ctx, &o[s]->t, oo.neg_b.t, oo.a.t, x1, dw_o);
      lora_merge(ctx, &o[s]->t, on.b.t, on.a.t, x1, dw_o);
      lora_merge(ctx, &down[s]->t, dd.neg_b.t, dd.a.t, x1, dw_d);
      lora_merge(ctx, &down[s]->t, dn.b.t, dn.a.t, x1, dw_d);
    }
  };
  lora_switch(0);  // warm-up (BLAS threads, pages)
  const double t_lora = time_median(std::max(3, reps / 2), lora_switch);

  const double scale32 = 32.0 / layers;
  std::printf("    S2FT switch (fingerprints checked): %9.3f ms per %d layers, %8.2f ms per 32-layer model (scaled), %.2f GB/s\n",
              1e3 * t_switch, layers, 1e3 * t_switch * scale32, bytes_checked / t_switch / 1e9);
  std::printf("    S2FT switch (S2FT_APPLY_FORCE):     %9.3f ms per %d layers, %8.2f ms per 32-layer model (scaled), %.2f GB/s\n",
              1e3 * t_switch_force, layers, 1e3 * t_switch_force * scale32, bytes / t_switch_force / 1e9);
  std::printf("    LoRA unmerge + merge (4 sgemms/layer): %9.3f ms per %d layers, %8.2f ms per 32-layer model (scaled)\n",
              1e3 * t_lora, layers, 1e3 * t_lora * scale32);
  std::printf("    bytes moved by the switch: %.1f MB per %d layers (%.1f MB per 32 layers; +%.1f MB read by the check)\n",
              bytes / 1e6, layers, bytes * scale32 / 1e6, (bytes_checked - bytes) / 1e6);
  std::printf("    ratio LoRA / S2FT switch: %.1fx (checked), %.1fx (forced)\n", t_lora / t_switch, t_lora / t_switch_force);
}

void bench_mixed(s2ft_context *ctx, int reps, int64_t seg_tokens) {
  const int n = 8;
  const s2ft_model_shape shape{1, 4096, 32, 32, 128, 11008};
  const int64_t out = shape.d_model, in = shape.d_ff, k = 220, T = n * seg_tokens;
  std::printf("(2) mixed-adapter forward, down_proj [%lld, %lld] f32, %d adapters of %lld channels, T = %d x %lld\n",
              static_cast<long long>(out), static_cast<long long>(in), n, static_cast<long long>(k), n,
              static_cast<long long>(seg_tokens));
  Random rng{2};
  F32 w(out, in, &rng, 0.02f), x(T, in, &rng), y(T, out, nullptr), y_ref(T, out, nullptr);
  std::vector<AdapterHandle> ads(static_cast<size_t>(n));
  std::vector<const s2ft_adapter *> handles;
  for (int a = 0; a < n; ++a) {
    check(s2ft_adapter_create(&shape, "a", 1.0, &ads[static_cast<size_t>(a)].a), "adapter");
    const std::vector<int64_t> lines = pick_channels(in, k, 1000 + static_cast<uint64_t>(a), {});
    F32 delta(out, k, &rng, 0.001f);
    check(s2ft_adapter_set(ads[static_cast<size_t>(a)].a, 0, S2FT_TARGET_DOWN, lines.data(), k, &delta.t, nullptr), "set");
    handles.push_back(ads[static_cast<size_t>(a)].a);
  }
  std::vector<int64_t> offsets;
  std::vector<int32_t> seg;
  for (int a = 0; a <= n; ++a) offsets.push_back(a * seg_tokens);
  for (int a = 0; a < n; ++a) seg.push_back(a);

  auto mixed = [&](int) {
    check(s2ft_adapter_forward_mixed(ctx, 0, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, handles.data(), nullptr, n,
                                     offsets.data(), seg.data(), n, &y.t),
          "forward_mixed");
  };
  s2ft_layer_weights lw{};
  lw.down = &w.t;
  s2ft_model *model = nullptr;
  check(s2ft_model_create(ctx, &shape, &lw, nullptr, &model), "model");
  const s2ft_slice all{S2FT_AXIS_COLUMNS, 0, in, nullptr};
  auto merged_loop = [&](int) {
    for (int a = 0; a < n; ++a) {
      check(s2ft_adapter_apply(model, handles[static_cast<size_t>(a)], 1.0, 0), "apply");
      s2ft_tensor xa = x.rows(a * seg_tokens, seg_tokens), ya = y_ref.rows(a * seg_tokens, seg_tokens);
      check(s2ft_forward_partial(ctx, &all, &xa, &w.t, &ya, nullptr), "forward");
      check(s2ft_adapter_remove(model), "remove");
    }
  };
  mixed(0);
  merged_loop(0);
  double num = 0, den = 0;
  for (size_t i = 0; i < y.v.size(); ++i) {
    num += (static_cast<double>(y.v[i]) - y_ref.v[i]) * (static_cast<double>(y.v[i]) - y_ref.v[i]);
    den += static_cast<double>(y_ref.v[i]) * y_ref.v[i];
  }
  const double t_mixed = time_median(reps, mixed);
  const double t_loop = time_median(reps, merged_loop);
  s2ft_model_destroy(model);
  std::printf("    mixed forward (one call):             %9.3f ms\n", 1e3 * t_mixed);
  std::printf("    per-request apply/forward/remove loop: %9.3f ms\n", 1e3 * t_loop);
  std::printf("    ratio loop / mixed: %.2fx   (outputs agree to rel. err %.1e)\n", t_loop / t_mixed,
              std::sqrt(num / den));
}

}  // namespace

int main(int argc, char **argv) {
  int32_t layers = 4;
  int reps = 7;
  int64_t seg_tokens = 64;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s [--layers N] [--reps N] [--seg-tokens N]\n", argv[0]);
      return 0;
    }
    if (v == nullptr) {
      std::fprintf(stderr, "%s needs a value\n", a.c_str());
      return 2;
    }
    if (a == "--layers") layers = std::atoi(v);
    else if (a == "--reps") reps = std::atoi(v);
    else if (a == "--seg-tokens") seg_tokens = std::atoll(v);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
    ++i;
  }
  if (layers < 1 || reps < 1 || seg_tokens < 1) {
    std::fprintf(stderr, "--layers, --reps and --seg-tokens must be positive\n");
    return 2;
  }
  s2ft_context *ctx = nullptr;
  check(s2ft_context_create(nullptr, &ctx), "context");
  bench_switch(ctx, layers, reps, false);
  bench_switch(ctx, layers, reps, true);
  bench_mixed(ctx, reps, seg_tokens);
  s2ft_context_destroy(ctx);
  return 0;
}
