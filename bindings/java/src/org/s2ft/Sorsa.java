package org.s2ft;

import org.s2ft.swig.S2ftNative;

/**
 * SORSA (Cao, 2024): a frozen weight W [out, in] split by its thin SVD into a frozen residual and
 * trained f32 factors u [out, r], s [r] (or [1, r]) and vt [r, in], W = W_res + u diag(s) vt; the
 * linear layer's forward and backward through the factors (the [out, in] product is never formed),
 * and the orthonormal regularizer that keeps u and vt orthonormal. Train the factors with an
 * {@link Optimizer} (each a parameter with a slice over all its columns).
 */
public final class Sorsa {
  private Sorsa() {}

  /**
   * Splits w (f32, f16 or bf16) in place: its top rank singular triplets written to u, s and vt
   * (f32; singular values descending, signs fixed) and w overwritten by the residual w - u diag(s) vt,
   * rounded once to its dtype. rank is in [1, min(out, in)]. On failure w is unchanged. On a CUDA
   * context the SVD runs on the device (cuSOLVER, in double) and the call synchronises.
   */
  public static void init(Context ctx, Tensor w, int rank, Tensor u, Tensor s, Tensor vt) {
    S2ftNative.s2ft_sorsa_init(ctx.ptr(), w, rank, u, s, vt);
  }

  /**
   * y = x wRes^T + ((x vt^T) * s) u^T for x [T, in], wRes [out, in] and y [T, out] (one dtype) and the
   * f32 factors; hSaved (f32 [T, r], may be null) receives h = x vt^T for {@link #backward}.
   */
  public static void forward(Context ctx, Tensor x, Tensor wRes, Tensor u, Tensor s, Tensor vt, Tensor y,
      Tensor hSaved) {
    S2ftNative.s2ft_sorsa_forward(ctx.ptr(), x, wRes, u, s, vt, y, hSaved);
  }

  /**
   * Backward of {@link #forward} for dy [T, out]: du = dy^T (h * s), ds = sum_t (dy u) * h, dvt = ((dy
   * u) * s)^T x (f32, shaped as u, s, vt) and, when dx is not null, dx = dy wRes + ((dy u) * s) vt.
   * hSaved is the forward's h (null: recomputed). flags: S2ft.ACCUMULATE_DW adds into du, ds and dvt,
   * S2ft.ACCUMULATE_DX into dx.
   */
  public static void backward(Context ctx, Tensor x, Tensor wRes, Tensor u, Tensor s, Tensor vt, Tensor hSaved,
      Tensor dy, Tensor dx, Tensor du, Tensor ds, Tensor dvt, int flags) {
    S2ftNative.s2ft_sorsa_backward(ctx.ptr(), x, wRes, u, s, vt, hSaved, dy, dx, du, ds, dvt, flags & 0xffffffffL);
  }

  /**
   * SORSA's orthonormal regularizer on u [out, r] and vt [r, in] (f32): returns gamma * (||u^T u -
   * I||_F^2 + ||vt vt^T - I||_F^2) and writes its gradients into du and dvt when not null. flags:
   * S2ft.SORSA_UNSQUARED (plain norms, as the released code), S2ft.ACCUMULATE_DW (add into du and
   * dvt). gamma is finite and &gt;= 0. On a CUDA context this synchronises.
   */
  public static double regularizer(Context ctx, Tensor u, Tensor vt, double gamma, Tensor du, Tensor dvt,
      int flags) {
    double[] value = new double[1];
    S2ftNative.s2ft_sorsa_regularizer(ctx.ptr(), u, vt, gamma, value, du, dvt, flags & 0xffffffffL);
    return value[0];
  }

  /**
   * The paper's decoupled update with its own rate: u -= rate dR/du and vt -= rate dR/dvt in place
   * (gradients at the factors before the step); returns rate * R before the step. flags:
   * S2ft.SORSA_UNSQUARED or 0. Call it after the backward and before the optimizer step.
   */
  public static double regularizerStep(Context ctx, Tensor u, Tensor vt, double rate, int flags) {
    double[] value = new double[1];
    S2ftNative.s2ft_sorsa_regularizer_step(ctx.ptr(), u, vt, rate, value, flags & 0xffffffffL);
    return value[0];
  }
}
