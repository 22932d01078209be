package org.s2ft;

import static org.junit.Assert.*;

import org.junit.Test;

/** The CUDA-era context calls and sparse deltas, on a CPU context. */
public class DeviceApiTest extends TestSupport {
  @Test
  public void cpuDeviceCountIsOne() {
    assertEquals(1, S2ft.deviceCount(S2ft.DEVICE_CPU));
    assertTrue(S2ft.deviceCount(S2ft.DEVICE_CUDA) >= 0);
  }

  @Test
  public void cpuContextCalls() {
    try (Context ctx = new Context()) {
      ctx.synchronize();
      assertEquals(0, ctx.workspaceNeeded());
      assertEquals(0, ctx.stream());
      ctx.setDeltaPath(S2ft.DELTA_PATH_DENSE);
      ctx.setDeltaPath(S2ft.DELTA_PATH_AUTO);
      assertEquals(S2ft.ERR_UNSUPPORTED, ErrorTest.expectS2ft(() -> ctx.setDeltaPath(S2ft.DELTA_PATH_SPARSE)).status());
      S2ftException e = ErrorTest.expectS2ft(() -> ctx.setStream(0));
      assertEquals(S2ft.ERR_UNSUPPORTED, e.status());
      assertFalse(e.getMessage().isEmpty());
      assertEquals(S2ft.ERR_UNSUPPORTED, ErrorTest.expectS2ft(() -> ctx.setWorkspace(0, 0)).status());
    }
  }

  @Test
  public void sparseForwardMatchesADenseReference() {
    int rows = 7, cols = 5, t = 3;
    java.util.Random r = new java.util.Random(11);
    long[] offsets = new long[rows + 1];
    java.util.ArrayList<Long> idx = new java.util.ArrayList<>();
    java.util.ArrayList<Float> val = new java.util.ArrayList<>();
    double[] dense = new double[rows * cols];
    for (int i = 0; i < rows; ++i) {
      for (int c = 0; c < cols; ++c) {
        if (r.nextBoolean()) {
          float v = r.nextFloat() * 2 - 1;
          idx.add((long) c);
          val.add(v);
          dense[i * cols + c] = v;
        }
      }
      offsets[i + 1] = idx.size();
    }
    long[] indices = new long[idx.size()];
    float[] values = new float[val.size()];
    for (int i = 0; i < indices.length; ++i) {
      indices[i] = idx.get(i);
      values[i] = val.get(i);
    }
    float[] x = random(3, t * cols);
    float[] y = random(4, t * rows);
    float[] y0 = y.clone();
    double scale = -1.5;
    try (Context ctx = new Context();
        SparseDelta d = SparseDelta.create(ctx, rows, cols, offsets, indices, values)) {
      assertArrayEquals(new long[] {rows, cols, values.length}, d.info());
      d.forward(ctx, scale, Tensor.of(x, t, cols), Tensor.of(y, t, rows));
    }
    for (int i = 0; i < t; ++i)
      for (int o = 0; o < rows; ++o) {
        double want = y0[i * rows + o];
        for (int c = 0; c < cols; ++c) want += scale * x[i * cols + c] * dense[o * cols + c];
        assertClose("y[" + i + "," + o + "]", want, y[i * rows + o], 1e-5);
      }
  }

  @Test
  public void badOffsetsThrowWithTheMessage() {
    try (Context ctx = new Context()) {
      // The offsets end at 3 but there are 2 entries.
      S2ftException e = ErrorTest.expectS2ft(() -> SparseDelta.create(ctx, 2, 3, new long[] {0, 1, 3},
          new long[] {0, 2}, new float[] {1, 2}).close());
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertTrue(e.getMessage(), e.getMessage().contains("offsets"));
    }
  }

  @Test
  public void sparseDeltaFromAnAdapter() {
    ModelShape shape = new ModelShape(1, 3, 1, 1, 3, 4);
    try (Context ctx = new Context(); Adapter a = Adapter.create(shape, "a", 1)) {
      // Down [d_model = 3, d_ff = 4]: columns 1 and 3.
      a.set(0, S2ft.TARGET_DOWN, new long[] {1, 3}, Tensor.of(new float[] {1, 2, 3, 4, 5, 6}, 3, 2), null);
      a.upload(ctx);
      try (SparseDelta d = SparseDelta.fromAdapter(ctx, a, 0, S2ft.TARGET_DOWN, null)) {
        assertArrayEquals(new long[] {3, 4, 6}, d.info());
        float[] y = new float[3];
        d.forward(ctx, 1.0, Tensor.of(new float[] {1, 10, 100, 1000}, 1, 4), Tensor.of(y, 1, 3));
        assertArrayEquals(new float[] {2010, 4030, 6050}, y, 0f);
      }
    }
  }
}
