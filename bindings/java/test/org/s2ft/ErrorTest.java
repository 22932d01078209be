package org.s2ft;

import static org.junit.Assert.*;

import org.junit.Test;

/** Library errors surface as S2ftException with the library's status and message. */
public class ErrorTest extends TestSupport {
  static S2ftException expectS2ft(Runnable r) {
    try {
      r.run();
    } catch (S2ftException e) {
      return e;
    }
    throw new AssertionError("expected an S2ftException");
  }

  @Test
  public void badShapeNamesTheField() {
    S2ftException e = expectS2ft(() -> new ModelShape(2, 12, 4, 3, 3, 10).check());
    assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
    assertEquals("invalid argument", e.statusName());
    assertTrue(e.getMessage(), e.getMessage().contains("n_kv_heads"));
  }

  @Test
  public void budgetAboveTheUnitsIsAnInvalidArgument() {
    try (Context ctx = new Context()) {
      SelectOptions opts = new SelectOptions().count(S2ft.TARGET_DOWN, SHAPE.dFf + 1);
      S2ftException e = expectS2ft(() -> Selection.select(ctx, SHAPE, opts, null).close());
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertTrue(e.getMessage(), e.getMessage().startsWith("s2ft_select"));
    }
  }

  @Test
  public void missingFileIsAnIoError() {
    String path = "/nonexistent-dir-s2ft/adapter.safetensors";
    S2ftException e = expectS2ft(() -> Adapter.load(path).close());
    assertEquals(S2ft.ERR_IO, e.status());
    assertTrue(e.getMessage(), e.getMessage().contains(path));
  }

  @Test
  public void shapeMismatchIsAShapeError() {
    try (Context ctx = new Context()) {
      S2ftException e = expectS2ft(() -> ctx.forwardPartial(Slice.columns(0), Tensor.of(new float[12], 3, 4),
          Tensor.of(new float[10], 2, 5), Tensor.of(new float[6], 3, 2), null));
      assertEquals(S2ft.ERR_SHAPE, e.status());
      assertTrue(e.getMessage(), e.getMessage().contains("w"));
    }
  }

  @Test
  public void outOfRangeLineNamesTheIndex() {
    try (Adapter a = Adapter.create(SHAPE, "x", 1)) {
      S2ftException e = expectS2ft(() -> a.set(0, S2ft.TARGET_DOWN, new long[] {SHAPE.dFf},
          Tensor.of(random(1, SHAPE.dModel), SHAPE.dModel, 1), null));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertTrue(e.getMessage(), e.getMessage().contains("out of range"));
    }
  }

  @Test
  public void removeWithoutAdapterIsAStateError() {
    LayerWeights[] layers = AdapterTest.baseLayers();
    try (Context ctx = new Context(); Model m = new Model(ctx, SHAPE, layers, null)) {
      S2ftException e = expectS2ft(m::remove);
      assertEquals(S2ft.ERR_STATE, e.status());
      assertFalse(e.getMessage().isEmpty());
    }
  }

  @Test
  public void closeIsIdempotentAndClosedHandlesThrow() {
    long start = S2ft.liveHandles();
    Context ctx = new Context();
    assertEquals(start + 1, S2ft.liveHandles());
    ctx.close();
    ctx.close();
    assertTrue(ctx.isClosed());
    assertEquals(start, S2ft.liveHandles());
    try {
      ctx.device();
      fail("expected IllegalStateException");
    } catch (IllegalStateException expected) {
      assertTrue(expected.getMessage().contains("closed"));
    }
  }

  @Test
  public void contextReportsItsDevice() {
    try (Context ctx = new Context()) {
      assertArrayEquals(new int[] {S2ft.DEVICE_CPU, 0}, ctx.device());
    }
  }
}
