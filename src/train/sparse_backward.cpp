// The backward of a linear layer trained at unstructured sparse entries
// (LIFT, SpIEL): the gradient at the set's entries only (SDDMM), never the
// dense weight gradient, and dx through the full weight.
#include <cstdio>
#include <string>

#include "common/error.hpp"
#include "context.hpp"
#include "train/sparse_set.hpp"

extern "C" {

// For y = x W^T with the set's entries n = r_n * in + c_n trained:
//   grad[n] = sum_t dy[t, r_n] x[t, c_n]     (dW = dy^T x sampled at the set)
//   dx      = dy W                           [T,out] x [out,in]
// The dense [out, in] dW is never formed: the work is count * T multiply-adds.
S2FT_API s2ft_status s2ft_backward_sparse(s2ft_context *ctx, const s2ft_sparse_set *set, const s2ft_tensor *x,
                                          const s2ft_tensor *dy, const s2ft_tensor *w, s2ft_tensor *dx,
                                          s2ft_tensor *grad, uint32_t flags) {
  return s2ft::guard("s2ft_backward_sparse", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    constexpr uint32_t kKnown = S2FT_ACCUMULATE_DW | S2FT_ACCUMULATE_DX;
    if (flags & ~kKnown) {
      char b[16];
      std::snprintf(b, sizeof b, "%x", flags & ~kKnown);
      fail_arg(std::string("flags has unknown bits 0x") + b);
    }
    const s2ft_sparse_set &s = require_sparse_set(set, "set", c.device);
    Matrix W, DX;
    if (w != nullptr) {  // the set must be the weight's
      W = check_matrix(w, "w", c.device);
      require_sparse_set(set, "set", c.device, W.rows, W.cols, "w");
    }
    const Matrix X = check_matrix(x, "x", c.device);
    const Matrix DY = check_matrix(dy, "dy", c.device);
    const int64_t T = X.rows;
    require_shape(X, "x", T, s.cols());
    require_shape(DY, "dy", T, s.rows());
    require_same_dtype(DY, "dy", X, "x");
    const Matrix G = check_vector(grad, "grad", c.device, s.count());
    if (G.dtype != S2FT_F32)
      fail(S2FT_ERR_DTYPE, std::string("grad must be f32, got ") + dtype_name(G.dtype));
    require_disjoint(G, "grad", X, "x");
    require_disjoint(G, "grad", DY, "dy");
    if (w != nullptr) {
      require_same_dtype(W, "w", X, "x");
      require_disjoint(G, "grad", W, "w");
    }
    if (dx != nullptr) {
      if (w == nullptr) fail_arg("w is NULL but dx is not (dx = dy W needs the weight)");
      DX = check_matrix(dx, "dx", c.device);
      require_shape(DX, "dx", T, s.cols());
      require_same_dtype(DX, "dx", X, "x");
      require_disjoint(DX, "dx", W, "w");
      require_disjoint(DX, "dx", X, "x");
      require_disjoint(DX, "dx", DY, "dy");
      require_disjoint(DX, "dx", G, "grad");
    }
    const bool acc_grad = (flags & S2FT_ACCUMULATE_DW) != 0, acc_dx = (flags & S2FT_ACCUMULATE_DX) != 0;
    run(c, &backend::Ops::backward_sparse, s.data.get(), X, DY, w != nullptr ? &W : nullptr,
        dx != nullptr ? &DX : nullptr, G, acc_dx, acc_grad);
  });
}

}  // extern "C"
