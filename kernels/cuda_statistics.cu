// Calibration statistics on the device: per-line sums of squares of a
// weight, an activation or a weight gradient, then per-unit sums, all in
// double, accumulated into the statistics' device arena. Every reduction
// has a fixed order (it depends on the shapes only), so results are
// deterministic and the same on every device.
//
//   columns: column_squares_kernel (tiles of 32 columns x 8 row lanes, at
//            most kMaxRowBlocks blocks down the rows) -> partial sums per
//            block row -> reduce_partials_kernel -> one sum per column;
//   rows:    row_squares_kernel (one warp per row) -> one sum per row;
//   units:   unit_sums_kernel adds `width` consecutive line sums per unit
//            into (or over) the record.
// Gradients: dW = dy^T x is formed by cuBLAS in f32 scratch, a tile of
// lines at a time (at most kMaxTileElems elements), and reduced like a
// weight; the full dW never has to fit in memory at once.
#include <algorithm>
#include <string>

#include "cuda_copy.cuh"
#include "cuda_gemm.cuh"
#include "cuda_statistics.hpp"

namespace s2ft {
namespace cuda {

struct StatisticsArena {
  DeviceBuffer sums;  // doubles
  int64_t size = 0;
};

namespace {

constexpr int kColTile = 32;   // columns per block (one warp across)
constexpr int kRowLanes = 8;   // rows a block reads at once
constexpr int64_t kRowsPerBlockRow = 256;
constexpr int64_t kMaxRowBlocks = 64;
constexpr int64_t kMaxTileElems = int64_t{1} << 24;  // dW tile: 64 MiB of f32

// Block rows for a column reduction over `rows` rows: a function of the
// shape only, so the summation order is the same on every device.
int64_t row_blocks(int64_t rows) {
  const int64_t b = (rows + kRowsPerBlockRow - 1) / kRowsPerBlockRow;
  return std::min<int64_t>(std::max<int64_t>(b, 1), kMaxRowBlocks);
}

// partial[y, j] = sum of m[r, j]^2 over the rows r block row y reads:
// r = y*8 + ly + k*(gridDim.y*8) for lane ly in [0, 8) and k = 0, 1, ...
// Consecutive threads read consecutive columns (coalesced on row-major m).
template <typename T>
__global__ void column_squares_kernel(View<const T> m, double *partial) {
  __shared__ double lane_sums[kRowLanes][kColTile];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * kColTile + threadIdx.x;
  double acc = 0.0;
  if (j < m.cols) {
    const int64_t step = static_cast<int64_t>(gridDim.y) * kRowLanes;
    for (int64_t r = static_cast<int64_t>(blockIdx.y) * kRowLanes + threadIdx.y; r < m.rows; r += step) {
      const double v = to_f32(m.at(r, j));
      acc += v * v;
    }
  }
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < m.cols) {
    double s = 0.0;
    for (int y = 0; y < kRowLanes; ++y) s += lane_sums[y][threadIdx.x];
    partial[static_cast<int64_t>(blockIdx.y) * m.cols + j] = s;
  }
}

// lines[j] = sum over y < ny of partial[y, j], y ascending.
__global__ void reduce_partials_kernel(const double *partial, int64_t ny, int64_t cols, double *lines) {
  for (int64_t j = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; j < cols;
       j += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int64_t y = 0; y < ny; ++y) s += partial[y * cols + j];
    lines[j] = s;
  }
}

// lines[i] = sum_j m[i, j]^2: one warp per row, lanes across the columns,
// then a fixed shuffle tree.
template <typename T>
__global__ void row_squares_kernel(View<const T> m, double *lines) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) >> 5;
  const int64_t n_warps = (static_cast<int64_t>(gridDim.x) * blockDim.x) >> 5;
  for (int64_t i = warp; i < m.rows; i += n_warps) {  // uniform within a warp
    double acc = 0.0;
    for (int64_t j = lane; j < m.cols; j += 32) {
      const double v = to_f32(m.at(i, j));
      acc += v * v;
    }
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
    if (lane == 0) lines[i] = acc;
  }
}

// dst[u] = (accumulate ? dst[u] : 0) + sum over l < width of lines[u*width + l].
__global__ void unit_sums_kernel(const double *lines, int64_t units, int64_t width, double *dst, bool accumulate) {
  for (int64_t u = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; u < units;
       u += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int64_t l = 0; l < width; ++l) s += lines[u * width + l];
    dst[u] = accumulate ? dst[u] + s : s;
  }
}

template <typename T>
View<const T> const_view(const Matrix &m) {
  return View<const T>{reinterpret_cast<const T *>(m.base), m.rows, m.cols, m.rs, m.cs};
}

// lines[l] = sum of squares of line l of m (its columns or its rows).
void line_squares(Scratch &s, const Matrix &m, bool by_columns, double *lines) {
  Context &ctx = s.ctx();
  const int64_t n_lines = by_columns ? m.cols : m.rows;
  if (n_lines == 0) return;
  dispatch_dtype(m.dtype, [&](auto tt) {
    using T = decltype(tt);
    if (by_columns) {
      const int64_t gy = row_blocks(m.rows);
      double *partial = gy == 1 ? lines : s.alloc_n<double>(gy * m.cols);
      const dim3 grid(static_cast<unsigned>((m.cols + kColTile - 1) / kColTile), static_cast<unsigned>(gy));
      const dim3 block(kColTile, kRowLanes);
      column_squares_kernel<T><<<grid, block, 0, ctx.stream>>>(const_view<T>(m), partial);
      S2FT_CUDA_CHECK_LAUNCH("column_squares_kernel");
      if (gy > 1) {
        reduce_partials_kernel<<<grid_for(ctx, m.cols), kThreads, 0, ctx.stream>>>(partial, gy, m.cols, lines);
        S2FT_CUDA_CHECK_LAUNCH("reduce_partials_kernel");
      }
    } else {
      row_squares_kernel<T><<<grid_for(ctx, m.rows * 32), kThreads, 0, ctx.stream>>>(const_view<T>(m), lines);
      S2FT_CUDA_CHECK_LAUNCH("row_squares_kernel");
    }
  });
}

void check_dst(const StatisticsArena &arena, const UnitSums &dst, int64_t n_lines) {
  if (dst.offset < 0 || dst.units < 0 || dst.width < 1 || dst.offset + dst.units > arena.size ||
      dst.units * dst.width != n_lines)
    fail(S2FT_ERR_INTERNAL, "statistics record does not fit its lines (" + std::to_string(n_lines) + " lines, " +
                                std::to_string(dst.units) + " units of " + std::to_string(dst.width) + ")");
}

void finish_units(Context &ctx, StatisticsArena &arena, const UnitSums &dst, const double *lines) {
  if (dst.units == 0) return;
  unit_sums_kernel<<<grid_for(ctx, dst.units), kThreads, 0, ctx.stream>>>(
      lines, dst.units, dst.width, arena.sums.as<double>() + dst.offset, dst.accumulate);
  S2FT_CUDA_CHECK_LAUNCH("unit_sums_kernel");
}

// True when cuBLAS reads the view in place (as cuda::gemm decides): unit
// stride along one dimension and the other spanning a line.
bool blas_readable(const Matrix &m) {
  if ((m.cols <= 1 || m.cs == 1) && (m.rows <= 1 || m.rs >= m.cols)) return true;
  return m.rows > 1 && m.rs == 1 && m.cs >= m.rows;
}

// m as a GEMM operand of dtype `dt`: itself when it already is one, else a
// compact copy (made once, so that the tiles below never repack).
Matrix operand(Scratch &s, const Matrix &m, int32_t dt) {
  return m.dtype == dt && blas_readable(m) ? m : pack(s, m, dt);
}

}  // namespace

std::shared_ptr<StatisticsArena> create_statistics_arena(Context &ctx, int64_t size) {
  DeviceGuard guard(ctx);
  auto a = std::make_shared<StatisticsArena>();
  a->size = size;
  const size_t bytes = static_cast<size_t>(size) * sizeof(double);
  a->sums.resize(ctx.device, bytes);
  if (bytes > 0) S2FT_CUDA_CHECK(cudaMemsetAsync(a->sums.get(), 0, bytes, ctx.stream));
  return a;
}

void add_line_squares(Context &ctx, StatisticsArena &arena, const UnitSums &dst, const Matrix &m) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t n_lines = dst.by_columns ? m.cols : m.rows;
  check_dst(arena, dst, n_lines);
  double *lines = s.alloc_n<double>(n_lines);
  line_squares(s, m, dst.by_columns, lines);
  finish_units(ctx, arena, dst, lines);
}

void add_gradient_squares(Context &ctx, StatisticsArena &arena, const UnitSums &dst, const Matrix &x,
                          const Matrix &dy) {
  DeviceGuard guard(ctx);
  Scratch s(ctx);
  const int64_t out = dy.cols, in = x.cols;
  const int64_t n_lines = dst.by_columns ? in : out;
  check_dst(arena, dst, n_lines);
  if (x.rows != dy.rows) fail(S2FT_ERR_INTERNAL, "x and dy of different lengths");
  // cuBLAS takes two operands of one dtype: mixed dtypes meet in f32.
  const int32_t dt = x.dtype == dy.dtype ? x.dtype : S2FT_F32;
  const Matrix xs = operand(s, x, dt), dys = operand(s, dy, dt);
  // Each dW line is `len` long; a tile holds as many lines as fit in kMaxTileElems.
  const int64_t len = dst.by_columns ? out : in;
  const int64_t tile = std::max<int64_t>(1, std::min<int64_t>(n_lines, kMaxTileElems / std::max<int64_t>(len, 1)));
  void *dw_mem = s.alloc(static_cast<size_t>(tile * len) * sizeof(float));
  double *lines = s.alloc_n<double>(n_lines);
  for (int64_t l0 = 0; l0 < n_lines; l0 += tile) {
    const int64_t n = std::min(tile, n_lines - l0);
    if (dst.by_columns) {
      // dW[:, l0:l0+n] = dy^T x[:, l0:l0+n]   ([out, n])
      const Matrix dw = device_matrix(dw_mem, S2FT_F32, out, n, ctx.device);
      gemm(s, Op::T, dys, Op::N, xs.col_range(l0, n), dw, false);
      line_squares(s, dw, true, lines + l0);
    } else {
      // dW[l0:l0+n, :] = dy[:, l0:l0+n]^T x   ([n, in])
      const Matrix dw = device_matrix(dw_mem, S2FT_F32, n, in, ctx.device);
      gemm(s, Op::T, dys.col_range(l0, n), Op::N, xs, dw, false);
      line_squares(s, dw, false, lines + l0);
    }
  }
  finish_units(ctx, arena, dst, lines);
}

double *arena_sums(StatisticsArena &arena) { return arena.sums.as<double>(); }

void download_sums(Context &ctx, const StatisticsArena &arena, int64_t begin, int64_t count, double *host) {
  if (begin < 0 || count < 0 || begin + count > arena.size)
    fail(S2FT_ERR_INTERNAL, "statistics download out of the arena");
  DeviceGuard guard(ctx);
  download_sync(ctx, host, arena.sums.as<double>() + begin, static_cast<size_t>(count) * sizeof(double));
}

}  // namespace cuda
}  // namespace s2ft
