#include "backend/cpu/matmul.hpp"

#include "backend/cpu/gemm.hpp"

namespace s2ft {
namespace cpu {
namespace {

// An f32 operand BLAS can read: the view itself, or a packed copy of it in
// the backend's scratch slot `slot`.
struct Operand {
  const float *data = nullptr;
  int64_t ld = 1;
  Operand(Instance &inst, int slot, const Matrix &m) {
    if (m.blas_ready()) {
      data = m.f32();
      ld = m.ld();
      return;
    }
    float *buf = inst.scratch(slot, static_cast<size_t>(m.rows * m.cols));
    to_f32(m, buf);
    data = buf;
    ld = m.cols > 0 ? m.cols : 1;
  }
};

}  // namespace

void matmul(Instance &inst, Op ta, const Matrix &a, Op tb, const Matrix &b, const Matrix &c, bool accumulate) {
  const int64_t m = c.rows, n = c.cols;
  const int64_t k = ta == Op::N ? a.cols : a.rows;
  if (m == 0 || n == 0) return;
  const Operand A(inst, 0, a), B(inst, 1, b);
  if (c.blas_ready()) {
    gemm_f32(ta, tb, m, n, k, 1.0f, A.data, A.ld, B.data, B.ld, accumulate ? 1.0f : 0.0f, c.f32(), c.ld());
    return;
  }
  float *out = inst.scratch(2, static_cast<size_t>(m * n));
  if (accumulate) to_f32(c, out);
  gemm_f32(ta, tb, m, n, k, 1.0f, A.data, A.ld, B.data, B.ld, accumulate ? 1.0f : 0.0f, out, n);
  from_f32(out, c, false);
}

}  // namespace cpu
}  // namespace s2ft
