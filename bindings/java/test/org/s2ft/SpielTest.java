package org.s2ft;

import static org.junit.Assert.*;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;
import org.junit.Test;

/** SpIEL schedules and LIFT's mask refresh: a small training loop on a random 12 x 10 weight. */
public class SpielTest extends TestSupport {
  static final int ROWS = 12, COLS = 10, K = 20;

  /** K distinct random flat indices, ascending. */
  static long[] randomEntries(long seed) {
    Random r = new Random(seed);
    TreeSet<Long> s = new TreeSet<>();
    while (s.size() < K) s.add((long) r.nextInt(ROWS * COLS));
    return s.stream().mapToLong(Long::longValue).toArray();
  }

  /** True when w equals w0 bit for bit outside the flat indices. */
  static boolean changedOnlyAt(float[] w, float[] w0, long[] indices) {
    for (int i = 0; i < w.length; ++i)
      if (Arrays.binarySearch(indices, i) < 0 && Float.floatToRawIntBits(w[i]) != Float.floatToRawIntBits(w0[i]))
        return false;
    return true;
  }

  /** steps training steps on random x, dy; the set is replaced when it moves; returns the steps it moved after. */
  static List<Integer> train(Context ctx, Spiel spiel, Optimizer opt, SparseSet[] set, int steps, long seed) {
    List<Integer> movedAt = new ArrayList<>();
    for (int t = 1; t <= steps; ++t) {
      Tensor x = Tensor.of(random(seed + 2 * t, 8 * COLS), 8, COLS);
      Tensor dy = Tensor.of(random(seed + 2 * t + 1, 8 * ROWS), 8, ROWS);
      Tensor g = Tensor.of(new float[(int) set[0].count()], set[0].count());
      set[0].backward(ctx, x, dy, null, null, g, 0);
      spiel.observe(ctx, x, dy);
      opt.step(0.05, g);
      if (spiel.step(ctx)) {
        movedAt.add(t);
        set[0].close();
        set[0] = spiel.currentSet(ctx);
      }
    }
    return movedAt;
  }

  @Test
  @SuppressWarnings("try") // closes the optimizer early on purpose
  public void agMovesTheEntriesAndResetsTheDroppedOnes() {
    long[] first = randomEntries(1);
    Tensor w = randomDirect(2, ROWS, COLS);
    float[] w0 = w.toFloatArray();
    try (Context ctx = new Context(); Optimizer opt = new Optimizer(ctx, null)) {
      SparseSet[] set = {SparseSet.create(ctx, ROWS, COLS, first)};
      try {
        assertEquals(0, opt.addSparse(w, set[0]));
        Spiel.Options o = Spiel.Options.forSteps(12);
        o.reselectInterval = 4;
        o.accumulationSteps = 2;
        try (Spiel spiel = new Spiel(ctx, opt, 0, o)) {
          assertEquals(0, spiel.paramIndex());
          assertSame(opt, spiel.optimizer());
          List<Integer> movedAt = train(ctx, spiel, opt, set, 7, 100);
          // Reselections after steps M + j N = 2, 6; the first replaces everything (firstFull).
          assertEquals(Integer.valueOf(2), movedAt.get(0));
          for (int t : movedAt) assertTrue("moved after step " + t, t == 2 || t == 6);
          Spiel.Stats st = spiel.stats();
          assertEquals(7, st.steps);
          assertEquals(K, st.count);
          assertEquals(2, st.reselections);
          assertEquals(2, st.denseGradients); // one dense dW per window
          assertEquals(4, st.observations);
          assertEquals(10, st.nextReselection);
          assertEquals(6, st.lastStep);
          assertEquals(0.2 * (1 - 6.0 / 12), st.lastRate, 1e-12);
          assertEquals(2, st.lastTarget);
          assertEquals(st.lastDropped, st.lastRegrown);
          long[] current = set[0].indices();
          assertEquals(K, current.length);
          assertFalse(Arrays.equals(first, current));
          try (SparseSet again = spiel.currentSet(ctx)) {
            assertArrayEquals(current, again.indices());
          }
          // Dropped entries are back at their base values: the weight moved at the current entries only.
          float[] now = w.toFloatArray();
          assertTrue(changedOnlyAt(now, w0, current));
          assertFalse(Arrays.equals(now, w0));
          for (long t : new long[] {1, 3, 5, 9, 12}) assertEquals(0.2 * (1 - t / 12.0), spiel.rate(t), 1e-12);
          assertEquals(1.0, spiel.rate(2), 0.0);
          assertEquals(0.0, spiel.rate(13), 0.0);
          // The schedule keeps the optimizer: closing the optimizer first is refused.
          try {
            opt.close();
            fail("the optimizer was closed under an open schedule");
          } catch (IllegalStateException e) {
            assertFalse(opt.isClosed());
          }
        }
        Spiel.Options c = Spiel.Options.forSteps(12);
        c.decay = Spiel.DECAY_COSINE;
        c.firstFull = false;
        c.initialRate = 0.5;
        assertEquals(0.5 * (1 + Math.cos(Math.PI * 2 / 12)) / 2, Spiel.rate(c, 2), 1e-12);
      } finally {
        set[0].close();
      }
    }
  }

  @Test
  public void maWithActivationSums() {
    Tensor w = randomDirect(3, ROWS, COLS);
    float[] w0 = w.toFloatArray();
    try (Context ctx = new Context(); Optimizer opt = new Optimizer(ctx, null)) {
      SparseSet[] set = {SparseSet.create(ctx, ROWS, COLS, randomEntries(4))};
      try {
        opt.addSparse(w, set[0]);
        Spiel.Options o = Spiel.Options.forSteps(12);
        o.regrow = Spiel.MA;
        o.maSource = Spiel.MA_ACTIVATIONS;
        o.reselectInterval = 4;
        o.accumulationSteps = 2;
        o.firstFull = false;
        o.initialRate = 0.5;
        try (Spiel spiel = new Spiel(ctx, opt, 0, o)) {
          List<Integer> movedAt = train(ctx, spiel, opt, set, 6, 200);
          Spiel.Stats st = spiel.stats();
          assertEquals(6, st.steps);
          assertEquals(2, st.reselections);
          assertEquals(0, st.denseGradients); // MA forms no dense gradient
          assertEquals((long) Math.floor(0.5 * (1 - 6.0 / 12) * K), st.lastTarget);
          assertFalse(movedAt.isEmpty());
          assertEquals(K, set[0].count());
          assertTrue(changedOnlyAt(w.toFloatArray(), w0, set[0].indices()));
        }
      } finally {
        set[0].close();
      }
    }
  }

  @Test
  public void badOptionsThrowWithTheStatus() {
    Tensor w = randomDirect(5, ROWS, COLS);
    try (Context ctx = new Context(); Optimizer opt = new Optimizer(ctx, null);
         SparseSet set = SparseSet.create(ctx, ROWS, COLS, randomEntries(6))) {
      opt.addSparse(w, set);
      try {
        new Spiel(ctx, opt, 0, new Spiel.Options()).close(); // totalSteps 0
        fail("totalSteps 0 was accepted");
      } catch (S2ftException e) {
        assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
        assertTrue(e.getMessage(), e.getMessage().contains("total_steps"));
      }
      Spiel.Options bad = Spiel.Options.forSteps(12);
      bad.reselectInterval = 4;
      bad.accumulationSteps = 5;
      try {
        new Spiel(ctx, opt, 0, bad).close();
        fail("accumulationSteps > reselectInterval was accepted");
      } catch (S2ftException e) {
        assertTrue(e.getMessage(), e.getMessage().contains("accumulation_steps"));
      }
      Spiel.Options ma = Spiel.Options.forSteps(12);
      ma.regrow = Spiel.MA; // the SM3 source on an AdamW optimizer
      try {
        new Spiel(ctx, opt, 0, ma).close();
        fail("MA_OPTIMIZER on AdamW was accepted");
      } catch (S2ftException e) {
        assertTrue(e.getMessage(), e.getMessage().contains("SM3"));
      }
      try {
        new Spiel(ctx, opt, 1, Spiel.Options.forSteps(12)).close();
        fail("a parameter index out of range was accepted");
      } catch (S2ftException e) {
        assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      }
      try {
        Spiel.rate(Spiel.Options.forSteps(12), 0);
        fail("step 0 was accepted");
      } catch (S2ftException e) {
        assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      }
      try (Spiel spiel = new Spiel(ctx, opt, 0, Spiel.Options.forSteps(12))) {
        try {
          spiel.observe(ctx, Tensor.of(new float[3 * (COLS + 1)], 3, COLS + 1), Tensor.of(new float[3 * ROWS], 3, ROWS));
          fail("x of the wrong width was accepted");
        } catch (S2ftException e) {
          assertEquals(S2ft.ERR_SHAPE, e.status());
        }
        assertFalse(spiel.step(ctx));
        assertEquals(1, spiel.stats().steps);
      }
    }
  }

  @Test
  public void liftRefreshMovesTheParameterToThePrincipalWeights() {
    long[] old = randomEntries(7);
    Tensor w = randomDirect(8, ROWS, COLS);
    float[] ones = new float[K];
    Arrays.fill(ones, 1f);
    try (Context ctx = new Context(); Optimizer opt = new Optimizer(ctx, null);
         SparseSet set = SparseSet.create(ctx, ROWS, COLS, old)) {
      opt.addSparse(w, set);
      opt.step(0.05, Tensor.of(ones, K));
      SparseSet.Refresh r;
      try {
        r = SparseSet.liftRefresh(ctx, opt, 0, 2, K, 0, true, SparseSet.LIFT_EXACT, 0);
      } catch (S2ftException e) {
        assertEquals(S2ft.ERR_UNSUPPORTED, e.status());
        return; // a build without LAPACK
      }
      try (SparseSet fresh = r.set) {
        long[] idx = fresh.indices();
        assertEquals(K, idx.length);
        assertArrayEquals(SparseSet.liftSelect(ctx, w, 2, K, 0, true, SparseSet.LIFT_EXACT, 0), idx);
        long kept = Arrays.stream(idx).filter(i -> Arrays.binarySearch(old, i) >= 0).count();
        assertEquals(kept, r.kept);
        float[] before = w.toFloatArray();
        opt.step(0.05, Tensor.of(ones, K)); // the new set's entries move
        assertTrue(changedOnlyAt(w.toFloatArray(), before, idx));
      }
      try {
        SparseSet.liftRefresh(ctx, opt, 0, 2, K, 0.5, true, SparseSet.LIFT_EXACT, 0).set.close();
        fail("count and density together were accepted");
      } catch (S2ftException e) {
        assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
        assertTrue(e.getMessage(), e.getMessage().contains("both set"));
      }
    }
  }
}
