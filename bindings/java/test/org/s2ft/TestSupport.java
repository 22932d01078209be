package org.s2ft;

import static org.junit.Assert.assertEquals;

import java.util.Random;
import org.junit.After;
import org.junit.Before;

/** Shared fixtures: a small GQA model shape, seeded data, and a leak check after every test. */
public abstract class TestSupport {
  /** 2 layers, d_model 12, 4 query heads over 2 KV heads of dim 3, d_ff 10. */
  static final ModelShape SHAPE = new ModelShape(2, 12, 4, 2, 3, 10);

  private long liveAtStart;

  @Before
  public void recordLiveHandles() {
    liveAtStart = S2ft.liveHandles();
  }

  @After
  public void checkNoLeaks() {
    assertEquals("library objects leaked by this test", liveAtStart, S2ft.liveHandles());
  }

  /** Values in [-1, 1) without zeros, from a seed. */
  static float[] random(long seed, int n) {
    Random r = new Random(seed);
    float[] a = new float[n];
    for (int i = 0; i < n; ++i) {
      float v = r.nextFloat() * 2 - 1;
      a[i] = v == 0 ? 0.25f : v;
    }
    return a;
  }

  static float[] nans(int n) {
    float[] a = new float[n];
    java.util.Arrays.fill(a, Float.NaN);
    return a;
  }

  /** A direct f32 tensor filled with seeded values. */
  static Tensor randomDirect(long seed, long rows, long cols) {
    return Tensor.copyOf(random(seed, (int) (rows * cols)), rows, cols);
  }

  static void assertClose(String what, double expected, double actual, double rel) {
    double tol = rel * Math.max(1.0, Math.abs(expected));
    if (!(Math.abs(expected - actual) <= tol))
      throw new AssertionError(what + ": expected " + expected + ", got " + actual);
  }

  static int[] bits(float[] a) {
    int[] b = new int[a.length];
    for (int i = 0; i < a.length; ++i) b[i] = Float.floatToRawIntBits(a[i]);
    return b;
  }
}
