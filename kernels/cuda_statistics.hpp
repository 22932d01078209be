// Calibration statistics on a CUDA context (plain C++, no CUDA types): one device array of doubles per statistics object holds every
// record's per-unit sums; kernels add to it without synchronising, and the
// host copies are refreshed by one synchronising download when read.
// Implemented in cuda_statistics.cu; the definitions are in src/select/statistics.cpp.
#pragma once

#include <cstdint>
#include <memory>

#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "cuda_context.hpp"

namespace s2ft {
namespace cuda {

// `size` doubles of device memory, zeroed.
struct StatisticsArena;
// Allocates the arena (may synchronise: a create call) and queues the zeroing.
std::shared_ptr<StatisticsArena> create_statistics_arena(Context &ctx, int64_t size);

using backend::UnitSums;

// sums[u] (+)= sum of m[i, j]^2 over the lines of unit u (m: a checked device
// view with units * width lines). Queued, in double.
void add_line_squares(Context &ctx, StatisticsArena &arena, const UnitSums &dst, const Matrix &m);

// The same over dW = dy^T x ([out, in], x [T, in], dy [T, out]; checked
// device views, any dtypes), formed tile by tile in f32 scratch by cuBLAS.
void add_gradient_squares(Context &ctx, StatisticsArena &arena, const UnitSums &dst, const Matrix &x,
                          const Matrix &dy);

// The arena's device array (for operations that add into it, e.g. SpIEL's
// candidate sums).
double *arena_sums(StatisticsArena &arena);

// Copies arena[begin, begin + count) to host (synchronising: waits for the
// work queued on ctx's stream).
void download_sums(Context &ctx, const StatisticsArena &arena, int64_t begin, int64_t count, double *host);

}  // namespace cuda
}  // namespace s2ft
