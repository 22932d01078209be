#include "backend/matmul.hpp"

#include <vector>

namespace s2ft {
namespace {

// An f32 operand BLAS can read: the view itself, or a packed copy of it.
struct Operand {
  std::vector<float> packed;
  const float *data = nullptr;
  int64_t ld = 1;
  Operand(const Matrix &m) {
    if (m.blas_ready()) {
      data = m.f32();
      ld = m.ld();
    } else {
      packed = to_f32(m);
      data = packed.data();
      ld = m.cols > 0 ? m.cols : 1;
    }
  }
};

}  // namespace

void matmul(Backend &backend, Op ta, const Matrix &a, Op tb, const Matrix &b, const Matrix &c, bool accumulate) {
  const int64_t m = c.rows, n = c.cols;
  const int64_t k = ta == Op::N ? a.cols : a.rows;
  if (m == 0 || n == 0) return;
  const Operand A(a), B(b);
  if (c.blas_ready()) {
    backend.gemm_f32(ta, tb, m, n, k, 1.0f, A.data, A.ld, B.data, B.ld, accumulate ? 1.0f : 0.0f, c.f32(), c.ld());
    return;
  }
  std::vector<float> out = accumulate ? to_f32(c) : std::vector<float>(static_cast<size_t>(m * n));
  backend.gemm_f32(ta, tb, m, n, k, 1.0f, A.data, A.ld, B.data, B.ld, accumulate ? 1.0f : 0.0f, out.data(), n);
  from_f32(out.data(), c, false);
}

}  // namespace s2ft
