package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_model_shape;

/**
 * Base weights that adapters are applied to, removed from and switched on
 * (s2ft_model). The library edits the weights in place and keeps their
 * memory, so they must be direct-buffer tensors; this object keeps references
 * to them (and to the applied adapter) until it is closed. Closing leaves an
 * applied adapter merged: call {@link #remove} first to restore the base.
 */
public final class Model extends NativeHandle {
  private final LayerWeights[] layers;
  private Adapter applied;

  /** perm: the selection the weights are permuted by, or null for base order. */
  public Model(Context ctx, ModelShape shape, LayerWeights[] layers, Selection perm) {
    super(create(ctx, shape, layers, perm));
    this.layers = layers.clone();
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

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_model_destroy(p);
    applied = null;
  }

  /** Merges an adapter (scale NaN: its default scale; flags: S2ft.APPLY_FORCE). */
  public void apply(Adapter adapter, double scale, int flags) {
    S2ftNative.s2ft_adapter_apply(ptr(), adapter.ptr(), scale, flags);
    applied = adapter;
  }

  /** Merges an adapter at its default scale, checking base fingerprints. */
  public void apply(Adapter adapter) {
    apply(adapter, Double.NaN, 0);
  }

  /** Restores the lines the applied adapter displaced, bit-exactly. */
  public void remove() {
    S2ftNative.s2ft_adapter_remove(ptr());
    applied = null;
  }

  /** Replaces the applied adapter (if any); bit-identical to remove then apply. */
  public void switchTo(Adapter adapter, double scale, int flags) {
    S2ftNative.s2ft_adapter_switch(ptr(), adapter.ptr(), scale, flags);
    applied = adapter;
  }

  /** Switches to an adapter at its default scale, checking base fingerprints. */
  public void switchTo(Adapter adapter) {
    switchTo(adapter, Double.NaN, 0);
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

  /** The weights given at creation. */
  public LayerWeights layer(int i) {
    return layers[i];
  }
}
