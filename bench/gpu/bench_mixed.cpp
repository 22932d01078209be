// Sections "mixed" and "paths": s2ft_adapter_forward_mixed on one bf16
// linear layer whose batch rows belong to requests with different adapters.
//
// mixed: down_proj (W [4096, 11008]), n = 1..64 column adapters of 220 lines
//   (2% of channels, scattered in base order: different adapters train
//   different channels, so no single permutation makes them contiguous).
//   Decode: one token per request; prefill: --prefill-tokens per request.
//   Request j uses adapter j. Against a LoRA baseline of equal parameters
//   per adapter (r (in + out) ~= k out: r = 60), same dtype, same base GEMM
//   (cuBLAS): BGMV (one shrink and one expand launch for the whole batch,
//   lora_baseline.cu) and SGMV as two cuBLAS strided-batched GEMMs; the
//   baseline is the faster of the two. Target: S2FT latency at least 22%
//   lower. The library's delta path is AUTO here.
// paths: the DENSE (gather + GEMM) and SPARSE (cuSPARSE SpMM) delta paths
//   of the same call (s2ft_context_set_delta_path), and AUTO, over a few
//   shapes, with the base-only call (every segment -1) to isolate the delta.
//   The path applies to prefill-sized segments only (the library sends
//   segments of at most 8 rows to its decode GEMV kernel whatever the path).
//
// Every output is checked once against a naive f32 reference on the device.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>

#include "lora_baseline.hpp"
#include "sections.hpp"

namespace bench {
namespace {

struct AdapterHandle {
  s2ft_adapter *a = nullptr;
  AdapterHandle() = default;
  AdapterHandle(const AdapterHandle &) = delete;
  AdapterHandle &operator=(const AdapterHandle &) = delete;
  ~AdapterHandle() { s2ft_adapter_destroy(a); }
};

// n column adapters of one target, k lines each, uploaded to the context's
// device; and the same lines (int64 [n, k]) and deltas (f32 [n, out, k]) in
// device buffers of the benchmark's own, for the reference.
struct ColumnAdapters {
  int64_t n = 0, k = 0;
  std::vector<std::unique_ptr<AdapterHandle>> owned;
  std::vector<const s2ft_adapter *> handles;
  DeviceBuffer lines_dev, delta_dev;
};

// lines_of(a) gives adapter a's k distinct base-order lines.
template <typename LinesOf>
void make_column_adapters(Env &env, ColumnAdapters &c, const s2ft_model_shape &shape, int32_t target, int64_t out,
                          int64_t n, int64_t k, LinesOf lines_of, uint64_t seed) {
  c.n = n;
  c.k = k;
  std::vector<int64_t> lines_all(static_cast<size_t>(n * k));
  std::vector<float> delta_all(static_cast<size_t>(n * out * k));
  HostRandom rng{seed};
  for (float &v : delta_all) v = rng.uniform(0.05f);
  for (int64_t a = 0; a < n; ++a) {
    const std::vector<int64_t> lines = lines_of(a);
    if (static_cast<int64_t>(lines.size()) != k) throw Failure("make_column_adapters: wrong line count");
    std::copy(lines.begin(), lines.end(), lines_all.begin() + a * k);
    c.owned.push_back(std::make_unique<AdapterHandle>());
    check(s2ft_adapter_create(&shape, "bench", 1.0, &c.owned.back()->a), "s2ft_adapter_create");
    s2ft_tensor dt{};
    check(s2ft_tensor_cpu_f32_2d(&dt, delta_all.data() + a * out * k, out, k), "tensor");
    check(s2ft_adapter_set(c.owned.back()->a, 0, target, lines.data(), k, &dt, nullptr), "s2ft_adapter_set");
    check(s2ft_adapter_upload(env.ctx, c.owned.back()->a), "s2ft_adapter_upload");
    c.handles.push_back(c.owned.back()->a);
  }
  c.lines_dev = DeviceBuffer(lines_all.size() * sizeof(int64_t));
  c.delta_dev = DeviceBuffer(delta_all.size() * sizeof(float));
  BENCH_CUDA(cudaMemcpyAsync(c.lines_dev.get(), lines_all.data(), c.lines_dev.bytes(), cudaMemcpyHostToDevice,
                             env.stream));
  BENCH_CUDA(cudaMemcpyAsync(c.delta_dev.get(), delta_all.data(), c.delta_dev.bytes(), cudaMemcpyHostToDevice,
                             env.stream));
  sync(env);  // the host vectors die here
}

// Segments of equal length: offsets, segment j -> adapter j (or -1 for all),
// and the per-token adapter map on the device and in pinned host memory.
struct Batch {
  int64_t n, seg, tokens;
  std::vector<int64_t> offsets;
  std::vector<int32_t> seg_adapter, seg_none;
  PinnedBuffer token_host;
  DeviceBuffer token_dev;
  Batch(Env &env, int64_t n_, int64_t seg_)
      : n(n_), seg(seg_), tokens(n_ * seg_), token_host(static_cast<size_t>(n_ * seg_) * 4),
        token_dev(static_cast<size_t>(n_ * seg_) * 4) {
    for (int64_t j = 0; j <= n; ++j) offsets.push_back(j * seg);
    for (int64_t j = 0; j < n; ++j) {
      seg_adapter.push_back(static_cast<int32_t>(j));
      seg_none.push_back(-1);
    }
    for (int64_t t = 0; t < tokens; ++t) token_host.as<int32_t>()[t] = static_cast<int32_t>(t / seg);
    BENCH_CUDA(cudaMemcpyAsync(token_dev.get(), token_host.as<int32_t>(), static_cast<size_t>(tokens) * 4,
                               cudaMemcpyHostToDevice, env.stream));
  }
};

double min_finite(double a, double b) {
  if (std::isnan(a)) return b;
  if (std::isnan(b)) return a;
  return std::min(a, b);
}

void mixed_case(Env &env, const DeviceMatrix &w, const ColumnAdapters &ads, const LoraStack &lora, const char *mode,
                int64_t n, int64_t seg) {
  const cudaStream_t s = env.stream;
  const int64_t out = w.rows, in = w.cols, r = lora.r;
  Batch b(env, n, seg);
  const int64_t T = b.tokens;
  DeviceMatrix x(S2FT_BF16, T, in), y_s2ft(S2FT_BF16, T, out), y_s2ft_base(S2FT_BF16, T, out);
  DeviceMatrix y_cublas(S2FT_BF16, T, out), y_bgmv(S2FT_BF16, T, out), y_sgmv(S2FT_BF16, T, out);
  DeviceMatrix ref_s2ft(S2FT_F32, T, out), ref_lora(S2FT_F32, T, out);
  DeviceBuffer v(static_cast<size_t>(T * r) * 4), v_bf16(static_cast<size_t>(T * r) * 2),
      v_ref(static_cast<size_t>(T * r) * 4);
  fill_uniform(x, 7000 + static_cast<uint64_t>(T), 1.0f, s);

  const std::vector<Variant> variants{
      {"s2ft", [&] {
         check(s2ft_adapter_forward_mixed(env.ctx, 0, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, ads.handles.data(),
                                          nullptr, n, b.offsets.data(), b.seg_adapter.data(), n, &y_s2ft.t),
               "s2ft_adapter_forward_mixed");
       }},
      {"s2ft_base", [&] {
         check(s2ft_adapter_forward_mixed(env.ctx, 0, S2FT_TARGET_DOWN, &x.t, &w.t, nullptr, ads.handles.data(),
                                          nullptr, n, b.offsets.data(), b.seg_none.data(), n, &y_s2ft_base.t),
               "s2ft_adapter_forward_mixed (no adapters)");
       }},
      {"cublas_base", [&] { gemm_xwt(env.blas, x.data(), w.data(), T, in, out, y_cublas.data(), false, 1.0f, 0.0f); }},
      {"lora_bgmv", [&] {
         BENCH_CUDA(cudaMemcpyAsync(b.token_dev.get(), b.token_host.as<int32_t>(), static_cast<size_t>(T) * 4,
                                    cudaMemcpyHostToDevice, s));
         gemm_xwt(env.blas, x.data(), w.data(), T, in, out, y_bgmv.data(), false, 1.0f, 0.0f);
         bgmv_shrink(lora, x.data(), in, T, b.token_dev.as<int32_t>(), v.as<float>(), s);
         bgmv_expand(lora, v.as<float>(), T, b.token_dev.as<int32_t>(), 1.0f, y_bgmv.data(), out, s);
       }},
      {"lora_sgmv", [&] {
         gemm_xwt(env.blas, x.data(), w.data(), T, in, out, y_sgmv.data(), false, 1.0f, 0.0f);
         sgmv_equal_segments(env.blas, lora, x.data(), n, seg, v_bf16.get(), 1.0f, y_sgmv.data());
       }},
  };
  Json j("mixed");
  auto prepare = [&] {
    for (const DeviceMatrix *m : {&y_s2ft, &y_s2ft_base, &y_cublas, &y_bgmv, &y_sgmv}) poison(*m, s);
  };
  auto check_outputs = [&] {
    gemm_xwt(env.blas, x.data(), w.data(), T, in, out, ref_s2ft.data(), true, 1.0f, 0.0f);
    BENCH_CUDA(cudaMemcpyAsync(ref_lora.data(), ref_s2ft.data(), ref_s2ft.bytes(), cudaMemcpyDeviceToDevice, s));
    reference_column_delta(x.data(), T, in, out, ads.k, ads.n, ads.lines_dev.as<int64_t>(),
                           ads.delta_dev.as<float>(), b.token_dev.as<int32_t>(), 1.0f, ref_s2ft.as_f32(), s);
    reference_lora(lora, x.data(), T, b.token_dev.as<int32_t>(), 1.0f, v_ref.as<float>(), ref_lora.as_f32(), s);
    j.add("s2ft_rel_diff", max_rel_diff(y_s2ft, ref_s2ft, s))
        .add("s2ft_base_rel_diff", max_rel_diff(y_s2ft_base, y_cublas, s))
        .add("lora_bgmv_rel_diff", max_rel_diff(y_bgmv, ref_lora, s))
        .add("lora_sgmv_rel_diff", max_rel_diff(y_sgmv, ref_lora, s));
  };
  const Measured m = measure(env, variants, prepare, check_outputs, 5, env.reps(seg == 1 ? 50 : 20));
  const double ts = m.ms("s2ft"), tb = m.ms("s2ft_base"), tc = m.ms("cublas_base");
  const double tbg = m.ms("lora_bgmv"), tsg = m.ms("lora_sgmv"), best = min_finite(tbg, tsg);
  const double reduction = 1.0 - ts / best;
  std::printf("  %-7s %4lld %6lld %9.4f %9.4f %9.4f %9.4f %9.4f %7.1f%% %9.4f %9.4f\n", mode, static_cast<long long>(n),
              static_cast<long long>(T), ts, tbg, tsg, tb, tc, 100.0 * reduction, ts - tb, best - tc);
  for (const auto &e : m.errors) std::printf("    %s: %s\n", e.first.c_str(), e.second.c_str());
  j.add("mode", mode)
      .add("n_adapters", n)
      .add("seg_tokens", seg)
      .add("tokens", T)
      .add("out", out)
      .add("in", in)
      .add("k", ads.k)
      .add("lora_r", r)
      .add("params_s2ft", ads.k * out)
      .add("params_lora", r * (in + out))
      .add("dtype", "bf16")
      .add("delta_path", "auto")
      .add("lora_best_ms", best)
      .add("latency_reduction", reduction)
      .add("target_reduction", 0.22);
  m.add_to(j);
  emit(j);
}

struct PathCase {
  const char *name;
  int32_t target;
  int64_t out, in, k, n, seg;
};

void paths_case(Env &env, const PathCase &c) {
  const cudaStream_t s = env.stream;
  const s2ft_model_shape shape{1, 4096, 32, 32, 128, 11008};
  DeviceMatrix w(S2FT_BF16, c.out, c.in);
  fill_uniform(w, 8100 + static_cast<uint64_t>(c.target), 0.02f, s);
  ColumnAdapters ads;
  const int64_t head_dim = shape.head_dim;
  make_column_adapters(
      env, ads, shape, c.target, c.out, c.n, c.k,
      [&](int64_t a) {
        if (c.target == S2FT_TARGET_O) {  // whole query heads
          const std::vector<int64_t> heads = pick_distinct(shape.n_heads, c.k / head_dim, 8200 + static_cast<uint64_t>(a));
          std::vector<int64_t> lines;
          for (const int64_t h : heads)
            for (int64_t i = 0; i < head_dim; ++i) lines.push_back(h * head_dim + i);
          return lines;
        }
        return pick_distinct(c.in, c.k, 8300 + static_cast<uint64_t>(a));
      },
      8400 + static_cast<uint64_t>(c.target));
  Batch b(env, c.n, c.seg);
  const int64_t T = b.tokens;
  DeviceMatrix x(S2FT_BF16, T, c.in), y_base(S2FT_BF16, T, c.out), y_dense(S2FT_BF16, T, c.out),
      y_sparse(S2FT_BF16, T, c.out), y_auto(S2FT_BF16, T, c.out), ref(S2FT_F32, T, c.out);
  fill_uniform(x, 8500 + static_cast<uint64_t>(T), 1.0f, s);
  auto call = [&](int32_t path, const std::vector<int32_t> &seg_adapter, DeviceMatrix &y, const char *what) {
    check(s2ft_context_set_delta_path(env.ctx, path), "s2ft_context_set_delta_path");
    check(s2ft_adapter_forward_mixed(env.ctx, 0, c.target, &x.t, &w.t, nullptr, ads.handles.data(), nullptr, c.n,
                                     b.offsets.data(), seg_adapter.data(), c.n, &y.t),
          what);
  };
  const std::vector<Variant> variants{
      {"base", [&] { call(S2FT_DELTA_PATH_AUTO, b.seg_none, y_base, "s2ft_adapter_forward_mixed (no adapters)"); }},
      {"dense", [&] { call(S2FT_DELTA_PATH_DENSE, b.seg_adapter, y_dense, "forward_mixed (DENSE)"); }},
      {"sparse", [&] { call(S2FT_DELTA_PATH_SPARSE, b.seg_adapter, y_sparse, "forward_mixed (SPARSE)"); }},
      {"auto", [&] { call(S2FT_DELTA_PATH_AUTO, b.seg_adapter, y_auto, "forward_mixed (AUTO)"); }},
  };
  Json j("paths");
  auto prepare = [&] {
    for (const DeviceMatrix *m : {&y_base, &y_dense, &y_sparse, &y_auto}) poison(*m, s);
  };
  auto check_outputs = [&] {
    gemm_xwt(env.blas, x.data(), w.data(), T, c.in, c.out, ref.data(), true, 1.0f, 0.0f);
    reference_column_delta(x.data(), T, c.in, c.out, ads.k, ads.n, ads.lines_dev.as<int64_t>(),
                           ads.delta_dev.as<float>(), b.token_dev.as<int32_t>(), 1.0f, ref.as_f32(), s);
    j.add("dense_rel_diff", max_rel_diff(y_dense, ref, s))
        .add("sparse_rel_diff", max_rel_diff(y_sparse, ref, s))
        .add("auto_rel_diff", max_rel_diff(y_auto, ref, s));
  };
  const Measured m = measure(env, variants, prepare, check_outputs, 5, env.reps(30));
  check(s2ft_context_set_delta_path(env.ctx, S2FT_DELTA_PATH_AUTO), "s2ft_context_set_delta_path");
  const double tb = m.ms("base"), td = m.ms("dense"), tsp = m.ms("sparse"), ta = m.ms("auto");
  const char *faster = std::isnan(td) || std::isnan(tsp) ? "n/a" : (td <= tsp ? "dense" : "sparse");
  std::printf("  %-14s %5lld %4lld %3lld %6lld %9.4f %9.4f %9.4f %9.4f %9.4f %9.4f  %s\n", c.name,
              static_cast<long long>(c.out), static_cast<long long>(c.k), static_cast<long long>(c.n),
              static_cast<long long>(T), tb, td, tsp, ta, td - tb, tsp - tb, faster);
  for (const auto &e : m.errors) std::printf("    %s: %s\n", e.first.c_str(), e.second.c_str());
  j.add("case", c.name)
      .add("target", c.target == S2FT_TARGET_O ? "o_proj" : "down_proj")
      .add("out", c.out)
      .add("in", c.in)
      .add("k", c.k)
      .add("n_adapters", c.n)
      .add("tokens", T)
      .add("dtype", "bf16")
      .add("dense_delta_ms", td - tb)
      .add("sparse_delta_ms", tsp - tb)
      .add("faster", faster);
  m.add_to(j);
  emit(j);
}

}  // namespace

void section_mixed(Env &env) {
  const cudaStream_t s = env.stream;
  const s2ft_model_shape shape{1, 4096, 32, 32, 128, 11008};
  const int64_t out = shape.d_model, in = shape.d_ff, k = 220, n_max = 64;
  const int64_t r = std::llround(static_cast<double>(k * out) / static_cast<double>(out + in));
  std::printf("\n== mixed: s2ft_adapter_forward_mixed vs LoRA (BGMV / SGMV), down_proj [%lld, %lld] bf16, "
              "k = %lld vs r = %lld, median ms\n",
              static_cast<long long>(out), static_cast<long long>(in), static_cast<long long>(k),
              static_cast<long long>(r));
  DeviceMatrix w(S2FT_BF16, out, in);
  fill_uniform(w, 6000, 0.02f, s);
  ColumnAdapters ads;
  make_column_adapters(env, ads, shape, S2FT_TARGET_DOWN, out, n_max, k,
                       [&](int64_t a) { return pick_distinct(in, k, 6100 + static_cast<uint64_t>(a)); }, 6200);
  DeviceBuffer la(static_cast<size_t>(n_max * r * in) * 2), lbt(static_cast<size_t>(n_max * r * out) * 2);
  fill_uniform_raw(la.get(), S2FT_BF16, n_max * r * in, 6300, 0.05f, s);
  fill_uniform_raw(lbt.get(), S2FT_BF16, n_max * r * out, 6301, 0.05f, s);
  LoraStack lora;
  lora.n = n_max;
  lora.r = r;
  lora.in = in;
  lora.out = out;
  lora.a = la.get();
  lora.bt = lbt.get();
  std::printf("  %-7s %4s %6s %9s %9s %9s %9s %9s %8s %9s %9s\n", "mode", "n", "T", "s2ft", "lora bgmv", "lora sgmv",
              "s2ft base", "cublas", "vs lora", "s2ft +", "lora +");
  struct Cfg {
    const char *mode;
    int64_t n, seg;
  };
  std::vector<Cfg> cfgs;
  for (int64_t n : {1, 2, 4, 8, 16, 32, 64}) cfgs.push_back({"decode", n, 1});
  for (int64_t n : {1, 4, 16, 64}) cfgs.push_back({"prefill", n, env.opt.prefill_tokens});
  for (const Cfg &c : cfgs) {
    try {
      mixed_case(env, w, ads, lora, c.mode, c.n, c.seg);
    } catch (const Failure &f) {
      std::printf("  %-7s %4lld error: %s\n", c.mode, static_cast<long long>(c.n), f.what());
      emit(Json("mixed").add("mode", c.mode).add("n_adapters", c.n).add("error", std::string(f.what())));
      recover_or_exit();
    }
  }
  std::printf("  (vs lora = 1 - s2ft / faster LoRA, target >= 22%%; '+' = time over the base GEMM)\n");
}

void section_paths(Env &env) {
  std::printf("\n== paths: forward_mixed delta path DENSE (gather + GEMM) vs SPARSE (cuSPARSE SpMM), bf16, median ms\n");
  std::printf("  %-14s %5s %4s %3s %6s %9s %9s %9s %9s %9s %9s  %s\n", "case", "out", "k", "n", "T", "base", "dense",
              "sparse", "auto", "dense +", "sparse +", "faster");
  std::vector<PathCase> cases;
  // One segment of T rows (groups of 8 rows or fewer take the library's decode
  // GEMV whatever the path, so T starts above that), and 8 requests of 64.
  for (int64_t T : {16, 128, 512, 2048}) cases.push_back({"down_proj", S2FT_TARGET_DOWN, 4096, 11008, 220, 1, T});
  for (int64_t T : {16, 128, 512, 2048}) cases.push_back({"o_proj", S2FT_TARGET_O, 4096, 4096, 256, 1, T});
  cases.push_back({"down_proj x8", S2FT_TARGET_DOWN, 4096, 11008, 220, 8, 64});
  for (const PathCase &c : cases) {
    try {
      paths_case(env, c);
    } catch (const Failure &f) {
      std::printf("  %-14s error: %s\n", c.name, f.what());
      emit(Json("paths").add("case", c.name).add("tokens", c.n * c.seg).add("error", std::string(f.what())));
      recover_or_exit();
    }
  }
  s2ft_context_set_delta_path(env.ctx, S2FT_DELTA_PATH_AUTO);
}

}  // namespace bench
