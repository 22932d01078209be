#include "train/linear_args.hpp"

#include "common/error.hpp"

namespace s2ft {

LinearArgs check_linear(const s2ft_context &ctx, const s2ft_tensor *x, const s2ft_tensor *w, const s2ft_tensor *y) {
  LinearArgs a;
  a.w = check_matrix(w, "w", ctx.device);
  a.x = check_matrix(x, "x", ctx.device);
  a.y = check_matrix(y, "y", ctx.device);
  const int64_t T = a.x.rows;
  require_shape(a.x, "x", T, a.w.cols);
  require_shape(a.y, "y", T, a.w.rows);
  require_same_dtype(a.x, "x", a.w, "w");
  require_same_dtype(a.y, "y", a.w, "w");
  require_disjoint(a.y, "y", a.x, "x");
  require_disjoint(a.y, "y", a.w, "w");
  return a;
}

}  // namespace s2ft
