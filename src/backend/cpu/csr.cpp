// Sparse deltas on the CPU: the CSR arrays stay in host memory, and the
// forward is a plain loop (the reference the CUDA backend is tested against).
//   y[t, r] += scale * sum_{e in row r} values[e] * x[t, indices[e]]
#include <memory>
#include <utility>
#include <vector>

#include "adapter/csr.hpp"
#include "backend/cpu/cpu_backend.hpp"

namespace s2ft {
namespace cpu {
namespace {

// y += scale * x D^T on the host, row by row of x: f32 sums, one rounding.
void add_product(const HostCsr &d, float scale, const Matrix &x, const Matrix &y) {
  const int64_t T = x.rows;
  if (T == 0 || d.rows == 0) return;
  const std::vector<float> xf = to_f32(x);  // [T, cols]
  for (int64_t t = 0; t < T; ++t) {
    const float *xt = xf.data() + static_cast<size_t>(t * d.cols);
    for (int64_t r = 0; r < d.rows; ++r) {
      const int64_t b = d.offsets[static_cast<size_t>(r)], e = d.offsets[static_cast<size_t>(r + 1)];
      if (b == e) continue;  // an empty row of D leaves y as it is
      float acc = 0.0f;
      for (int64_t i = b; i < e; ++i)
        acc += d.values[static_cast<size_t>(i)] * xt[static_cast<size_t>(d.indices[static_cast<size_t>(i)])];
      y.set(t, r, y.get(t, r) + scale * acc);
    }
  }
}

}  // namespace

void csr_create(backend::Instance *, HostCsr *csr, backend::Object *out) {
  *out = std::make_shared<HostCsr>(std::move(*csr));
}

void csr_forward(backend::Instance *, const void *csr, float scale, const Matrix &x, const Matrix &y) {
  add_product(*static_cast<const HostCsr *>(csr), scale, x, y);
}

}  // namespace cpu
}  // namespace s2ft
