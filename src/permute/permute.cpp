// s2ft_permute: co-permutes one layer's weights in place.
//
// With order[p] = base unit at position p (the selection's permutation) and
// a unit spanning `width` consecutive lines (head_dim for heads, 1 for
// channels):
//   FORWARD  new line p*width + j  <- old line order[p]*width + j
//   INVERSE  new line order[p]*width + j <- old line p*width + j
// q rows (query heads), k and v rows (KV heads), o columns (query heads),
// gate and up rows and down columns (channels). Attention, RoPE and SwiGLU
// act per head / per channel, and the head order moves whole KV groups, so
// the block computes the same function afterwards.
//
// The tensor's lines are first copied to a compact scratch buffer and then
// written back in the new order. Raw bytes are moved, never converted, so
// any dtype works and INVERSE restores the weights bit-exactly. On a CUDA
// context the same happens on the device (kernels/cuda_permute.cu), queued
// on the context's stream, with the same result byte for byte.
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/tensor.hpp"
#include "context.hpp"
#include "cuda_permute.hpp"
#include "select/selection.hpp"

namespace s2ft {
namespace {

struct Job {
  Matrix m;
  bool by_columns;
  const Permutation *perm;
  int64_t width;
};

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

void run(const Job &job, bool forward) {
  const Matrix &m = job.m;
  if (m.empty()) return;
  const std::vector<char> src = compact_copy(m);
  const size_t e = m.elem();
  const int64_t units = static_cast<int64_t>(job.perm->order.size());
  const int64_t w = job.width;
  for (int64_t p = 0; p < units; ++p) {
    const int64_t base = job.perm->order[static_cast<size_t>(p)];
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
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_permute(s2ft_context *ctx, const s2ft_selection *sel, int32_t layer,
                                  const s2ft_layer_weights *weights, int32_t direction) {
  return s2ft::guard("s2ft_permute", [&] {
    s2ft_context &c = s2ft::require_context(ctx);
    const s2ft_selection &s = s2ft::require_selection(sel);
    s2ft::require_not_null(weights, "weights");
    s2ft::check_layer(s.shape, layer);
    if (direction != S2FT_PERMUTE_FORWARD && direction != S2FT_PERMUTE_INVERSE)
      s2ft::fail_arg("direction " + std::to_string(direction) +
                     " is not S2FT_PERMUTE_FORWARD (0) or S2FT_PERMUTE_INVERSE (1)");
    const s2ft_model_shape &sh = s.shape;
    const int64_t hd = sh.head_dim;
    const int64_t q_rows = static_cast<int64_t>(sh.n_heads) * hd;
    const int64_t kv_rows = static_cast<int64_t>(sh.n_kv_heads) * hd;
    const s2ft::LayerPermutation &p = s.perms[static_cast<size_t>(layer)];
    struct Spec {
      s2ft_tensor *t;
      const char *name;
      int64_t rows, cols;
      bool by_columns;
      const s2ft::Permutation *perm;
      int64_t width;
    };
    const Spec specs[] = {
        {weights->q, "weights->q", q_rows, sh.d_model, false, &p.heads, hd},
        {weights->k, "weights->k", kv_rows, sh.d_model, false, &p.kv_heads, hd},
        {weights->v, "weights->v", kv_rows, sh.d_model, false, &p.kv_heads, hd},
        {weights->o, "weights->o", sh.d_model, q_rows, true, &p.heads, hd},
        {weights->gate, "weights->gate", sh.d_ff, sh.d_model, false, &p.channels, 1},
        {weights->up, "weights->up", sh.d_ff, sh.d_model, false, &p.channels, 1},
        {weights->down, "weights->down", sh.d_model, sh.d_ff, true, &p.channels, 1},
    };
    // Validate everything before moving anything, so a bad argument leaves
    // all weights untouched.
    std::vector<s2ft::Job> jobs;
    for (const Spec &sp : specs) {
      if (sp.t == nullptr) continue;
      const s2ft::Matrix m = s2ft::check_matrix(sp.t, sp.name, c.device);
      s2ft::require_shape(m, sp.name, sp.rows, sp.cols);
      jobs.push_back({m, sp.by_columns, sp.perm, sp.width});
    }
    const bool forward = direction == S2FT_PERMUTE_FORWARD;
#ifdef S2FT_WITH_CUDA
    if (c.on_cuda()) {
      std::vector<s2ft::cuda::PermuteJob> device_jobs;
      for (const s2ft::Job &j : jobs) device_jobs.push_back({j.m, j.by_columns, &j.perm->order, j.width});
      s2ft::cuda::permute(*c.cuda, device_jobs, forward);
      return;
    }
#endif
    for (const s2ft::Job &j : jobs) s2ft::run(j, forward);
  });
}

}  // extern "C"
