// The sparse backward (LIFT, SpIEL) against the dense-gradient way of the
// public implementations and against S2FT's partial backward of the same
// parameter count, side by side in one run.
//
// Default shape: LLaMA-2-7B down_proj (W [4096, 11008]), T = 512 tokens,
// 5% of W's entries trained (LIFT's density), at random positions (each
// entry kept with probability `density`: the timing depends on the count
// and on rows/columns being touched, not on which entries LIFT would pick).
//   sparse  s2ft_backward_sparse: grad at the entries (SDDMM) + dX = dY W
//   dense   the public implementations' way: s2ft_backward_partial over all
//           columns (dX + the full dW = dY^T X, [out, in] f32), then the
//           entries gathered from dW
//   s2ft    s2ft_backward_partial on k = density * in contiguous columns
//           (the same parameter count as columns): dX + dW_S
// Repetitions are interleaved (so drift hits every variant alike); medians.
// "extra memory" is what each variant needs beyond its inputs, dX and its
// own gradient output (computed from the shapes, as the CPU backend
// allocates it): the dense dW for "dense", the packed f32 copies of the
// touched columns of dY and X plus a double accumulator per entry for
// "sparse", nothing for "s2ft" in f32; with 16-bit inputs every variant
// also packs its GEMM operands into f32.
//
//   s2ft-bench-sparse-backward [--out N] [--in N] [--tokens N] [--density D] [--reps N]
//                              [--dtype f32|bf16] [--threads N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "s2ft/s2ft.h"

#include "bench_host.hpp"

namespace {

using bench::Buffer;
using bench::check;
using bench::median;
using bench::seconds_since;

struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) / 9007199254740992.0; }  // [0, 1)
};

// CPU time of the whole process (all threads), which excludes the time the
// machine gave to other processes: a steadier measure on a shared machine.
double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double mib(double bytes) { return bytes / 1048576.0; }

}  // namespace

int main(int argc, char **argv) {
  int64_t out = 4096, in = 11008, tokens = 512;
  double density = 0.05;
  int reps = 5, threads = 0;
  int32_t dtype = S2FT_F32;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s [--out N] [--in N] [--tokens N] [--density D] [--reps N] [--dtype f32|bf16] "
                  "[--threads N]\n", argv[0]);
      return 0;
    }
    if (v == nullptr) {
      std::fprintf(stderr, "%s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    if (a == "--out") out = std::atoll(v);
    else if (a == "--in") in = std::atoll(v);
    else if (a == "--tokens") tokens = std::atoll(v);
    else if (a == "--density") density = std::atof(v);
    else if (a == "--reps") reps = std::atoi(v);
    else if (a == "--threads") threads = std::atoi(v);
    else if (a == "--dtype") dtype = std::string(v) == "bf16" ? S2FT_BF16 : S2FT_F32;
    else {
      std::fprintf(stderr, "unknown option %s (see --help)\n", a.c_str());
      return 2;
    }
    ++i;
  }
  if (out < 1 || in < 1 || tokens < 1 || !(density > 0 && density <= 1) || reps < 1 || threads < 0) {
    std::fprintf(stderr, "bad arguments: sizes and reps must be >= 1, density in (0, 1]\n");
    return 2;
  }

  // Random entries, each kept with probability `density` (at least one).
  std::vector<int64_t> idx;
  SplitMix pick{42};
  for (int64_t n = 0; n < out * in; ++n)
    if (pick.uniform() < density) idx.push_back(n);
  if (idx.empty()) idx.push_back(0);
  const int64_t count = static_cast<int64_t>(idx.size());
  const int64_t k = std::max<int64_t>(1, std::llround(static_cast<double>(count) / static_cast<double>(out)));

  s2ft_context_options co;
  check(s2ft_context_options_init(&co, S2FT_CONTEXT_OPTIONS_VERSION), "options");
  co.num_threads = threads;
  s2ft_context *ctx = nullptr;
  check(s2ft_context_create(&co, &ctx), "s2ft_context_create");
  s2ft_sparse_set *set = nullptr;
  check(s2ft_sparse_set_create(ctx, out, in, idx.data(), count, &set), "s2ft_sparse_set_create");
  Buffer w(dtype, out, in, 1), x(dtype, tokens, in, 2), dy(dtype, tokens, out, 3), dx(dtype, tokens, in, 4);
  Buffer grad(S2FT_F32, 1, count, 5), grad_dense(S2FT_F32, 1, count, 6), dw_part(S2FT_F32, out, k, 7);
  std::vector<float> dw_full(static_cast<size_t>(out * in));  // the dense way's [out, in] gradient
  s2ft_tensor dwf;
  check(s2ft_tensor_cpu_f32_2d(&dwf, dw_full.data(), out, in), "tensor");
  s2ft_tensor xs = x.t;  // x_S for a permuted model: the first k columns, a strided view
  xs.shape[1] = k;
  const s2ft_slice full{S2FT_AXIS_COLUMNS, 0, in, nullptr};
  const s2ft_slice part{S2FT_AXIS_COLUMNS, 0, k, nullptr};

  auto run_sparse = [&] {
    check(s2ft_backward_sparse(ctx, set, &x.t, &dy.t, &w.t, &dx.t, &grad.t, 0), "s2ft_backward_sparse");
  };
  auto run_sddmm = [&] {  // the gradient alone (w and dX NULL)
    check(s2ft_backward_sparse(ctx, set, &x.t, &dy.t, nullptr, nullptr, &grad.t, 0), "s2ft_backward_sparse");
  };
  auto run_dense = [&] {
    check(s2ft_backward_partial(ctx, &full, &w.t, &x.t, &dy.t, &dx.t, &dwf, 0), "dense backward");
    float *g = grad_dense.f.data();
    for (int64_t n = 0; n < count; ++n) g[n] = dw_full[static_cast<size_t>(idx[static_cast<size_t>(n)])];
  };
  auto run_s2ft = [&] {
    check(s2ft_backward_partial(ctx, &part, &w.t, &xs, &dy.t, &dx.t, &dw_part.t, 0), "partial backward");
  };
  run_sparse();  // warm up threads and page in the buffers
  run_dense();
  run_s2ft();
  // The two gradients agree (the sparse one sums in another order).
  double num = 0.0, den = 0.0;
  for (int64_t n = 0; n < count; ++n) {
    const double d = static_cast<double>(grad.f[static_cast<size_t>(n)]) - grad_dense.f[static_cast<size_t>(n)];
    num += d * d;
    den += static_cast<double>(grad_dense.f[static_cast<size_t>(n)]) * grad_dense.f[static_cast<size_t>(n)];
  }
  const double rel = std::sqrt(num / std::max(den, 1e-300));

  // Wall and CPU seconds of each variant, repetitions interleaved.
  std::vector<double> ts, td, tp, tg, cs, cd, cp, cg;
  auto timed = [](auto &&f, std::vector<double> &wall, std::vector<double> &cpu) {
    const double c0 = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    wall.push_back(seconds_since(t0));
    cpu.push_back(cpu_seconds() - c0);
  };
  for (int r = 0; r < reps; ++r) {
    timed(run_sparse, ts, cs);
    timed(run_dense, td, cd);
    timed(run_s2ft, tp, cp);
    timed(run_sddmm, tg, cg);
  }
  const double ms = median(ts), md = median(td), mp = median(tp), mg = median(tg);
  const double ks = median(cs), kd = median(cd), kp = median(cp), kg = median(cg);
  const double gemm_dx = 2.0 * tokens * out * in;
  // Touched rows and columns (the sparse path packs those).
  std::vector<char> row_used(static_cast<size_t>(out), 0), col_used(static_cast<size_t>(in), 0);
  for (int64_t n : idx) {
    row_used[static_cast<size_t>(n / in)] = 1;
    col_used[static_cast<size_t>(n % in)] = 1;
  }
  const double nrows = static_cast<double>(std::count(row_used.begin(), row_used.end(), 1));
  const double ncols = static_cast<double>(std::count(col_used.begin(), col_used.end(), 1));
  // Scratch each variant needs (the CPU context's grow-only slots, plus the
  // dense way's dW). f32: dX's GEMM reads the operands in place; the
  // sparse path packs the touched columns of dY and X (slots 0 and 1) and
  // keeps a double per entry. 16-bit: every GEMM packs its operands and
  // output into f32 (dY, W, dX: slots 0, 1, 2, shared by all variants),
  // and the sparse packing fits in slots 0 and 1 as they are.
  const double operands16 = dtype == S2FT_F32 ? 0.0 : 4.0 * (tokens * out + out * in + tokens * in);
  const double extra_sparse =
      (dtype == S2FT_F32 ? 4.0 * tokens * (nrows + ncols) : operands16) + 8.0 * count;
  const double extra_dense = 4.0 * out * in + operands16;
  const double extra_s2ft = operands16;

  std::printf("backward of y = x W^T, W [%lld, %lld], T = %lld, %s, %lld trained entries (%.2f%%, random), "
              "%d reps, %s threads\n",
              static_cast<long long>(out), static_cast<long long>(in), static_cast<long long>(tokens),
              dtype == S2FT_F32 ? "f32" : "bf16", static_cast<long long>(count),
              100.0 * static_cast<double>(count) / (static_cast<double>(out) * in), reps,
              threads > 0 ? std::to_string(threads).c_str() : "default");
  std::printf("%-44s %10s %10s %10s %12s\n", "variant", "median ms", "cpu ms", "GFLOP/s", "extra MiB");
  std::printf("%-44s %10.1f %10.1f %10.1f %12.1f\n", "sparse: SDDMM grad + dX", ms * 1e3, ks * 1e3,
              (gemm_dx + 2.0 * tokens * count) / ms * 1e-9, mib(extra_sparse));
  std::printf("%-44s %10.1f %10.1f %10.1f %12.1f\n", "dense way: full dW GEMM + gather + dX", md * 1e3, kd * 1e3,
              2.0 * gemm_dx / md * 1e-9, mib(extra_dense));
  char label[64];
  std::snprintf(label, sizeof label, "s2ft partial: %lld columns + dX", static_cast<long long>(k));
  std::printf("%-44s %10.1f %10.1f %10.1f %12.1f\n", label, mp * 1e3, kp * 1e3,
              (gemm_dx + 2.0 * tokens * out * k) / mp * 1e-9, mib(extra_s2ft));
  std::printf("%-44s %10.1f %10.1f %10.1f %12s\n", "(sparse SDDMM gradient alone, no dX)", mg * 1e3, kg * 1e3,
              2.0 * tokens * count / mg * 1e-9, "");
  std::printf("speedup dense/sparse: %.2fx (cpu time %.2fx)   sparse/s2ft: %.2fx (%.2fx)   dense/s2ft: %.2fx (%.2fx)\n",
              md / ms, kd / ks, ms / mp, ks / kp, md / mp, kd / kp);
  std::printf("SDDMM gradient vs the dense way's gathered dW: relative error %.2e\n", rel);
  std::printf("dense dW alone: %.1f MiB; sparse gradient: %.1f MiB; s2ft dW_S: %.1f MiB\n", mib(extra_dense),
              mib(4.0 * count), mib(4.0 * out * k));
  s2ft_sparse_set_destroy(set);
  s2ft_context_destroy(ctx);
  return 0;
}
