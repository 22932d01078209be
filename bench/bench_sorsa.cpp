// SORSA's training step of one linear layer (forward + backward), the
// library's factored way against the public implementation's dense way,
// side by side in one run.
//
// Default shapes: LLaMA-2-7B q_proj (W [4096, 4096]) and down_proj
// (W [4096, 11008]), rank r = 128, T = 512 tokens, f32 and bf16
// activations/residual (the factors are f32 in both).
//   factored  s2ft_sorsa_forward (saving h = x V) + s2ft_sorsa_backward:
//             the residual's two GEMMs (forward, dX) plus O(T r (in + out))
//   dense     what the public code does every step, as autograd runs it:
//             M = (U diag(s)) V^T formed densely ([out, in], f32), the
//             merged weight W_res + M (in the activations' dtype, as bf16
//             autocast casts it), y = x W^T, then dX = dY W and the dense
//             dW = dY^T X ([out, in], f32), projected to the factors:
//             d(U s) = dW V, dU = d(U s) * s, ds = colsum(d(U s) * U),
//             dV^T = (U s)^T dW. (The public forward keeps two GEMMs,
//             x W_res^T + x M^T, which costs one more T x out x in GEMM
//             than merging; the merged form is the cheaper, and is timed.)
// All GEMMs of both go through the library (the same BLAS, f32 accumulation).
// Repetitions are interleaved (drift hits both alike); medians of wall and
// process CPU time. "Peak extra MiB" is each variant's measured peak
// resident memory above what the process held before its first call (Linux
// VmHWM, reset through /proc/self/clear_refs; each variant has a fresh
// context, so its grow-only scratch is counted), beside the figure computed
// from the shapes: the factored way's h, [T, r] temporaries and (16-bit) the
// f32 copies of x, dY, y/dX and W the CPU GEMMs pack; the dense way's M,
// merged W, dW and the same packed copies.
//
//   s2ft-bench-sorsa [--shape q|down|both] [--out N --in N] [--rank R] [--tokens T] [--reps N]
//                    [--dtype f32|bf16|both] [--threads N]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "s2ft/s2ft.h"

#include "bench_host.hpp"

namespace {

using bench::Buffer;
using bench::check;
using bench::median;
using bench::seconds_since;

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

double mib(double bytes) { return bytes / 1048576.0; }

// Resident memory now and its peak since the last reset, in bytes (0 when unknown).
double status_kib(const char *key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::atof(line.c_str() + std::strlen(key)) * 1024.0;
  return 0.0;
}
bool reset_peak() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";
  return static_cast<bool>(f);
}

float bf16_value(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// Runs f(begin, end) over [0, n) split across the machine's threads (the
// elementwise work a framework would spread over its threads too).
template <typename F>
void parallel_for(int64_t n, F &&f) {
  const int64_t p = std::max<int64_t>(1, std::thread::hardware_concurrency());
  std::vector<std::thread> pool;
  for (int64_t t = 0; t < p; ++t) pool.emplace_back([&, t] { f(n * t / p, n * (t + 1) / p); });
  for (auto &th : pool) th.join();
}

double rel_diff(const std::vector<float> &a, const std::vector<float> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = static_cast<double>(a[i]) - b[i];
    num += d * d;
    den += static_cast<double>(b[i]) * b[i];
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

std::vector<float> values(const Buffer &b) {
  if (!b.f.empty()) return b.f;
  std::vector<float> v(b.h.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = bf16_value(b.h[i]);
  return v;
}

s2ft_tensor f32_tensor(float *data, int64_t rows, int64_t cols) {
  s2ft_tensor t;
  check(s2ft_tensor_cpu_f32_2d(&t, data, rows, cols), "tensor");
  return t;
}

s2ft_context *make_context(int threads) {
  s2ft_context_options co;
  check(s2ft_context_options_init(&co, S2FT_CONTEXT_OPTIONS_VERSION), "options");
  co.num_threads = threads;
  s2ft_context *ctx = nullptr;
  check(s2ft_context_create(&co, &ctx), "s2ft_context_create");
  return ctx;
}

struct Result {
  double wall_f, wall_d, cpu_f, cpu_d, peak_f, peak_d, model_f, model_d, err_du, err_ds, err_dvt, err_dx;
};

Result run_case(int64_t out, int64_t in, int64_t r, int64_t T, int32_t dtype, int reps, int threads) {
  const bool b16 = dtype != S2FT_F32;
  const double esz = b16 ? 2.0 : 4.0;
  Buffer x(dtype, T, in, 2), w(dtype, out, in, 1), dy(dtype, T, out, 3), y(dtype, T, out, 4), dx(dtype, T, in, 5),
      dx_d(dtype, T, in, 6), y_d(dtype, T, out, 7);
  // Factors of the scale an SVD gives (orthonormal-ish columns, spread singular values).
  Buffer u(S2FT_F32, out, r, 8), s(S2FT_F32, 1, r, 9), vt(S2FT_F32, r, in, 10);
  for (float &v : u.f) v *= static_cast<float>(std::sqrt(3.0 / out));
  for (float &v : vt.f) v *= static_cast<float>(std::sqrt(3.0 / in));
  for (int64_t k = 0; k < r; ++k) s.f[static_cast<size_t>(k)] = static_cast<float>(20.0 / (1.0 + 0.05 * k));
  Buffer du(S2FT_F32, out, r, 11), ds(S2FT_F32, 1, r, 12), dvt(S2FT_F32, r, in, 13);
  Buffer du_d(S2FT_F32, out, r, 14), ds_d(S2FT_F32, 1, r, 15), dvt_d(S2FT_F32, r, in, 16);

  // ---- the factored way
  s2ft_context *ctx_f = make_context(threads);
  std::vector<float> h;
  s2ft_tensor ht{};
  auto factored = [&] {
    check(s2ft_sorsa_forward(ctx_f, &x.t, &w.t, &u.t, &s.t, &vt.t, &y.t, &ht), "s2ft_sorsa_forward");
    check(s2ft_sorsa_backward(ctx_f, &x.t, &w.t, &u.t, &s.t, &vt.t, &ht, &dy.t, &dx.t, &du.t, &ds.t, &dvt.t, 0),
          "s2ft_sorsa_backward");
  };

  // ---- the dense way
  s2ft_context *ctx_d = make_context(threads);
  std::vector<float> us, m, wf, dw, dus;
  std::vector<uint16_t> wh;
  s2ft_tensor ust{}, mt{}, weff{}, dwt{}, dust{}, vview{}, usv{};
  const s2ft_slice all_in{S2FT_AXIS_COLUMNS, 0, in, nullptr}, all_r{S2FT_AXIS_COLUMNS, 0, r, nullptr};
  auto dense_alloc = [&] {
    us.resize(static_cast<size_t>(out * r));
    m.resize(static_cast<size_t>(out * in));
    dw.resize(static_cast<size_t>(out * in));
    dus.resize(static_cast<size_t>(out * r));
    ust = f32_tensor(us.data(), out, r);
    mt = f32_tensor(m.data(), out, in);
    dwt = f32_tensor(dw.data(), out, in);
    dust = f32_tensor(dus.data(), out, r);
    const int64_t shape[2] = {out, in};
    if (b16) {
      wh.resize(static_cast<size_t>(out * in));
      check(s2ft_tensor_init(&weff, wh.data(), dtype, S2FT_DEVICE_CPU, 0, 2, shape), "tensor");
    } else {
      wf.resize(static_cast<size_t>(out * in));
      weff = f32_tensor(wf.data(), out, in);
    }
    vview = vt.t;  // V = vt^T as [in, r], column-major
    vview.shape[0] = in;
    vview.shape[1] = r;
    vview.strides[0] = 1;
    vview.strides[1] = in;
    usv = vt.t;  // a stand-in [r, in] weight for the GEMM dV^T = (U s)^T dW
  };
  auto dense = [&] {
    for (int64_t i = 0; i < out; ++i)
      for (int64_t k = 0; k < r; ++k) us[static_cast<size_t>(i * r + k)] = u.f[static_cast<size_t>(i * r + k)] * s.f[static_cast<size_t>(k)];
    // M = (U s) V^T: y = x w^T with x = U s [out, r], w = V [in, r].
    check(s2ft_forward_partial(ctx_d, &all_r, &ust, &vview, &mt, nullptr), "form M");
    // W = W_res + M in the activations' dtype.
    parallel_for(out * in, [&](int64_t b, int64_t e) {
      if (b16)
        for (int64_t i = b; i < e; ++i) wh[static_cast<size_t>(i)] = to_bf16(bf16_value(w.h[static_cast<size_t>(i)]) + m[static_cast<size_t>(i)]);
      else
        for (int64_t i = b; i < e; ++i) wf[static_cast<size_t>(i)] = w.f[static_cast<size_t>(i)] + m[static_cast<size_t>(i)];
    });
    check(s2ft_forward_partial(ctx_d, &all_in, &x.t, &weff, &y_d.t, nullptr), "dense forward");
    check(s2ft_backward_partial(ctx_d, &all_in, &weff, &x.t, &dy.t, &dx_d.t, &dwt, 0), "dense backward");
    // d(U s) = dW V: y = x w^T with x = dW [out, in], w = vt [r, in].
    check(s2ft_forward_partial(ctx_d, &all_in, &dwt, &vt.t, &dust, nullptr), "project dU");
    // dV^T = (U s)^T dW: the weight gradient of a layer with dy = U s [out, r], x = dW [out, in].
    check(s2ft_backward_partial(ctx_d, &all_in, &usv, &dwt, &ust, nullptr, &dvt_d.t, 0), "project dV");
    for (int64_t k = 0; k < r; ++k) ds_d.f[static_cast<size_t>(k)] = 0.0f;
    for (int64_t i = 0; i < out; ++i)
      for (int64_t k = 0; k < r; ++k) {
        const size_t e = static_cast<size_t>(i * r + k);
        du_d.f[e] = dus[e] * s.f[static_cast<size_t>(k)];
        ds_d.f[static_cast<size_t>(k)] += dus[e] * u.f[e];
      }
  };

  // First calls: page everything in and measure each variant's peak.
  Result res{};
  const bool can_reset = reset_peak();
  double before = status_kib("VmRSS:");
  h.resize(static_cast<size_t>(T * r));
  ht = f32_tensor(h.data(), T, r);
  factored();
  res.peak_f = can_reset ? status_kib("VmHWM:") - before : -1.0;
  reset_peak();
  before = status_kib("VmRSS:");
  dense_alloc();
  dense();
  res.peak_d = can_reset ? status_kib("VmHWM:") - before : -1.0;
  res.err_du = rel_diff(du.f, du_d.f);
  res.err_ds = rel_diff(ds.f, ds_d.f);
  res.err_dvt = rel_diff(dvt.f, dvt_d.f);
  res.err_dx = rel_diff(values(dx), values(dx_d));

  std::vector<double> wf_, wd_, cf_, cd_;
  for (int i = 0; i < reps; ++i) {
    double c0 = cpu_seconds();
    auto t0 = std::chrono::steady_clock::now();
    factored();
    wf_.push_back(seconds_since(t0));
    cf_.push_back(cpu_seconds() - c0);
    c0 = cpu_seconds();
    t0 = std::chrono::steady_clock::now();
    dense();
    wd_.push_back(seconds_since(t0));
    cd_.push_back(cpu_seconds() - c0);
  }
  res.wall_f = median(wf_);
  res.wall_d = median(wd_);
  res.cpu_f = median(cf_);
  res.cpu_d = median(cd_);
  // From the shapes (see the top of the file).
  // 16-bit: both pack W, x, dY and dX (or y) into f32 for the CPU GEMMs.
  const double packed = b16 ? 4.0 * (out * in + 2.0 * T * in + T * out) : 0.0;
  res.model_f = 4.0 * T * r * 4 + packed;                                   // h, g, g*s, h*s
  res.model_d = 4.0 * out * in * 2 + esz * out * in + 8.0 * out * r + packed;  // M, dW, merged W, U s, d(U s)
  s2ft_context_destroy(ctx_f);
  s2ft_context_destroy(ctx_d);
  return res;
}

}  // namespace

int main(int argc, char **argv) {
  std::string shape = "both", dtypes = "both";
  int64_t out = 0, in = 0, rank = 128, tokens = 512;
  int reps = 5, threads = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--help" || a == "-h") {
      std::printf("usage: %s [--shape q|down|both] [--out N --in N] [--rank R] [--tokens T] [--reps N] "
                  "[--dtype f32|bf16|both] [--threads N]\n", argv[0]);
      return 0;
    }
    if (v == nullptr) {
      std::fprintf(stderr, "%s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    if (a == "--shape") shape = v;
    else if (a == "--out") out = std::atoll(v);
    else if (a == "--in") in = std::atoll(v);
    else if (a == "--rank") rank = std::atoll(v);
    else if (a == "--tokens") tokens = std::atoll(v);
    else if (a == "--reps") reps = std::atoi(v);
    else if (a == "--dtype") dtypes = v;
    else if (a == "--threads") threads = std::atoi(v);
    else {
      std::fprintf(stderr, "unknown option %s (see --help)\n", a.c_str());
      return 2;
    }
    ++i;
  }
  std::vector<std::pair<const char *, std::pair<int64_t, int64_t>>> shapes;
  if ((out > 0) != (in > 0)) {
    std::fprintf(stderr, "give both --out and --in\n");
    return 2;
  }
  if (out > 0) {
    shapes.push_back({"custom", {out, in}});
  } else {
    if (shape == "q" || shape == "both") shapes.push_back({"q_proj", {4096, 4096}});
    if (shape == "down" || shape == "both") shapes.push_back({"down_proj", {4096, 11008}});
  }
  std::vector<int32_t> dts;
  if (dtypes == "f32" || dtypes == "both") dts.push_back(S2FT_F32);
  if (dtypes == "bf16" || dtypes == "both") dts.push_back(S2FT_BF16);
  if (shapes.empty() || dts.empty() || rank < 1 || tokens < 1 || reps < 1 || threads < 0) {
    std::fprintf(stderr, "bad arguments (see --help)\n");
    return 2;
  }
  std::printf("SORSA forward + backward of one linear layer, rank %lld, T = %lld, %d reps (medians), %s threads, "
              "%u hardware threads\n",
              static_cast<long long>(rank), static_cast<long long>(tokens), reps,
              threads > 0 ? std::to_string(threads).c_str() : "default BLAS", std::thread::hardware_concurrency());
  std::printf("%-10s %-5s %-9s %10s %10s %14s %14s\n", "shape", "dtype", "variant", "wall ms", "cpu ms",
              "peak extra MiB", "model MiB");
  for (const auto &sh : shapes)
    for (int32_t dt : dts) {
      const int64_t o = sh.second.first, n = sh.second.second;
      if (rank > std::min(o, n)) {
        std::fprintf(stderr, "rank %lld exceeds min(out, in) of %s\n", static_cast<long long>(rank), sh.first);
        return 2;
      }
      const Result r = run_case(o, n, rank, tokens, dt, reps, threads);
      const char *dn = dt == S2FT_F32 ? "f32" : "bf16";
      char name[64];
      std::snprintf(name, sizeof name, "%s [%lld, %lld]", sh.first, static_cast<long long>(o), static_cast<long long>(n));
      std::printf("%s\n", name);
      std::printf("%-10s %-5s %-9s %10.1f %10.1f %14.1f %14.1f\n", "", dn, "factored", r.wall_f * 1e3, r.cpu_f * 1e3,
                  mib(r.peak_f), mib(r.model_f));
      std::printf("%-10s %-5s %-9s %10.1f %10.1f %14.1f %14.1f\n", "", dn, "dense", r.wall_d * 1e3, r.cpu_d * 1e3,
                  mib(r.peak_d), mib(r.model_d));
      std::printf("%-10s %-5s dense/factored: %.2fx wall, %.2fx cpu; gradients agree: relative error du %.1e, "
                  "ds %.1e, dvt %.1e, dx %.1e\n",
                  "", dn, r.wall_d / r.wall_f, r.cpu_d / r.cpu_f, r.err_du, r.err_ds, r.err_dvt, r.err_dx);
    }
  return 0;
}
