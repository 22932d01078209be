package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_context_options;
import org.s2ft.swig.s2ft_device;

/**
 * Binds the library to one backend and device (s2ft_context); owns the
 * backend's scratch memory. Use one context per thread. Close it after the
 * objects made from it.
 */
public final class Context extends NativeHandle {
  /** A CPU context with defaults. */
  public Context() {
    this(S2ft.DEVICE_CPU, 0, 0);
  }

  /** A context on (deviceType, deviceId); numThreads 0 leaves BLAS's default. */
  public Context(int deviceType, int deviceId, int numThreads) {
    super(create(deviceType, deviceId, numThreads));
  }

  private static long create(int deviceType, int deviceId, int numThreads) {
    s2ft_context_options o = new s2ft_context_options();
    try {
      S2ftNative.s2ft_context_options_init(o, S2ftNativeVersions.CONTEXT_OPTIONS);
      o.setDevice_type(deviceType);
      o.setDevice_id(deviceId);
      o.setNum_threads(numThreads);
      return S2ftNative.s2ft_context_create(o);
    } finally {
      o.delete();
    }
  }

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_context_destroy(p);
  }

  /** {deviceType, deviceId} of this context. */
  public int[] device() {
    s2ft_device d = new s2ft_device();
    try {
      S2ftNative.s2ft_context_device(ptr(), d);
      return new int[] {d.getType(), d.getId()};
    } finally {
      d.delete();
    }
  }

  /**
   * Blocks until all work the context has queued is done and reports a device fault in it
   * (S2ftException with {@link S2ft#ERR_BACKEND}). A no-op on a CPU context.
   */
  public void synchronize() {
    S2ftNative.s2ft_context_synchronize(ptr());
  }

  /** The most per-call scratch, in bytes, any call on this CUDA context has used (0 on the CPU). */
  public long workspaceNeeded() {
    return S2ftNative.s2ft_context_workspace_needed(ptr());
  }

  /**
   * Chooses the delta path of {@link Adapter#forwardMixed} (S2ft.DELTA_PATH_*; default AUTO). A CPU
   * context has only DENSE (AUTO means it); SPARSE there throws with {@link S2ft#ERR_UNSUPPORTED}.
   */
  public void setDeltaPath(int path) {
    S2ftNative.s2ft_context_set_delta_path(ptr(), path);
  }

  /** The CUDA stream (a cudaStream_t address) the context queues its work on; 0 on a CPU context. */
  public long stream() {
    return S2ftNative.s2ft_context_stream(ptr());
  }

  /**
   * Sets the CUDA stream (a cudaStream_t address; 0: the legacy default stream) the context queues
   * its work on. The stream must outlive its use by the context. A CPU context throws with
   * {@link S2ft#ERR_UNSUPPORTED}.
   */
  public void setStream(long stream) {
    S2ftNative.s2ft_context_set_stream(ptr(), stream);
  }

  /**
   * Gives a CUDA context {@code bytes} of caller-owned device memory at address {@code workspace}
   * for per-call scratch (0: back to the context's own). The memory must stay valid, and unused by
   * the caller, while queued work may read it. A CPU context throws with {@link S2ft#ERR_UNSUPPORTED}.
   */
  public void setWorkspace(long workspace, long bytes) {
    if (bytes < 0) throw new IllegalArgumentException("bytes = " + bytes + " is negative");
    S2ftNative.s2ft_context_set_workspace(ptr(), workspace, bytes);
  }

  /** y = x W^T, saving x[:, S] into xSaved for a column slice (xSaved may be null). */
  public void forwardPartial(Slice slice, Tensor x, Tensor w, Tensor y, Tensor xSaved) {
    S2ftNative.s2ft_forward_partial(ptr(), slice, x, w, y, xSaved);
  }

  /**
   * Partial backward: dx = dy W (skipped when dx is null); dwSlice = dy^T x_S
   * (columns; xIn = x_S) or dy[:, S]^T x (rows; xIn = x). flags: S2ft.ACCUMULATE_*.
   */
  public void backwardPartial(Slice slice, Tensor w, Tensor xIn, Tensor dy, Tensor dx, Tensor dwSlice,
      int flags) {
    S2ftNative.s2ft_backward_partial(ptr(), slice, w, xIn, dy, dx, dwSlice, flags);
  }

  /** Co-permutes one layer's weights in place (S2ft.PERMUTE_FORWARD or _INVERSE). */
  public void permute(Selection sel, int layer, LayerWeights weights, int direction) {
    S2ftNative.s2ft_permute(ptr(), sel.ptr(), layer, new LayerWeights[] {weights}, direction);
  }
}
