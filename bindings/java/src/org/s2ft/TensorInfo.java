package org.s2ft;

import java.util.Arrays;

/** What a {@link Checkpoint} stores about one tensor (s2ft_checkpoint_tensor_info). Immutable. */
public final class TensorInfo {
  /** The tensor's name, e.g. {@code model.layers.0.mlp.down_proj.weight}. */
  public final String name;
  /** The safetensors dtype name: "F32", "BF16", "I64", ... */
  public final String dtype;
  private final long[] shape;
  /** The size of its data in bytes. */
  public final long nbytes;

  TensorInfo(String name, String dtype, long[] shape, long nbytes) {
    this.name = name;
    this.dtype = dtype;
    this.shape = shape.clone();
    this.nbytes = nbytes;
  }

  /** The extents (empty for a scalar). */
  public long[] shape() {
    return shape.clone();
  }

  @Override
  public String toString() {
    return name + " " + dtype + " " + Arrays.toString(shape);
  }
}
