// s2ft-bench-gpu: the CUDA backend's benchmarks, each against its usual
// alternative, side by side in one process (bench/gpu/run_h200.sh runs it on
// an H200 together with the PyTorch/PEFT baselines; docs/benchmarks.md).
//
//   ceilings  device-to-device copy bandwidth and bf16 cuBLAS GEMM rate
//   backward  partial vs full backward of one linear layer (LLaMA-2-7B shapes)
//   switch    adapter switch of a 7B-shaped model vs its bytes/bandwidth floor
//   mixed     mixed-adapter forward vs a LoRA BGMV/SGMV baseline (1..64 adapters)
//   paths     DENSE (gather + GEMM) vs SPARSE (cuSPARSE SpMM) delta paths
//
// Every library call goes through the public C API on a CUDA context whose
// stream is a non-default stream of its own; times are CUDA events around each
// call on that stream, after warm-up, medians of interleaved repetitions.
// Each result is printed as a table row and, with --json, as one JSON line.
//
//   s2ft-bench-gpu [--only ceilings,backward,switch,mixed,paths] [--json FILE]
//                  [--tokens N] [--ratio R] [--layers N] [--prefill-tokens N] [--reps N]
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <string>

#include "sections.hpp"

namespace bench {

double Measured::ms(const std::string &name) const {
  const auto it = time.find(name);
  return it == time.end() ? NAN : it->second.median_ms;
}

void Measured::add_to(Json &j) const {
  for (const auto &kv : time) {
    j.add((kv.first + "_ms").c_str(), kv.second.median_ms);
    j.add((kv.first + "_min_ms").c_str(), kv.second.min_ms);
  }
  for (const auto &e : errors) j.add((e.first + "_error").c_str(), e.second);
}

void sync(Env &env) {
  BENCH_CUDA(cudaStreamSynchronize(env.stream));
  check(s2ft_context_synchronize(env.ctx), "s2ft_context_synchronize");
}

void recover_or_exit() {
  cudaGetLastError();  // clears a non-sticky error
  const cudaError_t e = cudaDeviceSynchronize();
  if (e != cudaSuccess) {
    std::fprintf(stderr, "fatal: the CUDA context is broken (%s); stopping\n", cudaGetErrorString(e));
    emit(Json("fatal").add("error", std::string(cudaGetErrorString(e))));
    std::exit(3);
  }
}

bool try_run(Env &env, const Variant &v, Measured &m) {
  try {
    v.run();
    sync(env);
    return true;
  } catch (const Failure &f) {
    m.errors.emplace_back(v.name, f.what());
    std::fprintf(stderr, "  variant %s failed: %s\n", v.name.c_str(), f.what());
    recover_or_exit();
    return false;
  }
}

Measured measure(Env &env, const std::vector<Variant> &variants, const std::function<void()> &prepare,
                 const std::function<void()> &check_outputs, int warmup, int reps) {
  Measured m;
  if (prepare) prepare();
  std::vector<Variant> ok;
  for (const Variant &v : variants)
    if (try_run(env, v, m)) ok.push_back(v);
  if (check_outputs) check_outputs();
  if (!ok.empty()) {
    const std::vector<Timing> t = time_interleaved(env.stream, ok, warmup, reps);
    for (size_t i = 0; i < ok.size(); ++i) m.time[ok[i].name] = t[i];
  }
  return m;
}

// ---- ceilings: what the hardware gives, measured in this run ----------------------------

void section_ceilings(Env &env) {
  std::printf("\n== ceilings (measured now; the floors below use them)\n");
  // Copy: 1 GiB device to device, counting bytes read plus bytes written.
  const size_t bytes = size_t{1} << 30;
  DeviceBuffer src(bytes), dst(bytes);
  fill_uniform_raw(src.get(), S2FT_F32, static_cast<int64_t>(bytes / 4), 1, 1.0f, env.stream);
  const std::vector<Variant> copy{{"copy", [&] {
                                     BENCH_CUDA(cudaMemcpyAsync(dst.get(), src.get(), bytes, cudaMemcpyDeviceToDevice,
                                                                env.stream));
                                   }}};
  const Timing tc = time_interleaved(env.stream, copy, 3, env.reps(20))[0];
  env.copy_bytes_per_s = 2.0 * static_cast<double>(bytes) / (tc.median_ms * 1e-3);

  // GEMM: 8192^3 bf16, f32 accumulation, random data (never zeros).
  const int n = 8192;
  DeviceMatrix a(S2FT_BF16, n, n), b(S2FT_BF16, n, n), c(S2FT_BF16, n, n);
  fill_uniform(a, 2, 1.0f, env.stream);
  fill_uniform(b, 3, 1.0f, env.stream);
  const float one = 1.0f, zero = 0.0f;
  const std::vector<Variant> gemm{{"gemm", [&] {
                                     BENCH_CUBLAS(cublasGemmEx(env.blas, CUBLAS_OP_N, CUBLAS_OP_N, n, n, n, &one,
                                                               a.data(), CUDA_R_16BF, n, b.data(), CUDA_R_16BF, n,
                                                               &zero, c.data(), CUDA_R_16BF, n, CUBLAS_COMPUTE_32F,
                                                               CUBLAS_GEMM_DEFAULT));
                                   }}};
  const Timing tg = time_interleaved(env.stream, gemm, 3, env.reps(10))[0];
  env.gemm_flops = 2.0 * n * static_cast<double>(n) * n / (tg.median_ms * 1e-3);

  std::printf("  device-to-device copy of 1 GiB: %.3f ms -> %.0f GB/s (read + written)\n", tc.median_ms,
              env.copy_bytes_per_s * 1e-9);
  std::printf("  bf16 GEMM 8192^3 (cuBLAS):       %.3f ms -> %.0f TFLOP/s\n", tg.median_ms, env.gemm_flops * 1e-12);
  emit(Json("ceilings")
           .add("copy_bytes", static_cast<int64_t>(bytes))
           .add("copy_ms", tc.median_ms)
           .add("copy_gbps_rw", env.copy_bytes_per_s * 1e-9)
           .add("gemm_n", n)
           .add("gemm_ms", tg.median_ms)
           .add("gemm_tflops", env.gemm_flops * 1e-12));
}

}  // namespace bench

namespace {

void usage(const char *argv0) {
  std::printf(
      "usage: %s [--only LIST] [--json FILE] [--tokens N] [--ratio R] [--layers N]\n"
      "          [--prefill-tokens N] [--reps N]\n"
      "  --only LIST          comma-separated sections: ceilings,backward,switch,mixed,paths (default all;\n"
      "                       ceilings always run, the floors need them)\n"
      "  --json FILE          also write one JSON object per result line to FILE (appended)\n"
      "  --tokens N           backward: tokens T (default 2048)\n"
      "  --ratio R            backward: share of lines trained (default 0.02)\n"
      "  --layers N           switch: layers of the 7B-shaped model (default 32)\n"
      "  --prefill-tokens N   mixed: tokens per request in the prefill case (default 128)\n"
      "  --reps N             timed repetitions per variant (default: per section)\n",
      argv0);
}

}  // namespace

int main(int argc, char **argv) {
  using namespace bench;
  std::string only = "backward,switch,mixed,paths", json_path;
  Options opt;
  std::ostringstream cmd;
  for (int i = 0; i < argc; ++i) cmd << (i ? " " : "") << argv[i];
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      usage(argv[0]);
      return 0;
    }
    const char *v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (v == nullptr) {
      std::fprintf(stderr, "%s needs a value (see --help)\n", a.c_str());
      return 2;
    }
    if (a == "--only") only = v;
    else if (a == "--json") json_path = v;
    else if (a == "--tokens") opt.tokens = std::atoll(v);
    else if (a == "--ratio") opt.ratio = std::atof(v);
    else if (a == "--layers") opt.layers = std::atoi(v);
    else if (a == "--prefill-tokens") opt.prefill_tokens = std::atoll(v);
    else if (a == "--reps") opt.reps = std::atoi(v);
    else {
      std::fprintf(stderr, "unknown option %s (see --help)\n", a.c_str());
      return 2;
    }
    ++i;
  }
  if (opt.tokens < 1 || !(opt.ratio > 0 && opt.ratio <= 1) || opt.layers < 1 || opt.prefill_tokens < 1 ||
      opt.reps < 0) {
    std::fprintf(stderr, "bad arguments: sizes must be >= 1, ratio in (0, 1], reps >= 0\n");
    return 2;
  }
  std::set<std::string> sections;
  {
    std::stringstream ss(only);
    std::string s;
    while (std::getline(ss, s, ',')) {
      if (s != "ceilings" && s != "backward" && s != "switch" && s != "mixed" && s != "paths") {
        std::fprintf(stderr, "unknown section '%s' (see --help)\n", s.c_str());
        return 2;
      }
      sections.insert(s);
    }
  }
  FILE *json = nullptr;
  if (!json_path.empty()) {
    json = std::fopen(json_path.c_str(), "a");
    if (json == nullptr) {
      std::fprintf(stderr, "cannot open %s for appending\n", json_path.c_str());
      return 2;
    }
    set_json_file(json);
  }
  std::printf("command: %s\n", cmd.str().c_str());
  std::printf("libs2ft %s\n", s2ft_version_string());

  Env env;
  env.opt = opt;
  int rc = 0;
  try {
    s2ft_context_options o;
    check(s2ft_context_options_init(&o, S2FT_CONTEXT_OPTIONS_VERSION), "s2ft_context_options_init");
    o.device_type = S2FT_DEVICE_CUDA;
    o.device_id = 0;
    check(s2ft_context_create(&o, &env.ctx), "s2ft_context_create (CUDA device 0)");
    BENCH_CUDA(cudaSetDevice(0));
    BENCH_CUDA(cudaStreamCreateWithFlags(&env.stream, cudaStreamNonBlocking));
    check(s2ft_context_set_stream(env.ctx, env.stream), "s2ft_context_set_stream");
    BENCH_CUBLAS(cublasCreate(&env.blas));
    BENCH_CUBLAS(cublasSetStream(env.blas, env.stream));

    cudaDeviceProp p{};
    BENCH_CUDA(cudaGetDeviceProperties(&p, 0));
    int driver = 0, runtime = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    std::printf("device: %s, %d SMs, %.0f MiB L2, %.1f GiB, CUDA driver %d runtime %d\n", p.name,
                p.multiProcessorCount, p.l2CacheSize / 1048576.0, static_cast<double>(p.totalGlobalMem) / (1 << 30),
                driver, runtime);
    emit(Json("env")
             .add("command", cmd.str())
             .add("device", std::string(p.name))
             .add("sm_count", p.multiProcessorCount)
             .add("l2_bytes", static_cast<int64_t>(p.l2CacheSize))
             .add("memory_bytes", static_cast<int64_t>(p.totalGlobalMem))
             .add("cc", std::to_string(p.major) + "." + std::to_string(p.minor))
             .add("cuda_driver", driver)
             .add("cuda_runtime", runtime)
             .add("libs2ft", std::string(s2ft_version_string())));
  } catch (const Failure &f) {
    std::fprintf(stderr, "cannot set up the CUDA context: %s\n", f.what());
    emit(Json("env").add("command", cmd.str()).add("error", std::string(f.what())));
    if (json != nullptr) std::fclose(json);
    return 1;
  }

  struct Section {
    const char *name;
    void (*fn)(Env &);
  };
  const Section all[] = {{"ceilings", section_ceilings},
                         {"backward", section_backward},
                         {"switch", section_switch},
                         {"mixed", section_mixed},
                         {"paths", section_paths}};
  for (const Section &s : all) {
    if (std::strcmp(s.name, "ceilings") != 0 && sections.count(s.name) == 0) continue;
    try {
      s.fn(env);
    } catch (const Failure &f) {
      std::fprintf(stderr, "section %s failed: %s\n", s.name, f.what());
      emit(Json(s.name).add("error", std::string(f.what())));
      rc = 1;
      recover_or_exit();
    }
  }

  cublasDestroy(env.blas);
  s2ft_context_destroy(env.ctx);
  cudaStreamDestroy(env.stream);
  if (json != nullptr) std::fclose(json);
  return rc;
}
