// AdamW and SGD on the trained slices, on the device. One step is:
//   1. grad_sumsq_kernel: per chunk of every gradient, sum of g^2 (double);
//   2. finalize_kernel: per-parameter sums, the global norm, the clip factor,
//      whether the step runs (finite norm) and the device step count;
//   3. adamw_kernel / sgd_kernel: the fused update of state, master and
//      weight, element by element.
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
// corrections, weights, masters and state match the CPU bit for bit.
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
  DeviceBuffer lines;  // int64 weight line of each slice line
  DeviceBuffer tensors[4];  // indexed by StateTensor; empty when unused
  size_t size = 0;          // slice elements
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
  int64_t chunk0;      // first chunk of this parameter
  int64_t param;       // the parameter's index
  int32_t axis;        // S2FT_AXIS_COLUMNS or S2FT_AXIS_ROWS
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

template <typename W>
__device__ __forceinline__ W &weight_at(const Task &t, int64_t i, int64_t j) {
  const int64_t r = t.axis == S2FT_AXIS_ROWS ? t.lines[i] : i;
  const int64_t c = t.axis == S2FT_AXIS_COLUMNS ? t.lines[j] : j;
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
  const double step_size = host_terms ? a.host_step_size : info->step_size;
  const double bc2_sqrt = host_terms ? a.host_bc2_sqrt : info->bc2_sqrt;
  const G *g = reinterpret_cast<const G *>(t.g);
  for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
    const int64_t i = e / t.cols, j = e - i * t.cols;
    W &w = weight_at<W>(t, i, j);
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

std::shared_ptr<ParamDeviceState> create_param_state(Context &ctx, const OptimizerParam &p,
                                                     const s2ft_optimizer_options &o) {
  DeviceGuard guard(ctx);
  auto st = std::make_shared<ParamDeviceState>();
  st->size = p.size();
  const size_t bytes = st->size * sizeof(float);
  st->lines.resize(ctx.device, p.lines.size() * sizeof(int64_t));
  upload_async(ctx, st->lines.get(), p.lines.data(), p.lines.size() * sizeof(int64_t));
  auto zeroed = [&](StateTensor which) {
    DeviceBuffer &b = st->tensors[static_cast<int>(which)];
    b.resize(ctx.device, bytes);
    if (bytes > 0) S2FT_CUDA_CHECK(cudaMemsetAsync(b.get(), 0, bytes, ctx.stream));
  };
  if (uses_adam_moments(o)) {
    zeroed(StateTensor::m);
    zeroed(StateTensor::v);
  }
  if (uses_momentum(o)) zeroed(StateTensor::momentum);
  if (p.has_master()) {
    DeviceBuffer &b = st->tensors[static_cast<int>(StateTensor::master)];
    b.resize(ctx.device, bytes);
    DeviceLines l;
    l.axis = p.axis;
    l.count = static_cast<int64_t>(p.lines.size());
    l.lines = st->lines.as<int64_t>();
    // master[i, j] = weight element of slice element (i, j), widened to f32.
    gather_lines(ctx, p.weight, l, state_matrix(p, b, ctx.device));
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
    t.chunk0 = chunks;
    t.param = static_cast<int64_t>(src);
    t.axis = p.axis;
    chunks += chunks_of(p.rows * p.cols);
  }
  if (chunks > INT_MAX)
    fail(S2FT_ERR_UNSUPPORTED, "the optimizer's slices hold more than " + std::to_string(INT_MAX) + " x " +
                                   std::to_string(kChunk) + " elements");

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
                 else sgd_kernel<W, float><<<grid, kThreads, 0, ctx.stream>>>(d_tasks, n, c0, info, a);
               } else {  // the weight's own dtype (check_grads allows nothing else)
                 if (adamw) adamw_kernel<W, W><<<grid, kThreads, 0, ctx.stream>>>(d_tasks, n, c0, info, a);
                 else sgd_kernel<W, W><<<grid, kThreads, 0, ctx.stream>>>(d_tasks, n, c0, info, a);
               }
             });
             S2FT_CUDA_CHECK_LAUNCH(adamw ? "adamw_kernel" : "sgd_kernel");
           });
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
  if (count != state.size || b.size() != count * sizeof(float))
    fail(S2FT_ERR_INTERNAL, "optimizer state tensor of unexpected size");
  download_sync(ctx, host, b.get(), count * sizeof(float));
}

void upload_state(Context &ctx, ParamDeviceState &state, StateTensor which, const float *host, size_t count) {
  DeviceGuard guard(ctx);
  DeviceBuffer &b = state.tensors[static_cast<int>(which)];
  if (count != state.size || b.size() != count * sizeof(float))
    fail(S2FT_ERR_INTERNAL, "optimizer state tensor of unexpected size");
  if (count == 0) return;
  // From pageable memory: the call returns once `host` has been read.
  S2FT_CUDA_CHECK(cudaMemcpyAsync(b.get(), host, count * sizeof(float), cudaMemcpyHostToDevice, ctx.stream));
}

void write_master_to_weight(Context &ctx, const OptimizerParam &p) {
  if (!p.has_master()) return;
  DeviceGuard guard(ctx);
  // weight line(j) of slice line j = master line j, rounded to nearest even.
  scatter_lines(ctx, state_matrix(p, device_state(p).tensors[static_cast<int>(StateTensor::master)], ctx.device), lines_of(p),
                p.weight, false);
}

}  // namespace cuda
}  // namespace s2ft
