// The sections of s2ft-bench-gpu and what they share: the CUDA context on a
// non-default stream, a cuBLAS handle on the same stream for baselines, the
// ceilings measured at start (copy bandwidth, bf16 GEMM rate) and the options.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "bench_util.hpp"
#include "s2ft/s2ft.h"

namespace bench {

struct Options {
  int64_t tokens = 2048;        // backward: T
  double ratio = 0.02;          // backward: share of lines trained
  int32_t layers = 32;          // switch: layers of the 7B-shaped model
  int64_t prefill_tokens = 128; // mixed: tokens per request in the prefill case
  int reps = 0;                 // 0: each section's default
};

struct Env {
  s2ft_context *ctx = nullptr;
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  Options opt;
  double copy_bytes_per_s = 0;  // device-to-device copy, bytes read + written per second
  double gemm_flops = 0;        // bf16 cuBLAS GEMM, FLOP per second
  int reps(int section_default) const { return opt.reps > 0 ? opt.reps : section_default; }
};

// Variants that failed their first (untimed) run are dropped from timing and
// reported as errors; the rest are timed interleaved.
struct Measured {
  std::map<std::string, Timing> time;
  std::vector<std::pair<std::string, std::string>> errors;  // (variant, message)
  bool ok(const std::string &name) const { return time.count(name) != 0; }
  double ms(const std::string &name) const;  // NaN when the variant failed
  void add_to(Json &j) const;                // "<name>_ms" and "<name>_error" fields
};

// Runs every variant once (after `prepare`, e.g. poisoning outputs) and
// synchronises; a variant that throws or faults is recorded and dropped.
// `check` (may be empty) then runs on the outputs of those first runs.
// Finally the survivors are timed.
Measured measure(Env &env, const std::vector<Variant> &variants, const std::function<void()> &prepare,
                 const std::function<void()> &check, int warmup, int reps);

// Waits for the stream and the context; throws Failure on a device fault.
void sync(Env &env);

// Runs `v` once and synchronises; on failure records (name, message) in
// m.errors, recovers from a non-sticky CUDA error and returns false. Exits
// the program when the CUDA context is broken (every later call would fail).
bool try_run(Env &env, const Variant &v, Measured &m);

// After a caught Failure: clears a non-sticky CUDA error, or exits when the
// CUDA context is broken.
void recover_or_exit();

void section_ceilings(Env &env);
void section_backward(Env &env);
void section_switch(Env &env);
void section_mixed(Env &env);
void section_paths(Env &env);

}  // namespace bench
