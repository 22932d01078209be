package org.s2ft;

/** The trained lines of one weight (s2ft_slice): a contiguous range or a list of indices. */
public final class Slice {
  public static final int AXIS_COLUMNS = 0;
  public static final int AXIS_ROWS = 1;

  // Read by the JNI layer by name.
  final int axis;
  final long begin;
  final long count;
  final long[] indices;

  private Slice(int axis, long begin, long count, long[] indices) {
    this.axis = axis;
    this.begin = begin;
    this.count = count;
    this.indices = indices;
  }

  /** Columns [begin, begin + count) (O, DOWN on a permuted model). */
  public static Slice columnRange(long begin, long count) {
    return new Slice(AXIS_COLUMNS, begin, count, null);
  }

  /** Rows [begin, begin + count) (V, UP on a permuted model). */
  public static Slice rowRange(long begin, long count) {
    return new Slice(AXIS_ROWS, begin, count, null);
  }

  /** The given distinct columns, in this order. */
  public static Slice columns(long... indices) {
    return new Slice(AXIS_COLUMNS, 0, indices.length, indices.clone());
  }

  /** The given distinct rows, in this order. */
  public static Slice rows(long... indices) {
    return new Slice(AXIS_ROWS, 0, indices.length, indices.clone());
  }

  public int axis() {
    return axis;
  }

  public long count() {
    return count;
  }
}
