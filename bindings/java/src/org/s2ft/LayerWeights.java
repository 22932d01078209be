package org.s2ft;

/** One layer's weights (s2ft_layer_weights); any may be null. Fields are set fluently. */
public final class LayerWeights {
  // Read by the JNI layer by name.
  Tensor q, k, v, o, gate, up, down;

  /** Sets q_proj, [n_heads*head_dim, d_model]; returns this. */
  public LayerWeights q(Tensor t) { q = t; return this; }
  /** Sets k_proj, [n_kv_heads*head_dim, d_model]; returns this. */
  public LayerWeights k(Tensor t) { k = t; return this; }
  /** Sets v_proj, [n_kv_heads*head_dim, d_model]; returns this. */
  public LayerWeights v(Tensor t) { v = t; return this; }
  /** Sets o_proj, [d_model, n_heads*head_dim]; returns this. */
  public LayerWeights o(Tensor t) { o = t; return this; }
  /** Sets gate_proj, [d_ff, d_model]; returns this. */
  public LayerWeights gate(Tensor t) { gate = t; return this; }
  /** Sets up_proj, [d_ff, d_model]; returns this. */
  public LayerWeights up(Tensor t) { up = t; return this; }
  /** Sets down_proj, [d_model, d_ff]; returns this. */
  public LayerWeights down(Tensor t) { down = t; return this; }

  /** q_proj, or null. */
  public Tensor q() { return q; }
  /** k_proj, or null. */
  public Tensor k() { return k; }
  /** v_proj, or null. */
  public Tensor v() { return v; }
  /** o_proj, or null. */
  public Tensor o() { return o; }
  /** gate_proj, or null. */
  public Tensor gate() { return gate; }
  /** up_proj, or null. */
  public Tensor up() { return up; }
  /** down_proj, or null. */
  public Tensor down() { return down; }

  /** Sets the weight of a trainable target (O, V, DOWN, UP). */
  public LayerWeights target(int target, Tensor t) {
    if (target == S2ft.TARGET_O) o = t;
    else if (target == S2ft.TARGET_V) v = t;
    else if (target == S2ft.TARGET_DOWN) down = t;
    else if (target == S2ft.TARGET_UP) up = t;
    else throw new IllegalArgumentException("target " + target + " is not one of O, V, DOWN, UP");
    return this;
  }

  /** The weight of a trainable target (S2ft.TARGET_O, _V, _DOWN, _UP), or null. */
  public Tensor target(int target) {
    if (target == S2ft.TARGET_O) return o;
    if (target == S2ft.TARGET_V) return v;
    if (target == S2ft.TARGET_DOWN) return down;
    if (target == S2ft.TARGET_UP) return up;
    throw new IllegalArgumentException("target " + target + " is not one of O, V, DOWN, UP");
  }

  Tensor[] all() {
    return new Tensor[] {q, k, v, o, gate, up, down};
  }

  /** Throws unless every set tensor keeps its memory in place (no float[]). */
  static void requireStable(LayerWeights[] layers, String what) {
    for (int l = 0; l < layers.length; ++l) {
      if (layers[l] == null) throw new NullPointerException(what + "[" + l + "] is null");
      for (Tensor t : layers[l].all())
        if (t != null && !t.isStable())
          throw new IllegalArgumentException(what + "[" + l + "]: weights kept by the library must be direct "
              + "ByteBuffer tensors (Tensor.allocate/ofBuffer), not float[] tensors");
    }
  }
}
