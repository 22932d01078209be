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
// The backend moves raw bytes, never converting them, so any dtype works
// and INVERSE restores the weights bit-exactly, on every backend alike.
#include <cstring>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/tensor.hpp"
#include "context.hpp"
#include "select/selection.hpp"

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
    std::vector<s2ft::backend::PermuteJob> jobs;
    for (const Spec &sp : specs) {
      if (sp.t == nullptr) continue;
      const s2ft::Matrix m = s2ft::check_matrix(sp.t, sp.name, c.device);
      s2ft::require_shape(m, sp.name, sp.rows, sp.cols);
      jobs.push_back({m, sp.by_columns, &sp.perm->order, sp.width});
    }
    s2ft::run(c, &s2ft::backend::Ops::permute, jobs, direction == S2FT_PERMUTE_FORWARD);
  });
}

}  // extern "C"
