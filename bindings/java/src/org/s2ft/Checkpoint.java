package org.s2ft;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_model_shape;

/**
 * A Hugging Face checkpoint opened for reading (s2ft_checkpoint): a folder with config.json and
 * model.safetensors (or the shards model.safetensors.index.json lists), or one .safetensors
 * file. Its files are memory-mapped privately: nothing is read until used, and writes through
 * views or by a {@link Model} made from it change this process's copy only, never the files
 * ({@link #write} writes a new folder).
 *
 * <p>Lifetime: {@link #tensor} views and {@link #tensorData} buffers point into the
 * checkpoint's memory and are valid only until it is closed. Each view keeps a reference to its
 * checkpoint, so the checkpoint cannot be collected while the view is reachable, and the
 * library refuses a view of a closed checkpoint ({@code IllegalStateException}); reading a
 * buffer obtained from a view or from {@link #tensorData} after close is undefined (the memory
 * is unmapped). Models made from a checkpoint must be closed before it: {@link #close} throws
 * {@code IllegalStateException} while one is open.
 */
public final class Checkpoint extends NativeHandle {
  private int openModels;

  private Checkpoint(long p) {
    super(p);
  }

  /** Opens the checkpoint at {@code path} (a folder or one .safetensors file); checks every header. */
  public static Checkpoint open(String path) {
    return new Checkpoint(S2ftNative.s2ft_checkpoint_open(path));
  }

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_checkpoint_destroy(p);
  }

  /** Closes the checkpoint and unmaps its files; throws while a model made from it is open. */
  @Override
  public void close() {
    if (openModels > 0)
      throw new IllegalStateException("close the " + openModels + " model(s) made from this checkpoint first");
    super.close();
  }

  void modelOpened() {
    ++openModels;
  }

  void modelClosed() {
    --openModels;
  }

  private static String utf8(byte[] bytes) {
    return bytes == null ? null : new String(bytes, StandardCharsets.UTF_8);
  }

  /**
   * The model shape of a LLaMA-family checkpoint (llama, mistral, qwen2), from config.json,
   * checked against the projection weights. A checkpoint opened as one file has no
   * configuration (S2ftException with status {@link S2ft#ERR_STATE}).
   */
  public ModelShape shape() {
    s2ft_model_shape s = new s2ft_model_shape();
    try {
      S2ftNative.s2ft_checkpoint_shape(ptr(), s);
      return ModelShape.fromNative(s);
    } finally {
      s.delete();
    }
  }

  /** The text of config.json, or null when the checkpoint has none (opened as one file). */
  public String config() {
    byte[][] json = new byte[1][];
    S2ftNative.s2ft_checkpoint_config(ptr(), json);
    return utf8(json[0]);
  }

  /** The number of tensors in all its files. */
  public long tensorCount() {
    long[] n = new long[1];
    S2ftNative.s2ft_checkpoint_tensor_count(ptr(), n);
    return n[0];
  }

  /** The names of its safetensors files inside the folder (one unless sharded), in the index's order. */
  public List<String> files() {
    long[] n = new long[1];
    S2ftNative.s2ft_checkpoint_file_count(ptr(), n);
    List<String> out = new ArrayList<>();
    for (long i = 0; i < n[0]; ++i) {
      byte[][] name = new byte[1][];
      S2ftNative.s2ft_checkpoint_file(ptr(), i, name);
      out.add(utf8(name[0]));
    }
    return Collections.unmodifiableList(out);
  }

  /** Describes tensor {@code index} (shards in index order, file order within a shard). */
  public TensorInfo tensorInfo(long index) {
    byte[][] name = new byte[1][], dtype = new byte[1][];
    int[] ndim = new int[1];
    long[] nbytes = new long[1];
    S2ftNative.s2ft_checkpoint_tensor_info(ptr(), index, name, dtype, ndim, null, nbytes);
    long[] shape = new long[ndim[0]];
    if (shape.length > 0) S2ftNative.s2ft_checkpoint_tensor_info(ptr(), index, null, null, ndim, shape, null);
    return new TensorInfo(utf8(name[0]), utf8(dtype[0]), shape, nbytes[0]);
  }

  /** Every stored tensor's {@link TensorInfo}, in {@link #tensorInfo}'s order. */
  public List<TensorInfo> tensors() {
    long n = tensorCount();
    List<TensorInfo> out = new ArrayList<>();
    for (long i = 0; i < n; ++i) out.add(tensorInfo(i));
    return Collections.unmodifiableList(out);
  }

  /**
   * A zero-copy view of the F32, F16 or BF16 tensor {@code name}: a {@link Tensor} over a direct
   * buffer into the checkpoint's mapping (or, above 2 GiB, by address), valid until the checkpoint
   * is closed (see the class comment). Writes through it change this process's copy, which
   * {@link #write} writes. Another dtype throws S2ftException {@link S2ft#ERR_DTYPE} (read it with
   * {@link #tensorData}); an unknown name {@link S2ft#ERR_INVALID_ARGUMENT}.
   */
  public Tensor tensor(String name) {
    Tensor[] view = new Tensor[1];
    S2ftNative.s2ft_java_checkpoint_tensor(ptr(), name, view);
    return view[0].ownedBy(this);
  }

  /**
   * The raw little-endian bytes of tensor {@code name}, of any dtype, as a read-only direct
   * buffer in little-endian order (zero-copy), valid until the checkpoint is closed.
   */
  public ByteBuffer tensorData(String name) {
    ByteBuffer[] data = new ByteBuffer[1];
    S2ftNative.s2ft_checkpoint_tensor_data(ptr(), name, data);
    ByteBuffer b = data[0] == null ? ByteBuffer.allocateDirect(0) : data[0];
    return b.asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
  }

  /**
   * Writes a copy of the checkpoint into the folder {@code outDir} (made if missing; not the
   * checkpoint's own): every tensor as it is now (writes through views and applied adapters
   * included), except those named in {@code replacements} (may be null), whose data is replaced
   * by the given tensors (the tensor's shape; F32, F16 or BF16 of any strides, rounded to the
   * stored dtype). Each file is written under a temporary name and renamed.
   */
  public void write(String outDir, Map<String, Tensor> replacements, WriteOptions opts) {
    int n = replacements == null ? 0 : replacements.size();
    String[] names = new String[n];
    Tensor[] tensors = new Tensor[n];
    int i = 0;
    if (replacements != null) {
      for (Map.Entry<String, Tensor> e : replacements.entrySet()) {
        names[i] = e.getKey();
        tensors[i++] = e.getValue();
      }
    }
    S2ftNative.s2ft_checkpoint_write(ptr(), outDir, names, tensors, opts == null ? new WriteOptions() : opts);
  }

  /** Writes a copy of the checkpoint as it is now into {@code outDir}, with the default options. */
  public void write(String outDir) {
    write(outDir, null, null);
  }
}
