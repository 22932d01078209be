package org.s2ft;

import static org.junit.Assert.*;

import org.junit.Test;

/** Mixed-adapter forward and partial backward against plain double references. */
public class ForwardBackwardTest extends TestSupport {
  @Test
  public void forwardMixedMatchesReference() {
    final int out = SHAPE.dModel, in = SHAPE.dFf, t = 9;
    final long[] offsets = {0, 3, 5, 9};
    final int[] segAdapter = {0, -1, 1};
    final double[] scales = {0.5, 1.25};
    long[][] lines = {{1, 4, 7}, {4, 8}};
    float[] x = random(21, t * in), w = random(22, out * in);
    try (Context ctx = new Context();
         Adapter a = AdapterTest.makeAdapter("A", 1, 31, lines[0], null);
         Adapter b = AdapterTest.makeAdapter("B", 1, 32, lines[1], null)) {
      float[][] deltas = {a.delta(1, S2ft.TARGET_DOWN), b.delta(1, S2ft.TARGET_DOWN)};
      for (boolean direct : new boolean[] {false, true}) {
        float[] y = nans(t * out);
        Tensor yt = direct ? Tensor.copyOf(y, t, out) : Tensor.of(y, t, out);
        Tensor xt = direct ? Tensor.copyOf(x, t, in) : Tensor.of(x, t, in);
        Tensor wt = direct ? Tensor.copyOf(w, out, in) : Tensor.of(w, out, in);
        Adapter.forwardMixed(ctx, 1, S2ft.TARGET_DOWN, xt, wt, null, new Adapter[] {a, b}, scales, offsets,
            segAdapter, yt);
        float[] got = yt.toFloatArray();
        for (int s = 0; s < segAdapter.length; ++s)
          for (long i = offsets[s]; i < offsets[s + 1]; ++i)
            for (int o = 0; o < out; ++o) {
              double ref = 0;
              for (int c = 0; c < in; ++c) ref += (double) x[(int) i * in + c] * w[o * in + c];
              int ad = segAdapter[s];
              if (ad >= 0)
                for (int j = 0; j < lines[ad].length; ++j)
                  ref += scales[ad] * x[(int) i * in + (int) lines[ad][j]] * deltas[ad][o * lines[ad].length + j];
              assertClose("y[" + i + "," + o + "]", ref, got[(int) i * out + o], 1e-5);
            }
      }
    }
  }

  @Test
  public void partialBackwardOnColumnsMatchesReference() {
    final int t = 7, in = 11, out = 5;
    final long[] cols = {9, 2, 5};
    final int k = cols.length;
    float[] x = random(1, t * in), w = random(2, out * in), dy = random(3, t * out);
    float[] y = nans(t * out), xs = nans(t * k), dx = nans(t * in), dw = nans(out * k);
    Slice slice = Slice.columns(cols);
    try (Context ctx = new Context()) {
      ctx.forwardPartial(slice, Tensor.of(x, t, in), Tensor.of(w, out, in), Tensor.of(y, t, out), Tensor.of(xs, t, k));
      ctx.backwardPartial(slice, Tensor.of(w, out, in), Tensor.of(xs, t, k), Tensor.of(dy, t, out),
          Tensor.of(dx, t, in), Tensor.of(dw, out, k), 0);
    }
    for (int i = 0; i < t; ++i) {
      for (int o = 0; o < out; ++o) {
        double ref = 0;
        for (int c = 0; c < in; ++c) ref += (double) x[i * in + c] * w[o * in + c];
        assertClose("y", ref, y[i * out + o], 1e-5);
      }
      for (int j = 0; j < k; ++j) assertEquals(x[i * in + (int) cols[j]], xs[i * k + j], 0);
      for (int c = 0; c < in; ++c) {
        double ref = 0;
        for (int o = 0; o < out; ++o) ref += (double) dy[i * out + o] * w[o * in + c];
        assertClose("dx", ref, dx[i * in + c], 1e-5);
      }
    }
    for (int o = 0; o < out; ++o)
      for (int j = 0; j < k; ++j) {
        double ref = 0;
        for (int i = 0; i < t; ++i) ref += (double) dy[i * out + o] * x[i * in + (int) cols[j]];
        assertClose("dW_S", ref, dw[o * k + j], 1e-5);
      }
  }

  @Test
  public void partialBackwardOnRowsWithAccumulation() {
    final int t = 6, in = 4, out = 9, k = 2, begin = 3;
    float[] x = random(4, t * in), w = random(5, out * in), dy = random(6, t * out);
    float[] dw0 = random(7, k * in);
    Tensor dw = Tensor.copyOf(dw0, k, in);
    try (Context ctx = new Context()) {
      ctx.backwardPartial(Slice.rowRange(begin, k), Tensor.copyOf(w, out, in), Tensor.copyOf(x, t, in),
          Tensor.copyOf(dy, t, out), null, dw, S2ft.ACCUMULATE_DW);
    }
    for (int j = 0; j < k; ++j)
      for (int c = 0; c < in; ++c) {
        double ref = dw0[j * in + c];
        for (int i = 0; i < t; ++i) ref += (double) dy[i * out + begin + j] * x[i * in + c];
        assertClose("dW_S rows", ref, dw.get(j, c), 1e-5);
      }
  }

  @Test
  public void optimizerStepsOnTheSliceOnly() {
    final int out = 3, in = 5;
    float[] w0 = random(8, out * in), g = random(9, out * 2);
    Tensor w = Tensor.copyOf(w0, out, in);
    Optimizer.Options o = new Optimizer.Options();
    o.kind = Optimizer.SGD;
    try (Context ctx = new Context(); Optimizer opt = new Optimizer(ctx, o)) {
      assertEquals(0, opt.addParam(w, Slice.columns(1, 3)));
      double norm = opt.step(0.5, Tensor.of(g, out, 2));
      double ref = 0;
      for (float v : g) ref += (double) v * v;
      assertClose("grad norm", Math.sqrt(ref), norm, 1e-6);
      assertEquals(1, opt.stepCount());
      for (int r = 0; r < out; ++r)
        for (int c = 0; c < in; ++c) {
          double expect = w0[r * in + c];
          if (c == 1) expect -= 0.5 * g[r * 2];
          if (c == 3) expect -= 0.5 * g[r * 2 + 1];
          assertClose("w", expect, w.get(r, c), 1e-6);
        }
    }
  }
}
