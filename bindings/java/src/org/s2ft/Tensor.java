package org.s2ft;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Arrays;

/**
 * A borrowed view of a strided array, passed to the library as an
 * s2ft_tensor descriptor. Three kinds of memory:
 * <ul>
 *   <li>a direct ByteBuffer in native byte order ({@link #ofBuffer}, {@link #allocate}):
 *       passed zero-copy; the only kind a {@link Model} or {@link Optimizer} may keep;</li>
 *   <li>a float[] ({@link #of}): for each call the JVM pins the array or copies it
 *       (GetFloatArrayElements) and writes outputs back when the call returns;</li>
 *   <li>a raw address ({@link #ofAddress}), e.g. CUDA device memory owned elsewhere;</li>
 *   <li>memory the library holds: a {@link Checkpoint#tensor} view or a weight of a
 *       {@link Model#layer}, over a direct buffer into the checkpoint's mapping. Such a tensor
 *       keeps a reference to its checkpoint and is valid until the checkpoint is closed: after
 *       that, element access and library calls taking it throw IllegalStateException.</li>
 * </ul>
 * Strides are in elements; views share the memory of their tensor. A Tensor
 * owns no native resources, so it has no close().
 */
public final class Tensor {
  // Read by the JNI layer by name: keep the names and types.
  final ByteBuffer buffer;
  final float[] array;
  final long address;
  final int dtype;
  final int deviceType;
  final int deviceId;
  final long[] shape;
  final long[] strides;
  final long byteOffset;
  /** The checkpoint whose memory this tensor describes, or null. */
  final NativeHandle owner;

  private Tensor(ByteBuffer buffer, float[] array, long address, int dtype, int deviceType,
      int deviceId, long[] shape, long[] strides, long byteOffset) {
    this(buffer, array, address, dtype, deviceType, deviceId, shape, strides, byteOffset, null);
  }

  private Tensor(ByteBuffer buffer, float[] array, long address, int dtype, int deviceType,
      int deviceId, long[] shape, long[] strides, long byteOffset, NativeHandle owner) {
    if (shape.length < 1 || shape.length > 4)
      throw new IllegalArgumentException("tensor rank " + shape.length + " is outside 1..4");
    if (strides.length != shape.length)
      throw new IllegalArgumentException("strides need one entry per dimension");
    this.buffer = buffer;
    this.array = array;
    this.address = address;
    this.dtype = dtype;
    this.deviceType = deviceType;
    this.deviceId = deviceId;
    this.shape = shape.clone();
    this.strides = strides.clone();
    this.byteOffset = byteOffset;
    this.owner = owner;
  }

  /**
   * A tensor describing memory the library holds (called by the JNI layer): over the direct
   * buffer when there is one (native byte order), else by its address.
   */
  static Tensor fromNative(ByteBuffer buffer, long address, int dtype, int deviceType, int deviceId,
      long[] shape, long[] strides, long byteOffset) {
    if (buffer != null) buffer.order(ByteOrder.nativeOrder());
    return new Tensor(buffer, null, buffer == null ? address : 0, dtype, deviceType, deviceId, shape, strides,
        byteOffset);
  }

  /** The same view, belonging to (and keeping a reference to) {@code owner}. */
  Tensor ownedBy(NativeHandle owner) {
    return new Tensor(buffer, array, address, dtype, deviceType, deviceId, shape, strides, byteOffset, owner);
  }

  private void checkOwner() {
    if (owner != null && owner.isClosed())
      throw new IllegalStateException("the tensor is a view of a closed " + owner.getClass().getSimpleName());
  }

  static long[] compactStrides(long[] shape) {
    long[] s = new long[shape.length];
    long step = 1;
    for (int i = shape.length - 1; i >= 0; --i) {
      s[i] = step;
      step *= shape[i];
    }
    return s;
  }

  static long elements(long[] shape) {
    long n = 1;
    for (long d : shape) {
      if (d < 0) throw new IllegalArgumentException("negative extent in shape " + Arrays.toString(shape));
      n *= d;
    }
    return n;
  }

  static int elementSize(int dtype) {
    if (dtype == S2ft.F32) return 4;
    if (dtype == S2ft.F16 || dtype == S2ft.BF16) return 2;
    throw new IllegalArgumentException("dtype " + dtype + " is not F32, F16 or BF16");
  }

  /** A compact row-major f32 tensor over a Java array (pinned or copied per call). */
  public static Tensor of(float[] data, long... shape) {
    if (elements(shape) > data.length)
      throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " needs " + elements(shape)
          + " floats, the array has " + data.length);
    return new Tensor(null, data, 0, S2ft.F32, S2ft.DEVICE_CPU, 0, shape, compactStrides(shape), 0);
  }

  /** A compact row-major tensor over a direct buffer (zero-copy). */
  public static Tensor ofBuffer(ByteBuffer buffer, int dtype, long... shape) {
    if (!buffer.isDirect()) throw new IllegalArgumentException("the buffer must be a direct ByteBuffer");
    if (buffer.order() != ByteOrder.nativeOrder())
      throw new IllegalArgumentException("the buffer must be in native byte order");
    if (elements(shape) * elementSize(dtype) > buffer.capacity())
      throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " does not fit in "
          + buffer.capacity() + " bytes");
    return new Tensor(buffer, null, 0, dtype, S2ft.DEVICE_CPU, 0, shape, compactStrides(shape), 0);
  }

  /** A new zero-filled compact tensor in a direct native-order buffer. */
  public static Tensor allocate(int dtype, long... shape) {
    long bytes = elements(shape) * elementSize(dtype);
    if (bytes > Integer.MAX_VALUE) throw new IllegalArgumentException("tensor too large for a ByteBuffer");
    ByteBuffer b = ByteBuffer.allocateDirect((int) Math.max(bytes, 1)).order(ByteOrder.nativeOrder());
    return ofBuffer(b, dtype, shape);
  }

  /** A new f32 direct tensor holding a copy of {@code data}. */
  public static Tensor copyOf(float[] data, long... shape) {
    Tensor t = allocate(S2ft.F32, shape);
    if (elements(shape) > data.length) throw new IllegalArgumentException("the array is shorter than the shape");
    t.floatBuffer().put(data, 0, (int) elements(shape));
    return t;
  }

  /** A compact tensor at a raw address (e.g. CUDA memory); the caller keeps it alive. */
  public static Tensor ofAddress(long address, int dtype, int deviceType, int deviceId, long... shape) {
    return new Tensor(null, null, address, dtype, deviceType, deviceId, shape, compactStrides(shape), 0);
  }

  /** A view of the same memory with another shape, strides (elements) and offset (elements). */
  public Tensor view(long elementOffset, long[] shape, long[] strides) {
    return new Tensor(buffer, array, address, dtype, deviceType, deviceId, shape, strides,
        byteOffset + elementOffset * elementSize(dtype), owner);
  }

  /** Columns [begin, begin + count) of a rank-2 tensor, as a strided view. */
  public Tensor columns(long begin, long count) {
    if (shape.length != 2) throw new IllegalArgumentException("columns() needs a rank-2 tensor");
    return view(begin * strides[1], new long[] {shape[0], count}, strides);
  }

  public long[] shape() {
    return shape.clone();
  }

  public long[] strides() {
    return strides.clone();
  }

  public int dtype() {
    return dtype;
  }

  public int ndim() {
    return shape.length;
  }

  public long size() {
    return elements(shape);
  }

  /** True when the memory stays put between calls (direct buffer or raw address). */
  public boolean isStable() {
    return array == null;
  }

  /** The Java array behind this tensor, or null. */
  public float[] array() {
    return array;
  }

  /** The direct buffer behind this tensor, or null (for a checkpoint's view: valid until it is closed). */
  public ByteBuffer buffer() {
    checkOwner();
    return buffer;
  }

  /** The f32 contents of a buffer-backed compact tensor as a FloatBuffer (shares memory). */
  public FloatBuffer floatBuffer() {
    checkOwner();
    if (buffer == null || dtype != S2ft.F32)
      throw new IllegalStateException("floatBuffer() needs an f32 tensor over a ByteBuffer");
    ByteBuffer b = buffer.duplicate().order(ByteOrder.nativeOrder());
    b.position((int) byteOffset);
    return b.slice().order(ByteOrder.nativeOrder()).asFloatBuffer();
  }

  /** Element at a multi-index of a CPU tensor (f16 and bf16 values converted exactly to float). */
  public float get(long... index) {
    long e = offsetOf(index);
    if (array != null) return array[(int) e];
    if (dtype == S2ft.F32) return floatBuffer().get((int) e);
    ByteBuffer b = buffer.duplicate().order(ByteOrder.nativeOrder());
    int bits = b.getShort((int) (byteOffset + e * 2)) & 0xffff;
    return dtype == S2ft.BF16 ? Float.intBitsToFloat(bits << 16) : halfToFloat(bits);
  }

  /** An IEEE half-precision value as a float (exact). */
  static float halfToFloat(int bits) {
    int sign = (bits & 0x8000) << 16, exp = (bits >> 10) & 0x1f, frac = bits & 0x3ff;
    if (exp == 0) return Float.intBitsToFloat(sign | Float.floatToRawIntBits(frac * 0x1p-24f));
    if (exp == 31) return Float.intBitsToFloat(sign | 0x7f800000 | (frac << 13));
    return Float.intBitsToFloat(sign | ((exp + 112) << 23) | (frac << 13));
  }

  /** Sets an element of an f32 CPU tensor. */
  public void set(float value, long... index) {
    long e = offsetOf(index);
    if (dtype != S2ft.F32) throw new IllegalStateException("set() needs an f32 tensor");
    if (array != null) array[(int) e] = value;
    else floatBuffer().put((int) e, value);
  }

  private long offsetOf(long[] index) {
    checkOwner();
    if (deviceType != S2ft.DEVICE_CPU || (array == null && buffer == null))
      throw new IllegalStateException("element access needs a CPU tensor over a Java array or a direct buffer");
    if (index.length != shape.length) throw new IllegalArgumentException("index rank differs from tensor rank");
    long e = array != null ? byteOffset / 4 : 0;
    for (int i = 0; i < index.length; ++i) {
      if (index[i] < 0 || index[i] >= shape[i]) throw new IndexOutOfBoundsException("index " + index[i] + " of dim " + i);
      e += index[i] * strides[i];
    }
    return e;
  }

  /** A compact row-major copy of a CPU tensor's elements as floats (f16 and bf16 converted). */
  public float[] toFloatArray() {
    float[] out = new float[(int) size()];
    long[] idx = new long[shape.length];
    for (int n = 0; n < out.length; ++n) {
      out[n] = get(idx);
      for (int d = shape.length - 1; d >= 0; --d) {
        if (++idx[d] < shape[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  }

  @Override
  public String toString() {
    return "Tensor{dtype=" + dtype + ", shape=" + Arrays.toString(shape) + ", strides="
        + Arrays.toString(strides) + (array != null ? ", float[]" : buffer != null ? ", direct" : ", address") + "}";
  }
}
