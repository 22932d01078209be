// S2FT's partial forward and backward on the CPU (the math is in
// src/train/partial.cpp, which checks the arguments).
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"
#include "train/slice.hpp"

namespace s2ft {
namespace cpu {
namespace {

// Copies x[:, S] (columns) or all of x (rows) into x_saved.
void save_input(const Matrix &x, const Lines &lines, const Matrix &x_saved) {
  if (lines.axis == S2FT_AXIS_ROWS) {
    for (int64_t i = 0; i < x.rows; ++i)
      for (int64_t j = 0; j < x.cols; ++j) x_saved.set(i, j, x.get(i, j));
    return;
  }
  if (x.dtype == x_saved.dtype) {  // move bytes: the saved slice is bit-identical to x's
    const size_t es = x.elem();
    for (int64_t i = 0; i < x.rows; ++i)
      for (int64_t j = 0; j < lines.count; ++j) std::memcpy(x_saved.at(i, j), x.at(i, lines.line(j)), es);
    return;
  }
  for (int64_t i = 0; i < x.rows; ++i)
    for (int64_t j = 0; j < lines.count; ++j) x_saved.set(i, j, x.get(i, lines.line(j)));
}

}  // namespace

void forward_partial(backend::Instance *inst, const Lines &lines, const Matrix &x, const Matrix &w, const Matrix &y,
                     const Matrix *x_saved) {
  matmul(instance(inst), Op::N, x, Op::T, w, y, false);
  if (x_saved != nullptr) save_input(x, lines, *x_saved);
}

void backward_partial(backend::Instance *inst, const Lines &lines, const Matrix &w, const Matrix &x_in,
                      const Matrix &dy, const Matrix *dx, const Matrix &dw, bool accumulate_dx, bool accumulate_dw) {
  Instance &c = instance(inst);
  const int64_t T = dy.rows, k = lines.count;
  if (dx != nullptr) matmul(c, Op::N, dy, Op::N, w, *dx, accumulate_dx);
  if (lines.axis == S2FT_AXIS_COLUMNS) {
    matmul(c, Op::T, dy, Op::N, x_in, dw, accumulate_dw);
  } else if (lines.contiguous()) {
    matmul(c, Op::T, dy.col_range(lines.begin, k), Op::N, x_in, dw, accumulate_dw);
  } else {
    std::vector<float> dys = gather_lines(dy, lines, S2FT_AXIS_COLUMNS);
    matmul(c, Op::T, f32_view(dys.data(), T, k), Op::N, x_in, dw, accumulate_dw);
  }
}

}  // namespace cpu
}  // namespace s2ft
