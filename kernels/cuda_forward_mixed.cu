// The CUDA mixed-adapter forward. For a batch whose row groups use
// different adapters (delta_a f32, lines S_a as positions in w, scale s_a):
//
//   Y = X W^T                                  one cuBLAS GEMM for all rows
//   column target (O, DOWN), rows t of adapter a:
//     y[t, o]   += sum_j delta_a[o, j] * (s_a * x[t, S_a[j]])
//   row target (V, UP):
//     y[t, S_j] += s_a * sum_i delta_a[j, i] * x[t, i]
//
// Decode rows (groups of at most kGemvMaxRows rows, typically one token per
// request) go through ONE gathered batched-GEMV launch for the whole batch:
// a block takes (row, tile of outputs), finds the row's adapter in a small
// device table and reads x and the delta directly, with no merged weight
// and no intermediate buffer.
//
// Prefill groups take the DENSE path (gather, then one grouped GEMM for all
// such groups) or the SPARSE path (the entry's CSR through cusparseSpMM),
// per s2ft_context_set_delta_path; AUTO times both the first time it meets
// a shape and keeps the faster. The dense path gathers x[:, S_a] (columns)
// into f32 scratch: cuBLAS wants one type for both factors and the deltas
// are f32, and the gather is k/in of x. cublasGemmGroupedBatchedEx runs all
// groups in one call (per-group cublasGemmEx if this device's cuBLAS does
// not support it); the product goes straight into y when y is f32 and
// row-contiguous, else into f32 scratch and one add kernel rounds it once.
//
// An adapter's unstructured sparse entries on the weight (any of the seven)
// add y_R += s_a * x_R D_a^T for its groups through cusparseSpMM, on a CSR
// of the entries at their positions in w cached per (adapter, layer,
// weight, perm) like the structured entries' CSR.
#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "adapter/adapter.hpp"
#include "adapter/csr.hpp"
#include "cuda_adapter_mirror.hpp"
#include "cuda_copy.cuh"
#include "cuda_forward_mixed.hpp"
#include "cuda_gemm.cuh"
#include "cuda_runtime.cuh"
#include "cuda_sparse.hpp"

namespace s2ft {
namespace cuda {
namespace {

// Groups of up to this many rows use the batched GEMV kernel (each row reads
// its adapter's delta, from L2 after the first); longer ones use a GEMM.
constexpr int64_t kGemvMaxRows = 8;
constexpr int kGemvWarps = 8;                              // 256 threads
constexpr int kGemvPerWarp = 4;                            // outputs per warp
constexpr int64_t kGemvTile = kGemvWarps * kGemvPerWarp;  // outputs per block
constexpr int64_t kGemvChunk = 2048;                       // staged inputs (8 KiB)
// Cached CSR deltas per context (the oldest is dropped beyond this).
constexpr size_t kMaxCachedCsr = 256;
constexpr int kTimingRuns = 3;

// ---- device tables ----------------------------------------------------------------

// One adapter for the GEMV kernel.
struct GemvSlot {
  const float *delta;  // [out, k] (columns) or [k, in] (rows), row-major
  const int64_t *pos;  // k positions in w
  int64_t k;
  float scale;
};
// One decode row: its row in x and y and its adapter's slot.
struct GemvRow {
  int64_t row;
  int64_t slot;
};

// Gather job: dst[i * width + c] = scale * x[x_row + i, pos ? pos[c] : c] (f32).
struct GatherJob {
  const int64_t *pos;
  float scale;
  int64_t x_row, n, width;
  float *dst;
};
// Add job: y[y_row + i, pos ? pos[c] : c] = round(y + scale * src[i * width + c]).
struct AddJob {
  const int64_t *pos;
  float scale;
  int64_t y_row, n, width;
  const float *src;
};

template <typename T>
View<const T> const_view(const Matrix &m) {
  return View<const T>{reinterpret_cast<const T *>(m.base), m.rows, m.cols, m.rs, m.cs};
}

bool f32_in_place(const Matrix &m) {
  return m.dtype == S2FT_F32 && (m.cols <= 1 || m.cs == 1) && (m.rows <= 1 || m.rs >= m.cols);
}

int64_t align32(int64_t n) { return (n + 31) / 32 * 32; }

int blas_int(int64_t v, const char *what) {
  if (v < 0 || v > INT_MAX)
    fail(S2FT_ERR_UNSUPPORTED, std::string("grouped GEMM ") + what + " exceeds cuBLAS's int range");
  return static_cast<int>(v);
}

// ---- kernels ----------------------------------------------------------------------

// Gathered batched GEMV, one launch for every decode row of the batch. Work
// item = (decode row r, tile of kGemvTile outputs). With v the row's input
// vector and D the adapter's delta rows (length L):
//   columns: v[j] = s * x[t, S_j] (L = k), output m = o in [0, out):
//            y[t, o] += sum_j D[o, j] v[j]
//   rows:    v[i] = x[t, i] (L = in), output m = j in [0, k):
//            y[t, S_j] += s * sum_i D[j, i] v[i]
// v is staged in shared memory kGemvChunk values at a time; each warp owns
// kGemvPerWarp outputs, its lanes stride along a delta row (coalesced) and
// reduce with shuffles; lane 0 adds into y with one rounding. Delta rows
// are read as float4 when L % 4 == 0 and the delta is 16-byte aligned (the
// adapter mirror aligns entries to 256 bytes; chunks start at multiples of
// 2048). Every (t, o) has exactly one writer: rows are distinct, tiles
// disjoint, S distinct.
template <typename T>
__global__ void __launch_bounds__(kGemvWarps * 32)
    gemv_kernel(View<const T> x, View<T> y, const GemvSlot *__restrict__ slots, const GemvRow *__restrict__ rows,
                int64_t n_rows, int64_t n_tiles, bool columns) {
  __shared__ __align__(16) float v[kGemvChunk];
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const int64_t n_items = n_rows * n_tiles;
  for (int64_t item = blockIdx.x; item < n_items; item += gridDim.x) {
    const GemvRow gr = rows[item / n_tiles];
    const int64_t m0 = (item % n_tiles) * kGemvTile;
    const GemvSlot sl = slots[gr.slot];
    const int64_t M = columns ? y.cols : sl.k;  // outputs
    const int64_t L = columns ? sl.k : x.cols;  // dot-product length
    if (m0 >= M) continue;                      // the same for every thread of the block
    const bool vec = L % 4 == 0 && (reinterpret_cast<uintptr_t>(sl.delta) & 15) == 0;
    float acc[kGemvPerWarp];
#pragma unroll
    for (int q = 0; q < kGemvPerWarp; ++q) acc[q] = 0.0f;
    for (int64_t c0 = 0; c0 < L; c0 += kGemvChunk) {
      const int64_t len = L - c0 < kGemvChunk ? L - c0 : kGemvChunk;
      __syncthreads();  // the previous chunk (or item) is no longer read
      for (int64_t i = threadIdx.x; i < len; i += blockDim.x)
        v[i] = columns ? sl.scale * to_f32(x.at(gr.row, sl.pos[c0 + i])) : to_f32(x.at(gr.row, c0 + i));
      __syncthreads();
#pragma unroll
      for (int q = 0; q < kGemvPerWarp; ++q) {
        const int64_t m = m0 + q * kGemvWarps + warp;
        if (m < M) {
          const float *d = sl.delta + m * L + c0;
          float part = 0.0f;
          if (vec) {  // len is a multiple of 4 here
            const float4 *d4 = reinterpret_cast<const float4 *>(d);
            const float4 *v4 = reinterpret_cast<const float4 *>(v);
            for (int64_t i = lane; i < len / 4; i += 32) {
              const float4 a = d4[i], b = v4[i];
              part += a.x * b.x + a.y * b.y + a.z * b.z + a.w * b.w;
            }
          } else {
            for (int64_t i = lane; i < len; i += 32) part += d[i] * v[i];
          }
          acc[q] += part;
        }
      }
    }
#pragma unroll
    for (int q = 0; q < kGemvPerWarp; ++q) {
      float a = acc[q];
      for (int off = 16; off > 0; off >>= 1) a += __shfl_xor_sync(0xffffffffu, a, off);
      const int64_t m = m0 + q * kGemvWarps + warp;
      if (lane == 0 && m < M) {
        T &out = y.at(gr.row, columns ? m : sl.pos[m]);
        out = from_f32<T>(to_f32(out) + (columns ? a : sl.scale * a));
      }
    }
  }
}

// All gather jobs of a dense pass: blockIdx.y strides over jobs, the x
// dimension over a job's n * width elements (consecutive threads take
// consecutive c, so dst writes coalesce).
template <typename T>
__global__ void gather_jobs_kernel(View<const T> x, const GatherJob *__restrict__ jobs, int64_t n_jobs) {
  for (int64_t g = blockIdx.y; g < n_jobs; g += gridDim.y) {
    const GatherJob j = jobs[g];
    const int64_t total = j.n * j.width;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t i = e / j.width, c = e % j.width;
      j.dst[e] = j.scale * to_f32(x.at(j.x_row + i, j.pos != nullptr ? j.pos[c] : c));
    }
  }
}

// All add jobs of a dense pass: y += scale * product, one rounding into T.
// Jobs own disjoint rows and positions are distinct: one writer per element.
template <typename T>
__global__ void add_jobs_kernel(View<T> y, const AddJob *__restrict__ jobs, int64_t n_jobs) {
  for (int64_t g = blockIdx.y; g < n_jobs; g += gridDim.y) {
    const AddJob j = jobs[g];
    const int64_t total = j.n * j.width;
    for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
         e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
      const int64_t i = e / j.width, c = e % j.width;
      T &out = y.at(j.y_row + i, j.pos != nullptr ? j.pos[c] : c);
      out = from_f32<T>(to_f32(out) + j.scale * j.src[e]);
    }
  }
}

// Grid for a job-table kernel: y over jobs, x over the largest job.
dim3 jobs_grid(const Context &ctx, int64_t n_jobs, int64_t max_elems) {
  const int64_t gy = std::min<int64_t>(n_jobs, 65535);
  const int64_t want = (max_elems + kThreads - 1) / kThreads;
  const int64_t cap = std::max<int64_t>(1, static_cast<int64_t>(ctx.sm_count > 0 ? ctx.sm_count : 1) * 32 / gy);
  const int64_t gx = std::max<int64_t>(1, std::min(want, cap));
  return dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy), 1);
}

// ---- the dense path ------------------------------------------------------------------

// A prefill group: rows [x_row, x_row + n) of x, written to rows
// [y_row, y_row + n) of the output view, with adapter `adapter`.
struct DenseJob {
  int64_t x_row = 0, y_row = 0, n = 0;
  int32_t adapter = 0;
};

// Per adapter: its device entry, positions and scale.
struct Resolved {
  DeviceEntry dev;
  const int64_t *pos = nullptr;
  float scale = 1.0f;
  const MixedAdapter *host = nullptr;
};

// Everything a dense pass needs, allocated and uploaded once so it can be
// launched repeatedly (AUTO times it).
struct DensePass {
  Matrix x, y;
  const GatherJob *gather = nullptr;
  int64_t n_gather = 0, max_gather = 0;
  const AddJob *add = nullptr;
  int64_t n_add = 0, max_add = 0;
  float *prod = nullptr;  // f32 products (cleared before the GEMMs)
  size_t prod_bytes = 0;
  // Grouped GEMM (one problem per group), column-major cuBLAS terms.
  std::vector<cublasOperation_t> ta, tb;
  std::vector<int> m, n, k, lda, ldb, ldc, size;
  std::vector<float> alpha, beta;
  std::vector<const void *> a, b;  // host copies for the per-group fallback
  std::vector<void *> c;
  const void *const *da = nullptr;
  const void *const *db = nullptr;
  void *const *dc = nullptr;
};

DensePass prepare_dense(Scratch &s, bool columns, const Matrix &x, const Matrix &y, const std::vector<DenseJob> &jobs,
                        const std::vector<Resolved> &ads) {
  DensePass p;
  p.x = x;
  p.y = y;
  const int64_t out = y.cols, in = x.cols;
  const bool y_direct = columns && f32_in_place(y);  // the GEMM adds into y itself
  const bool x_direct = !columns && f32_in_place(x);  // the GEMM reads x itself
  const size_t J = jobs.size();
  std::vector<int64_t> work_off(J), prod_off(J), work_w(J), prod_w(J);
  int64_t work = 0, prod = 0;
  for (size_t j = 0; j < J; ++j) {
    const Resolved &r = ads[static_cast<size_t>(jobs[j].adapter)];
    work_w[j] = columns ? r.dev.k : (x_direct ? 0 : in);
    prod_w[j] = columns ? (y_direct ? 0 : out) : r.dev.k;
    work_off[j] = work;
    prod_off[j] = prod;
    work += align32(jobs[j].n * work_w[j]);
    prod += align32(jobs[j].n * prod_w[j]);
  }
  float *work_buf = work > 0 ? s.alloc_n<float>(work) : nullptr;
  p.prod = prod > 0 ? s.alloc_n<float>(prod) : nullptr;
  p.prod_bytes = static_cast<size_t>(prod) * sizeof(float);
  std::vector<GatherJob> gather;
  std::vector<AddJob> add;
  for (size_t j = 0; j < J; ++j) {
    const DenseJob &job = jobs[j];
    const Resolved &r = ads[static_cast<size_t>(job.adapter)];
    const int64_t k = r.dev.k;
    float *xs = work_buf != nullptr ? work_buf + work_off[j] : nullptr;
    float *pj = p.prod != nullptr ? p.prod + prod_off[j] : nullptr;
    if (work_w[j] > 0) {
      gather.push_back(GatherJob{columns ? r.pos : nullptr, columns ? r.scale : 1.0f, job.x_row, job.n, work_w[j], xs});
      p.max_gather = std::max(p.max_gather, job.n * work_w[j]);
    }
    if (prod_w[j] > 0) {
      add.push_back(AddJob{columns ? nullptr : r.pos, columns ? 1.0f : r.scale, job.y_row, job.n, prod_w[j], pj});
      p.max_add = std::max(p.max_add, job.n * prod_w[j]);
    }
    if (columns) {
      // C^T [out, n] = delta [out, k] (stored [k, out] column-major: op T)
      //              * xs^T [k, n] (xs row-major [n, k] = column-major [k, n]).
      p.ta.push_back(CUBLAS_OP_T);
      p.tb.push_back(CUBLAS_OP_N);
      p.m.push_back(blas_int(out, "rows"));
      p.n.push_back(blas_int(job.n, "columns"));
      p.k.push_back(blas_int(k, "depth"));
      p.a.push_back(r.dev.delta);
      p.lda.push_back(blas_int(k, "lda"));
      p.b.push_back(xs);
      p.ldb.push_back(blas_int(k, "ldb"));
      if (y_direct) {
        p.c.push_back(y.row_range(job.y_row, job.n).base);
        p.ldc.push_back(blas_int(y.rs, "ldc"));
        p.beta.push_back(1.0f);
      } else {
        p.c.push_back(pj);
        p.ldc.push_back(blas_int(out, "ldc"));
        p.beta.push_back(0.0f);
      }
    } else {
      // P^T [k, n] = delta [k, in] (stored [in, k] column-major: op T)
      //            * x^T [in, n] (x rows row-major = column-major [in, n]).
      p.ta.push_back(CUBLAS_OP_T);
      p.tb.push_back(CUBLAS_OP_N);
      p.m.push_back(blas_int(k, "rows"));
      p.n.push_back(blas_int(job.n, "columns"));
      p.k.push_back(blas_int(in, "depth"));
      p.a.push_back(r.dev.delta);
      p.lda.push_back(blas_int(in, "lda"));
      if (x_direct) {
        p.b.push_back(x.row_range(job.x_row, job.n).base);
        p.ldb.push_back(blas_int(x.rs, "ldb"));
      } else {
        p.b.push_back(xs);
        p.ldb.push_back(blas_int(in, "ldb"));
      }
      p.c.push_back(pj);
      p.ldc.push_back(blas_int(k, "ldc"));
      p.beta.push_back(0.0f);
    }
    p.alpha.push_back(1.0f);
    p.size.push_back(1);
  }
  p.n_gather = static_cast<int64_t>(gather.size());
  p.n_add = static_cast<int64_t>(add.size());
  if (p.n_gather > 0) p.gather = s.upload(gather.data(), p.n_gather);
  if (p.n_add > 0) p.add = s.upload(add.data(), p.n_add);
  p.da = s.upload(p.a.data(), static_cast<int64_t>(J));
  p.db = s.upload(p.b.data(), static_cast<int64_t>(J));
  p.dc = s.upload(p.c.data(), static_cast<int64_t>(J));
  return p;
}

void launch_dense(Context &ctx, const DensePass &p) {
  const int64_t J = static_cast<int64_t>(p.size.size());
  if (J == 0) return;
  if (p.n_gather > 0) {
    dispatch_dtype(p.x.dtype, [&](auto t) {
      using T = decltype(t);
      gather_jobs_kernel<T><<<jobs_grid(ctx, p.n_gather, p.max_gather), kThreads, 0, ctx.stream>>>(
          const_view<T>(p.x), p.gather, p.n_gather);
    });
    S2FT_CUDA_CHECK_LAUNCH("gather_jobs");
  }
  if (p.prod_bytes > 0) S2FT_CUDA_CHECK(cudaMemsetAsync(p.prod, 0, p.prod_bytes, ctx.stream));
  const cublasStatus_t st = cublasGemmGroupedBatchedEx(
      ctx.blas, p.ta.data(), p.tb.data(), p.m.data(), p.n.data(), p.k.data(), p.alpha.data(), p.da, CUDA_R_32F,
      p.lda.data(), p.db, CUDA_R_32F, p.ldb.data(), p.beta.data(), p.dc, CUDA_R_32F, p.ldc.data(),
      static_cast<int>(J), p.size.data(), CUBLAS_COMPUTE_32F);
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_ARCH_MISMATCH) {
    // This cuBLAS cannot group here: the same problems one GEMM each.
    for (int64_t j = 0; j < J; ++j) {
      const size_t i = static_cast<size_t>(j);
      S2FT_CUBLAS_CHECK(cublasGemmEx(ctx.blas, p.ta[i], p.tb[i], p.m[i], p.n[i], p.k[i], &p.alpha[i], p.a[i],
                                     CUDA_R_32F, p.lda[i], p.b[i], CUDA_R_32F, p.ldb[i], &p.beta[i], p.c[i],
                                     CUDA_R_32F, p.ldc[i], CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    }
  } else if (st != CUBLAS_STATUS_SUCCESS) {
    fail_cublas(st, "cublasGemmGroupedBatchedEx");
  }
  if (p.n_add > 0) {
    dispatch_dtype(p.y.dtype, [&](auto t) {
      using T = decltype(t);
      add_jobs_kernel<T><<<jobs_grid(ctx, p.n_add, p.max_add), kThreads, 0, ctx.stream>>>(view_of<T>(p.y), p.add,
                                                                                         p.n_add);
    });
    S2FT_CUDA_CHECK_LAUNCH("add_jobs");
  }
}

// ---- the context's cache: CSR deltas and AUTO's choices ------------------------------

struct CachedCsr {
  const s2ft_adapter *adapter = nullptr;
  int32_t layer = 0, target = 0;
  bool sparse = false;  // the CSR of the adapter's sparse entries (else of its structured entry)
  const s2ft_selection *perm = nullptr;
  // The adapter's device copy this CSR was made with: it expires when the
  // adapter changes or dies, so a reused address never matches.
  std::weak_ptr<AdapterMirror> token;
  std::vector<int64_t> positions;
  DeviceCsrPtr csr;
};

// (T bucket, out, in, k, dtype, columns) -> S2FT_DELTA_PATH_DENSE or _SPARSE.
using ShapeKey = std::array<int64_t, 6>;

struct MixedState {
  std::vector<CachedCsr> csr;  // oldest first
  std::map<ShapeKey, int32_t> chosen;
};

MixedState &state_of(std::shared_ptr<void> &state) {
  if (!state) state = std::make_shared<MixedState>();
  return *static_cast<MixedState *>(state.get());
}

// The device CSR of adapter entry r over the full [out, in] weight, cached
// per (adapter, layer, target, perm). Building one uploads it (synchronises).
const DeviceCsr &csr_for(MixedState &st, Context &ctx, const MixedCall &call, const Resolved &r,
                         const AdapterMirror &mirror, int64_t out, int64_t in) {
  const std::shared_ptr<AdapterMirror> token = mirror_token(*r.host->adapter, mirror);
  if (!token) fail(S2FT_ERR_INTERNAL, "forward_mixed: the adapter's device copy is not registered");
  const std::vector<int64_t> &positions = *r.host->positions;
  for (const CachedCsr &e : st.csr)
    if (!e.sparse && e.adapter == r.host->adapter && e.layer == call.layer && e.target == call.target &&
        e.perm == call.perm && e.token.lock() == token && e.positions == positions)
      return *e.csr;
  // Drop entries of changed or destroyed adapters and the stale one for this key.
  st.csr.erase(std::remove_if(st.csr.begin(), st.csr.end(),
                              [&](const CachedCsr &e) {
                                return e.token.expired() || (!e.sparse && e.adapter == r.host->adapter &&
                                                             e.layer == call.layer && e.target == call.target &&
                                                             e.perm == call.perm);
                              }),
               st.csr.end());
  if (st.csr.size() >= kMaxCachedCsr) st.csr.erase(st.csr.begin());
  CachedCsr e;
  e.adapter = r.host->adapter;
  e.layer = call.layer;
  e.target = call.target;
  e.perm = call.perm;
  e.token = token;
  e.positions = positions;
  e.csr = upload_csr(ctx, entry_csr(out, in, call.columns ? S2FT_AXIS_COLUMNS : S2FT_AXIS_ROWS, *r.host->entry,
                                    positions));
  st.csr.push_back(std::move(e));
  return *st.csr.back().csr;
}

// The device CSR of an adapter's sparse entries on (layer, weight) at their
// positions in w, cached per (adapter, layer, weight, perm) as csr_for.
const DeviceCsr &sparse_csr_for(MixedState &st, Context &ctx, const MixedCall &call, const MixedAdapter &m,
                                const AdapterMirror &mirror, int64_t out, int64_t in) {
  const std::shared_ptr<AdapterMirror> token = mirror_token(*m.adapter, mirror);
  if (!token) fail(S2FT_ERR_INTERNAL, "forward_mixed: the adapter's device copy is not registered");
  const std::vector<int64_t> &positions = *m.sparse_positions;
  for (const CachedCsr &e : st.csr)
    if (e.sparse && e.adapter == m.adapter && e.layer == call.layer && e.target == call.target &&
        e.perm == call.perm && e.token.lock() == token && e.positions == positions)
      return *e.csr;
  st.csr.erase(std::remove_if(st.csr.begin(), st.csr.end(),
                              [&](const CachedCsr &e) {
                                return e.token.expired() || (e.sparse && e.adapter == m.adapter &&
                                                             e.layer == call.layer && e.target == call.target &&
                                                             e.perm == call.perm);
                              }),
               st.csr.end());
  if (st.csr.size() >= kMaxCachedCsr) st.csr.erase(st.csr.begin());
  CachedCsr e;
  e.adapter = m.adapter;
  e.layer = call.layer;
  e.target = call.target;
  e.sparse = true;
  e.perm = call.perm;
  e.token = token;
  e.positions = positions;
  e.csr = upload_csr(ctx, sparse_csr(out, in, positions, m.sparse->delta));
  st.csr.push_back(std::move(e));
  return *st.csr.back().csr;
}

int64_t bucket(int64_t n) {
  int64_t b = 1;
  while (b < n && b < (int64_t{1} << 40)) b <<= 1;
  return b;
}

// Events for timing, destroyed on every exit.
struct Events {
  std::array<cudaEvent_t, 3> e{};
  Events() {
    for (cudaEvent_t &ev : e) S2FT_CUDA_CHECK(cudaEventCreate(&ev));
  }
  ~Events() {
    for (cudaEvent_t ev : e)
      if (ev != nullptr) cudaEventDestroy(ev);
  }
  Events(const Events &) = delete;
  Events &operator=(const Events &) = delete;
};

// Times the dense and sparse paths for one prefill group on a scratch copy
// of its output rows (so y is untouched) and returns the faster. Waits for
// the device: a synchronising step, taken once per shape.
int32_t time_paths(Scratch &s, const MixedCall &call, const Matrix &x, const Matrix &y, const DenseJob &job,
                   const std::vector<Resolved> &ads, const DeviceCsr &csr) {
  Context &ctx = s.ctx();
  const Matrix yt = scratch_matrix(s, y.dtype, job.n, y.cols);
  fill(ctx, yt, 0.0f);
  DenseJob dj = job;
  dj.y_row = 0;
  const DensePass dense = prepare_dense(s, call.columns, x, yt, {dj}, ads);
  const std::shared_ptr<SpmmPlan> sparse =
      plan_spmm(s, csr, ads[static_cast<size_t>(job.adapter)].scale, x.row_range(job.x_row, job.n), yt);
  Events ev;
  launch_dense(ctx, dense);  // warm-up: heuristics, first launches
  run_spmm(ctx, *sparse);
  S2FT_CUDA_CHECK(cudaEventRecord(ev.e[0], ctx.stream));
  for (int i = 0; i < kTimingRuns; ++i) launch_dense(ctx, dense);
  S2FT_CUDA_CHECK(cudaEventRecord(ev.e[1], ctx.stream));
  for (int i = 0; i < kTimingRuns; ++i) run_spmm(ctx, *sparse);
  S2FT_CUDA_CHECK(cudaEventRecord(ev.e[2], ctx.stream));
  S2FT_CUDA_CHECK(cudaEventSynchronize(ev.e[2]));
  float dense_ms = 0.0f, sparse_ms = 0.0f;
  S2FT_CUDA_CHECK(cudaEventElapsedTime(&dense_ms, ev.e[0], ev.e[1]));
  S2FT_CUDA_CHECK(cudaEventElapsedTime(&sparse_ms, ev.e[1], ev.e[2]));
  return sparse_ms < dense_ms ? S2FT_DELTA_PATH_SPARSE : S2FT_DELTA_PATH_DENSE;
}

}  // namespace

void forward_mixed(Context &ctx, std::shared_ptr<void> &state, const MixedCall &call, const Matrix &x,
                   const Matrix &w, const std::vector<MixedAdapter> &adapters, const std::vector<MixedGroup> &groups,
                   const Matrix &y) {
  DeviceGuard guard(ctx);
  const int64_t out = w.rows, in = w.cols;
  const size_t n_ad = adapters.size();

  // Device copies of the adapters some group uses (the first use uploads).
  // `used` marks those with a structured entry here; the sparse entries are
  // added after the structured paths, group by group.
  std::vector<char> used(n_ad, 0), any(n_ad, 0);
  std::vector<MixedGroup> line_groups, sparse_groups;
  for (const MixedGroup &g : groups) {
    if (g.adapter < 0 || static_cast<size_t>(g.adapter) >= n_ad || g.rows <= 0 || g.row < 0 || g.row + g.rows > x.rows)
      fail(S2FT_ERR_INTERNAL, "forward_mixed: bad group");
    const MixedAdapter &m = adapters[static_cast<size_t>(g.adapter)];
    if (m.adapter == nullptr || (m.entry == nullptr && m.sparse == nullptr) ||
        (m.entry != nullptr && m.positions == nullptr) || (m.sparse != nullptr && m.sparse_positions == nullptr))
      fail(S2FT_ERR_INTERNAL, "forward_mixed: a used adapter is not resolved");
    any[static_cast<size_t>(g.adapter)] = 1;
    if (m.entry != nullptr) {
      used[static_cast<size_t>(g.adapter)] = 1;
      line_groups.push_back(g);
    }
    if (m.sparse != nullptr) sparse_groups.push_back(g);
  }
  std::vector<const AdapterMirror *> mirrors(n_ad, nullptr);
  std::vector<Resolved> ads(n_ad);
  for (size_t a = 0; a < n_ad; ++a)
    if (any[a]) mirrors[a] = &mirror(ctx, *adapters[a].adapter);
  for (size_t a = 0; a < n_ad; ++a) {
    if (!used[a]) continue;
    const MixedAdapter &m = adapters[a];
    ads[a].dev = entry(*mirrors[a], call.layer, call.target);
    if (ads[a].dev.k <= 0 || ads[a].dev.k != static_cast<int64_t>(m.positions->size()))
      fail(S2FT_ERR_INTERNAL, "forward_mixed: the adapter's device copy does not match its entry");
    ads[a].scale = m.scale;
    ads[a].host = &m;
  }

  Scratch s(ctx);
  // Positions in w: the mirror's base-order lines, or the permuted positions
  // of every used adapter, uploaded together.
  if (call.perm == nullptr) {
    for (size_t a = 0; a < n_ad; ++a)
      if (used[a]) ads[a].pos = ads[a].dev.lines;
  } else {
    std::vector<int64_t> packed;
    std::vector<size_t> off(n_ad, 0);
    for (size_t a = 0; a < n_ad; ++a)
      if (used[a]) {
        off[a] = packed.size();
        packed.insert(packed.end(), adapters[a].positions->begin(), adapters[a].positions->end());
      }
    const int64_t *dev = s.upload(packed.data(), static_cast<int64_t>(packed.size()));
    for (size_t a = 0; a < n_ad; ++a)
      if (used[a]) ads[a].pos = dev + off[a];
  }

  // Decode rows to the GEMV kernel; prefill groups to the dense or sparse path.
  std::vector<GemvRow> gemv_rows;
  int64_t gemv_max_k = 0;
  std::vector<DenseJob> dense, sparse;
  for (const MixedGroup &g : line_groups) {
    const size_t a = static_cast<size_t>(g.adapter);
    if (g.rows <= kGemvMaxRows) {
      for (int64_t r = g.row; r < g.row + g.rows; ++r) gemv_rows.push_back(GemvRow{r, static_cast<int64_t>(a)});
      gemv_max_k = std::max(gemv_max_k, ads[a].dev.k);
      continue;
    }
    const DenseJob job{g.row, g.row, g.rows, g.adapter};
    int32_t path = call.delta_path;
    if (path == S2FT_DELTA_PATH_AUTO) {
      MixedState &st = state_of(state);
      const ShapeKey key{bucket(g.rows), out, in, ads[a].dev.k, y.dtype, call.columns ? 1 : 0};
      const auto it = st.chosen.find(key);
      if (it != st.chosen.end()) {
        path = it->second;
      } else {
        const DeviceCsr &csr = csr_for(st, ctx, call, ads[a], *mirrors[a], out, in);
        path = time_paths(s, call, x, y, job, ads, csr);
        st.chosen[key] = path;
      }
    }
    (path == S2FT_DELTA_PATH_SPARSE ? sparse : dense).push_back(job);
  }

  // Y = X W^T for every row.
  gemm(s, Op::N, x, Op::T, w, y, false);

  if (!gemv_rows.empty()) {
    std::vector<GemvSlot> slots(n_ad, GemvSlot{nullptr, nullptr, 0, 0.0f});
    for (size_t a = 0; a < n_ad; ++a)
      if (used[a]) slots[a] = GemvSlot{ads[a].dev.delta, ads[a].pos, ads[a].dev.k, ads[a].scale};
    const GemvSlot *d_slots = s.upload(slots.data(), static_cast<int64_t>(n_ad));
    const int64_t n_rows = static_cast<int64_t>(gemv_rows.size());
    const GemvRow *d_rows = s.upload(gemv_rows.data(), n_rows);
    const int64_t max_outputs = call.columns ? out : gemv_max_k;
    const int64_t n_tiles = (max_outputs + kGemvTile - 1) / kGemvTile;
    const int64_t n_items = n_rows * n_tiles;
    if (n_items > 0) {
      const int64_t cap = static_cast<int64_t>(ctx.sm_count > 0 ? ctx.sm_count : 1) * 16;
      const unsigned grid = static_cast<unsigned>(std::min(n_items, cap));
      dispatch_dtype(y.dtype, [&](auto t) {
        using T = decltype(t);
        gemv_kernel<T><<<grid, kGemvWarps * 32, 0, ctx.stream>>>(const_view<T>(x), view_of<T>(y), d_slots, d_rows,
                                                                 n_rows, n_tiles, call.columns);
      });
      S2FT_CUDA_CHECK_LAUNCH("gemv");
    }
  }

  if (!dense.empty()) launch_dense(ctx, prepare_dense(s, call.columns, x, y, dense, ads));

  if (!sparse.empty()) {
    MixedState &st = state_of(state);
    for (const DenseJob &job : sparse) {
      const Resolved &r = ads[static_cast<size_t>(job.adapter)];
      const DeviceCsr &csr = csr_for(st, ctx, call, r, *mirrors[static_cast<size_t>(job.adapter)], out, in);
      const std::shared_ptr<SpmmPlan> plan =
          plan_spmm(s, csr, r.scale, x.row_range(job.x_row, job.n), y.row_range(job.y_row, job.n));
      run_spmm(ctx, *plan);
    }
  }

  // Unstructured sparse entries: y_R += scale * x_R D^T through SpMM.
  if (!sparse_groups.empty()) {
    MixedState &st = state_of(state);
    for (const MixedGroup &g : sparse_groups) {
      const size_t a = static_cast<size_t>(g.adapter);
      const MixedAdapter &m = adapters[a];
      const DeviceCsr &csr = sparse_csr_for(st, ctx, call, m, *mirrors[a], out, in);
      const std::shared_ptr<SpmmPlan> plan =
          plan_spmm(s, csr, m.scale, x.row_range(g.row, g.rows), y.row_range(g.row, g.rows));
      run_spmm(ctx, *plan);
    }
  }
}

}  // namespace cuda
}  // namespace s2ft
