// S2FT's forward with slice saving and its partial back-propagation.
#include <cstdio>
#include <string>

#include "common/error.hpp"
#include "context.hpp"
#include "train/linear_args.hpp"
#include "train/slice.hpp"

extern "C" {

// Forward: y = x W^T (one GEMM, [T,in] x [in,out]); for a column slice also
// x_S = x[:, S], the only activation the column-trained weight's backward needs.
S2FT_API s2ft_status s2ft_forward_partial(s2ft_context *ctx, const s2ft_slice *slice, const s2ft_tensor *x,
                                          const s2ft_tensor *w, s2ft_tensor *y, s2ft_tensor *x_saved) {
  return s2ft::guard("s2ft_forward_partial", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    const LinearArgs a = check_linear(c, x, w, y);
    const Matrix &W = a.w, &X = a.x, &Y = a.y;
    const Lines lines = check_slice(slice, "slice", W.rows, W.cols);
    const int64_t T = X.rows;
    Matrix S;
    if (x_saved != nullptr) {
      S = check_matrix(x_saved, "x_saved", c.device);
      require_shape(S, "x_saved", T, lines.axis == S2FT_AXIS_COLUMNS ? lines.count : W.cols);
      require_same_dtype(S, "x_saved", W, "w");
      require_disjoint(S, "x_saved", X, "x");
      require_disjoint(S, "x_saved", W, "w");
      require_disjoint(S, "x_saved", Y, "y");
    }
    run(c, &backend::Ops::forward_partial, lines, X, W, Y, x_saved != nullptr ? &S : nullptr);
  });
}

// Backward of y = x W^T for a trained slice S of W:
//   dx  = dy W                  [T,out] x [out,in]   (full: earlier layers need it)
//   columns: dW_S = dy^T x_S    [out,T] x [T,k]      (x_S saved by the forward)
//   rows:    dW_S = dy_S^T x    [k,T]   x [T,in]     (dy_S = dy[:, S])
// The full dW = dy^T x ([out,in]) is never formed: the weight-gradient GEMM
// shrinks by k/in (columns) or k/out (rows).
S2FT_API s2ft_status s2ft_backward_partial(s2ft_context *ctx, const s2ft_slice *slice, const s2ft_tensor *w,
                                           const s2ft_tensor *x_in, const s2ft_tensor *dy, s2ft_tensor *dx,
                                           s2ft_tensor *dw_slice, uint32_t flags) {
  return s2ft::guard("s2ft_backward_partial", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    if (flags & ~(S2FT_ACCUMULATE_DW | S2FT_ACCUMULATE_DX))
      fail_arg("flags has unknown bits 0x" + [&] {
        char b[16];
        std::snprintf(b, sizeof b, "%x", flags & ~(S2FT_ACCUMULATE_DW | S2FT_ACCUMULATE_DX));
        return std::string(b);
      }());
    const Matrix W = check_matrix(w, "w", c.device);
    const Lines lines = check_slice(slice, "slice", W.rows, W.cols);
    const Matrix X = check_matrix(x_in, "x_in", c.device);
    const Matrix DY = check_matrix(dy, "dy", c.device);
    const Matrix DW = check_matrix(dw_slice, "dw_slice", c.device);
    const int64_t T = DY.rows, k = lines.count;
    const bool columns = lines.axis == S2FT_AXIS_COLUMNS;
    require_shape(DY, "dy", T, W.rows);
    require_shape(X, "x_in", T, columns ? k : W.cols);
    if (columns)
      require_shape(DW, "dw_slice", W.rows, k);
    else
      require_shape(DW, "dw_slice", k, W.cols);
    require_same_dtype(X, "x_in", W, "w");
    require_same_dtype(DY, "dy", W, "w");
    if (DW.dtype != S2FT_F32 && DW.dtype != W.dtype)
      fail(S2FT_ERR_DTYPE, std::string("dw_slice must be f32 or ") + dtype_name(W.dtype) + " (the dtype of w), got " +
                               dtype_name(DW.dtype));
    require_disjoint(DW, "dw_slice", W, "w");
    require_disjoint(DW, "dw_slice", X, "x_in");
    require_disjoint(DW, "dw_slice", DY, "dy");
    Matrix DX;
    if (dx != nullptr) {
      DX = check_matrix(dx, "dx", c.device);
      require_shape(DX, "dx", T, W.cols);
      require_same_dtype(DX, "dx", W, "w");
      require_disjoint(DX, "dx", W, "w");
      require_disjoint(DX, "dx", X, "x_in");
      require_disjoint(DX, "dx", DY, "dy");
      require_disjoint(DX, "dx", DW, "dw_slice");
    }
    const bool acc_dw = (flags & S2FT_ACCUMULATE_DW) != 0, acc_dx = (flags & S2FT_ACCUMULATE_DX) != 0;
    run(c, &backend::Ops::backward_partial, lines, W, X, DY, dx != nullptr ? &DX : nullptr, DW, acc_dx, acc_dw);
  });
}

}  // extern "C"
