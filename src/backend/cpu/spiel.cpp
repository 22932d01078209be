// SpIEL's backend operations on the CPU (s2ft_spiel_*; the arguments are
// checked in src/train/spiel.cpp): the one dense weight gradient of an
// accumulation window, and reading and writing a weight's elements at flat
// indices (base values, resets to base). The candidate sums are in
// sparse_backward.cpp, next to the SDDMM they use.
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"

namespace s2ft {
namespace cpu {

// dW = dy^T x straight into the caller's host buffer ([out, in] f32).
void dense_gradient(backend::Instance *inst, const Matrix &x, const Matrix &dy, float *host) {
  matmul(instance(inst), Op::T, dy, Op::N, x, f32_view(host, dy.cols, x.cols), false);
}

void read_entries(backend::Instance *, const Matrix &w, const std::vector<int64_t> &flat, void *host) {
  const size_t e = w.elem();
  char *out = static_cast<char *>(host);
  for (size_t i = 0; i < flat.size(); ++i) std::memcpy(out + i * e, w.at(flat[i] / w.cols, flat[i] % w.cols), e);
}

void write_entries(backend::Instance *, const Matrix &w, const std::vector<int64_t> &flat, const void *host) {
  const size_t e = w.elem();
  const char *in = static_cast<const char *>(host);
  for (size_t i = 0; i < flat.size(); ++i) std::memcpy(w.at(flat[i] / w.cols, flat[i] % w.cols), in + i * e, e);
}

}  // namespace cpu
}  // namespace s2ft
