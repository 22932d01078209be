package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_model_shape;

/** Calibration statistics that score units for selection (s2ft_statistics). */
public final class Statistics extends NativeHandle {
  public Statistics(Context ctx, ModelShape shape) {
    super(create(ctx, shape));
  }

  private static long create(Context ctx, ModelShape shape) {
    s2ft_model_shape s = shape.toNative();
    try {
      return S2ftNative.s2ft_statistics_create(ctx.ptr(), s);
    } finally {
      s.delete();
    }
  }

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_statistics_destroy(p);
  }

  public void addWeight(int layer, int target, Tensor weight) {
    S2ftNative.s2ft_statistics_add_weight(ptr(), layer, target, weight);
  }

  public void addActivation(int layer, int target, Tensor x) {
    S2ftNative.s2ft_statistics_add_activation(ptr(), layer, target, x);
  }

  public void addGradient(int layer, int target, Tensor x, Tensor dy) {
    S2ftNative.s2ft_statistics_add_gradient(ptr(), layer, target, x, dy);
  }

  /**
   * Records LIFT's principal-weight score of target in layer for SelectOptions.STRATEGY_PRINCIPAL:
   * each unit's sum of squares of its lines in the rank-{@code rank} truncated SVD of the base-order
   * weight (computed in double on the host; rank in [1, min(rows, cols)]). Replaces an earlier
   * principal record of (layer, target). ERR_UNSUPPORTED without LAPACK; on CUDA statistics the SVD
   * runs on the device (synchronises).
   */
  public void addPrincipal(int layer, int target, Tensor weight, int rank) {
    S2ftNative.s2ft_statistics_add_principal(ptr(), layer, target, weight, rank);
  }

  /** Per-unit sums of squares of one statistic (kind: S2ft.STAT_*). */
  public double[] get(int layer, int target, int kind) {
    long n = S2ftNative.s2ft_statistics_get(ptr(), layer, target, kind, null);
    double[] out = new double[(int) n];
    S2ftNative.s2ft_statistics_get(ptr(), layer, target, kind, out);
    return out;
  }
}
