// The mixed-adapter forward on the CPU (the math and the checks are in
// src/adapter/forward_mixed.cpp): the shared base GEMM, then one GEMM per
// group of rows that use one adapter, and a loop over the sparse entries
// (as CSR, f32 sums, one rounding into y) for adapters that have some,
// rows split over the context's threads.
#include <algorithm>
#include <memory>
#include <vector>

#include "adapter/adapter.hpp"
#include "adapter/csr.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"
#include "backend/cpu/parallel.hpp"

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

// y_R += scale * x_R D^T for the rows [r0, r0 + n), D the CSR of an
// adapter's sparse entries over w's [out, in].
void add_sparse(Instance &inst, const HostCsr &d, float scale, const Matrix &x, const Matrix &y, int64_t r0,
                int64_t n) {
  const Matrix xr = x.row_range(r0, n), yr = y.row_range(r0, n);
  const std::vector<float> xf = to_f32(xr);  // [n, in]
  const int threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(inst.threads, n)));
  run_parallel(threads, [&](int part) {
    for (int64_t t = n * part / threads; t < n * (part + 1) / threads; ++t) {
      const float *xt = xf.data() + static_cast<size_t>(t * d.cols);
      for (int64_t r = 0; r < d.rows; ++r) {
        const int64_t b = d.offsets[static_cast<size_t>(r)], e = d.offsets[static_cast<size_t>(r + 1)];
        if (b == e) continue;
        float acc = 0.0f;
        for (int64_t i = b; i < e; ++i)
          acc += d.values[static_cast<size_t>(i)] * xt[static_cast<size_t>(d.indices[static_cast<size_t>(i)])];
        yr.set(t, r, yr.get(t, r) + scale * acc);
      }
    }
  });
}

}  // namespace

void forward_mixed(backend::Instance *inst, const backend::MixedCall &call, const Matrix &x, const Matrix &w,
                   const std::vector<backend::MixedAdapter> &adapters, const std::vector<backend::MixedGroup> &groups,
                   const Matrix &y) {
  Instance &c = instance(inst);
  matmul(c, Op::N, x, Op::T, w, y, false);
  std::vector<std::unique_ptr<HostCsr>> csr(adapters.size());  // the sparse entries' CSR, built on first use
  for (const backend::MixedGroup &g : groups) {
    const backend::MixedAdapter &u = adapters[static_cast<size_t>(g.adapter)];
    if (u.entry != nullptr) add_correction(c, u, call.columns, x, y, g.row, g.rows);
    if (u.sparse == nullptr) continue;
    std::unique_ptr<HostCsr> &d = csr[static_cast<size_t>(g.adapter)];
    if (!d) d = std::make_unique<HostCsr>(sparse_csr(w.rows, w.cols, *u.sparse_positions, u.sparse->delta));
    add_sparse(c, *d, u.scale, x, y, g.row, g.rows);
  }
}

}  // namespace cpu
}  // namespace s2ft
