// Partial vs full backward of one linear layer, side by side in one run.
//
// Default shape: LLaMA-2-7B down_proj (W [4096, 11008]), T = 512 tokens,
// 2% of the 11008 input channels trained (k = 220). Both variants go through
// s2ft_backward_partial(); "full" trains every column (k = in), which is a
// plain dense backward: dX = dY W plus the full dW = dY^T X.
//
//   s2ft-bench-backward [--out N] [--in N] [--tokens N] [--ratio R] [--reps N] [--dtype f32|bf16]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "s2ft/s2ft.h"

#include "bench_host.hpp"

namespace {

using bench::Buffer;
using bench::check;
using bench::median;
using bench::seconds_since;

}  // namespace

int main(int argc, char **argv) {
  int64_t out = 4096, in = 11008, tokens = 512;
  double ratio = 0.02;
  int reps = 5;
  int32_t dtype = S2FT_F32;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s [--out N] [--in N] [--tokens N] [--ratio R] [--reps N] [--dtype f32|bf16]\n", argv[0]);
      return 0;
    }
    if (v == nullptr) {
      std::fprintf(stderr, "%s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    if (a == "--out") out = std::atoll(v);
    else if (a == "--in") in = std::atoll(v);
    else if (a == "--tokens") tokens = std::atoll(v);
    else if (a == "--ratio") ratio = std::atof(v);
    else if (a == "--reps") reps = std::atoi(v);
    else if (a == "--dtype") dtype = std::string(v) == "bf16" ? S2FT_BF16 : S2FT_F32;
    else {
      std::fprintf(stderr, "unknown option %s (see --help)\n", a.c_str());
      return 2;
    }
    ++i;
  }
  if (out < 1 || in < 1 || tokens < 1 || !(ratio > 0 && ratio <= 1) || reps < 1) {
    std::fprintf(stderr, "bad arguments: sizes and reps must be >= 1 and ratio in (0, 1]\n");
    return 2;
  }
  const int64_t k = std::max<int64_t>(1, std::llround(ratio * static_cast<double>(in)));

  s2ft_context *ctx = nullptr;
  check(s2ft_context_create(nullptr, &ctx), "s2ft_context_create");
  Buffer w(dtype, out, in, 1), x(dtype, tokens, in, 2), dy(dtype, tokens, out, 3), dx(dtype, tokens, in, 4);
  Buffer dw_full(S2FT_F32, out, in, 5), dw_part(S2FT_F32, out, k, 6);
  s2ft_tensor xs = x.t;  // x_S for a permuted model: the first k columns, a strided view
  xs.shape[1] = k;
  const s2ft_slice full{S2FT_AXIS_COLUMNS, 0, in, nullptr};
  const s2ft_slice part{S2FT_AXIS_COLUMNS, 0, k, nullptr};

  auto run_full = [&] { check(s2ft_backward_partial(ctx, &full, &w.t, &x.t, &dy.t, &dx.t, &dw_full.t, 0), "full"); };
  auto run_part = [&] { check(s2ft_backward_partial(ctx, &part, &w.t, &xs, &dy.t, &dx.t, &dw_part.t, 0), "partial"); };
  run_full();  // warm up BLAS threads and page in the buffers
  run_part();
  std::vector<double> tf, tp;
  for (int r = 0; r < reps; ++r) {  // interleaved, so drift hits both variants alike
    auto t0 = std::chrono::steady_clock::now();
    run_full();
    tf.push_back(seconds_since(t0));
    t0 = std::chrono::steady_clock::now();
    run_part();
    tp.push_back(seconds_since(t0));
  }
  const double mf = median(tf), mp = median(tp);
  const double esz = dtype == S2FT_F32 ? 4.0 : 2.0;
  const double flop_full = 2.0 * tokens * out * in * 2, flop_part = 2.0 * tokens * out * (in + k);
  std::printf("backward of y = x W^T, W [%lld, %lld], T = %lld, k = %lld (%.1f%% of columns), %s, %d reps\n",
              static_cast<long long>(out), static_cast<long long>(in), static_cast<long long>(tokens),
              static_cast<long long>(k), 100.0 * k / in, dtype == S2FT_F32 ? "f32" : "bf16", reps);
  std::printf("%-28s %10s %10s\n", "variant", "median ms", "GFLOP/s");
  std::printf("%-28s %10.1f %10.1f\n", "full (dX + full dW)", mf * 1e3, flop_full / mf * 1e-9);
  std::printf("%-28s %10.1f %10.1f\n", "partial (dX + dW_S)", mp * 1e3, flop_part / mp * 1e-9);
  std::printf("speedup full/partial: %.2fx (floor 2.00x)\n", mf / mp);
  std::printf("saved activation: %.2f MiB full x vs %.2f MiB x_S (%.1fx less)\n", tokens * in * esz / 1048576.0,
              tokens * k * esz / 1048576.0, static_cast<double>(in) / k);
  std::printf("weight-gradient memory: %.2f MiB full dW vs %.2f MiB dW_S\n", out * in * 4.0 / 1048576.0,
              out * k * 4.0 / 1048576.0);
  s2ft_context_destroy(ctx);
  return 0;
}
