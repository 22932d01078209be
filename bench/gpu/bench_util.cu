// Implementation of bench_util.hpp: error checks, buffers, the fill and check
// kernels, event timing and JSON lines.
#include "bench_util.hpp"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

namespace bench {

// ---- errors ------------------------------------------------------------------------

void check(s2ft_status st, const char *what) {
  if (st != S2FT_OK)
    throw Failure(std::string(what) + ": " + s2ft_status_string(st) + ": " + s2ft_last_error());
}

void check_cuda(cudaError_t err, const char *what) {
  if (err != cudaSuccess) throw Failure(std::string(what) + ": " + cudaGetErrorString(err));
}

void check_cublas(cublasStatus_t st, const char *what) {
  if (st != CUBLAS_STATUS_SUCCESS) throw Failure(std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(st)));
}

void check_launch(const char *kernel) {
  const cudaError_t err = cudaPeekAtLastError();
  if (err != cudaSuccess) throw Failure(std::string("launch of ") + kernel + ": " + cudaGetErrorString(err));
}

// ---- buffers -------------------------------------------------------------------------

DeviceBuffer::DeviceBuffer(size_t bytes) : bytes_(bytes) {
  BENCH_CUDA(cudaMalloc(&p_, std::max<size_t>(bytes, 16)));
}
DeviceBuffer::DeviceBuffer(DeviceBuffer &&o) noexcept { *this = std::move(o); }
DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&o) noexcept {
  std::swap(p_, o.p_);
  std::swap(bytes_, o.bytes_);
  return *this;
}
DeviceBuffer::~DeviceBuffer() {
  if (p_ != nullptr) cudaFree(p_);
}

PinnedBuffer::PinnedBuffer(size_t bytes) { BENCH_CUDA(cudaMallocHost(&p_, std::max<size_t>(bytes, 16))); }
PinnedBuffer::~PinnedBuffer() {
  if (p_ != nullptr) cudaFreeHost(p_);
}

DeviceMatrix::DeviceMatrix(int32_t dt, int64_t r, int64_t c, int32_t device)
    : dtype(dt), rows(r), cols(c), buf(static_cast<size_t>(r * c) * (dt == S2FT_F32 ? 4 : 2)) {
  const int64_t shape[2] = {r, c};
  check(s2ft_tensor_init(&t, buf.get(), dt, S2FT_DEVICE_CUDA, device, 2, shape), "s2ft_tensor_init");
}

s2ft_tensor DeviceMatrix::col_view(int64_t c0, int64_t n) const {
  s2ft_tensor v = t;
  v.shape[1] = n;
  v.byte_offset = static_cast<uint64_t>(c0) * elem();
  return v;
}

// ---- kernels ---------------------------------------------------------------------------

namespace {

constexpr int kThreads = 256;

unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 8192));
}

__device__ __forceinline__ uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// u(i) = 24 hashed bits of (seed, i) mapped to [-1, 1), exactly representable.
__device__ __forceinline__ float hash_uniform(uint64_t seed, uint64_t i) {
  const uint64_t h = mix64(seed * 0x9e3779b97f4a7c15ull + i * 0xd1b54a32d192ed03ull + 0x632be59bd9b4e019ull);
  return static_cast<float>(h >> 40) * (1.0f / 8388608.0f) - 1.0f;
}

// p[i] = scale * u(i) for i < n, rounded to nearest even for bf16.
__global__ void fill_f32_kernel(float *p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = scale * hash_uniform(seed, static_cast<uint64_t>(i));
}
__global__ void fill_bf16_kernel(__nv_bfloat16 *p, int64_t n, uint64_t seed, float scale) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    p[i] = __float2bfloat16_rn(scale * hash_uniform(seed, static_cast<uint64_t>(i)));
}

// count += #{i < n : p[i] is NaN or +-Inf}; f32 or bf16 (exponent all ones).
__global__ void nonfinite_kernel(const void *p, int32_t dtype, int64_t n, unsigned long long *count) {
  unsigned long long local = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (dtype == S2FT_F32) {
      local += isfinite(static_cast<const float *>(p)[i]) ? 0u : 1u;
    } else {
      const uint16_t u = static_cast<const uint16_t *>(p)[i];
      local += (u & 0x7f80u) == 0x7f80u ? 1u : 0u;
    }
  }
  if (local != 0) atomicAdd(count, local);
}

__device__ __forceinline__ float load_as_f32(const void *p, int32_t dtype, int64_t i) {
  if (dtype == S2FT_F32) return static_cast<const float *>(p)[i];
  return __bfloat162float(static_cast<const __nv_bfloat16 *>(p)[i]);
}

struct DiffResult {
  unsigned int diff_bits;   // max |got - want| as the bits of a non-negative float
  unsigned int scale_bits;  // max |want|
  unsigned int nan_mismatch;
};

// Over i < n: max |got[i] - want[i]| and max |want[i]| (non-negative floats
// compare like their bit patterns, so atomicMax on the bits is a float max),
// and a flag when exactly one of got[i], want[i] is NaN.
__global__ void diff_kernel(const void *got, int32_t got_dtype, const void *want, int32_t want_dtype, int64_t n,
                            DiffResult *out) {
  float diff = 0.0f, scale = 0.0f;
  unsigned int mismatch = 0;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float g = load_as_f32(got, got_dtype, i), w = load_as_f32(want, want_dtype, i);
    if (isnan(g) != isnan(w)) mismatch = 1;
    if (!isnan(w) && !isnan(g)) {
      diff = fmaxf(diff, fabsf(g - w));
      scale = fmaxf(scale, fabsf(w));
    }
  }
  for (int off = 16; off > 0; off >>= 1) {
    diff = fmaxf(diff, __shfl_xor_sync(0xffffffffu, diff, off));
    scale = fmaxf(scale, __shfl_xor_sync(0xffffffffu, scale, off));
    mismatch |= __shfl_xor_sync(0xffffffffu, mismatch, off);
  }
  if ((threadIdx.x & 31) == 0) {
    atomicMax(&out->diff_bits, __float_as_uint(diff));
    atomicMax(&out->scale_bits, __float_as_uint(scale));
    if (mismatch) atomicOr(&out->nan_mismatch, 1u);
  }
}

}  // namespace

void fill_uniform_raw(void *data, int32_t dtype, int64_t n, uint64_t seed, float scale, cudaStream_t stream) {
  if (n <= 0) return;
  if (dtype == S2FT_F32) {
    fill_f32_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<float *>(data), n, seed, scale);
  } else if (dtype == S2FT_BF16) {
    fill_bf16_kernel<<<grid_for(n), kThreads, 0, stream>>>(static_cast<__nv_bfloat16 *>(data), n, seed, scale);
  } else {
    throw Failure("fill_uniform: only f32 and bf16");
  }
  check_launch("fill");
}

void fill_uniform(const DeviceMatrix &m, uint64_t seed, float scale, cudaStream_t stream) {
  fill_uniform_raw(m.data(), m.dtype, m.rows * m.cols, seed, scale, stream);
}

void poison(const DeviceMatrix &m, cudaStream_t stream) {
  BENCH_CUDA(cudaMemsetAsync(m.data(), 0xFF, m.bytes(), stream));
}

int64_t count_nonfinite(const DeviceMatrix &m, cudaStream_t stream) {
  DeviceBuffer counter(sizeof(unsigned long long));
  BENCH_CUDA(cudaMemsetAsync(counter.get(), 0, sizeof(unsigned long long), stream));
  const int64_t n = m.rows * m.cols;
  if (n > 0) {
    nonfinite_kernel<<<grid_for(n), kThreads, 0, stream>>>(m.data(), m.dtype, n, counter.as<unsigned long long>());
    check_launch("nonfinite_kernel");
  }
  unsigned long long host = 0;
  BENCH_CUDA(cudaMemcpyAsync(&host, counter.get(), sizeof host, cudaMemcpyDeviceToHost, stream));
  BENCH_CUDA(cudaStreamSynchronize(stream));
  return static_cast<int64_t>(host);
}

double max_rel_diff(const DeviceMatrix &got, const DeviceMatrix &want, cudaStream_t stream) {
  if (got.rows != want.rows || got.cols != want.cols) throw Failure("max_rel_diff: shapes differ");
  DeviceBuffer res(sizeof(DiffResult));
  BENCH_CUDA(cudaMemsetAsync(res.get(), 0, sizeof(DiffResult), stream));
  const int64_t n = got.rows * got.cols;
  if (n > 0) {
    diff_kernel<<<grid_for(n), kThreads, 0, stream>>>(got.data(), got.dtype, want.data(), want.dtype, n,
                                                      res.as<DiffResult>());
    check_launch("diff_kernel");
  }
  DiffResult host{};
  BENCH_CUDA(cudaMemcpyAsync(&host, res.get(), sizeof host, cudaMemcpyDeviceToHost, stream));
  BENCH_CUDA(cudaStreamSynchronize(stream));
  if (host.nan_mismatch) return 1e30;
  float diff, scale;
  std::memcpy(&diff, &host.diff_bits, 4);
  std::memcpy(&scale, &host.scale_bits, 4);
  const double r = static_cast<double>(diff) / (scale > 0.0f ? static_cast<double>(scale) : 1.0);
  return std::isfinite(r) ? r : 1e30;
}

// ---- timing ---------------------------------------------------------------------------

namespace {
struct Events {
  std::vector<cudaEvent_t> ev;
  explicit Events(size_t n) : ev(n, nullptr) {
    for (auto &e : ev) BENCH_CUDA(cudaEventCreate(&e));
  }
  ~Events() {
    for (auto e : ev)
      if (e != nullptr) cudaEventDestroy(e);
  }
};
}  // namespace

double median(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::vector<Timing> time_interleaved(cudaStream_t stream, const std::vector<Variant> &variants, int warmup,
                                     int reps) {
  const size_t nv = variants.size();
  for (int w = 0; w < warmup; ++w)
    for (const Variant &v : variants) v.run();
  Events e(2 * nv * static_cast<size_t>(reps));
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < nv; ++i) {
      const size_t at = 2 * (static_cast<size_t>(r) * nv + i);
      BENCH_CUDA(cudaEventRecord(e.ev[at], stream));
      variants[i].run();
      BENCH_CUDA(cudaEventRecord(e.ev[at + 1], stream));
    }
  BENCH_CUDA(cudaStreamSynchronize(stream));
  BENCH_CUDA(cudaGetLastError());
  std::vector<Timing> out(nv);
  for (size_t i = 0; i < nv; ++i) {
    std::vector<double> ms;
    for (int r = 0; r < reps; ++r) {
      const size_t at = 2 * (static_cast<size_t>(r) * nv + i);
      float t = 0.0f;
      BENCH_CUDA(cudaEventElapsedTime(&t, e.ev[at], e.ev[at + 1]));
      ms.push_back(t);
    }
    out[i].median_ms = median(ms);
    out[i].min_ms = *std::min_element(ms.begin(), ms.end());
    out[i].max_ms = *std::max_element(ms.begin(), ms.end());
    out[i].reps = reps;
  }
  return out;
}

// ---- JSON -----------------------------------------------------------------------------

Json::Json(const std::string &bench) : s_("{") { add("bench", bench); }

void Json::key(const char *k) {
  if (s_.size() > 1) s_ += ",";
  s_ += "\"";
  s_ += k;
  s_ += "\":";
}

Json &Json::add(const char *k, double v) {
  key(k);
  if (!std::isfinite(v)) {
    s_ += "null";
  } else {
    char b[64];
    std::snprintf(b, sizeof b, "%.6g", v);
    s_ += b;
  }
  return *this;
}

Json &Json::add(const char *k, int64_t v) {
  key(k);
  s_ += std::to_string(v);
  return *this;
}

Json &Json::add(const char *k, const std::string &v) {
  key(k);
  s_ += "\"";
  for (const char c : v) {
    if (c == '"' || c == '\\') {
      s_ += '\\';
      s_ += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
      s_ += b;
    } else {
      s_ += c;
    }
  }
  s_ += "\"";
  return *this;
}

Json &Json::add_bool(const char *k, bool v) {
  key(k);
  s_ += v ? "true" : "false";
  return *this;
}

namespace {
FILE *g_json = nullptr;
}

void set_json_file(FILE *f) { g_json = f; }

void emit(const Json &j) {
  if (g_json == nullptr) return;
  std::fprintf(g_json, "%s\n", j.str().c_str());
  std::fflush(g_json);
}

// ---- index sets -------------------------------------------------------------------------

std::vector<int64_t> pick_distinct(int64_t n, int64_t count, uint64_t seed, const std::vector<int64_t> &avoid) {
  std::vector<char> banned(static_cast<size_t>(n), 0);
  for (const int64_t a : avoid)
    if (a >= 0 && a < n) banned[static_cast<size_t>(a)] = 1;
  std::vector<int64_t> pool;
  for (int64_t i = 0; i < n; ++i)
    if (!banned[static_cast<size_t>(i)]) pool.push_back(i);
  if (count > static_cast<int64_t>(pool.size())) throw Failure("pick_distinct: not enough values");
  HostRandom rng{seed};
  for (int64_t i = 0; i < count; ++i) {  // partial Fisher-Yates
    const int64_t j = i + rng.below(static_cast<int64_t>(pool.size()) - i);
    std::swap(pool[static_cast<size_t>(i)], pool[static_cast<size_t>(j)]);
  }
  pool.resize(static_cast<size_t>(count));
  std::sort(pool.begin(), pool.end());
  return pool;
}

}  // namespace bench
