// AdamW, SGD and SM3 on the trained slices and sparse parameters, on the
// device. One step is:
//   1. grad_sumsq_kernel: per chunk of every gradient, sum of g^2 (double);
//   2. finalize_kernel: per-parameter sums, the global norm, the clip factor,
//      whether the step runs (finite norm) and the device step count;
//   3. adamw_kernel / sgd_kernel / sm3_kernel: the fused update of state,
//      master and weight, element by element; for SM3 then
//      sm3_accumulators_kernel: each row and column accumulator takes the
//      largest nu of its elements this step (gathered by sm3_kernel with
//      atomicMax on the bits of non-negative floats, which order like the
//      values), or keeps its value when the step had no element there.
// A sparse parameter's "lines" are its entries' flat indices r * cols + c
// into the weight, and its gradient is [1, count].
// All parameters go through each kernel together: the work is cut into
// chunks of kChunk slice elements, one block per chunk, and a block finds
// its parameter by binary search over the chunk offsets ("multi-tensor
// apply"). Kernels are instantiated per (weight dtype, gradient dtype), and
// the parameters are ordered so that each instantiation covers a
// contiguous range of chunks.
//
// The update arithmetic is the CPU's (src/backend/cpu/optimizer.cpp) operation
// for operation, in double from f32 state, with explicitly rounded
// intrinsics (__dmul_rn, __dadd_rn, ...) so that nvcc never contracts a
// multiply and an add into an FMA: given the same clip factor and bias
// corrections, weights, masters and state match the CPU bit for bit. (The
// per-entry bias corrections of age_bias_correction use the device's pow,
// which may differ from the host's in the last bit.)
#include <algorithm>
#include <climits>
#include <cmath>
#include <numeric>
#include <string>

#include "cuda_copy.cuh"
#include "cuda_optimizer.hpp"
#include "train/optimizer.hpp"

namespace s2ft {
namespace cuda {

struct OptimizerDeviceState {
  DeviceBuffer steps;  // one int64: steps the device has applied
};

struct ParamDeviceState {
  DeviceBuffer lines;  // int64 weight line of each slice line, or flat index of each entry
  DeviceBuffer tensors[backend::kStateTensors];  // indexed by StateTensor; empty when unused
  size_t size = 0;          // parameter elements
};

namespace {
// A parameter's device state (backend::Object made by create_param_state).
const ParamDeviceState &device_state(const OptimizerParam &p) {
  return *static_cast<const ParamDeviceState *>(p.state.get());
}
}  // namespace

namespace {

constexpr int64_t kChunk = 4096;  // slice elements per block (16 per thread)

__host__ __device__ inline int64_t chunks_of(int64_t size) { return (size + kChunk - 1) / kChunk; }

// One parameter as the kernels see it. Slice element e = i * cols + j is
// weight element (row(i), col(j)) and gradient element (i, j); state
// tensors are compact, indexed by e.
struct Task {
  char *w;             // weight base
  int64_t w_rs, w_cs;  // weight strides (elements)
  const int64_t *lines;  // weight line of each slice line
  int64_t rows, cols;  // slice shape
  const char *g;       // gradient base
  int64_t g_rs, g_cs;  // gradient strides (elements)
  float *m, *v, *mom, *master;  // NULL when unused
  float *age;          // per-entry ages (AdamW with age_bias_correction), or NULL
  float *row_acc, *col_acc;        // SM3 accumulators, or NULL
  int32_t *new_row, *new_col;      // SM3: this step's maxima (float bits), -1 where none
  int64_t w_cols;      // the weight's columns (decodes a flat index)
  int64_t chunk0;      // first chunk of this parameter
  int64_t param;       // the parameter's index
  int32_t axis;        // S2FT_AXIS_COLUMNS, S2FT_AXIS_ROWS or kAxisEntries
  int32_t pad;
};

// What finalize_kernel decides for the step, read by the update kernels
// (and downloaded by a reporting step).
struct StepInfo {
  double norm;       // global gradient norm (before clipping)
  double scale;      // clip factor, 1 without clipping
  double step_size;  // AdamW lr / (1 - b1^t), computed on the device
  double bc2_sqrt;   // AdamW sqrt(1 - b2^t), computed on the device
  int64_t bad;       // first parameter whose gradient sum is not finite, or -1
  int64_t t;         // this step's number (device steps before + 1)
  int64_t steps;     // the device's step count after this step
  int32_t ok;        // 1: the norm is finite and the update runs
  int32_t pad;
};

// Host-side constants of the update, computed exactly as the CPU does.
struct UpdateArgs {
  double lr, decay;              // AdamW: decay = 1 - lr * weight_decay
  double b1, one_minus_b1, b2, one_minus_b2, eps;
  double weight_decay, momentum;  // SGD
  int32_t nesterov, with_momentum;
  double b1_for_age, b2_for_age;  // AdamW with ages: beta1, beta2 for pow
  int64_t host_t;                 // the step number the host assumed ...
  double host_step_size, host_bc2_sqrt;  // ... and its bias corrections
};

// The index of the task that holds global chunk c: the largest k with
// tasks[k].chunk0 <= c (empty tasks share chunk0 with the next task and
// come before it, so the non-empty one is found).
__device__ int64_t find_task(const Task *tasks, int64_t n_tasks, int64_t c) {
  int64_t lo = 0, hi = n_tasks - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (tasks[mid].chunk0 <= c) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// Sum of `v` over the block, deterministic (fixed shuffle and shared-memory
// order); the result is valid in thread 0. blockDim.x must be kThreads.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int off = 16; off > 0; off >>= 1) v += __shfl_down_sync(0xffffffffu, v, off);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  double s = 0.0;
  if (threadIdx.x == 0)
    for (int k = 0; k < kThreads / 32; ++k) s += warp_sums[k];
  return s;
}

// partials[c] = sum of g^2 over chunk c's elements of its gradient, in double.
template <typename G>
__global__ void grad_sumsq_kernel(const Task *tasks, int64_t n_tasks, int64_t chunk_base, double *partials) {
  __shared__ Task t;
  const int64_t c = chunk_base + blockIdx.x;
  if (threadIdx.x == 0) t = tasks[find_task(tasks, n_tasks, c)];
  __syncthreads();
  const int64_t size = t.rows * t.cols;
  const int64_t begin = (c - t.chunk0) * kChunk;
  const int64_t end = begin + kChunk < size ? begin + kChunk : size;
  const G *g = reinterpret_cast<const G *>(t.g);
  double acc = 0.0;
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int64_t i = e / t.cols, j = e - i * t.cols;
    const double x = to_f32(g[i * t.g_rs + j * t.g_cs]);
    acc += x * x;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[c] = acc;
}

// One block. Per parameter p: sums[p] = sum of its chunks' partials (one
// warp per parameter: lane l adds chunks l, l+32, ..., then a fixed shuffle
// tree); then, in parameter order as on the CPU,
//   total = sum_p sums[p],  norm = sqrt(total),
//   scale = max_norm > 0 ? min(1, max_norm / (norm + 1e-6)) : 1,
//   ok = norm is finite, t = steps + 1, and steps = t when ok.
__global__ void finalize_kernel(const Task *tasks, int64_t n_tasks, const double *partials, double *sums,
                                int64_t *steps, double max_grad_norm, double lr, double b1, double b2,
                                StepInfo *info) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  for (int64_t k = warp; k < n_tasks; k += n_warps) {  // uniform within a warp
    const Task &t = tasks[k];
    const int64_t n = chunks_of(t.rows * t.cols);
    double s = 0.0;
    for (int64_t c = lane; c < n; c += 32) s += partials[t.chunk0 + c];
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) sums[t.param] = s;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double total = 0.0;
  int64_t bad = -1;
  for (int64_t p = 0; p < n_tasks; ++p) {
    if (!isfinite(sums[p]) && bad < 0) bad = p;
    total = __dadd_rn(total, sums[p]);
  }
  StepInfo r;
  r.norm = __dsqrt_rn(total);
  r.ok = isfinite(r.norm) ? 1 : 0;
  r.scale = 1.0;
  if (max_grad_norm > 0.0) {
    const double q = __ddiv_rn(max_grad_norm, __dadd_rn(r.norm, 1e-6));
    r.scale = q < 1.0 ? q : 1.0;
  }
  r.bad = bad;
  r.t = *steps + 1;
  r.step_size = __ddiv_rn(lr, __dsub_rn(1.0, pow(b1, static_cast<double>(r.t))));
  r.bc2_sqrt = __dsqrt_rn(__dsub_rn(1.0, pow(b2, static_cast<double>(r.t))));
  if (r.ok) *steps = r.t;
  r.steps = *steps;
  r.pad = 0;
  *info = r;
}

// Loads this block's task into shared memory and returns the element range.
__device__ __forceinline__ void block_task(const Task *tasks, int64_t n_tasks, int64_t chunk_base, Task &t,
                                           int64_t *begin, int64_t *end) {
  const int64_t c = chunk_base + blockIdx.x;
  if (threadIdx.x == 0) t = tasks[find_task(tasks, n_tasks, c)];
  __syncthreads();
  const int64_t size = t.rows * t.cols;
  *begin = (c - t.chunk0) * kChunk;
  *end = *begin + kChunk < size ? *begin + kChunk : size;
}

// The weight row and column of parameter element (i, j).
__device__ __forceinline__ void weight_index(const Task &t, int64_t i, int64_t j, int64_t *r, int64_t *c) {
  if (t.axis == kAxisEntries) {
    const int64_t n = t.lines[j];
    *r = n / t.w_cols;
    *c = n - *r * t.w_cols;
    return;
  }
  *r = t.axis == S2FT_AXIS_ROWS ? t.lines[i] : i;
  *c = t.axis == S2FT_AXIS_COLUMNS ? t.lines[j] : j;
}

template <typename W>
__device__ __forceinline__ W &weight_at(const Task &t, int64_t i, int64_t j) {
  int64_t r = 0, c = 0;
  weight_index(t, i, j, &r, &c);
  return reinterpret_cast<W *>(t.w)[r * t.w_rs + c * t.w_cs];
}

// AdamW (PyTorch order), step t, g = grad * scale:
//   p <- p * (1 - lr*wd)
//   m <- b1 m + (1 - b1) g;   v <- b2 v + (1 - b2) g^2      (stored as f32)
//   p <- p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
// p is the f32 master (16-bit weights) or the f32 weight; the weight gets
// the f32 result rounded to its dtype. Skipped entirely when !info->ok.
template <typename W, typename G>
__global__ void adamw_kernel(const Task *tasks, int64_t n_tasks, int64_t chunk_base, const StepInfo *info,
                             UpdateArgs a) {
  if (info->ok == 0) return;  // uniform across the grid: no barrier is skipped by part of a block
  __shared__ Task t;
  int64_t begin = 0, end = 0;
  block_task(tasks, n_tasks, chunk_base, t, &begin, &end);
  const double scale = info->scale;
  const bool host_terms = info->t == a.host_t;
  const double global_step_size = host_terms ? a.host_step_size : info->step_size;
  const double global_bc2_sqrt = host_terms ? a.host_bc2_sqrt : info->bc2_sqrt;
  const G *g = reinterpret_cast<const G *>(t.g);
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int64_t i = e / t.cols, j = e - i * t.cols;
    W &w = weight_at<W>(t, i, j);
    double step_size = global_step_size, bc2_sqrt = global_bc2_sqrt;
    if (t.age != nullptr) {  // the entry's own step: t_e = age + 1
      const float te = t.age[e] + 1.0f;
      step_size = __ddiv_rn(a.lr, __dsub_rn(1.0, pow(a.b1_for_age, static_cast<double>(te))));
      bc2_sqrt = __dsqrt_rn(__dsub_rn(1.0, pow(a.b2_for_age, static_cast<double>(te))));
      t.age[e] = te;
    }
    const double gv = __dmul_rn(static_cast<double>(to_f32(g[i * t.g_rs + j * t.g_cs])), scale);
    const double p = t.master != nullptr ? static_cast<double>(t.master[e]) : static_cast<double>(to_f32(w));
    double x = __dmul_rn(p, a.decay);
    const float m = __double2float_rn(__dadd_rn(__dmul_rn(a.b1, static_cast<double>(t.m[e])), __dmul_rn(a.one_minus_b1, gv)));
    const float v = __double2float_rn(
        __dadd_rn(__dmul_rn(a.b2, static_cast<double>(t.v[e])), __dmul_rn(__dmul_rn(a.one_minus_b2, gv), gv)));
    t.m[e] = m;
    t.v[e] = v;
    const double denom = __dadd_rn(__ddiv_rn(__dsqrt_rn(static_cast<double>(v)), bc2_sqrt), a.eps);
    x = __dsub_rn(x, __ddiv_rn(__dmul_rn(step_size, static_cast<double>(m)), denom));
    const float f = __double2float_rn(x);
    if (t.master != nullptr) t.master[e] = f;
    w = from_f32<W>(f);
  }
}

// SGD (PyTorch, dampening 0), g = grad * scale:
//   g <- g + wd p
//   buf <- g on the first step, else momentum * buf + g   (momentum > 0; f32)
//   g <- nesterov ? g + momentum * buf : buf
//   p <- p - lr g
template <typename W, typename G>
__global__ void sgd_kernel(const Task *tasks, int64_t n_tasks, int64_t chunk_base, const StepInfo *info,
                           UpdateArgs a) {
  if (info->ok == 0) return;
  __shared__ Task t;
  int64_t begin = 0, end = 0;
  block_task(tasks, n_tasks, chunk_base, t, &begin, &end);
  const double scale = info->scale;
  const bool first_step = info->t == 1;
  const G *g = reinterpret_cast<const G *>(t.g);
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int64_t i = e / t.cols, j = e - i * t.cols;
    W &w = weight_at<W>(t, i, j);
    double x = t.master != nullptr ? static_cast<double>(t.master[e]) : static_cast<double>(to_f32(w));
    double gv = __dadd_rn(__dmul_rn(static_cast<double>(to_f32(g[i * t.g_rs + j * t.g_cs])), scale),
                          __dmul_rn(a.weight_decay, x));
    if (a.with_momentum != 0) {
      const float buf = __double2float_rn(
          first_step ? gv : __dadd_rn(__dmul_rn(a.momentum, static_cast<double>(t.mom[e])), gv));
      t.mom[e] = buf;
      gv = a.nesterov != 0 ? __dadd_rn(gv, __dmul_rn(a.momentum, static_cast<double>(buf))) : static_cast<double>(buf);
    }
    x = __dsub_rn(x, __dmul_rn(a.lr, gv));
    const float f = __double2float_rn(x);
    if (t.master != nullptr) t.master[e] = f;
    w = from_f32<W>(f);
  }
}

// SM3-II, g = grad * scale; R, C the row and column accumulators of the
// parameter's matrix (the whole weight's for a sparse parameter):
//   nu = min(R[r], C[c]) + g^2
//   u  = g / (sqrt(nu) + eps)
//   u  = buf = momentum * buf + (1 - momentum) * u     (momentum > 0; f32)
//   p  = p * (1 - lr*wd) - lr u
// and new_row[r], new_col[c] = max(f32(nu)) by atomicMax on the float bits
// (non-negative floats order like their bits as int32; -1 is below all).
template <typename W, typename G>
__global__ void sm3_kernel(const Task *tasks, int64_t n_tasks, int64_t chunk_base, const StepInfo *info,
                           UpdateArgs a) {
  if (info->ok == 0) return;
  __shared__ Task t;
  int64_t begin = 0, end = 0;
  block_task(tasks, n_tasks, chunk_base, t, &begin, &end);
  const double scale = info->scale;
  const G *g = reinterpret_cast<const G *>(t.g);
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int64_t i = e / t.cols, j = e - i * t.cols;
    int64_t wr = 0, wc = 0;
    weight_index(t, i, j, &wr, &wc);
    const int64_t ar = t.axis == kAxisEntries ? wr : i, ac = t.axis == kAxisEntries ? wc : j;
    W &w = reinterpret_cast<W *>(t.w)[wr * t.w_rs + wc * t.w_cs];
    const double gv = __dmul_rn(static_cast<double>(to_f32(g[i * t.g_rs + j * t.g_cs])), scale);
    const float rmin = fminf(t.row_acc[ar], t.col_acc[ac]);
    const double nu = __dadd_rn(static_cast<double>(rmin), __dmul_rn(gv, gv));
    double u = __ddiv_rn(gv, __dadd_rn(__dsqrt_rn(nu), a.eps));
    if (a.with_momentum != 0) {
      const float buf = __double2float_rn(
          __dadd_rn(__dmul_rn(a.momentum, static_cast<double>(t.mom[e])), __dmul_rn(__dsub_rn(1.0, a.momentum), u)));
      t.mom[e] = buf;
      u = static_cast<double>(buf);
    }
    const double p = t.master != nullptr ? static_cast<double>(t.master[e]) : static_cast<double>(to_f32(w));
    const double x = __dsub_rn(__dmul_rn(p, a.decay), __dmul_rn(a.lr, u));
    const float f = __double2float_rn(x);
    if (t.master != nullptr) t.master[e] = f;
    w = from_f32<W>(f);
    const int bits = __float_as_int(__double2float_rn(nu));
    atomicMax(&t.new_row[ar], bits);
    atomicMax(&t.new_col[ac], bits);
  }
}

// acc[k] = new[k] where the step had an element (new >= 0), for the rows
// and then the columns of one parameter.
__global__ void sm3_accumulators_kernel(const StepInfo *info, float *row_acc, const int32_t *new_row, int64_t rows,
                                        float *col_acc, const int32_t *new_col, int64_t cols) {
  if (info->ok == 0) return;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < rows + cols;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (k < rows) {
      if (new_row[k] >= 0) row_acc[k] = __int_as_float(new_row[k]);
    } else if (new_col[k - rows] >= 0) {
      col_acc[k - rows] = __int_as_float(new_col[k - rows]);
    }
  }
}

// dst[e] = to_f32(weight at flat index lines[e]) (a sparse parameter's master).
template <typename W>
__global__ void gather_entries_kernel(const W *w, int64_t w_rs, int64_t w_cs, int64_t w_cols, const int64_t *lines,
                                      int64_t n, float *dst) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = lines[e] / w_cols, c = lines[e] - r * w_cols;
    dst[e] = to_f32(w[r * w_rs + c * w_cs]);
  }
}

// weight at flat index lines[e] = round(src[e]) (a sparse parameter's master to the weight).
template <typename W>
__global__ void scatter_entries_kernel(const float *src, int64_t n, const int64_t *lines, W *w, int64_t w_rs,
                                       int64_t w_cs, int64_t w_cols) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = lines[e] / w_cols, c = lines[e] - r * w_cols;
    w[r * w_rs + c * w_cs] = from_f32<W>(src[e]);
  }
}

// dst[e] = source[e] >= 0 ? src[source[e]] : 0 (reindexed state).
__global__ void reindex_kernel(const float *src, const int64_t *source, int64_t n, float *dst) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    dst[e] = source[e] >= 0 ? src[source[e]] : 0.0f;
}

// dst[e] = source[e] >= 0 ? src[source[e]] : dst[e] (masters: new entries keep the weight's value).
__global__ void reindex_keep_kernel(const float *src, const int64_t *source, int64_t n, float *dst) {
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < n;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x)
    if (source[e] >= 0) dst[e] = src[source[e]];
}

// The view of parameter p's master (or another state tensor) as a compact matrix.
Matrix state_matrix(const OptimizerParam &p, const DeviceBuffer &b, int32_t device) {
  return device_matrix(b.get(), S2FT_F32, p.rows, p.cols, device);
}

DeviceLines lines_of(const OptimizerParam &p) {
  DeviceLines l;
  l.axis = p.axis;
  l.begin = 0;
  l.count = static_cast<int64_t>(p.lines.size());
  l.lines = device_state(p).lines.as<int64_t>();
  return l;
}

}  // namespace

std::shared_ptr<OptimizerDeviceState> create_optimizer_state(Context &ctx) {
  DeviceGuard guard(ctx);
  auto st = std::make_shared<OptimizerDeviceState>();
  st->steps.resize(ctx.device, sizeof(int64_t));
  S2FT_CUDA_CHECK(cudaMemsetAsync(st->steps.get(), 0, sizeof(int64_t), ctx.stream));
  return st;
}

namespace {

// Fills p's master (compact f32, p.size()) from its weight elements.
void gather_master(Context &ctx, const OptimizerParam &p, const int64_t *lines, float *master) {
  if (p.sparse()) {
    const int64_t n = static_cast<int64_t>(p.size());
    if (n == 0) return;
    dispatch_dtype(p.weight.dtype, [&](auto tag) {
      using W = decltype(tag);
      gather_entries_kernel<W><<<grid_for(ctx, n), kThreads, 0, ctx.stream>>>(
          reinterpret_cast<const W *>(p.weight.base), p.weight.rs, p.weight.cs, p.weight.cols, lines, n, master);
    });
    S2FT_CUDA_CHECK_LAUNCH("gather_entries_kernel");
    return;
  }
  DeviceLines l;
  l.axis = p.axis;
  l.count = static_cast<int64_t>(p.lines.size());
  l.lines = lines;
  // master[i, j] = weight element of slice element (i, j), widened to f32.
  gather_lines(ctx, p.weight, l, device_matrix(master, S2FT_F32, p.rows, p.cols, ctx.device));
}

// State for p with every tensor `o` calls for allocated; zeroed unless
// `zero` is false (the caller fills it). The master is always gathered.
std::shared_ptr<ParamDeviceState> new_param_state(Context &ctx, const OptimizerParam &p,
                                                  const s2ft_optimizer_options &o) {
  auto st = std::make_shared<ParamDeviceState>();
  st->size = p.size();
  st->lines.resize(ctx.device, p.lines.size() * sizeof(int64_t));
  upload_async(ctx, st->lines.get(), p.lines.data(), p.lines.size() * sizeof(int64_t));
  for (int k = 0; k < backend::kStateTensors; ++k) {
    const StateTensor which = static_cast<StateTensor>(k);
    if (!has_state(o, p, which)) continue;
    const size_t bytes = p.state_size(which) * sizeof(float);
    DeviceBuffer &b = st->tensors[k];
    b.resize(ctx.device, bytes);
    if (which == StateTensor::master) {
      gather_master(ctx, p, st->lines.as<int64_t>(), b.as<float>());
    } else if (bytes > 0) {
      S2FT_CUDA_CHECK(cudaMemsetAsync(b.get(), 0, bytes, ctx.stream));
    }
  }
  return st;
}

}  // namespace

std::shared_ptr<ParamDeviceState> create_param_state(Context &ctx, const OptimizerParam &p,
                                                     const s2ft_optimizer_options &o) {
  DeviceGuard guard(ctx);
  return new_param_state(ctx, p, o);
}

std::shared_ptr<ParamDeviceState> reindex_param_state(Context &ctx, const OptimizerParam &prev,
                                                      const OptimizerParam &next, const std::vector<int64_t> &source,
                                                      const s2ft_optimizer_options &o) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  std::shared_ptr<ParamDeviceState> st = new_param_state(ctx, next, o);
  const ParamDeviceState &old = device_state(prev);
  const int64_t n = static_cast<int64_t>(next.size());
  const int64_t *d_source = s.upload(source.data(), static_cast<int64_t>(source.size()));
  for (StateTensor which : {StateTensor::m, StateTensor::v, StateTensor::momentum, StateTensor::age,
                            StateTensor::master}) {
    DeviceBuffer &to = st->tensors[static_cast<int>(which)];
    const DeviceBuffer &from = old.tensors[static_cast<int>(which)];
    if (to.get() == nullptr || n == 0) continue;
    if (which == StateTensor::master)
      reindex_keep_kernel<<<grid_for(ctx, n), kThreads, 0, ctx.stream>>>(from.as<float>(), d_source, n, to.as<float>());
    else
      reindex_kernel<<<grid_for(ctx, n), kThreads, 0, ctx.stream>>>(from.as<float>(), d_source, n, to.as<float>());
    S2FT_CUDA_CHECK_LAUNCH("reindex_kernel");
  }
  for (StateTensor which : {StateTensor::row_acc, StateTensor::col_acc}) {
    DeviceBuffer &to = st->tensors[static_cast<int>(which)];
    const DeviceBuffer &from = old.tensors[static_cast<int>(which)];
    if (to.size() > 0 && to.size() == from.size())
      S2FT_CUDA_CHECK(cudaMemcpyAsync(to.get(), from.get(), to.size(), cudaMemcpyDeviceToDevice, ctx.stream));
  }
  return st;
}

void optimizer_step(Context &ctx, OptimizerDeviceState &state, const std::vector<OptimizerParam> &params,
                    const std::vector<Matrix> &grads, const s2ft_optimizer_options &o, double lr,
                    int64_t assumed_steps, bool report, StepReport *out) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t n = static_cast<int64_t>(params.size());

  // Parameters ordered by (gradient dtype, weight dtype), so that every
  // kernel instantiation covers one contiguous range of chunks.
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  auto key = [&](int64_t k) {
    const size_t u = static_cast<size_t>(k);
    return grads[u].dtype * 4 + params[u].weight.dtype;
  };
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return key(a) < key(b); });

  std::vector<Task> tasks(static_cast<size_t>(n));
  int64_t chunks = 0;
  for (int64_t k = 0; k < n; ++k) {
    const size_t src = static_cast<size_t>(order[static_cast<size_t>(k)]);
    const OptimizerParam &p = params[src];
    const Matrix &g = grads[src];
    Task &t = tasks[static_cast<size_t>(k)];
    t = Task{};
    t.w = p.weight.base;
    t.w_rs = p.weight.rs;
    t.w_cs = p.weight.cs;
    t.lines = device_state(p).lines.as<int64_t>();
    t.rows = p.rows;
    t.cols = p.cols;
    t.g = g.base;
    t.g_rs = g.rs;
    t.g_cs = g.cs;
    t.m = device_state(p).tensors[static_cast<int>(StateTensor::m)].as<float>();
    t.v = device_state(p).tensors[static_cast<int>(StateTensor::v)].as<float>();
    t.mom = device_state(p).tensors[static_cast<int>(StateTensor::momentum)].as<float>();
    t.master = p.has_master() ? device_state(p).tensors[static_cast<int>(StateTensor::master)].as<float>() : nullptr;
    t.age = device_state(p).tensors[static_cast<int>(StateTensor::age)].as<float>();
    t.row_acc = device_state(p).tensors[static_cast<int>(StateTensor::row_acc)].as<float>();
    t.col_acc = device_state(p).tensors[static_cast<int>(StateTensor::col_acc)].as<float>();
    t.w_cols = p.weight.cols;
    t.chunk0 = chunks;
    t.param = static_cast<int64_t>(src);
    t.axis = p.axis;
    chunks += chunks_of(p.rows * p.cols);
  }
  if (chunks > INT_MAX)
    fail(S2FT_ERR_UNSUPPORTED, "the optimizer's slices hold more than " + std::to_string(INT_MAX) + " x " +
                                   std::to_string(kChunk) + " elements");

  // SM3: this step's row and column maxima, -1 (no element yet) everywhere.
  const bool sm3 = o.kind == S2FT_OPTIMIZER_SM3;
  if (sm3) {
    for (Task &t : tasks) {
      const OptimizerParam &p = params[static_cast<size_t>(t.param)];
      const int64_t rows = p.acc_rows(), cols = p.acc_cols();
      t.new_row = s.alloc_n<int32_t>(rows);
      t.new_col = s.alloc_n<int32_t>(cols);
      if (rows > 0) S2FT_CUDA_CHECK(cudaMemsetAsync(t.new_row, 0xff, static_cast<size_t>(rows) * 4, ctx.stream));
      if (cols > 0) S2FT_CUDA_CHECK(cudaMemsetAsync(t.new_col, 0xff, static_cast<size_t>(cols) * 4, ctx.stream));
    }
  }
  const Task *d_tasks = s.upload(tasks.data(), n);
  double *partials = s.alloc_n<double>(chunks);
  double *sums = s.alloc_n<double>(n);
  StepInfo *info = s.alloc_n<StepInfo>(1);

  // The chunk range [c0, c1) of tasks [k0, k1).
  auto chunk_range = [&](int64_t k0, int64_t k1, int64_t *c0, int64_t *c1) {
    const Task &last = tasks[static_cast<size_t>(k1 - 1)];
    *c0 = tasks[static_cast<size_t>(k0)].chunk0;
    *c1 = last.chunk0 + chunks_of(last.rows * last.cols);
  };
  // Calls f(k0, k1) for each maximal run of tasks whose key(k) agrees.
  auto for_runs = [&](auto same, auto f) {
    for (int64_t k0 = 0; k0 < n;) {
      int64_t k1 = k0 + 1;
      while (k1 < n && same(k0, k1)) ++k1;
      f(k0, k1);
      k0 = k1;
    }
  };
  auto grad_dtype = [&](int64_t k) { return grads[static_cast<size_t>(tasks[static_cast<size_t>(k)].param)].dtype; };
  auto weight_dtype = [&](int64_t k) {
    return params[static_cast<size_t>(tasks[static_cast<size_t>(k)].param)].weight.dtype;
  };

  // 1. Sums of squares per chunk, one launch per gradient dtype.
  for_runs([&](int64_t a, int64_t b) { return grad_dtype(a) == grad_dtype(b); },
           [&](int64_t k0, int64_t k1) {
             int64_t c0 = 0, c1 = 0;
             chunk_range(k0, k1, &c0, &c1);
             if (c1 <= c0) return;
             dispatch_dtype(grad_dtype(k0), [&](auto gt) {
               using G = decltype(gt);
               grad_sumsq_kernel<G><<<static_cast<unsigned>(c1 - c0), kThreads, 0, ctx.stream>>>(d_tasks, n, c0,
                                                                                                  partials);
             });
             S2FT_CUDA_CHECK_LAUNCH("grad_sumsq_kernel");
           });

  // 2. The norm, the clip factor, and whether (and as which step) the update runs.
  finalize_kernel<<<1, kThreads, 0, ctx.stream>>>(d_tasks, n, partials, sums, state.steps.as<int64_t>(),
                                                  o.max_grad_norm, lr, o.beta1, o.beta2, info);
  S2FT_CUDA_CHECK_LAUNCH("finalize_kernel");

  int64_t t = assumed_steps + 1;
  if (report) {
    StepInfo h{};
    download_sync(ctx, &h, info, sizeof h);
    out->norm = h.norm;
    out->bad = h.bad;
    out->applied = h.ok != 0;
    out->steps = h.steps;
    if (!out->applied) return;  // the caller fails the call; nothing was changed
    t = h.t;                    // now known exactly
  }

  // 3. The update, one launch per (weight dtype, gradient dtype).
  UpdateArgs a{};
  a.lr = lr;
  a.decay = 1.0 - lr * o.weight_decay;
  a.b1 = o.beta1;
  a.one_minus_b1 = 1.0 - o.beta1;
  a.b2 = o.beta2;
  a.one_minus_b2 = 1.0 - o.beta2;
  a.eps = o.eps;
  a.weight_decay = o.weight_decay;
  a.momentum = o.momentum;
  a.nesterov = o.nesterov != 0 ? 1 : 0;
  a.with_momentum = uses_momentum(o) ? 1 : 0;
  a.b1_for_age = o.beta1;
  a.b2_for_age = o.beta2;
  a.host_t = t;
  a.host_step_size = lr / (1.0 - std::pow(o.beta1, static_cast<double>(t)));
  a.host_bc2_sqrt = std::sqrt(1.0 - std::pow(o.beta2, static_cast<double>(t)));
  const bool adamw = o.kind == S2FT_OPTIMIZER_ADAMW;
  for_runs([&](int64_t x, int64_t y) { return grad_dtype(x) == grad_dtype(y) && weight_dtype(x) == weight_dtype(y); },
           [&](int64_t k0, int64_t k1) {
             int64_t c0 = 0, c1 = 0;
             chunk_range(k0, k1, &c0, &c1);
             if (c1 <= c0) return;
             const unsigned grid = static_cast<unsigned>(c1 - c0);
             dispatch_dtype(weight_dtype(k0), [&](auto wt) {
               using W = decltype(wt);
               if (grad_dtype(k0) == S2FT_F32) {
                 if (adamw) adamw_kernel<W, float><<<grid, kThreads, 0, ctx.stream>>>(d_tasks, n, c0, info, a);
                 else if (sm3) sm3_kernel<W, float><<<grid, kThreads, 0, ctx.stream>>>(d_tasks, n, c0, info, a);
                 else sgd_kernel<W, float><<<grid, kThreads, 0, ctx.stream>>>(d_tasks, n, c0, info, a);
               } else {  // the weight's own dtype (check_grads allows nothing else)
                 if (adamw) adamw_kernel<W, W><<<grid, kThreads, 0, ctx.stream>>>(d_tasks, n, c0, info, a);
                 else if (sm3) sm3_kernel<W, W><<<grid, kThreads, 0, ctx.stream>>>(d_tasks, n, c0, info, a);
                 else sgd_kernel<W, W><<<grid, kThreads, 0, ctx.stream>>>(d_tasks, n, c0, info, a);
               }
             });
             S2FT_CUDA_CHECK_LAUNCH(adamw ? "adamw_kernel" : sm3 ? "sm3_kernel" : "sgd_kernel");
           });
  if (sm3) {  // after every element's nu is in: the accumulators, parameter by parameter
    for (const Task &t : tasks) {
      const OptimizerParam &p = params[static_cast<size_t>(t.param)];
      const int64_t rows = p.acc_rows(), cols = p.acc_cols();
      if (rows + cols == 0) continue;
      sm3_accumulators_kernel<<<grid_for(ctx, rows + cols), kThreads, 0, ctx.stream>>>(info, t.row_acc, t.new_row, rows,
                                                                                   t.col_acc, t.new_col, cols);
      S2FT_CUDA_CHECK_LAUNCH("sm3_accumulators_kernel");
    }
  }
  if (!report) {
    out->applied = true;  // as far as the host knows
    out->steps = t;
  }
}

int64_t download_steps(Context &ctx, const OptimizerDeviceState &state) {
  DeviceGuard guard(ctx);
  int64_t steps = 0;
  download_sync(ctx, &steps, state.steps.get(), sizeof steps);
  return steps;
}

void upload_steps(Context &ctx, OptimizerDeviceState &state, int64_t steps) {
  DeviceGuard guard(ctx);
  upload_async(ctx, state.steps.get(), &steps, sizeof steps);
}

void download_state(Context &ctx, const ParamDeviceState &state, StateTensor which, float *host, size_t count) {
  DeviceGuard guard(ctx);
  const DeviceBuffer &b = state.tensors[static_cast<int>(which)];
  if (b.size() != count * sizeof(float)) fail(S2FT_ERR_INTERNAL, "optimizer state tensor of unexpected size");
  download_sync(ctx, host, b.get(), count * sizeof(float));
}

void upload_state(Context &ctx, ParamDeviceState &state, StateTensor which, const float *host, size_t count) {
  DeviceGuard guard(ctx);
  DeviceBuffer &b = state.tensors[static_cast<int>(which)];
  if (b.size() != count * sizeof(float)) fail(S2FT_ERR_INTERNAL, "optimizer state tensor of unexpected size");
  if (count == 0) return;
  // From pageable memory: the call returns once `host` has been read.
  S2FT_CUDA_CHECK(cudaMemcpyAsync(b.get(), host, count * sizeof(float), cudaMemcpyHostToDevice, ctx.stream));
}

void write_master_to_weight(Context &ctx, const OptimizerParam &p) {
  if (!p.has_master()) return;
  DeviceGuard guard(ctx);
  if (p.sparse()) {  // weight at flat index lines[e] = master[e], rounded
    const int64_t n = static_cast<int64_t>(p.size());
    if (n == 0) return;
    const float *master = device_state(p).tensors[static_cast<int>(StateTensor::master)].as<float>();
    dispatch_dtype(p.weight.dtype, [&](auto tag) {
      using W = decltype(tag);
      scatter_entries_kernel<W><<<grid_for(ctx, n), kThreads, 0, ctx.stream>>>(
          master, n, device_state(p).lines.as<int64_t>(), reinterpret_cast<W *>(p.weight.base), p.weight.rs,
          p.weight.cs, p.weight.cols);
    });
    S2FT_CUDA_CHECK_LAUNCH("scatter_entries_kernel");
    return;
  }
  // weight line(j) of slice line j = master line j, rounded to nearest even.
  scatter_lines(ctx, state_matrix(p, device_state(p).tensors[static_cast<int>(StateTensor::master)], ctx.device), lines_of(p),
                p.weight, false);
}

}  // namespace cuda
}  // namespace s2ft
