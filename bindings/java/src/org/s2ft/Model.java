package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_model_shape;

/**
 * Base weights that adapters are applied to, removed from and switched on
 * (s2ft_model): the caller's ({@link #Model}) or a checkpoint's
 * ({@link #fromCheckpoint}). The library edits the weights in place and keeps
 * their memory, so the caller's weights must be direct-buffer tensors; this
 * object keeps references to them (or to the checkpoint and context) and to
 * the applied adapter until it is closed. Close it before its checkpoint and
 * context. Closing leaves an applied adapter merged: call {@link #remove}
 * first to restore the base.
 */
public final class Model extends NativeHandle {
  private final LayerWeights[] layers;
  private final Checkpoint checkpoint;
  private final Context context;
  private Adapter applied;
  /** True when {@link #applied} was loaded from files and belongs to the C model. */
  private boolean ownedApplied;

  /** perm: the selection the weights are permuted by, or null for base order. */
  public Model(Context ctx, ModelShape shape, LayerWeights[] layers, Selection perm) {
    super(create(ctx, shape, layers, perm));
    this.layers = layers.clone();
    this.checkpoint = null;
    this.context = ctx;
  }

  private Model(long p, Context ctx, Checkpoint ckpt) {
    super(p);
    this.layers = null;
    this.checkpoint = ckpt;
    this.context = ctx;
    ckpt.modelOpened();
  }

  private static long create(Context ctx, ModelShape shape, LayerWeights[] layers, Selection perm) {
    LayerWeights.requireStable(layers, "layers");
    s2ft_model_shape s = shape.toNative();
    try {
      return S2ftNative.s2ft_model_create(ctx.ptr(), s, layers, ptrOrZero(perm));
    } finally {
      s.delete();
    }
  }

  /**
   * A model over a checkpoint's seven projection weights, as views into it
   * (s2ft_model_from_checkpoint): applying an adapter changes the checkpoint's
   * contents in this process (copy-on-write, never the files), and
   * {@link Checkpoint#write} then writes the merged model. Read the weights
   * through {@link #layer}. shape null means the checkpoint's; perm is the
   * selection the stored weights are permuted by, or null. The context must be
   * a CPU context. The model keeps references to both; close it first.
   */
  public static Model fromCheckpoint(Context ctx, Checkpoint ckpt, ModelShape shape, Selection perm) {
    s2ft_model_shape s = shape == null ? null : shape.toNative();
    try {
      return new Model(S2ftNative.s2ft_model_from_checkpoint(ctx.ptr(), ckpt.ptr(), s, ptrOrZero(perm)), ctx, ckpt);
    } finally {
      if (s != null) s.delete();
    }
  }

  /** A model over a checkpoint's weights in base order, with the checkpoint's shape. */
  public static Model fromCheckpoint(Context ctx, Checkpoint ckpt) {
    return fromCheckpoint(ctx, ckpt, null, null);
  }

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_model_destroy(p);
    setApplied(null, false);
    if (checkpoint != null) checkpoint.modelClosed();
  }

  /** Merges an adapter (scale NaN: its default scale; flags: S2ft.APPLY_FORCE). */
  public void apply(Adapter adapter, double scale, int flags) {
    S2ftNative.s2ft_adapter_apply(ptr(), adapter.ptr(), scale, flags);
    setApplied(adapter, false);
  }

  /** Merges an adapter at its default scale, checking base fingerprints. */
  public void apply(Adapter adapter) {
    apply(adapter, Double.NaN, 0);
  }

  /** Restores the lines the applied adapter displaced, bit-exactly. */
  public void remove() {
    S2ftNative.s2ft_adapter_remove(ptr());
    setApplied(null, false);
  }

  /** Replaces the applied adapter (if any); bit-identical to remove then apply. */
  public void switchTo(Adapter adapter, double scale, int flags) {
    S2ftNative.s2ft_adapter_switch(ptr(), adapter.ptr(), scale, flags);
    setApplied(adapter, false);
  }

  /** Switches to an adapter at its default scale, checking base fingerprints. */
  public void switchTo(Adapter adapter) {
    switchTo(adapter, Double.NaN, 0);
  }

  /**
   * Loads the adapter files at {@code paths}, fuses them when there are several ({@code weights}
   * as {@link Adapter#fuse}: null means each one's default scale; a single file is applied at
   * weights[0], null or NaN meaning its default scale) and applies the result, replacing the
   * applied adapter if any, as {@link #switchTo}. The model owns the loaded adapter:
   * {@link #applied} shows it until it is replaced or removed (closing that object does nothing).
   * flags: S2ft.APPLY_FORCE. On error the model is unchanged.
   */
  public void applyFiles(String[] paths, double[] weights, int flags) {
    if (paths == null) throw new NullPointerException("paths");
    if (weights != null && weights.length != paths.length)
      throw new IllegalArgumentException("weights has " + weights.length + " entries for " + paths.length + " paths");
    S2ftNative.s2ft_model_apply_files(ptr(), paths, weights, paths.length, flags);
    setApplied(Adapter.borrowed(S2ftNative.s2ft_model_applied(ptr(), null)), true);
  }

  /** {@link #applyFiles(String[], double[], int)} at the default scales, checking fingerprints. */
  public void applyFiles(String... paths) {
    applyFiles(paths, null, 0);
  }

  /** Records the applied adapter; one the model owned is gone now, so its object is detached. */
  private void setApplied(Adapter adapter, boolean ownedByModel) {
    if (applied != null && ownedApplied) applied.detach();
    applied = adapter;
    ownedApplied = ownedByModel;
  }

  /** The applied adapter, or null. */
  public Adapter applied() {
    long p = S2ftNative.s2ft_model_applied(ptr(), null);
    return p == 0 ? null : applied;
  }

  /** The scale of the applied adapter (NaN when none). */
  public double appliedScale() {
    double[] scale = {Double.NaN};
    long p = S2ftNative.s2ft_model_applied(ptr(), scale);
    return p == 0 ? Double.NaN : scale[0];
  }

  /**
   * The weights of layer {@code i}: for a model over the caller's weights, those given at
   * creation; for a model over a checkpoint, views of its o, v, down and up weights as the model
   * holds them (q, k and gate are null), valid until the checkpoint is closed. They include the
   * applied adapter, if any.
   */
  public LayerWeights layer(int i) {
    if (layers != null) return layers[i];
    Tensor[] w = new Tensor[7];
    S2ftNative.s2ft_model_layer(ptr(), i, w);
    for (int f = 0; f < w.length; ++f)
      if (w[f] != null) w[f] = w[f].ownedBy(checkpoint);
    return new LayerWeights().q(w[0]).k(w[1]).v(w[2]).o(w[3]).gate(w[4]).up(w[5]).down(w[6]);
  }

  /** The context the model runs on. */
  public Context context() {
    return context;
  }
}
