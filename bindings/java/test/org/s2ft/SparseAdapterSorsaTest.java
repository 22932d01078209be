package org.s2ft;

import static org.junit.Assert.*;

import java.io.File;
import java.util.Arrays;
import org.junit.Test;

/** Sparse adapter entries, SORSA and the principal selection strategy. */
public class SparseAdapterSorsaTest extends TestSupport {
  @Test
  public void sparseEntriesRoundTripAndSaveLoad() throws Exception {
    File f = File.createTempFile("s2ft-sparse", ".safetensors");
    f.deleteOnExit();
    long[] qs = SHAPE.weightShape(S2ft.WEIGHT_Q);
    assertArrayEquals(new long[] {12, 12}, qs);
    Tensor q = randomDirect(3, qs[0], qs[1]);
    float[] dq = random(4, 3);
    try (Adapter a = Adapter.create(SHAPE, "sp", 1.0)) {
      assertEquals(0, a.sparseInfo().entries);
      a.setSparse(1, S2ft.WEIGHT_Q, new long[] {0, 17, 143}, Tensor.of(dq, 3), q);
      a.setSparse(0, S2ft.WEIGHT_GATE, new long[] {5, 6}, Tensor.of(new float[] {0.5f, -0.25f}, 1, 2), null);
      Adapter.SparseEntries e = a.sparse(1, S2ft.WEIGHT_Q);
      assertArrayEquals(new long[] {0, 17, 143}, e.indices);
      assertArrayEquals(bits(dq), bits(e.deltas));
      assertNotEquals(0, e.fingerprint);
      Adapter.SparseEntries g = a.sparse(0, S2ft.WEIGHT_GATE);
      assertArrayEquals(new long[] {5, 6}, g.indices);
      assertArrayEquals(new float[] {0.5f, -0.25f}, g.deltas, 0);
      assertEquals(0, g.fingerprint);
      assertEquals(0, a.sparse(0, S2ft.WEIGHT_K).indices.length);
      Adapter.SparseInfo info = a.sparseInfo();
      assertEquals(S2ft.weightBit(S2ft.WEIGHT_Q) | S2ft.weightBit(S2ft.WEIGHT_GATE), info.weights);
      assertEquals(5, info.entries);
      assertEquals(0, a.targets());
      a.save(f.getPath());
      try (Adapter b = Adapter.load(f.getPath())) {
        for (int[] lw : new int[][] {{1, S2ft.WEIGHT_Q}, {0, S2ft.WEIGHT_GATE}}) {
          Adapter.SparseEntries x = a.sparse(lw[0], lw[1]), y = b.sparse(lw[0], lw[1]);
          assertArrayEquals(x.indices, y.indices);
          assertArrayEquals(bits(x.deltas), bits(y.deltas));
          assertEquals(x.fingerprint, y.fingerprint);
        }
        assertEquals(5, b.sparseInfo().entries);
      }
      a.clearSparse(0, S2ft.WEIGHT_GATE);
      assertEquals(S2ft.weightBit(S2ft.WEIGHT_Q), a.sparseInfo().weights);
    }
  }

  @Test
  public void unsortedIndicesAreAnInvalidArgument() {
    try (Adapter a = Adapter.create(SHAPE, "sp", 1.0)) {
      a.setSparse(0, S2ft.WEIGHT_K, new long[] {1, 2}, Tensor.of(new float[] {1, 2}, 2), null);
      S2ftException e = ErrorTest.expectS2ft(
          () -> a.setSparse(0, S2ft.WEIGHT_K, new long[] {4, 3}, Tensor.of(new float[] {1, 2}, 2), null));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertFalse(e.getMessage().isEmpty());
      assertArrayEquals(new long[] {1, 2}, a.sparse(0, S2ft.WEIGHT_K).indices);
    }
  }

  @Test
  public void applyThenRemoveIsBitExact() {
    long[] qs = SHAPE.weightShape(S2ft.WEIGHT_Q), gs = SHAPE.weightShape(S2ft.WEIGHT_GATE);
    Tensor q = randomDirect(5, qs[0], qs[1]), gate = randomDirect(6, gs[0], gs[1]);
    float[] q0 = q.toFloatArray(), gate0 = gate.toFloatArray();
    float[] dq = random(7, 3), dg = random(8, 2);
    long[] qi = {2, 50, 143}, gi = {0, 119};
    LayerWeights[] layers = {new LayerWeights().gate(gate), new LayerWeights().q(q)};
    try (Context ctx = new Context();
         Adapter a = Adapter.create(SHAPE, "sp", 1.0)) {
      a.setSparse(1, S2ft.WEIGHT_Q, qi, Tensor.of(dq, 3), q);
      a.setSparse(0, S2ft.WEIGHT_GATE, gi, Tensor.of(dg, 2), gate);
      try (Model m = new Model(ctx, SHAPE, layers, null)) {
        m.apply(a, 0.5, 0);
        float[] wantQ = q0.clone(), wantG = gate0.clone();
        for (int i = 0; i < qi.length; ++i) wantQ[(int) qi[i]] = (float) (q0[(int) qi[i]] + 0.5 * dq[i]);
        for (int i = 0; i < gi.length; ++i) wantG[(int) gi[i]] = (float) (gate0[(int) gi[i]] + 0.5 * dg[i]);
        assertArrayEquals(bits(wantQ), bits(q.toFloatArray()));
        assertArrayEquals(bits(wantG), bits(gate.toFloatArray()));
        m.remove();
        assertArrayEquals(bits(q0), bits(q.toFloatArray()));
        assertArrayEquals(bits(gate0), bits(gate.toFloatArray()));
      }
    }
  }

  static double[] matmulNT(float[] a, float[] b, int m, int n, int k) {
    double[] c = new double[m * n];
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        double s = 0;
        for (int p = 0; p < k; ++p) s += (double) a[i * k + p] * b[j * k + p];
        c[i * n + j] = s;
      }
    return c;
  }

  @Test
  public void sorsaInitForwardBackwardRegularizer() {
    int out = 7, in = 6, r = 3, t = 5;
    float[] w0 = random(9, out * in);
    float[] w = w0.clone(), u = new float[out * r], s = new float[r], vt = new float[r * in];
    try (Context ctx = new Context()) {
      Sorsa.init(ctx, Tensor.of(w, out, in), r, Tensor.of(u, out, r), Tensor.of(s, r), Tensor.of(vt, r, in));
      assertTrue(s[0] >= s[1] && s[1] >= s[2] && s[2] > 0);
      S2ftException e = ErrorTest.expectS2ft(() -> Sorsa.init(ctx, Tensor.of(w0.clone(), out, in), 0,
          Tensor.of(new float[out * r], out, r), Tensor.of(new float[r], r), Tensor.of(new float[r * in], r, in)));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());

      float[] x = random(10, t * in), y = new float[t * out], h = new float[t * r];
      Sorsa.forward(ctx, Tensor.of(x, t, in), Tensor.of(w, out, in), Tensor.of(u, out, r), Tensor.of(s, r),
          Tensor.of(vt, r, in), Tensor.of(y, t, out), Tensor.of(h, t, r));
      double[] ref = matmulNT(x, w0, t, out, in);
      for (int i = 0; i < y.length; ++i) assertEquals(ref[i], y[i], 1e-5);

      float[] dy = random(11, t * out);
      float[] dx = nans(t * in), du = nans(out * r), ds = nans(r), dvt = nans(r * in);
      Sorsa.backward(ctx, Tensor.of(x, t, in), Tensor.of(w, out, in), Tensor.of(u, out, r), Tensor.of(s, r),
          Tensor.of(vt, r, in), Tensor.of(h, t, r), Tensor.of(dy, t, out), Tensor.of(dx, t, in),
          Tensor.of(du, out, r), Tensor.of(ds, r), Tensor.of(dvt, r, in), 0);
      for (float[] g : new float[][] {dx, du, ds, dvt})
        for (float v : g) assertTrue(Float.isFinite(v));
      float[] w0t = new float[in * out];
      for (int i = 0; i < out; ++i)
        for (int j = 0; j < in; ++j) w0t[j * out + i] = w0[i * in + j];
      double[] refDx = matmulNT(dy, w0t, t, in, out);
      for (int i = 0; i < dx.length; ++i) assertEquals(refDx[i], dx[i], 1e-5);

      double reg = Sorsa.regularizer(ctx, Tensor.of(u, out, r), Tensor.of(vt, r, in), 1.0, null, null, 0);
      assertEquals(0.0, reg, 1e-9);
      float[] gu = nans(out * r), gvt = nans(r * in);
      Sorsa.regularizer(ctx, Tensor.of(u, out, r), Tensor.of(vt, r, in), 2.0, Tensor.of(gu, out, r),
          Tensor.of(gvt, r, in), S2ft.SORSA_UNSQUARED);
      for (float v : gu) assertTrue(Float.isFinite(v));
      float[] u2 = u.clone();
      for (int i = 0; i < u2.length; ++i) u2[i] *= 1.1f;
      double before = Sorsa.regularizer(ctx, Tensor.of(u2, out, r), Tensor.of(vt, r, in), 1.0, null, null, 0);
      float[] vt2 = vt.clone();
      double stepValue = Sorsa.regularizerStep(ctx, Tensor.of(u2, out, r), Tensor.of(vt2, r, in), 0.01, 0);
      assertEquals(0.01 * before, stepValue, 1e-9 * Math.max(1, before));
      double after = Sorsa.regularizer(ctx, Tensor.of(u2, out, r), Tensor.of(vt2, r, in), 1.0, null, null, 0);
      assertTrue(after < before);
    }
  }

  @Test
  public void principalStatisticsThenSelect() {
    long[] ds = SHAPE.weightShape(S2ft.TARGET_DOWN);
    try (Context ctx = new Context();
         Statistics stats = new Statistics(ctx, SHAPE)) {
      for (int l = 0; l < SHAPE.nLayers; ++l)
        stats.addPrincipal(l, S2ft.TARGET_DOWN, Tensor.of(random(20 + l, (int) (ds[0] * ds[1])), ds[0], ds[1]), 3);
      double[] scores = stats.get(0, S2ft.TARGET_DOWN, S2ft.STAT_PRINCIPAL);
      assertEquals(SHAPE.dFf, scores.length);
      SelectOptions o = new SelectOptions().targets(S2ft.targetBit(S2ft.TARGET_DOWN))
          .strategy(SelectOptions.STRATEGY_PRINCIPAL).count(S2ft.TARGET_DOWN, 4);
      try (Selection sel = Selection.select(ctx, SHAPE, o, stats)) {
        long[] units = sel.units(0, S2ft.TARGET_DOWN);
        Integer[] order = new Integer[scores.length];
        for (int i = 0; i < order.length; ++i) order[i] = i;
        Arrays.sort(order, (p, q) -> Double.compare(scores[q], scores[p]));
        long[] want = new long[4];
        for (int i = 0; i < 4; ++i) want[i] = order[i];
        Arrays.sort(want);
        assertArrayEquals(want, units);
      }
    }
  }
}
