// Co-permutation of weights on the device. Each weight is packed into
// compact scratch and then gathered back line by line in the new order;
// elements travel as unsigned words of their size, so bits are never
// touched. The unit maps of all weights are uploaded in one staged copy.
#include <algorithm>
#include <string>
#include <vector>

#include "cuda_copy.cuh"
#include "cuda_permute.hpp"
#include "cuda_runtime.cuh"

namespace s2ft {
namespace cuda {
namespace {

// The line of the old weight that line `line` of the new one comes from:
// map[u] is the source unit of destination unit u, a unit spans `width` lines.
__device__ __forceinline__ int64_t source_line(const int64_t *map, int64_t width, int64_t line) {
  return map[line / width] * width + line % width;
}

// Pack: tmp[i * cols + j] = W(i, j), a compact row-major copy of the view.
template <typename U>
__global__ void pack_kernel(View<const U> w, U *tmp) {
  const int64_t n = w.rows * w.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    tmp[t] = w.at(t / w.cols, t % w.cols);
}

// The same in 16-byte chunks: row i of W is `chunks` uint4 starting at
// chunk i * rs16 (unit column stride, rows 16-byte aligned and a whole
// number of chunks long).
__global__ void pack16_kernel(const uint4 *w, int64_t rows, int64_t rs16, int64_t chunks, uint4 *tmp) {
  const int64_t n = rows * chunks;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    tmp[t] = w[(t / chunks) * rs16 + t % chunks];
}

// Rows move: W(i, j) = tmp(source_line(i), j).
template <typename U>
__global__ void gather_rows_kernel(const U *tmp, const int64_t *map, int64_t width, View<U> w) {
  const int64_t n = w.rows * w.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / w.cols, j = t % w.cols;
    w.at(i, j) = tmp[source_line(map, width, i) * w.cols + j];
  }
}

// Rows move, in 16-byte chunks (layout as in pack16_kernel).
__global__ void gather_rows16_kernel(const uint4 *tmp, const int64_t *map, int64_t width, uint4 *w, int64_t rows,
                                     int64_t rs16, int64_t chunks) {
  const int64_t n = rows * chunks;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / chunks, c = t % chunks;
    w[i * rs16 + c] = tmp[source_line(map, width, i) * chunks + c];
  }
}

// Columns move: W(i, j) = tmp(i, source_line(j)). Consecutive threads write
// consecutive columns of one row (coalesced); the reads stay within a row
// of tmp, runs of `width` elements long.
template <typename U>
__global__ void gather_columns_kernel(const U *tmp, const int64_t *map, int64_t width, View<U> w) {
  const int64_t n = w.rows * w.cols;
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < n;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t i = t / w.cols, j = t % w.cols;
    w.at(i, j) = tmp[i * w.cols + source_line(map, width, j)];
  }
}

// Whether the rows of m can move as 16-byte chunks.
bool rows_in_chunks(const Matrix &m) {
  const int64_t e = static_cast<int64_t>(m.elem());
  return m.cs == 1 && (m.cols * e) % 16 == 0 && reinterpret_cast<uintptr_t>(m.base) % 16 == 0 &&
         (m.rows <= 1 || (m.rs * e) % 16 == 0);
}

template <typename U>
void permute_one(Context &ctx, const PermuteJob &job, const int64_t *map, void *scratch) {
  const Matrix &m = job.m;
  U *tmp = static_cast<U *>(scratch);
  const int64_t n = m.rows * m.cols;
  const View<U> w{reinterpret_cast<U *>(m.base), m.rows, m.cols, m.rs, m.cs};
  const View<const U> wc{reinterpret_cast<const U *>(m.base), m.rows, m.cols, m.rs, m.cs};
  const bool chunks_ok = rows_in_chunks(m);
  const int64_t chunks = chunks_ok ? m.cols * static_cast<int64_t>(sizeof(U)) / 16 : 0;
  const int64_t rs16 = chunks_ok && m.rows > 1 ? m.rs * static_cast<int64_t>(sizeof(U)) / 16 : 0;

  if (chunks_ok) {
    pack16_kernel<<<grid_for(ctx, m.rows * chunks), kThreads, 0, ctx.stream>>>(
        reinterpret_cast<const uint4 *>(m.base), m.rows, rs16, chunks, static_cast<uint4 *>(scratch));
  } else {
    pack_kernel<U><<<grid_for(ctx, n), kThreads, 0, ctx.stream>>>(wc, tmp);
  }
  S2FT_CUDA_CHECK_LAUNCH("permute pack");

  if (job.by_columns) {
    gather_columns_kernel<U><<<grid_for(ctx, n), kThreads, 0, ctx.stream>>>(tmp, map, job.width, w);
  } else if (chunks_ok) {
    gather_rows16_kernel<<<grid_for(ctx, m.rows * chunks), kThreads, 0, ctx.stream>>>(
        static_cast<const uint4 *>(scratch), map, job.width, reinterpret_cast<uint4 *>(m.base), m.rows, rs16, chunks);
  } else {
    gather_rows_kernel<U><<<grid_for(ctx, n), kThreads, 0, ctx.stream>>>(tmp, map, job.width, w);
  }
  S2FT_CUDA_CHECK_LAUNCH("permute gather");
}

}  // namespace

void permute(Context &ctx, const std::vector<PermuteJob> &jobs, bool forward) {
  DeviceGuard guard(ctx);
  // Destination unit -> source unit, one map per distinct order, packed:
  //   FORWARD map[p] = order[p];  INVERSE map[order[p]] = p;  else identity.
  struct MapRef {
    const std::vector<int64_t> *order;
    int64_t units;
    size_t offset;
  };
  std::vector<MapRef> refs;
  std::vector<int64_t> maps;
  std::vector<size_t> job_map(jobs.size(), 0);
  size_t max_bytes = 0;
  for (size_t k = 0; k < jobs.size(); ++k) {
    const PermuteJob &job = jobs[k];
    if (job.m.empty()) continue;
    const int64_t lines = job.by_columns ? job.m.cols : job.m.rows;
    if (job.order == nullptr || job.width < 1 || lines % job.width != 0)
      fail(S2FT_ERR_INTERNAL, "permute job with a bad unit width or no order");
    const int64_t units = lines / job.width;
    const std::vector<int64_t> &order = *job.order;
    if (static_cast<int64_t>(order.size()) > units)
      fail(S2FT_ERR_INTERNAL, "permutation longer than the weight's unit count");
    const auto found = std::find_if(refs.begin(), refs.end(),
                                    [&](const MapRef &r) { return r.order == job.order && r.units == units; });
    if (found != refs.end()) {
      job_map[k] = found->offset;
    } else {
      const size_t off = maps.size();
      maps.resize(off + static_cast<size_t>(units));
      for (int64_t u = 0; u < units; ++u) maps[off + static_cast<size_t>(u)] = u;
      for (size_t p = 0; p < order.size(); ++p) {
        const int64_t b = order[p];
        if (b < 0 || b >= units) fail(S2FT_ERR_INTERNAL, "permutation entry out of range");
        if (forward)
          maps[off + p] = b;
        else
          maps[off + static_cast<size_t>(b)] = static_cast<int64_t>(p);
      }
      refs.push_back(MapRef{job.order, units, off});
      job_map[k] = off;
    }
    max_bytes = std::max(max_bytes, static_cast<size_t>(job.m.rows * job.m.cols) * job.m.elem());
  }
  if (max_bytes == 0) return;  // nothing to move

  Scratch s(ctx);
  const int64_t *dev_maps = s.upload(maps.data(), static_cast<int64_t>(maps.size()));
  // One buffer for every weight: the jobs run one after another on the stream.
  void *tmp = s.alloc(max_bytes);
  for (size_t k = 0; k < jobs.size(); ++k) {
    const PermuteJob &job = jobs[k];
    if (job.m.empty()) continue;
    const int64_t *map = dev_maps + job_map[k];
    if (job.m.elem() == 4)
      permute_one<uint32_t>(ctx, job, map, tmp);
    else
      permute_one<uint16_t>(ctx, job, map, tmp);
  }
}

}  // namespace cuda
}  // namespace s2ft
