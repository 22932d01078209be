// The mixed-adapter forward on the CPU (the math and the checks are in
// src/adapter/forward_mixed.cpp): the shared base GEMM, then one GEMM per
// group of rows that use one adapter.
#include <vector>

#include "adapter/adapter.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"

namespace s2ft {
namespace cpu {
namespace {

// Adds one adapter's correction to the rows [r0, r0 + n) of y.
void add_correction(Instance &inst, const backend::MixedAdapter &u, bool columns, const Matrix &x, const Matrix &y,
                    int64_t r0, int64_t n) {
  const std::vector<int64_t> &positions = *u.positions;
  const int64_t k = static_cast<int64_t>(positions.size());
  // f32_view takes a mutable pointer; the delta is only read.
  float *d = const_cast<float *>(u.entry->delta.data());
  const Matrix xr = x.row_range(r0, n), yr = y.row_range(r0, n);
  if (columns) {
    // scale * X_R[:, S] gathered to f32 [n, k]; delta is [out, k].
    std::vector<float> xs(static_cast<size_t>(n * k));
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < k; ++j)
        xs[static_cast<size_t>(i * k + j)] = u.scale * xr.get(i, positions[static_cast<size_t>(j)]);
    matmul(inst, Op::N, f32_view(xs.data(), n, k), Op::T, f32_view(d, y.cols, k), yr, true);
  } else {
    // P = X_R delta^T, delta is [k, in]; then scatter into the k output columns.
    std::vector<float> p(static_cast<size_t>(n * k));
    matmul(inst, Op::N, xr, Op::T, f32_view(d, k, x.cols), f32_view(p.data(), n, k), false);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < k; ++j) {
        const int64_t c = positions[static_cast<size_t>(j)];
        yr.set(i, c, yr.get(i, c) + u.scale * p[static_cast<size_t>(i * k + j)]);
      }
  }
}

}  // namespace

void forward_mixed(backend::Instance *inst, const backend::MixedCall &call, const Matrix &x, const Matrix &w,
                   const std::vector<backend::MixedAdapter> &adapters, const std::vector<backend::MixedGroup> &groups,
                   const Matrix &y) {
  Instance &c = instance(inst);
  matmul(c, Op::N, x, Op::T, w, y, false);
  for (const backend::MixedGroup &g : groups)
    add_correction(c, adapters[static_cast<size_t>(g.adapter)], call.columns, x, y, g.row, g.rows);
}

}  // namespace cpu
}  // namespace s2ft
