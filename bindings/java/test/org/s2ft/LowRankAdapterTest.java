package org.s2ft;

import static org.junit.Assert.*;

import java.io.File;
import org.junit.Test;

/** Low-rank adapter entries: set/get and info, SORSA's update, apply/remove on a model, errors. */
public class LowRankAdapterTest extends TestSupport {
  /** C = A B in double for row-major A [m, k], B [k, n]. */
  static double[] matmul(float[] a, float[] b, int m, int k, int n) {
    double[] c = new double[m * n];
    for (int i = 0; i < m; ++i)
      for (int p = 0; p < k; ++p)
        for (int j = 0; j < n; ++j) c[i * n + j] += (double) a[i * k + p] * b[p * n + j];
    return c;
  }

  /** max |got - want| / max |want|. */
  static double relErr(double[] got, double[] want) {
    assertEquals(want.length, got.length);
    double scale = 1e-30, err = 0;
    for (double w : want) scale = Math.max(scale, Math.abs(w));
    for (int i = 0; i < got.length; ++i) err = Math.max(err, Math.abs(got[i] - want[i]));
    return err / scale;
  }

  static double[] widen(float[] v) {
    double[] d = new double[v.length];
    for (int i = 0; i < v.length; ++i) d[i] = v[i];
    return d;
  }

  @Test
  public void lowRankRoundTripInfoAndSaveLoad() throws Exception {
    File f = File.createTempFile("s2ft-low-rank", ".safetensors");
    f.deleteOnExit();
    long[] qs = SHAPE.weightShape(S2ft.WEIGHT_Q), gs = SHAPE.weightShape(S2ft.WEIGHT_GATE);
    int qr = (int) qs[0], qc = (int) qs[1], gr = (int) gs[0], gc = (int) gs[1];
    Tensor q = randomDirect(30, qr, qc);
    float[] b = random(31, qr * 3), a = random(32, 3 * qc), bg = random(33, gr), ag = random(34, gc);
    try (Adapter ad = Adapter.create(SHAPE, "lr", 1.0)) {
      assertEquals(0, ad.lowRankInfo().entries);
      assertNull(ad.lowRank(0, S2ft.WEIGHT_Q));
      ad.setLowRank(1, S2ft.WEIGHT_Q, Tensor.of(b, qr, 3), Tensor.of(a, 3, qc), q);
      ad.setLowRank(0, S2ft.WEIGHT_GATE, Tensor.of(bg, gr, 1), Tensor.of(ag, 1, gc), null);
      Adapter.LowRankEntry e = ad.lowRank(1, S2ft.WEIGHT_Q);
      assertEquals(3, e.rank);
      assertArrayEquals(bits(b), bits(e.b));
      assertArrayEquals(bits(a), bits(e.a));
      assertNotEquals(0, e.fingerprint);
      Adapter.LowRankEntry g = ad.lowRank(0, S2ft.WEIGHT_GATE);
      assertEquals(1, g.rank);
      assertArrayEquals(bits(bg), bits(g.b));
      assertArrayEquals(bits(ag), bits(g.a));
      assertEquals(0, g.fingerprint);
      assertNull(ad.lowRank(0, S2ft.WEIGHT_Q));
      Adapter.LowRankInfo info = ad.lowRankInfo();
      assertEquals(S2ft.weightBit(S2ft.WEIGHT_Q) | S2ft.weightBit(S2ft.WEIGHT_GATE), info.weights);
      assertEquals(2, info.entries);
      assertEquals(0, ad.targets());
      assertEquals(0, ad.sparseInfo().entries);

      // The rank alone, and a copy into a tensor of the caller's.
      assertEquals(3, ad.lowRank(1, S2ft.WEIGHT_Q, null, null));
      float[] b2 = new float[qr * 3];
      assertEquals(3, ad.lowRank(1, S2ft.WEIGHT_Q, Tensor.of(b2, qr, 3), null));
      assertArrayEquals(bits(b), bits(b2));
      S2ftException st = ErrorTest.expectS2ft(() -> ad.lowRank(0, S2ft.WEIGHT_Q, Tensor.of(b2, qr, 3), null));
      assertEquals(S2ft.ERR_STATE, st.status());

      ad.save(f.getPath());
      try (Adapter loaded = Adapter.load(f.getPath())) {
        for (int[] lw : new int[][] {{1, S2ft.WEIGHT_Q}, {0, S2ft.WEIGHT_GATE}}) {
          Adapter.LowRankEntry x = ad.lowRank(lw[0], lw[1]), y = loaded.lowRank(lw[0], lw[1]);
          assertEquals(x.rank, y.rank);
          assertArrayEquals(bits(x.b), bits(y.b));
          assertArrayEquals(bits(x.a), bits(y.a));
          assertEquals(x.fingerprint, y.fingerprint);
        }
        assertEquals(info.weights, loaded.lowRankInfo().weights);
        assertEquals(2, loaded.lowRankInfo().entries);
      }

      ad.clearLowRank(0, S2ft.WEIGHT_GATE);
      ad.clearLowRank(0, S2ft.WEIGHT_K); // none: not an error
      assertEquals(S2ft.weightBit(S2ft.WEIGHT_Q), ad.lowRankInfo().weights);
      assertEquals(1, ad.lowRankInfo().entries);
    }
  }

  @Test
  public void setSorsaIsARank2rEntry() {
    long[] ds = SHAPE.weightShape(S2ft.WEIGHT_DOWN);
    int rows = (int) ds[0], cols = (int) ds[1], r = 3;
    float[] u0 = random(40, rows * r), vt0 = random(41, r * cols), s0 = random(42, r);
    for (int i = 0; i < r; ++i) s0[i] = Math.abs(s0[i]) + 0.5f;
    float[] du = random(43, rows * r), ds2 = random(44, r), dvt = random(45, r * cols);
    float[] u = u0.clone(), s = s0.clone(), vt = vt0.clone();
    for (int i = 0; i < u.length; ++i) u[i] += 0.1f * du[i];
    for (int i = 0; i < s.length; ++i) s[i] += 0.1f * ds2[i];
    for (int i = 0; i < vt.length; ++i) vt[i] += 0.1f * dvt[i];
    try (Adapter ad = Adapter.create(SHAPE, "sorsa", 1.0)) {
      ad.setSorsa(0, S2ft.WEIGHT_DOWN, Tensor.of(u0, rows, r), Tensor.of(s0, r), Tensor.of(vt0, r, cols),
          Tensor.of(u, rows, r), Tensor.of(s, 1, r), Tensor.of(vt, r, cols), randomDirect(46, rows, cols));
      Adapter.LowRankEntry e = ad.lowRank(0, S2ft.WEIGHT_DOWN);
      assertEquals(2 * r, e.rank);
      assertNotEquals(0, e.fingerprint);
      double[] got = matmul(e.b, e.a, rows, 2 * r, cols), want = new double[rows * cols];
      for (int i = 0; i < rows; ++i)
        for (int j = 0; j < cols; ++j)
          for (int p = 0; p < r; ++p)
            want[i * cols + j] += (double) u[i * r + p] * s[p] * vt[p * cols + j]
                - (double) u0[i * r + p] * s0[p] * vt0[p * cols + j];
      double err = relErr(got, want);
      assertTrue("relative error " + err, err <= 1e-5);
      assertEquals(S2ft.weightBit(S2ft.WEIGHT_DOWN), ad.lowRankInfo().weights);

      // Factors of different ranks: ERR_SHAPE; not f32: ERR_DTYPE; nothing changes.
      S2ftException sh = ErrorTest.expectS2ft(() -> ad.setSorsa(1, S2ft.WEIGHT_DOWN, Tensor.of(u0, rows, r - 1),
          Tensor.of(s0, r), Tensor.of(vt0, r, cols), Tensor.of(u, rows, r), Tensor.of(s, r), Tensor.of(vt, r, cols),
          null));
      assertEquals(S2ft.ERR_SHAPE, sh.status());
      assertFalse(sh.getMessage().isEmpty());
      S2ftException dt = ErrorTest.expectS2ft(() -> ad.setSorsa(1, S2ft.WEIGHT_DOWN, Tensor.allocate(S2ft.BF16, rows, r),
          Tensor.of(s0, r), Tensor.of(vt0, r, cols), Tensor.of(u, rows, r), Tensor.of(s, r), Tensor.of(vt, r, cols),
          null));
      assertEquals(S2ft.ERR_DTYPE, dt.status());
      assertTrue(dt.getMessage(), dt.getMessage().contains("f32"));
      assertNull(ad.lowRank(1, S2ft.WEIGHT_DOWN));
    }
  }

  @Test
  public void applyThenRemoveRestoresTheBase() {
    long[] qs = SHAPE.weightShape(S2ft.WEIGHT_Q), us = SHAPE.weightShape(S2ft.TARGET_UP);
    int qr = (int) qs[0], qc = (int) qs[1], ur = (int) us[0], uc = (int) us[1];
    Tensor q = randomDirect(50, qr, qc), up = randomDirect(51, ur, uc);
    float[] q0 = q.toFloatArray(), up0 = up.toFloatArray();
    float[] bq = random(52, qr * 2), aq = random(53, 2 * qc), bu = random(54, ur * 3), au = random(55, 3 * uc);
    LayerWeights[] layers = {new LayerWeights().up(up), new LayerWeights().q(q)};
    try (Context ctx = new Context();
         Adapter ad = Adapter.create(SHAPE, "lr", 1.0)) {
      ad.setLowRank(1, S2ft.WEIGHT_Q, Tensor.of(bq, qr, 2), Tensor.of(aq, 2, qc), q);
      ad.setLowRank(0, S2ft.WEIGHT_UP, Tensor.of(bu, ur, 3), Tensor.of(au, 3, uc), up);
      try (Model m = new Model(ctx, SHAPE, layers, null)) {
        for (double scale : new double[] {1.0, 0.5}) {
          m.apply(ad, scale, 0);
          double[] dq = matmul(bq, aq, qr, 2, qc), dup = matmul(bu, au, ur, 3, uc);
          double[] wantQ = new double[dq.length], wantU = new double[dup.length];
          for (int i = 0; i < dq.length; ++i) wantQ[i] = q0[i] + scale * dq[i];
          for (int i = 0; i < dup.length; ++i) wantU[i] = up0[i] + scale * dup[i];
          double eq = relErr(widen(q.toFloatArray()), wantQ), eu = relErr(widen(up.toFloatArray()), wantU);
          assertTrue("q: relative error " + eq, eq <= 1e-5);
          assertTrue("up: relative error " + eu, eu <= 1e-5);
          m.remove();
          assertArrayEquals(bits(q0), bits(q.toFloatArray()));
          assertArrayEquals(bits(up0), bits(up.toFloatArray()));
        }
      }
      // Another base: the whole-weight fingerprint differs.
      q.set(q.get(0, 0) + 1, 0, 0);
      try (Model m = new Model(ctx, SHAPE, layers, null)) {
        S2ftException e = ErrorTest.expectS2ft(() -> m.apply(ad, 1.0, 0));
        assertEquals(S2ft.ERR_FORMAT, e.status());
      }
      assertArrayEquals(bits(up0), bits(up.toFloatArray()));
    }
  }

  @Test
  public void errorsNameTheProblemAndChangeNothing() {
    long[] ks = SHAPE.weightShape(S2ft.WEIGHT_K);
    int kr = (int) ks[0], kc = (int) ks[1];
    float[] b = random(60, kr * 2), a = random(61, 2 * kc);
    try (Adapter ad = Adapter.create(SHAPE, "lr", 1.0)) {
      ad.setLowRank(0, S2ft.WEIGHT_K, Tensor.of(b, kr, 2), Tensor.of(a, 2, kc), null);

      // Only one factor.
      S2ftException e = ErrorTest.expectS2ft(() -> ad.setLowRank(0, S2ft.WEIGHT_K, Tensor.of(b, kr, 2), null, null));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertTrue(e.getMessage(), e.getMessage().contains("a is NULL"));
      e = ErrorTest.expectS2ft(() -> ad.setLowRank(0, S2ft.WEIGHT_K, null, Tensor.of(a, 2, kc), null));
      assertTrue(e.getMessage(), e.getMessage().contains("b is NULL"));
      // Wrong shapes: b's rows, a's rank, the base.
      e = ErrorTest.expectS2ft(() -> ad.setLowRank(0, S2ft.WEIGHT_K, Tensor.of(b, kr - 1, 2), Tensor.of(a, 2, kc), null));
      assertEquals(S2ft.ERR_SHAPE, e.status());
      assertFalse(e.getMessage().isEmpty());
      e = ErrorTest.expectS2ft(() -> ad.setLowRank(0, S2ft.WEIGHT_K, Tensor.of(b, kr, 2), Tensor.of(a, 1, kc), null));
      assertEquals(S2ft.ERR_SHAPE, e.status());
      e = ErrorTest.expectS2ft(() -> ad.setLowRank(0, S2ft.WEIGHT_K, Tensor.of(b, kr, 2), Tensor.of(a, 2, kc),
          Tensor.of(new float[kr * kc], kc, kr)));
      assertEquals(S2ft.ERR_SHAPE, e.status());
      // A value not finite.
      float[] bad = b.clone();
      bad[3] = Float.NaN;
      e = ErrorTest.expectS2ft(() -> ad.setLowRank(0, S2ft.WEIGHT_K, Tensor.of(bad, kr, 2), Tensor.of(a, 2, kc), null));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertTrue(e.getMessage(), e.getMessage().contains("non-finite"));
      Adapter.LowRankEntry kept = ad.lowRank(0, S2ft.WEIGHT_K);
      assertArrayEquals(bits(b), bits(kept.b));
      assertArrayEquals(bits(a), bits(kept.a));

      // A low-rank entry where sparse entries are, sparse entries where a low-rank entry is, and a
      // low-rank entry beside a structured one.
      long[] gs = SHAPE.weightShape(S2ft.WEIGHT_GATE);
      ad.setSparse(1, S2ft.WEIGHT_GATE, new long[] {3, 4}, Tensor.of(new float[] {1, 1}, 2), null);
      e = ErrorTest.expectS2ft(() -> ad.setLowRank(1, S2ft.WEIGHT_GATE, Tensor.of(new float[(int) gs[0]], gs[0], 1),
          Tensor.of(new float[(int) gs[1]], 1, gs[1]), null));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertTrue(e.getMessage(), e.getMessage().contains("sparse entries"));
      assertNull(ad.lowRank(1, S2ft.WEIGHT_GATE));
      e = ErrorTest.expectS2ft(() -> ad.setSparse(0, S2ft.WEIGHT_K, new long[] {0}, Tensor.of(new float[] {1}, 1), null));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      ad.set(1, S2ft.TARGET_V, new long[] {0}, Tensor.of(new float[SHAPE.dModel], 1, SHAPE.dModel), null);
      long[] vs = SHAPE.weightShape(S2ft.WEIGHT_V);
      e = ErrorTest.expectS2ft(() -> ad.setLowRank(1, S2ft.WEIGHT_V, Tensor.of(new float[(int) vs[0]], vs[0], 1),
          Tensor.of(new float[(int) vs[1]], 1, vs[1]), null));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertTrue(e.getMessage(), e.getMessage().contains("structured entry"));
      assertEquals(S2ft.weightBit(S2ft.WEIGHT_K), ad.lowRankInfo().weights);
      assertEquals(1, ad.lowRankInfo().entries);
    }
  }
}
