// Shared pieces of the GPU benchmark program: error checks that throw (so a
// section that fails is reported and the next one still runs), device
// matrices with s2ft_tensor descriptors, random fills and output checks run
// on the device, CUDA-event timing of interleaved variants, and JSON lines.
// Plain C++ (the kernels are in bench_util.cu).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "s2ft/s2ft.h"

namespace bench {

// A failed call inside a benchmark case: the case is reported as an error.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

void check(s2ft_status st, const char *what);
void check_cuda(cudaError_t err, const char *what);
void check_cublas(cublasStatus_t st, const char *what);
// After a kernel launch: a bad launch configuration fails now.
void check_launch(const char *kernel);

#define BENCH_CUDA(expr) ::bench::check_cuda((expr), #expr)
#define BENCH_CUBLAS(expr) ::bench::check_cublas((expr), #expr)

// Device memory from cudaMalloc (set-up only, never inside a timed region).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;
  DeviceBuffer(DeviceBuffer &&o) noexcept;
  DeviceBuffer &operator=(DeviceBuffer &&o) noexcept;
  ~DeviceBuffer();
  void *get() const { return p_; }
  size_t bytes() const { return bytes_; }
  template <typename T>
  T *as() const {
    return static_cast<T *>(p_);
  }

 private:
  void *p_ = nullptr;
  size_t bytes_ = 0;
};

// Host memory from cudaMallocHost, for small per-call uploads that must not
// stage through pageable memory.
class PinnedBuffer {
 public:
  explicit PinnedBuffer(size_t bytes);
  PinnedBuffer(const PinnedBuffer &) = delete;
  PinnedBuffer &operator=(const PinnedBuffer &) = delete;
  ~PinnedBuffer();
  template <typename T>
  T *as() const {
    return static_cast<T *>(p_);
  }

 private:
  void *p_ = nullptr;
};

// A compact row-major [rows, cols] matrix in device memory (S2FT_F32 or
// S2FT_BF16) and its descriptor on CUDA device `device`.
struct DeviceMatrix {
  int32_t dtype = S2FT_BF16;
  int64_t rows = 0, cols = 0;
  DeviceBuffer buf;
  s2ft_tensor t{};

  DeviceMatrix(int32_t dtype, int64_t rows, int64_t cols, int32_t device = 0);
  size_t elem() const { return dtype == S2FT_F32 ? 4 : 2; }
  size_t bytes() const { return static_cast<size_t>(rows * cols) * elem(); }
  void *data() const { return buf.get(); }
  float *as_f32() const { return static_cast<float *>(buf.get()); }
  // Columns [c0, c0 + n) as a strided view (row stride stays `cols`).
  s2ft_tensor col_view(int64_t c0, int64_t n) const;
};

// Kernels (bench_util.cu), all queued on `stream`.
// Uniform values in [-scale, scale) from a stateless hash of (seed, index).
void fill_uniform(const DeviceMatrix &m, uint64_t seed, float scale, cudaStream_t stream);
void fill_uniform_raw(void *data, int32_t dtype, int64_t n, uint64_t seed, float scale, cudaStream_t stream);
// Every byte 0xFF: NaN in f32 and bf16, so an unwritten output shows.
void poison(const DeviceMatrix &m, cudaStream_t stream);
// Synchronising (set-up and checks only): the number of NaN/Inf elements.
int64_t count_nonfinite(const DeviceMatrix &m, cudaStream_t stream);
// Synchronising: max |got - want| / max |want| (got f32 or bf16, want f32 or
// bf16, same shape); 1e30 (finite, so it survives JSON) when a NaN appears in
// one but not the other or the difference overflows.
double max_rel_diff(const DeviceMatrix &got, const DeviceMatrix &want, cudaStream_t stream);

// One timed variant: `run` queues its work on the stream being timed.
struct Variant {
  std::string name;
  std::function<void()> run;
};

struct Timing {
  double median_ms = 0, min_ms = 0, max_ms = 0;
  int reps = 0;
};

// Runs each variant `warmup` times, then `reps` rounds in which every variant
// runs once (interleaved, so drift hits all alike), each timed by a pair of
// CUDA events recorded on `stream` around its call. One timing per variant.
std::vector<Timing> time_interleaved(cudaStream_t stream, const std::vector<Variant> &variants, int warmup,
                                     int reps);

double median(std::vector<double> v);

// A JSON object on one line, built field by field.
class Json {
 public:
  explicit Json(const std::string &bench);
  Json &add(const char *key, double v);
  Json &add(const char *key, int64_t v);
  Json &add(const char *key, int v) { return add(key, static_cast<int64_t>(v)); }
  Json &add(const char *key, const std::string &v);
  Json &add(const char *key, const char *v) { return add(key, std::string(v)); }
  Json &add_bool(const char *key, bool v);
  std::string str() const { return s_ + "}"; }

 private:
  void key(const char *k);
  std::string s_;
};

// Writes one JSON line to the --json file (if any) and flushes it.
void set_json_file(FILE *f);
void emit(const Json &j);

// SplitMix64 on the host, for index sets and host-side deltas.
struct HostRandom {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in [-scale, scale).
  float uniform(float scale) {
    return scale * static_cast<float>(static_cast<double>(next() >> 11) / 4503599627370496.0 - 1.0);
  }
  int64_t below(int64_t n) { return static_cast<int64_t>(next() % static_cast<uint64_t>(n)); }
};

// `count` distinct values of [0, n), ascending, none of them in `avoid`.
std::vector<int64_t> pick_distinct(int64_t n, int64_t count, uint64_t seed, const std::vector<int64_t> &avoid = {});

}  // namespace bench
