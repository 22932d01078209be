package org.s2ft;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

/**
 * Options of {@link Checkpoint#write} (s2ft_checkpoint_write_options): the library's defaults
 * (the source's files and split kept, the folder's other files copied), changed fluently.
 */
public final class WriteOptions {
  /** Told the bytes written so far after each tensor (on the writing thread). */
  @FunctionalInterface
  public interface Progress {
    /** {@code doneBytes} of the tensors' {@code totalBytes} are written. */
    void update(long doneBytes, long totalBytes);
  }

  // Read by the JNI layer by name.
  long maxShardBytes;
  boolean copyOtherFiles = true;
  String[] exclude = new String[0];
  Progress progress;

  /**
   * Reshards into files of at most {@code bytes} data bytes (a larger tensor gets a file of its
   * own) with an index; 0 (the default) keeps the source's files, headers and tensor order.
   */
  public WriteOptions maxShardBytes(long bytes) {
    if (bytes < 0) throw new IllegalArgumentException("maxShardBytes is negative: " + bytes);
    maxShardBytes = bytes;
    return this;
  }

  /** Whether the folder's other regular files (tokenizer, generation config, ...) are copied. */
  public WriteOptions copyOtherFiles(boolean copy) {
    copyOtherFiles = copy;
    return this;
  }

  /**
   * Calls {@code listener} after each tensor is written, e.g. to draw a progress bar. An exception
   * it throws stops further reports and is thrown by {@link Checkpoint#write} once it returns.
   */
  public WriteOptions progress(Progress listener) {
    progress = listener;
    return this;
  }

  /** Leaves these files of the folder out of the copy. */
  public WriteOptions exclude(String... names) {
    List<String> all = new ArrayList<>(Arrays.asList(exclude));
    for (String n : names) {
      if (n == null) throw new NullPointerException("an excluded file name is null");
      all.add(n);
    }
    exclude = all.toArray(new String[0]);
    return this;
  }
}
