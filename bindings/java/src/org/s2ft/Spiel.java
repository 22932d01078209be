package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_spiel_options;
import org.s2ft.swig.s2ft_spiel_stats;

/**
 * A SpIEL schedule (Ansell et al., 2024; s2ft_spiel): moves the trained entries of one sparse
 * parameter of an {@link Optimizer} during training. Make it for a parameter registered with
 * {@link Optimizer#addSparse} (normally from random entries) before the first training step: the
 * weight's current values at the entries become their base values. Each step: the sparse backward
 * with the current set, {@link #observe} for every micro-batch, the optimizer's step, then
 * {@link #step}; when that returns true the set changed: take {@link #currentSet}.
 *
 * <p>At a reselection (after steps M, M + N, M + 2N, ...) the n = floor(p(t) k) entries of smallest
 * |W - W_base| are dropped (their base values are written back into the weight) and as many regrow,
 * by accumulated gradient ({@link #AG}) or by a row x column score ({@link #MA}); the parameter is
 * reindexed (surviving entries keep their optimizer state exactly).
 *
 * <p>The schedule keeps its optimizer: close the schedule first ({@link Optimizer#close} throws while
 * one is open), and the optimizer before the context.
 */
public final class Spiel extends NativeHandle {
  /** Regrowth by accumulated gradient ("rigl") or by the SM3-style row x column score. */
  public static final int AG = 0, MA = 1;
  /** Rate decay: p0 (1 - t/T) or p0 (1 + cos(pi t/T)) / 2. */
  public static final int DECAY_LINEAR = 0, DECAY_COSINE = 1;
  /** MA's scores: the SM3 optimizer's row/column accumulators, or sums of dy^2 per row and x^2 per column. */
  public static final int MA_OPTIMIZER = 0, MA_ACTIVATIONS = 1;

  /** Schedule options; the defaults are the library's (s2ft_spiel_options_init), but totalSteps must be set. */
  public static final class Options {
    /** AG or MA. */
    public int regrow = AG;
    /** N: reselect after steps M, M + N, M + 2N, ... */
    public long reselectInterval = 20;
    /** M in [1, N]: the steps observed before a reselection. */
    public long accumulationSteps = 5;
    /** T: the run's optimizer steps (the decay needs them); 0 is refused. */
    public long totalSteps = 0;
    /** p0 in [0, 1]. */
    public double initialRate = 0.2;
    /** DECAY_LINEAR or DECAY_COSINE. */
    public int decay = DECAY_LINEAR;
    /** p = 1 at the first reselection (t = M). */
    public boolean firstFull = true;
    /** AG: candidates per window; 0 is the entry count k. */
    public long candidates = 0;
    /** AG with AdamW: seed the regrown entries' moments from the window. */
    public boolean seedMoments = true;
    /** MA: MA_OPTIMIZER (needs an SM3 optimizer) or MA_ACTIVATIONS. */
    public int maSource = MA_OPTIMIZER;
    /** Observe calls per optimizer step (gradient accumulation micro-batches). */
    public long observationsPerStep = 1;

    /** The defaults, for a run of totalSteps optimizer steps. */
    public static Options forSteps(long totalSteps) {
      Options o = new Options();
      o.totalSteps = totalSteps;
      return o;
    }

    Options copy() {
      Options o = new Options();
      o.regrow = regrow;
      o.reselectInterval = reselectInterval;
      o.accumulationSteps = accumulationSteps;
      o.totalSteps = totalSteps;
      o.initialRate = initialRate;
      o.decay = decay;
      o.firstFull = firstFull;
      o.candidates = candidates;
      o.seedMoments = seedMoments;
      o.maSource = maSource;
      o.observationsPerStep = observationsPerStep;
      return o;
    }

    /** The C struct: s2ft_spiel_options_init, then these fields; the caller deletes it. */
    s2ft_spiel_options toNative() {
      s2ft_spiel_options n = new s2ft_spiel_options();
      try {
        S2ftNative.s2ft_spiel_options_init(n, S2ftNativeVersions.SPIEL_OPTIONS);
      } catch (RuntimeException e) {
        n.delete();
        throw e;
      }
      n.setRegrow(regrow);
      n.setReselect_interval(reselectInterval);
      n.setAccumulation_steps(accumulationSteps);
      n.setTotal_steps(totalSteps);
      n.setInitial_rate(initialRate);
      n.setDecay(decay);
      n.setFirst_full(firstFull ? 1 : 0);
      n.setCandidates(candidates);
      n.setSeed_moments(seedMoments ? 1 : 0);
      n.setMa_source(maSource);
      n.setObservations_per_step(observationsPerStep);
      return n;
    }
  }

  /** What a schedule has done (s2ft_spiel_stats). */
  public static final class Stats {
    /** Steps counted by {@link Spiel#step}. */
    public final long steps;
    /** The trained entries k (constant). */
    public final long count;
    /** Reselection steps run. */
    public final long reselections;
    /** Observe calls used (inside accumulation windows). */
    public final long observations;
    /** Dense [out, in] gradients formed (AG: one per window). */
    public final long denseGradients;
    /** The next reselection step, 0 when none is left. */
    public final long nextReselection;
    /** The last reselection's step (0: none yet). */
    public final long lastStep;
    /** Its rate p. */
    public final double lastRate;
    /** Its n = floor(p k). */
    public final long lastTarget;
    /** Entries it dropped (their base values written back). */
    public final long lastDropped;
    /** Entries it regrew (as many as it dropped). */
    public final long lastRegrown;

    Stats(s2ft_spiel_stats s) {
      steps = s.getSteps();
      count = s.getCount();
      reselections = s.getReselections();
      observations = s.getObservations();
      denseGradients = s.getDense_gradients();
      nextReselection = s.getNext_reselection();
      lastStep = s.getLast_step();
      lastRate = s.getLast_rate();
      lastTarget = s.getLast_target();
      lastDropped = s.getLast_dropped();
      lastRegrown = s.getLast_regrown();
    }
  }

  private final Optimizer optimizer; // kept: the library's schedule uses it
  private final int paramIndex;
  private final Tensor weight;
  private final Options options;

  /**
   * A schedule for sparse parameter paramIndex of opt (its weight as registered). Throws
   * S2ftException (ERR_INVALID_ARGUMENT) on a bad option, whose message names it.
   */
  public Spiel(Context ctx, Optimizer opt, int paramIndex, Options options) {
    this(ctx, opt, paramIndex, opt.param(paramIndex), options == null ? new Options() : options.copy());
  }

  private Spiel(Context ctx, Optimizer opt, int paramIndex, Tensor weight, Options options) {
    super(create(ctx, opt, paramIndex, weight, options));
    this.optimizer = opt;
    this.paramIndex = paramIndex;
    this.weight = weight;
    this.options = options;
    opt.scheduleOpened();
  }

  private static long create(Context ctx, Optimizer opt, int paramIndex, Tensor weight, Options options) {
    s2ft_spiel_options n = options.toNative();
    try {
      return S2ftNative.s2ft_spiel_create(ctx.ptr(), opt.ptr(), paramIndex, weight, n);
    } finally {
      n.delete();
    }
  }

  @Override
  void destroy(long p) {
    S2ftNative.s2ft_spiel_destroy(p);
    optimizer.scheduleClosed();
  }

  /** The optimizer parameter the schedule moves. */
  public int paramIndex() {
    return paramIndex;
  }

  /** The optimizer the schedule keeps. */
  public Optimizer optimizer() {
    return optimizer;
  }

  /** The replacement rate p(step) of options (see the class comment); throws on bad options or step < 1. */
  public static double rate(Options options, long step) {
    s2ft_spiel_options n = (options == null ? new Options() : options).toNative();
    try {
      double[] p = new double[1];
      S2ftNative.s2ft_spiel_rate(n, step, p);
      return p[0];
    } finally {
      n.delete();
    }
  }

  /** The replacement rate p(step) of this schedule's options. */
  public double rate(long step) {
    return rate(options, step);
  }

  /**
   * Shows the schedule one micro-batch of the coming step: x [T, in] and dy [T, out] as given to the
   * sparse backward. Call it for every backward of the weight, before {@link #step}; it does nothing
   * outside accumulation windows.
   */
  public void observe(Context ctx, Tensor x, Tensor dy) {
    S2ftNative.s2ft_spiel_observe(ptr(), ctx.ptr(), x, dy);
  }

  /**
   * Counts one step (call it after the optimizer's step); at a reselection step drops and regrows
   * entries, writing the dropped entries' base values into the weight. Returns whether the set
   * changed. On failure nothing changes.
   */
  public boolean step(Context ctx) {
    return S2ftNative.s2ft_spiel_step(ptr(), ctx.ptr(), weight) != 0;
  }

  /** A new set of the schedule's current entries on ctx's device (the caller closes it). */
  public SparseSet currentSet(Context ctx) {
    return SparseSet.adopt(S2ftNative.s2ft_spiel_current_set(ptr(), ctx.ptr()));
  }

  /** What the schedule has done so far. */
  public Stats stats() {
    s2ft_spiel_stats s = new s2ft_spiel_stats();
    try {
      s.setVersion(S2ftNativeVersions.SPIEL_STATS);
      S2ftNative.s2ft_spiel_stats_get(ptr(), s);
      return new Stats(s);
    } finally {
      s.delete();
    }
  }
}
