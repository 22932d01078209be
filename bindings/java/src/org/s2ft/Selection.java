package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_model_shape;
import org.s2ft.swig.s2ft_select_options;

/** Which units of each layer are trained, and their co-permutation (s2ft_selection). Immutable. */
public final class Selection extends NativeHandle {
  private Selection(long p) {
    super(p);
  }

  /** Chooses units to train (s2ft_select); stats may be null for the random strategy. */
  public static Selection select(Context ctx, ModelShape shape, SelectOptions opts, Statistics stats) {
    s2ft_model_shape s = shape.toNative();
    s2ft_select_options o = opts.toNative();
    try {
      return new Selection(S2ftNative.s2ft_select(ctx.ptr(), s, o, ptrOrZero(stats)));
    } finally {
      o.delete();
      s.delete();
    }
  }

  /** Loads a selection saved by {@link #save}. */
  public static Selection load(String path) {
    return new Selection(S2ftNative.s2ft_selection_load(path));
  }

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_selection_destroy(p);
  }

  public void save(String path) {
    S2ftNative.s2ft_selection_save(ptr(), path);
  }

  public ModelShape shape() {
    s2ft_model_shape s = new s2ft_model_shape();
    try {
      S2ftNative.s2ft_selection_shape(ptr(), s);
      return ModelShape.fromNative(s);
    } finally {
      s.delete();
    }
  }

  /** The mask of trained targets. */
  public int targets() {
    return (int) S2ftNative.s2ft_selection_targets(ptr());
  }

  /** Selected indices of (layer, target), ascending; flags: S2ft.INDEX_UNITS|LINES + BASE|PERMUTED. */
  public long[] indices(int layer, int target, int flags) {
    long n = S2ftNative.s2ft_selection_indices(ptr(), layer, target, flags, null);
    long[] out = new long[(int) n];
    if (n > 0) S2ftNative.s2ft_selection_indices(ptr(), layer, target, flags, out);
    return out;
  }

  /** Base-order unit indices of (layer, target). */
  public long[] units(int layer, int target) {
    return indices(layer, target, S2ft.INDEX_UNITS | S2ft.INDEX_BASE);
  }

  /** {begin, count} of the contiguous permuted lines; S2ftException(ERR_STATE) if not contiguous. */
  public long[] range(int layer, int target) {
    long[] begin = new long[1], count = new long[1];
    S2ftNative.s2ft_selection_range(ptr(), layer, target, begin, count);
    return new long[] {begin[0], count[0]};
  }

  /** out[p] = base index of the unit at position p after permuting (kind: S2ft.PERM_*). */
  public long[] permutation(int layer, int kind) {
    long n = S2ftNative.s2ft_selection_permutation(ptr(), layer, kind, null);
    long[] out = new long[(int) n];
    if (n > 0) S2ftNative.s2ft_selection_permutation(ptr(), layer, kind, out);
    return out;
  }
}
