package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_lift_options;

/**
 * The trained entries of one [rows, cols] weight for unstructured sparse fine-tuning (LIFT, SpIEL):
 * strictly ascending flat indices r * cols + c, held on a context's device (s2ft_sparse_set). Close
 * it before the context it was made with.
 */
public final class SparseSet extends NativeHandle {
  /** LIFT methods: a full SVD or a randomized one. */
  public static final int LIFT_EXACT = 0, LIFT_RANDOMIZED = 1;

  private SparseSet(long p) {
    super(p);
  }

  /** A set from flat indices (copied): strictly ascending, in [0, rows * cols). */
  public static SparseSet create(Context ctx, long rows, long cols, long[] indices) {
    if (indices == null) throw new NullPointerException("indices");
    return new SparseSet(S2ftNative.s2ft_sparse_set_create(ctx.ptr(), rows, cols, indices));
  }

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_sparse_set_destroy(p);
  }

  /** The number of entries. */
  public long count() {
    long[] n = new long[1];
    S2ftNative.s2ft_sparse_set_count(ptr(), n);
    return n[0];
  }

  /** {rows, cols} of the weight the set was made for. */
  public long[] shape() {
    long[] rows = new long[1], cols = new long[1];
    S2ftNative.s2ft_sparse_set_shape(ptr(), rows, cols);
    return new long[] {rows[0], cols[0]};
  }

  /** The flat indices, ascending. */
  public long[] indices() {
    long[] out = new long[Math.toIntExact(count())];
    S2ftNative.s2ft_sparse_set_indices(ptr(), out);
    return out;
  }

  /**
   * Backward of y = x W^T for a weight trained at this set's entries: grad[n] = sum_t dy[t, r_n]
   * x[t, c_n] (f32 [count]; the dense dW is never formed) and, when dx is not null, dx = dy W (w is
   * needed then). flags: S2ft.ACCUMULATE_DW adds into grad, S2ft.ACCUMULATE_DX into dx.
   */
  public void backward(Context ctx, Tensor x, Tensor dy, Tensor w, Tensor dx, Tensor grad, int flags) {
    S2ftNative.s2ft_backward_sparse(ctx.ptr(), ptr(), x, dy, w, dx, grad, flags);
  }

  /**
   * LIFT's principal weights: the flat indices (ascending) of the count entries (or, count 0, the
   * density * size entries) of largest (largest true) or smallest magnitude in w's rank-r
   * approximation, by the exact or the randomized (seeded) method.
   */
  public static long[] liftSelect(Context ctx, Tensor w, int rank, long count, double density, boolean largest,
      int method, long seed) {
    s2ft_lift_options o = liftOptions(rank, count, density, largest, method, seed);
    try {
      long n = S2ftNative.s2ft_lift_select(ctx.ptr(), w, o, null);
      long[] out = new long[Math.toIntExact(n)];
      S2ftNative.s2ft_lift_select(ctx.ptr(), w, o, out);
      return out;
    } finally {
      o.delete();
    }
  }

  /** What {@link #liftRefresh} returns: the new set (the caller's to close) and how many of its entries stayed. */
  public static final class Refresh {
    /** The selected entries, on the context's device; rebuild the backward calls with it. */
    public final SparseSet set;
    /** The number of the selected entries that were in the parameter before. */
    public final long kept;

    Refresh(SparseSet set, long kept) {
      this.set = set;
      this.kept = kept;
    }
  }

  /**
   * LIFT's mask refresh: selects the principal weights of the current weight of sparse parameter
   * paramIndex of opt (as {@link #liftSelect} with these options) and moves the parameter to them (as
   * {@link Optimizer#sparseReindex}): entries in both sets keep their optimizer state, new ones start
   * at zero, and the weight is not changed. On failure (S2ftException) nothing changes.
   */
  public static Refresh liftRefresh(Context ctx, Optimizer opt, int paramIndex, int rank, long count, double density,
      boolean largest, int method, long seed) {
    Tensor weight = opt.param(paramIndex);
    s2ft_lift_options o = liftOptions(rank, count, density, largest, method, seed);
    try {
      long[] kept = new long[1];
      long set = S2ftNative.s2ft_lift_refresh(ctx.ptr(), opt.ptr(), paramIndex, weight, o, kept);
      return new Refresh(new SparseSet(set), kept[0]);
    } finally {
      o.delete();
    }
  }

  private static s2ft_lift_options liftOptions(int rank, long count, double density, boolean largest, int method,
      long seed) {
    s2ft_lift_options o = new s2ft_lift_options();
    try {
      S2ftNative.s2ft_lift_options_init(o, S2ftNativeVersions.LIFT_OPTIONS);
    } catch (RuntimeException e) {
      o.delete();
      throw e;
    }
    o.setRank(rank);
    o.setCount(count);
    o.setDensity(density);
    o.setOrder(largest ? 0 : 1);
    o.setMethod(method);
    o.setSeed(seed);
    return o;
  }

  /** Takes ownership of a set the library made. */
  static SparseSet adopt(long p) {
    return new SparseSet(p);
  }

  /** (rows + cols) * loraRank, at most rows * cols: LIFT's count parameter-matched to LoRA of that rank. */
  public static long liftCountForLoraRank(long rows, long cols, long loraRank) {
    return S2ftNative.s2ft_lift_count_for_lora_rank(rows, cols, loraRank);
  }
}
