// Calibration statistics on the CPU: one host array of doubles per
// statistics object holds every record's per-unit sums of squares.
#include <algorithm>
#include <memory>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"

namespace s2ft {
namespace cpu {
namespace {

std::vector<double> &sums_of(void *sums) { return *static_cast<std::vector<double> *>(sums); }

// sums[u] += sum of m[i, j]^2 over the lines of unit u, where a unit is
// dst.width consecutive columns (by_columns) or rows; zeroed first unless
// dst.accumulate.
void add_squares(std::vector<double> &all, const backend::UnitSums &dst, const Matrix &m) {
  double *sums = all.data() + dst.offset;
  if (!dst.accumulate) std::fill(sums, sums + dst.units, 0.0);
  for (int64_t i = 0; i < m.rows; ++i)
    for (int64_t j = 0; j < m.cols; ++j) {
      const double v = m.get(i, j);
      sums[(dst.by_columns ? j : i) / dst.width] += v * v;
    }
}

}  // namespace

void statistics_create(backend::Instance *, int64_t size, backend::Object *out) {
  *out = std::make_shared<std::vector<double>>(static_cast<size_t>(size), 0.0);
}

void statistics_add_lines(backend::Instance *, void *sums, const backend::UnitSums &dst, const Matrix &m) {
  add_squares(sums_of(sums), dst, m);
}

// dW = dy^T x ([out, in]) in f32 scratch, then its squares by unit.
void statistics_add_gradient(backend::Instance *inst, void *sums, const backend::UnitSums &dst, const Matrix &x,
                             const Matrix &dy) {
  const int64_t out = dy.cols, in = x.cols;
  std::vector<float> scratch(static_cast<size_t>(out * in));
  const Matrix dw = f32_view(scratch.data(), out, in);
  matmul(instance(inst), Op::T, dy, Op::N, x, dw, false);
  add_squares(sums_of(sums), dst, dw);
}

void statistics_read(backend::Instance *, const void *sums, int64_t begin, int64_t count, double *host) {
  const std::vector<double> &all = *static_cast<const std::vector<double> *>(sums);
  std::copy_n(all.begin() + begin, count, host);
}

}  // namespace cpu
}  // namespace s2ft
