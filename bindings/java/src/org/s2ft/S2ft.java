package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.S2ftNativeConstants;

/**
 * Library-wide functions and constants, and loading of the JNI library.
 *
 * <p>The JNI library ({@code libs2ft_jni.so}, linked to {@code libs2ft.so} through its
 * RUNPATH {@code $ORIGIN}) is loaded from the first of:
 * <ol>
 *   <li>the path in the system property {@code s2ft.jni.path}, when set;
 *   <li>the library folder of the install prefix this jar was installed in by
 *       {@code cmake --install} ({@code <prefix>/share/java/s2ft.jar} or the jar in
 *       {@code <prefix>/share/maven-repo} loads {@code <prefix>/lib/libs2ft_jni.so}), when it
 *       is there;
 *   <li>{@code System.loadLibrary("s2ft_jni")}, which searches {@code java.library.path}.
 * </ol>
 *
 * <p>Threads: as in the C library, handles are not locked; use one
 * {@link Context} (and the objects made from it) per thread.
 */
public final class S2ft {
  private S2ft() {}

  public static final int OK = S2ftNativeConstants.S2FT_OK;
  public static final int ERR_INVALID_ARGUMENT = S2ftNativeConstants.S2FT_ERR_INVALID_ARGUMENT;
  public static final int ERR_SHAPE = S2ftNativeConstants.S2FT_ERR_SHAPE;
  public static final int ERR_DTYPE = S2ftNativeConstants.S2FT_ERR_DTYPE;
  public static final int ERR_DEVICE = S2ftNativeConstants.S2FT_ERR_DEVICE;
  public static final int ERR_OUT_OF_MEMORY = S2ftNativeConstants.S2FT_ERR_OUT_OF_MEMORY;
  public static final int ERR_IO = S2ftNativeConstants.S2FT_ERR_IO;
  public static final int ERR_FORMAT = S2ftNativeConstants.S2FT_ERR_FORMAT;
  public static final int ERR_UNSUPPORTED = S2ftNativeConstants.S2FT_ERR_UNSUPPORTED;
  public static final int ERR_STATE = S2ftNativeConstants.S2FT_ERR_STATE;
  public static final int ERR_BACKEND = S2ftNativeConstants.S2FT_ERR_BACKEND;
  public static final int ERR_INTERNAL = S2ftNativeConstants.S2FT_ERR_INTERNAL;

  public static final int DEVICE_CPU = S2ftNativeConstants.S2FT_DEVICE_CPU;
  public static final int DEVICE_CUDA = S2ftNativeConstants.S2FT_DEVICE_CUDA;
  public static final int F32 = S2ftNativeConstants.S2FT_F32;
  public static final int F16 = S2ftNativeConstants.S2FT_F16;
  public static final int BF16 = S2ftNativeConstants.S2FT_BF16;

  public static final int TARGET_O = S2ftNativeConstants.S2FT_TARGET_O;
  public static final int TARGET_V = S2ftNativeConstants.S2FT_TARGET_V;
  public static final int TARGET_DOWN = S2ftNativeConstants.S2FT_TARGET_DOWN;
  public static final int TARGET_UP = S2ftNativeConstants.S2FT_TARGET_UP;
  public static final int NUM_TARGETS = S2ftNativeConstants.S2FT_NUM_TARGETS;

  /**
   * The seven projection weights of a layer (S2FT_WEIGHT_*), in one id space with the targets
   * (the four targets keep their ids): sparse adapter entries ({@link Adapter#setSparse}) name
   * weights by these.
   */
  public static final int WEIGHT_O = S2ftNativeConstants.S2FT_WEIGHT_O;
  public static final int WEIGHT_V = S2ftNativeConstants.S2FT_WEIGHT_V;
  public static final int WEIGHT_DOWN = S2ftNativeConstants.S2FT_WEIGHT_DOWN;
  public static final int WEIGHT_UP = S2ftNativeConstants.S2FT_WEIGHT_UP;
  public static final int WEIGHT_Q = S2ftNativeConstants.S2FT_WEIGHT_Q;
  public static final int WEIGHT_K = S2ftNativeConstants.S2FT_WEIGHT_K;
  public static final int WEIGHT_GATE = S2ftNativeConstants.S2FT_WEIGHT_GATE;
  public static final int NUM_WEIGHTS = S2ftNativeConstants.S2FT_NUM_WEIGHTS;

  /** The bit of a target in a target mask. */
  public static int targetBit(int target) {
    return 1 << target;
  }

  /** The bit of a weight (WEIGHT_*) in a weight mask ({@link Adapter#sparseInfo}). */
  public static int weightBit(int weight) {
    return 1 << weight;
  }

  public static final int INDEX_UNITS = 0;
  public static final int INDEX_LINES = 1;
  public static final int INDEX_BASE = 0;
  public static final int INDEX_PERMUTED = 2;

  public static final int PERM_HEADS = S2ftNativeConstants.S2FT_PERM_HEADS;
  public static final int PERM_KV_HEADS = S2ftNativeConstants.S2FT_PERM_KV_HEADS;
  public static final int PERM_CHANNELS = S2ftNativeConstants.S2FT_PERM_CHANNELS;
  public static final int PERMUTE_FORWARD = S2ftNativeConstants.S2FT_PERMUTE_FORWARD;
  public static final int PERMUTE_INVERSE = S2ftNativeConstants.S2FT_PERMUTE_INVERSE;

  /** Delta paths of a context's mixed-adapter forward ({@link Context#setDeltaPath}). */
  public static final int DELTA_PATH_AUTO = S2ftNativeConstants.S2FT_DELTA_PATH_AUTO;
  public static final int DELTA_PATH_DENSE = S2ftNativeConstants.S2FT_DELTA_PATH_DENSE;
  public static final int DELTA_PATH_SPARSE = S2ftNativeConstants.S2FT_DELTA_PATH_SPARSE;

  public static final int ACCUMULATE_DW = 1;
  public static final int ACCUMULATE_DX = 2;
  public static final int APPLY_FORCE = 1;

  public static final int STAT_WEIGHT = S2ftNativeConstants.S2FT_STAT_WEIGHT;
  public static final int STAT_ACTIVATION = S2ftNativeConstants.S2FT_STAT_ACTIVATION;
  public static final int STAT_GRADIENT = S2ftNativeConstants.S2FT_STAT_GRADIENT;
  /** LIFT's principal-weight scores ({@link Statistics#addPrincipal}). */
  public static final int STAT_PRINCIPAL = S2ftNativeConstants.S2FT_STAT_PRINCIPAL;
  /** {@link Sorsa#regularizer} and {@link Sorsa#regularizerStep}: plain Frobenius norms, as the released SORSA code. */
  public static final int SORSA_UNSQUARED = (int) S2ftNativeConstants.S2FT_SORSA_UNSQUARED;

  private static boolean loaded;

  /**
   * Loads the JNI library once (called by the generated layer before its first use), in the
   * order given in the class comment.
   */
  public static synchronized void loadNative() {
    if (loaded) return;
    String path = System.getProperty("s2ft.jni.path");
    if (path == null || path.isEmpty()) {
      java.nio.file.Path installed = NativeLocator.installedLibrary();
      path = installed == null ? null : installed.toString();
    }
    if (path != null) {
      System.load(path);
    } else {
      loadFromLibraryPath();
    }
    loaded = true;
  }

  private static void loadFromLibraryPath() {
    try {
      System.loadLibrary("s2ft_jni");
    } catch (UnsatisfiedLinkError e) {
      // The JVM's message names only java.library.path; say what else would have worked.
      UnsatisfiedLinkError hint = new UnsatisfiedLinkError(e.getMessage()
          + " (libs2ft: use the s2ft.jar that cmake --install put in <prefix>/share/java,"
          + " or set -Ds2ft.jni.path=<prefix>/lib/libs2ft_jni.so or"
          + " -Djava.library.path=<prefix>/lib; see docs/using.md)");
      hint.initCause(e);
      throw hint;
    }
  }

  /** The loaded library's version number (major * 10000 + minor * 100 + patch). */
  public static long version() {
    return S2ftNative.s2ft_version();
  }

  /** The loaded library's version, e.g. "0.1.0". */
  public static String versionString() {
    return S2ftNative.s2ft_version_string();
  }

  /** A short name for a status code, e.g. "invalid argument". */
  public static String statusString(int status) {
    return S2ftNative.s2ft_status_string(status);
  }

  /**
   * The number of devices of a kind ({@link #DEVICE_CPU}, {@link #DEVICE_CUDA}) this build can use:
   * 1 for the CPU; for CUDA the devices present, or 0 without a CUDA backend or driver.
   */
  public static int deviceCount(int deviceType) {
    return (int) S2ftNative.s2ft_device_count(deviceType);
  }

  /** Library objects created and not yet destroyed in this process (for leak checks). */
  public static long liveHandles() {
    return S2ftNative.s2ft_live_handles();
  }
}
