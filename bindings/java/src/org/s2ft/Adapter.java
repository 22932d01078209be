package org.s2ft;

import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_model_shape;

/**
 * What fine-tuning changed (s2ft_adapter): per (layer, target) the trained
 * lines in base order and their f32 deltas, unstructured sparse entries of any
 * of a layer's seven weights ({@link #setSparse}), low-rank entries (the delta of a whole weight as
 * factors b a: {@link #setLowRank}, {@link #setSorsa}), and free key/value metadata. Do
 * not close an adapter while it is applied to a {@link Model}.
 */
public final class Adapter extends NativeHandle {
  /** False for an adapter a Model loaded from files and owns ({@link Model#applyFiles}). */
  private final boolean owned;

  private Adapter(long p) {
    this(p, true);
  }

  private Adapter(long p, boolean owned) {
    super(p);
    this.owned = owned;
  }

  /** An adapter the library owns (a model's, from files): close() only forgets it. */
  static Adapter borrowed(long p) {
    return new Adapter(p, false);
  }

  /** An empty adapter; fill it with {@link #set}. */
  public static Adapter create(ModelShape shape, String name, double defaultScale) {
    s2ft_model_shape s = shape.toNative();
    try {
      return new Adapter(S2ftNative.s2ft_adapter_create(s, name, defaultScale));
    } finally {
      s.delete();
    }
  }

  /** delta = trained - base for every slice the selection trains (s2ft_adapter_from_training). */
  public static Adapter fromTraining(Context ctx, Selection sel, LayerWeights[] base, LayerWeights[] trained,
      boolean permuted, String name) {
    return new Adapter(S2ftNative.s2ft_adapter_from_training(ctx.ptr(), sel.ptr(), base, trained,
        permuted ? 1 : 0, name));
  }

  /** Loads an adapter saved by {@link #save}. */
  public static Adapter load(String path) {
    return new Adapter(S2ftNative.s2ft_adapter_load(path));
  }

  /** Fuses adapters: union of lines, weighted sum of deltas (weights null: default scales). */
  public static Adapter fuse(Adapter[] adapters, double[] weights) {
    if (weights != null && weights.length != adapters.length)
      throw new IllegalArgumentException("weights has " + weights.length + " entries for " + adapters.length
          + " adapters");
    return new Adapter(S2ftNative.s2ft_adapter_fuse(pointers(adapters), weights, adapters.length));
  }

  static long[] pointers(Adapter[] adapters) {
    long[] p = new long[adapters.length];
    for (int i = 0; i < p.length; ++i) {
      if (adapters[i] == null) throw new NullPointerException("adapters[" + i + "] is null");
      p[i] = adapters[i].ptr();
    }
    return p;
  }

  @Override
  void destroy(long p) {
    if (owned) S2ftNative.s2ft_adapter_destroy(p);
  }

  /**
   * Sets the entry of (layer, target): distinct base-order lines and their delta
   * ([out, n] for O/DOWN, [n, in] for V/UP); base (may be null) fingerprints the lines.
   */
  public void set(int layer, int target, long[] lines, Tensor delta, Tensor base) {
    S2ftNative.s2ft_adapter_set(ptr(), layer, target, lines, delta, base);
  }

  /** Renames the adapter and sets its default scale (s2ft_adapter_set_info). */
  public void setInfo(String name, double defaultScale) {
    S2ftNative.s2ft_adapter_set_info(ptr(), name, defaultScale);
  }

  /** The adapter's name. */
  public String name() {
    return S2ftNative.s2ft_adapter_name(ptr());
  }

  /** The model shape the adapter was made for. */
  public ModelShape shape() {
    s2ft_model_shape s = new s2ft_model_shape();
    try {
      S2ftNative.s2ft_adapter_info(ptr(), s, null, null);
      return ModelShape.fromNative(s);
    } finally {
      s.delete();
    }
  }

  /** The scale used when NaN is passed to apply, switch or the mixed forward. */
  public double defaultScale() {
    double[] scale = new double[1];
    S2ftNative.s2ft_adapter_info(ptr(), null, scale, null);
    return scale[0];
  }

  /** Mask of targets with an entry in some layer. */
  public int targets() {
    long[] t = new long[1];
    S2ftNative.s2ft_adapter_info(ptr(), null, null, t);
    return (int) t[0];
  }

  /** Base-order lines of (layer, target), ascending; empty when there is no entry. */
  public long[] lines(int layer, int target) {
    long n = S2ftNative.s2ft_adapter_lines(ptr(), layer, target, null);
    long[] out = new long[(int) n];
    if (n > 0) S2ftNative.s2ft_adapter_lines(ptr(), layer, target, out);
    return out;
  }

  /** Copies the delta of (layer, target) into out. */
  public void delta(int layer, int target, Tensor out) {
    S2ftNative.s2ft_adapter_delta(ptr(), layer, target, out);
  }

  /** The delta of (layer, target) as a compact f32 array ([out, k] or [k, in]). */
  public float[] delta(int layer, int target) {
    ModelShape s = shape();
    long[] w = s.weightShape(target);
    long k = lines(layer, target).length;
    boolean columns = target == S2ft.TARGET_O || target == S2ft.TARGET_DOWN;
    long[] shape = columns ? new long[] {w[0], k} : new long[] {k, w[1]};
    float[] out = new float[(int) (shape[0] * shape[1])];
    delta(layer, target, Tensor.of(out, shape));
    return out;
  }

  /** The unstructured sparse entries of one (layer, weight) ({@link #sparse}). */
  public static final class SparseEntries {
    /** Ascending base-order flat indices r * cols + c. */
    public final long[] indices;
    /** The f32 delta of each index. */
    public final float[] deltas;
    /** The base fingerprint of the whole weight (0: unknown, or no entries). */
    public final long fingerprint;

    SparseEntries(long[] indices, float[] deltas, long fingerprint) {
      this.indices = indices;
      this.deltas = deltas;
      this.fingerprint = fingerprint;
    }
  }

  /** What {@link #sparseInfo} reports. */
  public static final class SparseInfo {
    /** Mask of {@link S2ft#weightBit} of the weights with sparse entries in some layer. */
    public final int weights;
    /** The number of sparse entries in all. */
    public final long entries;

    SparseInfo(int weights, long entries) {
      this.weights = weights;
      this.entries = entries;
    }
  }

  /**
   * Sets the unstructured sparse entries of (layer, weight), weight one of S2ft.WEIGHT_*: strictly
   * ascending base-order flat indices r * cols + c and their delta (indices.length elements, [count]
   * or [1, count], every value finite; copied to f32). base (may be null) is the full base weight,
   * for the entries' fingerprint. No index may lie on a structured line of the same (layer, weight).
   * Empty indices remove the entries. A failed call (S2ftException) changes nothing.
   */
  public void setSparse(int layer, int weight, long[] indices, Tensor delta, Tensor base) {
    if (indices == null) throw new NullPointerException("indices");
    if (indices.length == 0) {
      clearSparse(layer, weight);
      return;
    }
    S2ftNative.s2ft_adapter_set_sparse(ptr(), layer, weight, indices, delta, base);
  }

  /** Removes the sparse entries of (layer, weight). */
  public void clearSparse(int layer, int weight) {
    S2ftNative.s2ft_adapter_set_sparse(ptr(), layer, weight, null, null, null);
  }

  /** The sparse entries of (layer, weight): empty arrays and fingerprint 0 when there are none. */
  public SparseEntries sparse(int layer, int weight) {
    long[] count = new long[1], fingerprint = new long[1];
    S2ftNative.s2ft_adapter_sparse(ptr(), layer, weight, null, null, 0, count, fingerprint);
    int n = Math.toIntExact(count[0]);
    long[] indices = new long[n];
    float[] deltas = new float[n];
    if (n > 0) S2ftNative.s2ft_adapter_sparse(ptr(), layer, weight, indices, deltas, n, count, fingerprint);
    return new SparseEntries(indices, deltas, fingerprint[0]);
  }

  /** The weights with sparse entries in some layer (a mask of S2ft.weightBit) and the entries in all. */
  public SparseInfo sparseInfo() {
    long[] weights = new long[1], entries = new long[1];
    S2ftNative.s2ft_adapter_sparse_info(ptr(), weights, entries);
    return new SparseInfo((int) weights[0], entries[0]);
  }

  /** The low-rank entry of one (layer, weight) ({@link #lowRank}): the delta b a of the whole weight. */
  public static final class LowRankEntry {
    /** The rank k (at least 1). */
    public final int rank;
    /** b [rows, k], row-major f32. */
    public final float[] b;
    /** a [k, cols], row-major f32. */
    public final float[] a;
    /** The base fingerprint of the whole weight (0: unknown). */
    public final long fingerprint;

    LowRankEntry(int rank, float[] b, float[] a, long fingerprint) {
      this.rank = rank;
      this.b = b;
      this.a = a;
      this.fingerprint = fingerprint;
    }
  }

  /** What {@link #lowRankInfo} reports. */
  public static final class LowRankInfo {
    /** Mask of {@link S2ft#weightBit} of the weights with a low-rank entry in some layer. */
    public final int weights;
    /** The number of low-rank entries (layer, weight) in all. */
    public final long entries;

    LowRankInfo(int weights, long entries) {
      this.weights = weights;
      this.entries = entries;
    }
  }

  /**
   * Sets the low-rank entry of (layer, weight), weight one of S2ft.WEIGHT_*: the delta b a of the whole
   * base-order weight [rows, cols], kept as its factors b [rows, k] and a [k, cols] (f32, f16 or bf16 on
   * the CPU, any strides; k &gt;= 1, every value finite; copied to f32). A low-rank entry changes the
   * whole weight, so the (layer, weight) may hold no structured entry and no sparse entries beside it
   * (and {@link #set} and {@link #setSparse} refuse while it is there). base (may be null) is the full
   * base weight, for the entry's fingerprint. b and a both null remove the entry ({@link
   * #clearLowRank}); only one of them null is an S2ftException (ERR_INVALID_ARGUMENT). A failed call
   * changes nothing.
   */
  public void setLowRank(int layer, int weight, Tensor b, Tensor a, Tensor base) {
    S2ftNative.s2ft_adapter_set_low_rank(ptr(), layer, weight, b, a, base);
  }

  /** Removes the low-rank entry of (layer, weight) (none is not an error). */
  public void clearLowRank(int layer, int weight) {
    S2ftNative.s2ft_adapter_set_low_rank(ptr(), layer, weight, null, null, null);
  }

  /**
   * Sets the low-rank entry of (layer, weight) to what SORSA training changed: {@link Sorsa#init} split
   * the weight into a residual and u0, s0, vt0; training made them u, s, vt (all of rank r). The delta
   * u diag(s) vt - u0 diag(s0) vt0 is stored as b = [u diag(s) | -u0 diag(s0)] ([rows, 2r], each
   * product rounded once to f32) and a = [vt ; vt0] ([2r, cols]), so {@link #lowRank} reads back rank
   * 2r and the entry exports to PEFT as LoRA of rank 2r. u, u0 are [rows, r], s, s0 [r] or [1, r], vt,
   * vt0 [r, cols], all f32 on the CPU (ERR_SHAPE for factors of different ranks, ERR_DTYPE for factors
   * that are not f32). base (may be null) is the weight as it was before Sorsa.init (the base the
   * adapter applies to), for the fingerprint. Otherwise as {@link #setLowRank}.
   */
  public void setSorsa(int layer, int weight, Tensor u0, Tensor s0, Tensor vt0, Tensor u, Tensor s, Tensor vt,
      Tensor base) {
    S2ftNative.s2ft_adapter_set_sorsa(ptr(), layer, weight, u0, s0, vt0, u, s, vt, base);
  }

  /**
   * The rank k of the low-rank entry of (layer, weight) (0: none); copies b into bOut ([rows, k]) and a
   * into aOut ([k, cols]) when not null (CPU tensors of any dtype, rounded; ERR_STATE when there is no
   * entry to copy).
   */
  public long lowRank(int layer, int weight, Tensor bOut, Tensor aOut) {
    long[] rank = new long[1];
    S2ftNative.s2ft_adapter_low_rank(ptr(), layer, weight, rank, bOut, aOut, null);
    return rank[0];
  }

  /** The low-rank entry of (layer, weight) as f32 factors, or null when there is none. */
  public LowRankEntry lowRank(int layer, int weight) {
    long[] rank = new long[1], fingerprint = new long[1];
    S2ftNative.s2ft_adapter_low_rank(ptr(), layer, weight, rank, null, null, null);
    int k = Math.toIntExact(rank[0]);
    if (k == 0) return null;
    long[] w = shape().weightShape(weight);
    float[] b = new float[Math.toIntExact(w[0] * k)], a = new float[Math.toIntExact(k * w[1])];
    S2ftNative.s2ft_adapter_low_rank(ptr(), layer, weight, rank, Tensor.of(b, w[0], k), Tensor.of(a, k, w[1]),
        fingerprint);
    return new LowRankEntry(k, b, a, fingerprint[0]);
  }

  /** The weights with a low-rank entry in some layer (a mask of S2ft.weightBit) and the entries in all. */
  public LowRankInfo lowRankInfo() {
    long[] weights = new long[1], entries = new long[1];
    S2ftNative.s2ft_adapter_low_rank_info(ptr(), weights, entries);
    return new LowRankInfo((int) weights[0], entries[0]);
  }

  private static byte[] utf8(String s) {
    return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
  }

  private static String string(byte[] b) {
    return b == null ? null : new String(b, StandardCharsets.UTF_8);
  }

  /**
   * Sets the metadata {@code key} (1 to 255 bytes of [A-Za-z0-9._-]) to {@code value} (at most
   * 65536 bytes of UTF-8), or removes the key when value is null. Saved with the adapter; at most
   * 256 keys. On error nothing changes.
   */
  public void setMeta(String key, String value) {
    if (key == null) throw new NullPointerException("key");
    S2ftNative.s2ft_adapter_set_meta(ptr(), utf8(key), utf8(value));
  }

  /** Removes the metadata {@code key} (an absent key is not an error). */
  public void removeMeta(String key) {
    setMeta(key, null);
  }

  /** The value of metadata {@code key}, or null when the adapter has none. */
  public String meta(String key) {
    if (key == null) throw new NullPointerException("key");
    byte[][] value = new byte[1][];
    S2ftNative.s2ft_adapter_meta(ptr(), utf8(key), value);
    return string(value[0]);
  }

  /** All metadata, keys in ascending byte order (an unmodifiable copy). */
  public Map<String, String> metadata() {
    long[] n = new long[1];
    S2ftNative.s2ft_adapter_meta_count(ptr(), n);
    Map<String, String> out = new LinkedHashMap<>();
    for (long i = 0; i < n[0]; ++i) {
      byte[][] key = new byte[1][], value = new byte[1][];
      S2ftNative.s2ft_adapter_meta_at(ptr(), i, key, value);
      out.put(string(key[0]), string(value[0]));
    }
    return Collections.unmodifiableMap(out);
  }

  /**
   * Writes the adapter as a Hugging Face PEFT LoRA adapter into the folder {@code outDir} (made
   * when missing; its parent must exist): adapter_config.json and adapter_model.safetensors. Each
   * entry with k lines becomes a LoRA module of rank k whose B A is exactly scale * delta on its
   * lines (one factor one-hot). {@code opts} null means the defaults.
   */
  public void exportPeft(String outDir, PeftExportOptions opts) {
    S2ftNative.s2ft_adapter_export_peft(ptr(), outDir, opts == null ? new PeftExportOptions() : opts);
  }

  /** Exports as a PEFT LoRA adapter with the default options. */
  public void exportPeft(String outDir) {
    exportPeft(outDir, null);
  }

  /** Saves the adapter as safetensors (written atomically); throws S2ftException on I/O errors. */
  public void save(String path) {
    S2ftNative.s2ft_adapter_save(ptr(), path);
  }

  /**
   * Copies the adapter's lines and deltas to the device of a CUDA context now, so that later
   * apply/switch/remove and {@link #forwardMixed} calls there copy nothing from the host. The copy
   * lasts until the adapter is changed or closed. A no-op on a CPU context.
   */
  public void upload(Context ctx) {
    S2ftNative.s2ft_adapter_upload(ctx.ptr(), ptr());
  }

  /**
   * One linear layer's forward for a batch of segments with their own adapters
   * (s2ft_adapter_forward_mixed): y = x W^T plus, for segment j (rows
   * offsets[j]..offsets[j+1]) with a = segmentAdapter[j] >= 0, adapter a's term.
   * perm may be null (w in base order); scales null means default scales.
   */
  public static void forwardMixed(Context ctx, int layer, int target, Tensor x, Tensor w, Selection perm,
      Adapter[] adapters, double[] scales, long[] offsets, int[] segmentAdapter, Tensor y) {
    if (offsets == null || segmentAdapter == null) throw new NullPointerException("offsets/segmentAdapter");
    if (offsets.length != segmentAdapter.length + 1)
      throw new IllegalArgumentException("offsets needs one entry more than segmentAdapter (" + offsets.length
          + " vs " + segmentAdapter.length + ")");
    if (scales != null && scales.length != adapters.length)
      throw new IllegalArgumentException("scales has " + scales.length + " entries for " + adapters.length
          + " adapters");
    S2ftNative.s2ft_adapter_forward_mixed(ctx.ptr(), layer, target, x, w, ptrOrZero(perm), pointers(adapters),
        scales, adapters.length, offsets, segmentAdapter, segmentAdapter.length, y);
  }
}
