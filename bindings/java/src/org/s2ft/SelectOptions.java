package org.s2ft;

import org.s2ft.swig.S2ftNative;
import org.s2ft.swig.s2ft_select_options;

/**
 * Options of {@link Selection#select} (s2ft_select_options). The defaults are
 * the library's: targets O | DOWN, random strategy, largest order, per-layer
 * allocation, heads by KV group, seed 0, budgets O ratio 0.05 and DOWN 0.02.
 */
public final class SelectOptions {
  public static final int STRATEGY_RANDOM = 0, STRATEGY_WEIGHT = 1, STRATEGY_ACTIVATION = 2,
      STRATEGY_WEIGHT_ACT = 3, STRATEGY_GRADIENT = 4;
  /** LIFT's principal weights: scores from {@link Statistics#addPrincipal}. */
  public static final int STRATEGY_PRINCIPAL = 5;
  public static final int ORDER_LARGEST = 0, ORDER_SMALLEST = 1;
  public static final int ALLOCATE_PER_LAYER = 0, ALLOCATE_GLOBAL = 1;
  public static final int HEADS_BY_GROUP = 0, HEADS_SINGLE = 1;

  private long targets;
  private int strategy, order, allocation, headGranularity;
  private long seed;
  private final double[] ratio;
  private final long[] count;

  /** The library defaults: O and DOWN, random strategy, ratios 0.05 and 0.02. */
  public SelectOptions() {
    s2ft_select_options o = new s2ft_select_options();
    try {
      S2ftNative.s2ft_select_options_init(o, S2ftNativeVersions.SELECT_OPTIONS);
      targets = o.getTargets();
      strategy = o.getStrategy();
      order = o.getOrder();
      allocation = o.getAllocation();
      headGranularity = o.getHead_granularity();
      seed = o.getSeed();
      ratio = o.getRatio();
      count = o.getCount();
    } finally {
      o.delete();
    }
  }

  /** Target mask (S2ft.targetBit(...) values or'ed). */
  public SelectOptions targets(int mask) { targets = mask & 0xffffffffL; return this; }
  /** Strategy: STRATEGY_RANDOM, _WEIGHT, _ACTIVATION, _WEIGHT_ACT, _GRADIENT or _PRINCIPAL. */
  public SelectOptions strategy(int s) { strategy = s; return this; }
  /** Order: ORDER_LARGEST or ORDER_SMALLEST. */
  public SelectOptions order(int o) { order = o; return this; }
  /** Allocation: ALLOCATE_PER_LAYER or ALLOCATE_GLOBAL. */
  public SelectOptions allocation(int a) { allocation = a; return this; }
  /** Head granularity: HEADS_BY_GROUP or HEADS_SINGLE. */
  public SelectOptions headGranularity(int g) { headGranularity = g; return this; }
  /** The seed (the 64 bits of a Java long, read as unsigned). */
  public SelectOptions seed(long s) { seed = s; return this; }

  /** Budget of a target as a ratio in (0, 1]; clears its count. */
  public SelectOptions ratio(int target, double r) {
    ratio[target] = r;
    count[target] = 0;
    return this;
  }

  /** Budget of a target as a count of units; clears its ratio. */
  public SelectOptions count(int target, long n) {
    count[target] = n;
    ratio[target] = 0;
    return this;
  }

  /** The target mask. */
  public int targets() { return (int) targets; }
  /** The ratio budget of a target (0 when a count is set). */
  public double ratio(int target) { return ratio[target]; }
  /** The count budget of a target (0 when a ratio is set). */
  public long count(int target) { return count[target]; }

  s2ft_select_options toNative() {
    s2ft_select_options o = new s2ft_select_options();
    S2ftNative.s2ft_select_options_init(o, S2ftNativeVersions.SELECT_OPTIONS);
    o.setTargets(targets);
    o.setStrategy(strategy);
    o.setOrder(order);
    o.setAllocation(allocation);
    o.setHead_granularity(headGranularity);
    o.setSeed(seed);
    o.setRatio(ratio);
    o.setCount(count);
    return o;
  }
}
