package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_model_shape;

/** The shape of a LLaMA-architecture decoder (see s2ft_model_shape). Immutable. */
public final class ModelShape {
  /** Layers, model width, query heads, KV heads, head size, FFN width. */
  public final int nLayers, dModel, nHeads, nKvHeads, headDim, dFf;

  /** A LLaMA decoder shape; nHeads must be a multiple of nKvHeads. */
  public ModelShape(int nLayers, int dModel, int nHeads, int nKvHeads, int headDim, int dFf) {
    this.nLayers = nLayers;
    this.dModel = dModel;
    this.nHeads = nHeads;
    this.nKvHeads = nKvHeads;
    this.headDim = headDim;
    this.dFf = dFf;
  }

  /** Checks the shape with the library; throws S2ftException naming the bad field. */
  public ModelShape check() {
    s2ft_model_shape s = toNative();
    try {
      S2ftNative.s2ft_model_shape_check(s);
    } finally {
      s.delete();
    }
    return this;
  }

  /** [rows, cols] of the weight of a target (O, V, DOWN, UP) or of any weight (S2ft.WEIGHT_*). */
  public long[] weightShape(int target) {
    if (target == S2ft.TARGET_O) return new long[] {dModel, (long) nHeads * headDim};
    if (target == S2ft.TARGET_V) return new long[] {(long) nKvHeads * headDim, dModel};
    if (target == S2ft.TARGET_DOWN) return new long[] {dModel, dFf};
    if (target == S2ft.TARGET_UP) return new long[] {dFf, dModel};
    if (target == S2ft.WEIGHT_Q) return new long[] {(long) nHeads * headDim, dModel};
    if (target == S2ft.WEIGHT_K) return new long[] {(long) nKvHeads * headDim, dModel};
    if (target == S2ft.WEIGHT_GATE) return new long[] {dFf, dModel};
    throw new IllegalArgumentException("weight " + target + " is not one of O, V, DOWN, UP, Q, K, GATE");
  }

  s2ft_model_shape toNative() {
    s2ft_model_shape s = new s2ft_model_shape();
    s.setN_layers(nLayers);
    s.setD_model(dModel);
    s.setN_heads(nHeads);
    s.setN_kv_heads(nKvHeads);
    s.setHead_dim(headDim);
    s.setD_ff(dFf);
    return s;
  }

  static ModelShape fromNative(s2ft_model_shape s) {
    return new ModelShape(s.getN_layers(), s.getD_model(), s.getN_heads(), s.getN_kv_heads(),
        s.getHead_dim(), s.getD_ff());
  }

  @Override
  public boolean equals(Object o) {
    if (!(o instanceof ModelShape)) return false;
    ModelShape m = (ModelShape) o;
    return nLayers == m.nLayers && dModel == m.dModel && nHeads == m.nHeads
        && nKvHeads == m.nKvHeads && headDim == m.headDim && dFf == m.dFf;
  }

  @Override
  public int hashCode() {
    return java.util.Arrays.hashCode(new int[] {nLayers, dModel, nHeads, nKvHeads, headDim, dFf});
  }

  @Override
  public String toString() {
    return "ModelShape{layers=" + nLayers + ", d_model=" + dModel + ", heads=" + nHeads
        + ", kv_heads=" + nKvHeads + ", head_dim=" + headDim + ", d_ff=" + dFf + "}";
  }
}
