package org.s2ft;

import org.s2ft.swig.S2ftNative;

/**
 * A weight delta D [rows, cols] in CSR form held on a context's device (s2ft_sparse_delta): the
 * path for deltas that are not whole rows or columns. cuSPARSE SpMM on a CUDA context, a plain loop
 * on the CPU. Close it before the context it was made with.
 */
public final class SparseDelta extends NativeHandle {
  private SparseDelta(long p) {
    super(p);
  }

  /**
   * A sparse delta from CSR arrays (copied): rowOffsets has rows + 1 non-decreasing entries from 0
   * to nnz; colIndices and values have nnz entries, column indices strictly ascending within each
   * row and in [0, cols), values finite.
   */
  public static SparseDelta create(Context ctx, long rows, long cols, long[] rowOffsets, long[] colIndices,
      float[] values) {
    if (rowOffsets == null || colIndices == null || values == null)
      throw new NullPointerException("rowOffsets/colIndices/values");
    if (rows < 0 || rowOffsets.length != rows + 1)
      throw new IllegalArgumentException("rowOffsets has " + rowOffsets.length + " entries for " + rows + " rows");
    if (colIndices.length != values.length)
      throw new IllegalArgumentException("colIndices has " + colIndices.length + " entries but values has "
          + values.length);
    return new SparseDelta(S2ftNative.s2ft_sparse_delta_create(ctx.ptr(), rows, cols, rowOffsets, colIndices,
        values, values.length));
  }

  /**
   * The delta of an adapter's (layer, target) entry over the full weight shape, its lines in base
   * order or (perm not null) in that selection's permuted order; no entry gives nnz 0.
   */
  public static SparseDelta fromAdapter(Context ctx, Adapter adapter, int layer, int target, Selection perm) {
    return new SparseDelta(S2ftNative.s2ft_sparse_delta_from_adapter(ctx.ptr(), adapter.ptr(), layer, target,
        ptrOrZero(perm)));
  }

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_sparse_delta_destroy(p);
  }

  /** {rows, cols, nnz}: the shape and the number of stored entries. */
  public long[] info() {
    long[] rows = new long[1], cols = new long[1], nnz = new long[1];
    S2ftNative.s2ft_sparse_delta_info(ptr(), rows, cols, nnz);
    return new long[] {rows[0], cols[0], nnz[0]};
  }

  /**
   * y += scale * x D^T for x [T, cols] and y [T, rows] on the context's device (the one the delta
   * was made on); one dtype, f32 arithmetic. Queued, not waited for, on a CUDA context.
   */
  public void forward(Context ctx, double scale, Tensor x, Tensor y) {
    S2ftNative.s2ft_sparse_delta_forward(ctx.ptr(), ptr(), scale, x, y);
  }
}
