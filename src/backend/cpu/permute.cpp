// Co-permutation on the CPU: each weight's lines are copied to a compact
// buffer and written back in the new order, moving raw bytes (any dtype,
// bit-exact; the unit maps are documented at backend::PermuteJob).
#include <cstring>
#include <vector>

#include "backend/cpu/cpu_backend.hpp"

namespace s2ft {
namespace cpu {
namespace {

// Copies the element bytes of a strided view into a compact row-major buffer.
std::vector<char> compact_copy(const Matrix &m) {
  const size_t e = m.elem();
  std::vector<char> buf(static_cast<size_t>(m.rows * m.cols) * e);
  char *dst = buf.data();
  for (int64_t i = 0; i < m.rows; ++i) {
    if (m.cs == 1) {
      std::memcpy(dst, m.at(i, 0), static_cast<size_t>(m.cols) * e);
      dst += static_cast<size_t>(m.cols) * e;
    } else {
      for (int64_t j = 0; j < m.cols; ++j, dst += e) std::memcpy(dst, m.at(i, j), e);
    }
  }
  return buf;
}

void run(const backend::PermuteJob &job, bool forward) {
  const Matrix &m = job.m;
  if (m.empty()) return;
  const std::vector<char> src = compact_copy(m);
  const size_t e = m.elem();
  const int64_t units = static_cast<int64_t>(job.order->size());
  const int64_t w = job.width;
  for (int64_t p = 0; p < units; ++p) {
    const int64_t base = (*job.order)[static_cast<size_t>(p)];
    const int64_t to = (forward ? p : base) * w;    // first destination line
    const int64_t from = (forward ? base : p) * w;  // first source line (in src)
    if (job.by_columns) {
      for (int64_t i = 0; i < m.rows; ++i) {
        const char *s = src.data() + (static_cast<size_t>(i * m.cols + from)) * e;
        if (m.cs == 1) {
          std::memcpy(m.at(i, to), s, static_cast<size_t>(w) * e);
        } else {
          for (int64_t j = 0; j < w; ++j) std::memcpy(m.at(i, to + j), s + static_cast<size_t>(j) * e, e);
        }
      }
    } else {
      for (int64_t j = 0; j < w; ++j) {
        const char *s = src.data() + static_cast<size_t>((from + j) * m.cols) * e;
        if (m.cs == 1) {
          std::memcpy(m.at(to + j, 0), s, static_cast<size_t>(m.cols) * e);
        } else {
          for (int64_t c = 0; c < m.cols; ++c) std::memcpy(m.at(to + j, c), s + static_cast<size_t>(c) * e, e);
        }
      }
    }
  }
}

}  // namespace

void permute(backend::Instance *, const std::vector<backend::PermuteJob> &jobs, bool forward) {
  for (const backend::PermuteJob &j : jobs) run(j, forward);
}

}  // namespace cpu
}  // namespace s2ft
