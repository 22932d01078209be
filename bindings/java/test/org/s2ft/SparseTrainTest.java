package org.s2ft;

import static org.junit.Assert.*;

import org.junit.Test;

/** Sparse sets, the sparse backward, the optimizer on sparse entries and LIFT's selection. */
public class SparseTrainTest extends TestSupport {
  @Test
  public void setRoundTripsAndRejectsBadIndices() {
    try (Context ctx = new Context(); SparseSet s = SparseSet.create(ctx, 3, 4, new long[] {1, 5, 11})) {
      assertEquals(3, s.count());
      assertArrayEquals(new long[] {3, 4}, s.shape());
      assertArrayEquals(new long[] {1, 5, 11}, s.indices());
      try {
        SparseSet.create(ctx, 3, 4, new long[] {5, 1}).close();
        fail("unsorted indices were accepted");
      } catch (S2ftException e) {
        assertTrue(e.getMessage(), e.getMessage().contains("indices[1]"));
      }
    }
  }

  @Test
  public void backwardMatchesGatheredDenseGradient() {
    final int t = 9, out = 5, in = 7;
    final long[] idx = {0, 6, 12, 20, 34};
    float[] x = random(41, t * in), dy = random(42, t * out), w = random(43, out * in);
    float[] grad = nans(idx.length), dx = nans(t * in);
    try (Context ctx = new Context(); SparseSet s = SparseSet.create(ctx, out, in, idx)) {
      Tensor g = Tensor.of(grad, idx.length), dxt = Tensor.of(dx, t, in);
      s.backward(ctx, Tensor.of(x, t, in), Tensor.of(dy, t, out), Tensor.of(w, out, in), dxt, g, 0);
      grad = g.toFloatArray();
      dx = dxt.toFloatArray();
    }
    for (int n = 0; n < idx.length; ++n) {
      int r = (int) idx[n] / in, c = (int) idx[n] % in;
      double ref = 0;
      for (int i = 0; i < t; ++i) ref += (double) dy[i * out + r] * x[i * in + c];
      assertClose("grad[" + n + "]", ref, grad[n], 1e-5);
    }
    for (int i = 0; i < t; ++i)
      for (int c = 0; c < in; ++c) {
        double ref = 0;
        for (int o = 0; o < out; ++o) ref += (double) dy[i * out + o] * w[o * in + c];
        assertClose("dx[" + i + "," + c + "]", ref, dx[i * in + c], 1e-5);
      }
  }

  @Test
  public void sm3OnSparseEntriesAndReindex() {
    try (Context ctx = new Context(); SparseSet a = SparseSet.create(ctx, 2, 3, new long[] {1, 5});
         SparseSet b = SparseSet.create(ctx, 2, 3, new long[] {1, 2})) {
      Tensor w = Tensor.copyOf(new float[] {1, 1, 1, 1, 1, 1}, 2, 3);
      Optimizer.Options o = new Optimizer.Options();
      o.kind = Optimizer.SM3;
      try (Optimizer opt = new Optimizer(ctx, o)) {
        assertEquals(0, opt.addSparse(w, a));
        opt.step(0.5, Tensor.of(new float[] {2, -1}, 2));
        opt.sparseReindex(0, b);
        opt.step(0.5, Tensor.of(new float[] {0, 1}, 2));
      }
      float[] got = w.toFloatArray();
      assertClose("w[0,1]", 0.5, got[1], 1e-6);
      assertClose("w[0,2]", 1.0 - 0.5 / Math.sqrt(2.0), got[2], 1e-6);
      assertClose("w[1,2]", 1.5, got[5], 1e-6);
    }
  }

  @Test
  public void liftSelectsPrincipalWeights() {
    float[] w = {6, 2, -10, 3, 1, -5}; // rank 1: [2, 1]^T [3, 1, -5], no ties
    try (Context ctx = new Context()) {
      long[] got;
      try {
        got = SparseSet.liftSelect(ctx, Tensor.of(w, 2, 3), 1, 2, 0, true, SparseSet.LIFT_EXACT, 0);
      } catch (S2ftException e) {
        assertEquals(S2ft.ERR_UNSUPPORTED, e.status());
        return; // a build without LAPACK
      }
      assertArrayEquals(new long[] {0, 2}, got);
      assertArrayEquals(new long[] {1, 4},
          SparseSet.liftSelect(ctx, Tensor.of(w, 2, 3), 1, 2, 0, false, SparseSet.LIFT_RANDOMIZED, 5));
    }
    assertEquals(241664, SparseSet.liftCountForLoraRank(4096, 11008, 16));
  }
}
