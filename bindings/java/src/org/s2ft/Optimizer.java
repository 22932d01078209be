package org.s2ft;

import java.util.ArrayList;
import java.util.List;
import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_optimizer_options;

/**
 * AdamW, SGD or SM3 on trained slices and sparse entries only (s2ft_optimizer). The optimizer keeps
 * the weights' memory, so parameters must be direct-buffer tensors; this
 * object also keeps a reference to them until it is closed. SpIEL schedules ({@link Spiel}) made
 * for its parameters must be closed before it: {@link #close} throws {@code IllegalStateException}
 * while one is open.
 */
public final class Optimizer extends NativeHandle {
  public static final int ADAMW = 0, SGD = 1, SM3 = 2;

  /** Optimizer options; defaults are the library's (AdamW 0.9/0.999/1e-8, no decay, no clipping). */
  public static final class Options {
    public int kind = ADAMW;
    public double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weightDecay = 0, momentum = 0;
    public boolean nesterov = false;
    public double maxGradNorm = 0;
    /** AdamW on sparse parameters: bias correction by each entry's own age (SpIEL). */
    public boolean ageBiasCorrection = false;
  }

  private final List<Tensor> params = new ArrayList<>();
  private int openSchedules;

  /** Creates an optimizer with no parameters; throws S2ftException on bad options. */
  public Optimizer(Context ctx, Options options) {
    super(create(ctx, options == null ? new Options() : options));
  }

  private static long create(Context ctx, Options opt) {
    s2ft_optimizer_options o = new s2ft_optimizer_options();
    try {
      S2ftNative.s2ft_optimizer_options_init(o, S2ftNativeVersions.OPTIMIZER_OPTIONS);
      o.setKind(opt.kind);
      o.setBeta1(opt.beta1);
      o.setBeta2(opt.beta2);
      o.setEps(opt.eps);
      o.setWeight_decay(opt.weightDecay);
      o.setMomentum(opt.momentum);
      o.setNesterov(opt.nesterov ? 1 : 0);
      o.setMax_grad_norm(opt.maxGradNorm);
      o.setAge_bias_correction(opt.ageBiasCorrection ? 1 : 0);
      return S2ftNative.s2ft_optimizer_create(ctx.ptr(), o);
    } finally {
      o.delete();
    }
  }

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_optimizer_destroy(p);
    params.clear();
  }

  /** Destroys the optimizer; throws while a SpIEL schedule made for it is open (the schedule keeps it). */
  @Override
  public void close() {
    if (openSchedules > 0)
      throw new IllegalStateException("close the " + openSchedules + " SpIEL schedule(s) of this optimizer first");
    super.close();
  }

  void scheduleOpened() {
    ++openSchedules;
  }

  void scheduleClosed() {
    --openSchedules;
  }

  /** The weight registered as parameter index (the tensor passed to addParam/addSparse). */
  public Tensor param(int index) {
    ptr(); // throws when closed
    if (index < 0 || index >= params.size())
      throw new S2ftException(S2ft.ERR_INVALID_ARGUMENT,
          "param_index " + index + " is out of range [0, " + params.size() + ")");
    return params.get(index);
  }

  /** The number of registered parameters. */
  public int numParams() {
    return params.size();
  }

  /** Registers the trained slice of a weight; returns its parameter index. */
  public int addParam(Tensor weight, Slice slice) {
    if (weight == null) throw new NullPointerException("weight");
    if (!weight.isStable())
      throw new IllegalArgumentException("weight: the optimizer keeps the weight's memory, so it must be a "
          + "direct ByteBuffer tensor (Tensor.allocate/ofBuffer), not a float[] tensor");
    long index = S2ftNative.s2ft_optimizer_add_param(ptr(), weight, slice);
    params.add(weight);
    return (int) index;
  }

  /**
   * Registers a weight's entries at a sparse set's flat indices; returns its parameter index. Its
   * gradient is [count] (what S2ft.backwardSparse writes).
   */
  public int addSparse(Tensor weight, SparseSet set) {
    if (weight == null) throw new NullPointerException("weight");
    if (set == null) throw new NullPointerException("set");
    if (!weight.isStable())
      throw new IllegalArgumentException("weight: the optimizer keeps the weight's memory, so it must be a "
          + "direct ByteBuffer tensor (Tensor.allocate/ofBuffer), not a float[] tensor");
    long index = S2ftNative.s2ft_optimizer_add_sparse(ptr(), weight, set.ptr());
    params.add(weight);
    return (int) index;
  }

  /** Moves sparse parameter index to a new set: shared entries keep their state, new ones start at zero. */
  public void sparseReindex(int index, SparseSet set) {
    if (set == null) throw new NullPointerException("set");
    S2ftNative.s2ft_optimizer_sparse_reindex(ptr(), index, set.ptr());
  }

  /** One step over all parameters; returns the global gradient norm before clipping. */
  public double step(double lr, Tensor... grads) {
    double[] norm = new double[1];
    S2ftNative.s2ft_optimizer_step(ptr(), lr, grads, norm);
    return norm[0];
  }

  /** The number of steps taken (restored by load). */
  public long stepCount() {
    return S2ftNative.s2ft_optimizer_step_count(ptr());
  }

  /** Saves the optimizer state (moments, masters, step count) to a safetensors file. */
  public void save(String path) {
    S2ftNative.s2ft_optimizer_save(ptr(), path);
  }

  /** Restores state saved by save() into an optimizer with the same parameters, so training resumes exactly. */
  public void load(String path) {
    S2ftNative.s2ft_optimizer_load(ptr(), path);
  }
}
