// s2ft_model on the device: base-line fingerprints at create, and
// apply/remove/switch as one memory-bound pass per group of weights.
//
// A transition (apply, remove and switch are all one) visits, for every
// (layer, target) it changes, the union of the lines the applied adapter
// displaced and the lines the new adapter changes, each exactly once:
//   W0     = saved original if the line is displaced now, else W[p]
//   only in the old set:   W[p] = W0
//   new line j:            saved'[j] = W0,  W[p] = round(W0 + scale * delta[j])
// All (layer, target) steps of one dtype and line axis go into one launch
// (blockIdx.y walks the steps), so a switch costs a handful of launches,
// not one per weight. Rows (V, UP) move in 16-byte vectors when aligned.
//
// Sparse entries (any weight) take two launches per dtype around the
// lines': sparse_gather_kernel saves every new element's W0 and restores
// the old elements the new entry lacks (so the lines then read base
// values), sparse_write_kernel merges the new elements after the lines.
//
// Low-rank entries (any weight) cover whole weights: the weights whose old
// entry leaves get their saved base back first (weight_copy_kernel), and
// after the sparse writes each new entry saves its base if not saved yet
// and merges b a in one thread per element (low_rank_merge_kernel).
#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <vector>

#include "common/fingerprint.hpp"
#include "cuda_adapter_mirror.hpp"
#include "cuda_copy.cuh"
#include "cuda_elements.cuh"
#include "cuda_model.hpp"
#include "cuda_runtime.cuh"

namespace s2ft {
namespace cuda {

struct ModelBuffers {
  struct Slot {
    DeviceBuffer current;  // the applied adapter's record
    DeviceBuffer spare;    // where the next transition writes its record
  };
  Context *ctx = nullptr;
  std::vector<std::array<Slot, S2FT_NUM_TARGETS>> slots;          // [layer][target]
  std::vector<std::array<Slot, S2FT_NUM_WEIGHTS>> sparse_slots;   // [layer][weight]: sparse records
  // [layer][weight]: the whole base weight, compact row-major as stored,
  // while a low-rank entry is applied there (kept, for reuse, after).
  std::vector<std::array<DeviceBuffer, S2FT_NUM_WEIGHTS>> low_rank_base;

  ModelBuffers() = default;
  ModelBuffers(const ModelBuffers &) = delete;
  ModelBuffers &operator=(const ModelBuffers &) = delete;
  // Queued transitions may still read and write the buffers: wait for the
  // stream before they are freed (the context outlives its models).
  ~ModelBuffers() {
    bool any = false;
    for (const auto &l : slots)
      for (const Slot &s : l) any = any || s.current.get() != nullptr || s.spare.get() != nullptr;
    for (const auto &l : sparse_slots)
      for (const Slot &s : l) any = any || s.current.get() != nullptr || s.spare.get() != nullptr;
    for (const auto &l : low_rank_base)
      for (const DeviceBuffer &b : l) any = any || b.get() != nullptr;
    if (ctx == nullptr || !any) return;
    int cur = -1;
    cudaGetDevice(&cur);
    cudaSetDevice(ctx->device);
    cudaStreamSynchronize(ctx->stream);
    if (cur >= 0) cudaSetDevice(cur);
  }
};

namespace {

// ---- fingerprints ------------------------------------------------------------------

// One thread per line: the fingerprint of common/fingerprint.hpp (FNV-1a
// over each element's value rounded to bf16), line_fingerprint() of the
// host. A line's hash is one dependent chain, so lines are the only
// parallelism; for column lines consecutive threads read consecutive
// columns (coalesced).
// The same pass also keeps the line's largest finite |value| in max_abs.
// With col_map (rows only) element i of a row is read at column col_map[i].
template <typename T>
__global__ void fingerprint_kernel(View<const T> w, int32_t by_columns, const int64_t *col_map, uint64_t *out,
                                   float *max_abs) {
  const int64_t n_lines = by_columns ? w.cols : w.rows;
  const int64_t len = by_columns ? w.rows : w.cols;
  for (int64_t line = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; line < n_lines;
       line += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    uint64_t h = fingerprint::kOffset;
    float m = 0.0f;
    for (int64_t i = 0; i < len; ++i) {
      const float v = to_f32<T>(by_columns ? w.at(i, line) : w.at(line, col_map != nullptr ? col_map[i] : i));  // exact
      h = fingerprint::mix(h, fingerprint::word(__float_as_uint(v)));
      if (isfinite(v)) m = fmaxf(m, fabsf(v));
    }
    out[line] = fingerprint::finish(h);
    max_abs[line] = m;
  }
}

// ---- transitions ---------------------------------------------------------------------

// An element type's bits as an unsigned word, and the merge rounded once
// from double. The products and sums use explicit round-to-nearest
// intrinsics so nvcc cannot contract them into an FMA: the CPU computes
// round(W0 + round(scale * delta)).
template <typename T>
struct Word;
template <>
struct Word<float> {
  using U = uint32_t;
  static __device__ __forceinline__ double load(U u) { return static_cast<double>(__uint_as_float(u)); }
  static __device__ __forceinline__ U store(double d) { return __float_as_uint(from_f64<float>(d)); }
};
template <>
struct Word<__half> {
  using U = uint16_t;
  static __device__ __forceinline__ double load(U u) { return static_cast<double>(to_f32(__ushort_as_half(u))); }
  static __device__ __forceinline__ U store(double d) { return __half_as_ushort(from_f64<__half>(d)); }
};
template <>
struct Word<__nv_bfloat16> {
  using U = uint16_t;
  static __device__ __forceinline__ double load(U u) { return static_cast<double>(to_f32(__ushort_as_bfloat16(u))); }
  static __device__ __forceinline__ U store(double d) { return __bfloat16_as_ushort(from_f64<__nv_bfloat16>(d)); }
};

template <typename T>
__device__ __forceinline__ typename Word<T>::U merge(typename Word<T>::U w0, double scale, float delta) {
  return Word<T>::store(__dadd_rn(Word<T>::load(w0), __dmul_rn(scale, static_cast<double>(delta))));
}

// A line of the union: its position in the weight, its index in the saved
// record (-1: not displaced now) and in the new entry (-1: not in it).
struct UnionLine {
  int64_t pos, old_j, new_j;
};

// One (layer, target) of a transition. Records and delta are laid out like
// the adapter's delta: [len, k] row-major for column lines, [k, len] for
// row lines.
struct StepDesc {
  char *w;                 // the weight's element (0, 0)
  int64_t step_elem;       // elements from one element of a line to the next
  int64_t step_line;       // elements from one line to the next
  int64_t len;             // elements per line
  const char *old_rec;     // saved originals of the applied adapter's lines
  char *new_rec;           // where the new entry's originals go
  const float *delta;      // the new entry's delta (f32)
  int64_t k_old, k_new;    // lines in the old record and in the new entry
  const UnionLine *lines;  // the union, by position
  int64_t n;               // its size
};

// Column lines (O, DOWN): thread t takes element i = t / n of union line
// u = t % n; consecutive threads take consecutive lines of one weight row,
// which for a permuted model are consecutive columns (coalesced).
template <typename T>
__global__ void transition_columns_kernel(const StepDesc *steps, int64_t n_steps, double scale) {
  using U = typename Word<T>::U;
  for (int64_t s = blockIdx.y; s < n_steps; s += gridDim.y) {
    const StepDesc d = steps[s];
    const U *old_rec = reinterpret_cast<const U *>(d.old_rec);
    U *new_rec = reinterpret_cast<U *>(d.new_rec);
    U *w = reinterpret_cast<U *>(d.w);
    const int64_t total = d.len * d.n;
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t i = t / d.n, u = t % d.n;
      const UnionLine l = d.lines[u];
      U *wp = w + i * d.step_elem + l.pos * d.step_line;
      const U w0 = l.old_j >= 0 ? old_rec[i * d.k_old + l.old_j] : *wp;
      if (l.new_j >= 0) {
        const int64_t c = i * d.k_new + l.new_j;
        new_rec[c] = w0;
        *wp = merge<T>(w0, scale, d.delta[c]);
      } else {
        *wp = w0;
      }
    }
  }
}

// Row lines (V, UP), element by element: thread t takes element
// i = t % len of union line u = t / len (consecutive threads walk a row).
template <typename T>
__global__ void transition_rows_kernel(const StepDesc *steps, int64_t n_steps, double scale) {
  using U = typename Word<T>::U;
  for (int64_t s = blockIdx.y; s < n_steps; s += gridDim.y) {
    const StepDesc d = steps[s];
    const U *old_rec = reinterpret_cast<const U *>(d.old_rec);
    U *new_rec = reinterpret_cast<U *>(d.new_rec);
    U *w = reinterpret_cast<U *>(d.w);
    const int64_t total = d.n * d.len;
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t u = t / d.len, i = t % d.len;
      const UnionLine l = d.lines[u];
      U *wp = w + l.pos * d.step_line + i * d.step_elem;
      const U w0 = l.old_j >= 0 ? old_rec[l.old_j * d.len + i] : *wp;
      if (l.new_j >= 0) {
        const int64_t c = l.new_j * d.len + i;
        new_rec[c] = w0;
        *wp = merge<T>(w0, scale, d.delta[c]);
      } else {
        *wp = w0;
      }
    }
  }
}

// Row lines in 16-byte vectors: each thread moves V = 16 / sizeof(U)
// consecutive elements of one line (a uint4 of the weight and of the
// records, V / 4 float4 of the delta). Only launched when every row start
// involved is 16-byte aligned and len is a multiple of V.
template <typename T>
__global__ void transition_rows16_kernel(const StepDesc *steps, int64_t n_steps, double scale) {
  using U = typename Word<T>::U;
  constexpr int V = 16 / static_cast<int>(sizeof(U));
  for (int64_t s = blockIdx.y; s < n_steps; s += gridDim.y) {
    const StepDesc d = steps[s];
    const U *old_rec = reinterpret_cast<const U *>(d.old_rec);
    U *new_rec = reinterpret_cast<U *>(d.new_rec);
    U *w = reinterpret_cast<U *>(d.w);
    const int64_t chunks = d.len / V;
    const int64_t total = d.n * chunks;
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < total;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t u = t / chunks, q = t % chunks;
      const UnionLine l = d.lines[u];
      uint4 *wp = reinterpret_cast<uint4 *>(w + l.pos * d.step_line) + q;
      const uint4 w0 = l.old_j >= 0 ? reinterpret_cast<const uint4 *>(old_rec + l.old_j * d.len)[q] : *wp;
      if (l.new_j >= 0) {
        reinterpret_cast<uint4 *>(new_rec + l.new_j * d.len)[q] = w0;
        const float4 *dp = reinterpret_cast<const float4 *>(d.delta + l.new_j * d.len + q * V);
        U in[V], out[V];
        float dv[V];
        memcpy(in, &w0, sizeof(in));
#pragma unroll
        for (int r = 0; r < V / 4; ++r) {
          const float4 f = dp[r];
          dv[4 * r] = f.x;
          dv[4 * r + 1] = f.y;
          dv[4 * r + 2] = f.z;
          dv[4 * r + 3] = f.w;
        }
#pragma unroll
        for (int e = 0; e < V; ++e) out[e] = merge<T>(in[e], scale, dv[e]);
        uint4 res;
        memcpy(&res, out, sizeof(res));
        *wp = res;
      } else {
        *wp = w0;
      }
    }
  }
}

// ---- sparse entries --------------------------------------------------------------------

// One element of a sparse step: the first n_new are the new entry's (gather
// W0 from `kind`: 0 the weight, 1 the old line record, 2 the old sparse
// record, at index src), the rest old elements to restore from the old
// sparse record at src.
struct SparseOp {
  int64_t offset;  // in elements from the weight's (0, 0): r * rs + c * cs
  int64_t src;
  int32_t kind;
};

struct SparseDesc {
  char *w;
  const char *line_rec;  // the old line record of the same weight (kind 1)
  const char *old_rec;   // the old sparse record
  char *new_rec;         // the new sparse record (n_new elements)
  const float *delta;    // the new entry's delta (n_new)
  const SparseOp *ops;
  int64_t n_new, n_ops;
};

template <typename T>
__global__ void sparse_gather_kernel(const SparseDesc *steps, int64_t n_steps) {
  using U = typename Word<T>::U;
  for (int64_t s = blockIdx.y; s < n_steps; s += gridDim.y) {
    const SparseDesc d = steps[s];
    U *w = reinterpret_cast<U *>(d.w);
    const U *line_rec = reinterpret_cast<const U *>(d.line_rec);
    const U *old_rec = reinterpret_cast<const U *>(d.old_rec);
    U *new_rec = reinterpret_cast<U *>(d.new_rec);
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < d.n_ops;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const SparseOp op = d.ops[t];
      if (t < d.n_new) {
        new_rec[t] = op.kind == 0 ? w[op.offset] : op.kind == 1 ? line_rec[op.src] : old_rec[op.src];
      } else {
        w[op.offset] = old_rec[op.src];
      }
    }
  }
}

template <typename T>
__global__ void sparse_write_kernel(const SparseDesc *steps, int64_t n_steps, double scale) {
  using U = typename Word<T>::U;
  for (int64_t s = blockIdx.y; s < n_steps; s += gridDim.y) {
    const SparseDesc d = steps[s];
    U *w = reinterpret_cast<U *>(d.w);
    const U *new_rec = reinterpret_cast<const U *>(d.new_rec);
    for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < d.n_new;
         t += static_cast<int64_t>(gridDim.x) * blockDim.x)
      w[d.ops[t].offset] = merge<T>(new_rec[t], scale, d.delta[t]);
  }
}

// One low-rank weight: the strided weight w [rows, cols] (element (i, j)
// at i * rs + j * cs), its compact saved base, and for a merge the factors
// b [rows, k] and a [k, cols] and where base row r and column c are stored.
struct LowRankDesc {
  char *w;
  char *base;
  int64_t rows, cols, rs, cs;
  const float *b, *a;
  int64_t k;
  const int64_t *row_map, *col_map;  // NULL: the identity
};

// to_base: base[i * cols + j] = w[i, j]; else w[i, j] = base[i * cols + j].
template <typename T>
__global__ void weight_copy_kernel(LowRankDesc d, int32_t to_base) {
  using U = typename Word<T>::U;
  U *w = reinterpret_cast<U *>(d.w);
  U *base = reinterpret_cast<U *>(d.base);
  const int64_t n = d.rows * d.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t off = (t / d.cols) * d.rs + (t % d.cols) * d.cs;
    if (to_base)
      base[t] = w[off];
    else
      w[off] = base[t];
  }
}

// W[R, C] = round(W0[R, C] + scale * sum_k b[r, k] a[k, c]) for base (r, c)
// stored at (R, C) = (row_map[r], col_map[c]): the products and the sum in
// double, k ascending, as the CPU backend. Consecutive threads take
// consecutive columns of a row, so a and the weight are read coalesced.
template <typename T>
__global__ void low_rank_merge_kernel(LowRankDesc d, double scale) {
  using U = typename Word<T>::U;
  U *w = reinterpret_cast<U *>(d.w);
  const U *base = reinterpret_cast<const U *>(d.base);
  const int64_t n = d.rows * d.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = t / d.cols, c = t % d.cols;
    double sum = 0.0;
    for (int64_t k = 0; k < d.k; ++k)
      sum = __dadd_rn(sum, __dmul_rn(static_cast<double>(d.b[r * d.k + k]), static_cast<double>(d.a[k * d.cols + c])));
    const int64_t sr = d.row_map != nullptr ? d.row_map[r] : r, sc = d.col_map != nullptr ? d.col_map[c] : c;
    w[sr * d.rs + sc * d.cs] = Word<T>::store(__dadd_rn(Word<T>::load(base[sr * d.cols + sc]), __dmul_rn(scale, sum)));
  }
}

enum Kind { kColumns = 0, kRows = 1, kRows16 = 2 };

bool aligned16(const void *p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The union of the old and new line sets, ascending by position.
void union_lines(const std::vector<int64_t> &old_pos, const std::vector<int64_t> &new_pos, std::vector<UnionLine> &out) {
  const size_t first = out.size();
  for (size_t j = 0; j < new_pos.size(); ++j) out.push_back(UnionLine{new_pos[j], -1, static_cast<int64_t>(j)});
  for (size_t j = 0; j < old_pos.size(); ++j) out.push_back(UnionLine{old_pos[j], static_cast<int64_t>(j), -1});
  const auto begin = out.begin() + static_cast<std::ptrdiff_t>(first);
  std::sort(begin, out.end(), [](const UnionLine &a, const UnionLine &b) {
    return a.pos != b.pos ? a.pos < b.pos : a.new_j > b.new_j;  // the new entry first
  });
  // Positions are distinct within each set, so a position appears at most
  // twice: fold the old index into the new entry's line.
  size_t w = first;
  for (size_t r = first; r < out.size(); ++r) {
    if (w > first && out[w - 1].pos == out[r].pos) {
      if (out[r].old_j >= 0) out[w - 1].old_j = out[r].old_j;
      if (out[r].new_j >= 0) out[w - 1].new_j = out[r].new_j;
      continue;
    }
    out[w++] = out[r];
  }
  out.resize(w);
}

}  // namespace

// ---- fingerprints ----------------------------------------------------------------------

void line_fingerprints(Context &ctx, const std::vector<FingerprintJob> &jobs) {
  DeviceGuard guard(ctx);
  std::vector<size_t> offset(jobs.size());
  size_t total = 0;
  for (size_t k = 0; k < jobs.size(); ++k) {
    const FingerprintJob &j = jobs[k];
    if (j.out == nullptr || j.max_abs == nullptr) fail(S2FT_ERR_INTERNAL, "fingerprint job without an output");
    offset[k] = total;
    total += static_cast<size_t>(j.axis == S2FT_AXIS_COLUMNS ? j.m.cols : j.m.rows);
  }
  std::vector<uint64_t> host(total);
  std::vector<float> host_max(total);
  if (total > 0) {
    Scratch s(ctx);
    uint64_t *dev = s.alloc_n<uint64_t>(static_cast<int64_t>(total));
    float *dev_max = s.alloc_n<float>(static_cast<int64_t>(total));
    // Column maps of the jobs that read rows in another column order.
    std::vector<const int64_t *> dev_map(jobs.size(), nullptr);
    for (size_t k = 0; k < jobs.size(); ++k) {
      const FingerprintJob &j = jobs[k];
      if (j.col_map == nullptr || j.col_map->empty()) continue;
      if (j.axis != S2FT_AXIS_ROWS || static_cast<int64_t>(j.col_map->size()) != j.m.cols)
        fail(S2FT_ERR_INTERNAL, "fingerprint job with a bad column map");
      dev_map[k] = s.upload(j.col_map->data(), static_cast<int64_t>(j.col_map->size()));
    }
    constexpr int kLineThreads = 64;  // few lines per weight: spread them over the SMs
    for (size_t k = 0; k < jobs.size(); ++k) {
      const FingerprintJob &j = jobs[k];
      const Matrix &m = j.m;
      const int64_t n_lines = j.axis == S2FT_AXIS_COLUMNS ? m.cols : m.rows;
      if (n_lines == 0) continue;
      const int32_t by_columns = j.axis == S2FT_AXIS_COLUMNS ? 1 : 0;
      const unsigned grid = grid_for(ctx, n_lines, kLineThreads);
      dispatch_dtype(m.dtype, [&](auto t) {
        using T = decltype(t);
        const View<const T> v{reinterpret_cast<const T *>(m.base), m.rows, m.cols, m.rs, m.cs};
        fingerprint_kernel<T><<<grid, kLineThreads, 0, ctx.stream>>>(v, by_columns, dev_map[k], dev + offset[k],
                                                                     dev_max + offset[k]);
      });
      S2FT_CUDA_CHECK_LAUNCH("fingerprint_kernel");
    }
    download_sync(ctx, host.data(), dev, total * sizeof(uint64_t));
    download_sync(ctx, host_max.data(), dev_max, total * sizeof(float));
  }
  for (size_t k = 0; k < jobs.size(); ++k) {
    const FingerprintJob &j = jobs[k];
    const size_t n = static_cast<size_t>(j.axis == S2FT_AXIS_COLUMNS ? j.m.cols : j.m.rows);
    j.out->assign(host.begin() + static_cast<std::ptrdiff_t>(offset[k]),
                  host.begin() + static_cast<std::ptrdiff_t>(offset[k] + n));
    j.max_abs->assign(host_max.begin() + static_cast<std::ptrdiff_t>(offset[k]),
                      host_max.begin() + static_cast<std::ptrdiff_t>(offset[k] + n));
  }
}

// ---- model buffers -----------------------------------------------------------------------

std::shared_ptr<ModelBuffers> make_model_buffers(Context &ctx, int32_t n_layers) {
  auto b = std::make_shared<ModelBuffers>();
  b->ctx = &ctx;
  b->slots.resize(static_cast<size_t>(n_layers < 0 ? 0 : n_layers));
  b->sparse_slots.resize(static_cast<size_t>(n_layers < 0 ? 0 : n_layers));
  b->low_rank_base.resize(static_cast<size_t>(n_layers < 0 ? 0 : n_layers));
  return b;
}

// ---- transitions -----------------------------------------------------------------------------

void model_transition(Context &ctx, ModelBuffers &buffers, const std::vector<TransitionStep> &steps,
                      const std::vector<SparseStep> &sparse, const std::vector<LowRankStep> &low_rank,
                      const s2ft_adapter *adapter, double scale) {
  DeviceGuard guard(ctx);
  if (steps.empty() && sparse.empty() && low_rank.empty()) return;
  // The new adapter's device copy (uploaded now if missing or stale).
  const AdapterMirror *mirrored = adapter != nullptr ? &mirror(ctx, *adapter) : nullptr;

  struct Planned {
    StepDesc desc;
    int32_t dtype;
    Kind kind;
    size_t union_first;
    int64_t blocks;  // blocks that would cover the step at one element (vector) per thread
  };
  std::vector<Planned> plan;
  plan.reserve(steps.size());
  std::vector<UnionLine> lines;
  bool waited = false;
  for (const TransitionStep &st : steps) {
    if (st.old_positions == nullptr || st.new_positions == nullptr || st.layer < 0 || st.target < 0 ||
        st.target >= S2FT_NUM_TARGETS || static_cast<size_t>(st.layer) >= buffers.slots.size())
      fail(S2FT_ERR_INTERNAL, "bad model transition step");
    ModelBuffers::Slot &slot = buffers.slots[static_cast<size_t>(st.layer)][static_cast<size_t>(st.target)];
    const Matrix &w = st.w;
    const int64_t e = static_cast<int64_t>(w.elem());
    const int64_t k_old = static_cast<int64_t>(st.old_positions->size());
    const int64_t k_new = static_cast<int64_t>(st.new_positions->size());
    DeviceEntry entry;
    if (k_new > 0) {
      if (mirrored == nullptr) fail(S2FT_ERR_INTERNAL, "model transition with lines but no adapter");
      entry = cuda::entry(*mirrored, st.layer, st.target);
      if (entry.k != k_new || entry.delta == nullptr)
        fail(S2FT_ERR_INTERNAL, "adapter mirror entry does not match the adapter");
    }
    if (slot.current.size() < static_cast<size_t>(k_old * st.line_length * e))
      fail(S2FT_ERR_INTERNAL, "model record smaller than its lines");
    // Grow the buffer the new record goes to. Queued work may still use the
    // old one: wait for the stream before the first release.
    const size_t need = static_cast<size_t>(k_new * st.line_length * e);
    if (slot.spare.size() < need) {
      if (!waited) {
        S2FT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
        waited = true;
      }
      slot.spare.reset();
      slot.spare.resize(ctx.device, need);
    }

    Planned p{};
    p.dtype = w.dtype;
    p.desc.w = w.base;
    p.desc.step_elem = st.by_columns ? w.rs : w.cs;
    p.desc.step_line = st.by_columns ? w.cs : w.rs;
    p.desc.len = st.line_length;
    p.desc.old_rec = k_old > 0 ? static_cast<const char *>(slot.current.get()) : nullptr;
    p.desc.new_rec = k_new > 0 ? static_cast<char *>(slot.spare.get()) : nullptr;
    p.desc.delta = k_new > 0 ? entry.delta : nullptr;
    p.desc.k_old = k_old;
    p.desc.k_new = k_new;
    p.union_first = lines.size();
    union_lines(*st.old_positions, *st.new_positions, lines);
    p.desc.n = static_cast<int64_t>(lines.size() - p.union_first);
    const int64_t vec = 16 / e;
    const bool rows16 = !st.by_columns && p.desc.step_elem == 1 && (st.line_length * e) % 16 == 0 &&
                        aligned16(w.base) && (p.desc.step_line * e) % 16 == 0 &&
                        (k_new == 0 || aligned16(p.desc.delta)) && (k_old == 0 || aligned16(p.desc.old_rec)) &&
                        (k_new == 0 || aligned16(p.desc.new_rec));
    p.kind = st.by_columns ? kColumns : (rows16 ? kRows16 : kRows);
    const int64_t work = p.kind == kRows16 ? p.desc.n * (st.line_length / vec) : p.desc.n * st.line_length;
    p.blocks = (work + kThreads - 1) / kThreads;
    plan.push_back(p);
  }

  // The sparse steps: their elements (offsets in the weight and where each
  // W0 is) and their record buffers (grown before anything is queued).
  struct SparsePlanned {
    SparseDesc desc;
    int32_t dtype;
    size_t ops_first;
  };
  std::vector<SparsePlanned> sparse_plan;
  std::vector<SparseOp> ops;
  for (const SparseStep &st : sparse) {
    if (st.old_positions == nullptr || st.new_positions == nullptr || st.layer < 0 || st.weight < 0 ||
        st.weight >= S2FT_NUM_WEIGHTS || static_cast<size_t>(st.layer) >= buffers.sparse_slots.size() ||
        st.from_old.size() != st.new_positions->size() || st.from_line.size() != st.new_positions->size())
      fail(S2FT_ERR_INTERNAL, "bad sparse transition step");
    ModelBuffers::Slot &slot = buffers.sparse_slots[static_cast<size_t>(st.layer)][static_cast<size_t>(st.weight)];
    const Matrix &w = st.w;
    const int64_t e = static_cast<int64_t>(w.elem());
    const int64_t n_new = static_cast<int64_t>(st.new_positions->size());
    DeviceSparse dev;
    if (n_new > 0) {
      if (mirrored == nullptr || st.entry == nullptr) fail(S2FT_ERR_INTERNAL, "sparse transition without an adapter");
      dev = cuda::sparse_entry(*mirrored, st.layer, st.weight);
      if (dev.count != n_new || dev.delta == nullptr)
        fail(S2FT_ERR_INTERNAL, "adapter mirror sparse entry does not match the adapter");
    }
    if (slot.current.size() < st.old_positions->size() * static_cast<size_t>(e))
      fail(S2FT_ERR_INTERNAL, "sparse record smaller than its elements");
    const size_t need = static_cast<size_t>(n_new * e);
    if (slot.spare.size() < need) {
      if (!waited) {
        S2FT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
        waited = true;
      }
      slot.spare.reset();
      slot.spare.resize(ctx.device, need);
    }
    const TransitionStep *ls = st.lines_step >= 0 ? &steps.at(static_cast<size_t>(st.lines_step)) : nullptr;
    const ModelBuffers::Slot *line_slot =
        ls != nullptr ? &buffers.slots[static_cast<size_t>(ls->layer)][static_cast<size_t>(ls->target)] : nullptr;
    const auto offset = [&](int64_t p) { return (p / w.cols) * w.rs + (p % w.cols) * w.cs; };
    SparsePlanned sp{};
    sp.dtype = w.dtype;
    sp.ops_first = ops.size();
    for (int64_t j = 0; j < n_new; ++j) {
      const int64_t p = (*st.new_positions)[static_cast<size_t>(j)];
      SparseOp op{offset(p), 0, 0};
      if (st.from_old[static_cast<size_t>(j)] >= 0) {
        op.kind = 2;
        op.src = st.from_old[static_cast<size_t>(j)];
      } else if (st.from_line[static_cast<size_t>(j)] >= 0 && ls != nullptr) {
        const int64_t k_old = static_cast<int64_t>(ls->old_positions->size()), jo = st.from_line[static_cast<size_t>(j)];
        const int64_t i = ls->by_columns ? p / w.cols : p % w.cols;  // element along the line
        op.kind = 1;
        op.src = ls->by_columns ? i * k_old + jo : jo * ls->line_length + i;
      }
      ops.push_back(op);
    }
    for (int64_t o : st.restore)
      ops.push_back(SparseOp{offset((*st.old_positions)[static_cast<size_t>(o)]), o, 3});
    sp.desc.w = w.base;
    sp.desc.line_rec = line_slot != nullptr ? static_cast<const char *>(line_slot->current.get()) : nullptr;
    sp.desc.old_rec = static_cast<const char *>(slot.current.get());
    sp.desc.new_rec = n_new > 0 ? static_cast<char *>(slot.spare.get()) : nullptr;
    sp.desc.delta = n_new > 0 ? dev.delta : nullptr;
    sp.desc.n_new = n_new;
    sp.desc.n_ops = static_cast<int64_t>(ops.size() - sp.ops_first);
    if (sp.desc.n_ops > 0) sparse_plan.push_back(sp);
  }

  // The low-rank steps: a base buffer for every weight a new entry covers
  // (grown now, before anything is queued), and the descriptors.
  bool waited_low_rank = waited;
  std::vector<LowRankDesc> low_rank_descs(low_rank.size());
  for (size_t i = 0; i < low_rank.size(); ++i) {
    const LowRankStep &st = low_rank[i];
    if (st.layer < 0 || st.weight < 0 || st.weight >= S2FT_NUM_WEIGHTS ||
        static_cast<size_t>(st.layer) >= buffers.low_rank_base.size() || st.row_map == nullptr || st.col_map == nullptr)
      fail(S2FT_ERR_INTERNAL, "bad low-rank transition step");
    DeviceBuffer &base = buffers.low_rank_base[static_cast<size_t>(st.layer)][static_cast<size_t>(st.weight)];
    const Matrix &w = st.w;
    const size_t need = static_cast<size_t>(w.rows * w.cols) * w.elem();
    if (st.old_entry != nullptr && base.size() < need) fail(S2FT_ERR_INTERNAL, "low-rank base smaller than its weight");
    if (st.entry != nullptr && st.old_entry == nullptr && base.size() < need) {
      if (!waited_low_rank) {
        S2FT_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));
        waited_low_rank = true;
      }
      base.reset();
      base.resize(ctx.device, need);
    }
    LowRankDesc &d = low_rank_descs[i];
    d.w = w.base;
    d.base = static_cast<char *>(base.get());
    d.rows = w.rows;
    d.cols = w.cols;
    d.rs = w.rs;
    d.cs = w.cs;
  }

  // Group the steps by (dtype, kind): one launch per group.
  std::stable_sort(plan.begin(), plan.end(), [](const Planned &a, const Planned &b) {
    return a.dtype != b.dtype ? a.dtype < b.dtype : a.kind < b.kind;
  });
  std::stable_sort(sparse_plan.begin(), sparse_plan.end(),
                   [](const SparsePlanned &a, const SparsePlanned &b) { return a.dtype < b.dtype; });
  // Upload everything in staged copies, then point the steps at it.
  Scratch s(ctx);
  const UnionLine *dev_lines = lines.empty() ? nullptr : s.upload(lines.data(), static_cast<int64_t>(lines.size()));
  std::vector<StepDesc> descs(plan.size());
  for (size_t i = 0; i < plan.size(); ++i) {
    descs[i] = plan[i].desc;
    descs[i].lines = dev_lines + plan[i].union_first;
  }
  const StepDesc *dev_descs = descs.empty() ? nullptr : s.upload(descs.data(), static_cast<int64_t>(descs.size()));
  const SparseOp *dev_ops = ops.empty() ? nullptr : s.upload(ops.data(), static_cast<int64_t>(ops.size()));
  std::vector<SparseDesc> sdescs(sparse_plan.size());
  for (size_t i = 0; i < sparse_plan.size(); ++i) {
    sdescs[i] = sparse_plan[i].desc;
    sdescs[i].ops = dev_ops + sparse_plan[i].ops_first;
  }
  const SparseDesc *dev_sdescs =
      sdescs.empty() ? nullptr : s.upload(sdescs.data(), static_cast<int64_t>(sdescs.size()));
  // One launch of `kernel_of(dtype)` per dtype group of the sparse steps.
  const auto launch_sparse = [&](bool gather) {
    const int64_t block_cap = static_cast<int64_t>(ctx.sm_count > 0 ? ctx.sm_count : 1) * 32;
    for (size_t first = 0; first < sparse_plan.size();) {
      size_t last = first;
      int64_t most = 1;
      while (last < sparse_plan.size() && sparse_plan[last].dtype == sparse_plan[first].dtype) {
        most = std::max(most, gather ? sparse_plan[last].desc.n_ops : sparse_plan[last].desc.n_new);
        ++last;
      }
      const int64_t n_steps = static_cast<int64_t>(last - first);
      const int64_t gy = std::min<int64_t>(n_steps, 65535);
      const int64_t gx = std::max<int64_t>(1, std::min((most + kThreads - 1) / kThreads, std::max<int64_t>(1, block_cap / gy)));
      const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
      const SparseDesc *group = dev_sdescs + first;
      dispatch_dtype(sparse_plan[first].dtype, [&](auto tag) {
        using T = decltype(tag);
        if (gather)
          sparse_gather_kernel<T><<<grid, kThreads, 0, ctx.stream>>>(group, n_steps);
        else
          sparse_write_kernel<T><<<grid, kThreads, 0, ctx.stream>>>(group, n_steps, scale);
      });
      S2FT_CUDA_CHECK_LAUNCH(gather ? "sparse gather" : "sparse write");
      first = last;
    }
  };
  // One launch per low-rank weight (a whole weight each).
  const auto launch_low_rank = [&](const LowRankDesc &d, int32_t dtype, int op) {
    const int64_t n = d.rows * d.cols;
    const int64_t cap = static_cast<int64_t>(ctx.sm_count > 0 ? ctx.sm_count : 1) * 32;
    const unsigned blocks = static_cast<unsigned>(std::max<int64_t>(1, std::min((n + kThreads - 1) / kThreads, cap)));
    dispatch_dtype(dtype, [&](auto tag) {
      using T = decltype(tag);
      if (op == 2)
        low_rank_merge_kernel<T><<<blocks, kThreads, 0, ctx.stream>>>(d, scale);
      else
        weight_copy_kernel<T><<<blocks, kThreads, 0, ctx.stream>>>(d, op);
    });
    S2FT_CUDA_CHECK_LAUNCH(op == 2 ? "low-rank merge" : "low-rank copy");
  };
  for (size_t i = 0; i < low_rank.size(); ++i)
    if (low_rank[i].old_entry != nullptr && low_rank[i].entry == nullptr)
      launch_low_rank(low_rank_descs[i], low_rank[i].w.dtype, 0);  // the saved base back

  launch_sparse(true);

  const int64_t block_cap = static_cast<int64_t>(ctx.sm_count > 0 ? ctx.sm_count : 1) * 32;
  for (size_t first = 0; first < plan.size();) {
    size_t last = first;
    int64_t need = 1;
    while (last < plan.size() && plan[last].dtype == plan[first].dtype && plan[last].kind == plan[first].kind) {
      need = std::max(need, plan[last].blocks);
      ++last;
    }
    const int64_t n_steps = static_cast<int64_t>(last - first);
    const int64_t gy = std::min<int64_t>(n_steps, 65535);
    const int64_t gx = std::max<int64_t>(1, std::min(need, std::max<int64_t>(1, block_cap / gy)));
    const dim3 grid(static_cast<unsigned>(gx), static_cast<unsigned>(gy));
    const StepDesc *group = dev_descs + first;
    const Kind kind = plan[first].kind;
    dispatch_dtype(plan[first].dtype, [&](auto tag) {
      using T = decltype(tag);
      if (kind == kColumns)
        transition_columns_kernel<T><<<grid, kThreads, 0, ctx.stream>>>(group, n_steps, scale);
      else if (kind == kRows16)
        transition_rows16_kernel<T><<<grid, kThreads, 0, ctx.stream>>>(group, n_steps, scale);
      else
        transition_rows_kernel<T><<<grid, kThreads, 0, ctx.stream>>>(group, n_steps, scale);
    });
    S2FT_CUDA_CHECK_LAUNCH("model transition");
    first = last;
  }

  launch_sparse(false);

  for (size_t i = 0; i < low_rank.size(); ++i) {
    const LowRankStep &st = low_rank[i];
    if (st.entry == nullptr) continue;
    LowRankDesc d = low_rank_descs[i];
    const LowRankEntry &e = *st.entry;
    if (e.rank < 1 || e.b.size() != static_cast<size_t>(d.rows * e.rank) ||
        e.a.size() != static_cast<size_t>(e.rank * d.cols))
      fail(S2FT_ERR_INTERNAL, "low-rank entry does not match its weight");
    d.b = s.upload(e.b.data(), static_cast<int64_t>(e.b.size()));
    d.a = s.upload(e.a.data(), static_cast<int64_t>(e.a.size()));
    d.k = e.rank;
    d.row_map = st.row_map->empty() ? nullptr : s.upload(st.row_map->data(), static_cast<int64_t>(st.row_map->size()));
    d.col_map = st.col_map->empty() ? nullptr : s.upload(st.col_map->data(), static_cast<int64_t>(st.col_map->size()));
    if (st.old_entry == nullptr) launch_low_rank(d, st.w.dtype, 1);  // save the base (now restored everywhere)
    launch_low_rank(d, st.w.dtype, 2);
  }

  // The new records become current; the old buffers are the next spares.
  for (const TransitionStep &st : steps)
    if (!st.new_positions->empty()) {
      ModelBuffers::Slot &slot = buffers.slots[static_cast<size_t>(st.layer)][static_cast<size_t>(st.target)];
      slot.current.swap(slot.spare);
    }
  for (const SparseStep &st : sparse)
    if (!st.new_positions->empty()) {
      ModelBuffers::Slot &slot = buffers.sparse_slots[static_cast<size_t>(st.layer)][static_cast<size_t>(st.weight)];
      slot.current.swap(slot.spare);
    }
}

}  // namespace cuda
}  // namespace s2ft
