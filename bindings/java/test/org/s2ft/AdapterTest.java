package org.s2ft;

import static org.junit.Assert.*;

import java.io.File;
import org.junit.Test;

public class AdapterTest extends TestSupport {
  static final int OUT = SHAPE.dModel, IN = SHAPE.dFf; // down_proj [d_model, d_ff]

  static LayerWeights[] baseLayers() {
    LayerWeights[] layers = new LayerWeights[SHAPE.nLayers];
    for (int l = 0; l < layers.length; ++l) layers[l] = new LayerWeights().down(randomDirect(10 + l, OUT, IN));
    return layers;
  }

  /** An adapter with entries for DOWN in every layer, at the given lines. */
  static Adapter makeAdapter(String name, double scale, long seed, long[] lines, LayerWeights[] base) {
    Adapter a = Adapter.create(SHAPE, name, scale);
    for (int l = 0; l < SHAPE.nLayers; ++l)
      a.set(l, S2ft.TARGET_DOWN, lines, Tensor.of(random(seed + l, OUT * lines.length), OUT, lines.length),
          base == null ? null : base[l].down);
    return a;
  }

  @Test
  public void setSaveLoadKeepsLinesAndDeltas() throws Exception {
    File f = File.createTempFile("s2ft-adapter", ".safetensors");
    f.deleteOnExit();
    LayerWeights[] base = baseLayers();
    try (Adapter a = makeAdapter("alpha", 0.5, 1, new long[] {7, 1, 4}, base)) {
      assertEquals("alpha", a.name());
      assertEquals(0.5, a.defaultScale(), 0);
      assertEquals(S2ft.targetBit(S2ft.TARGET_DOWN), a.targets());
      assertEquals(SHAPE, a.shape());
      assertArrayEquals(new long[] {1, 4, 7}, a.lines(0, S2ft.TARGET_DOWN));
      assertArrayEquals(new long[0], a.lines(0, S2ft.TARGET_O));
      a.save(f.getPath());
      try (Adapter b = Adapter.load(f.getPath())) {
        assertEquals("alpha", b.name());
        assertEquals(0.5, b.defaultScale(), 0);
        for (int l = 0; l < SHAPE.nLayers; ++l) {
          assertArrayEquals(a.lines(l, S2ft.TARGET_DOWN), b.lines(l, S2ft.TARGET_DOWN));
          assertArrayEquals(bits(a.delta(l, S2ft.TARGET_DOWN)), bits(b.delta(l, S2ft.TARGET_DOWN)));
        }
      }
      // the delta is stored in ascending line order: column j of the input (line 7) is last
      float[] given = random(1, OUT * 3);
      float[] stored = a.delta(0, S2ft.TARGET_DOWN);
      for (int r = 0; r < OUT; ++r) {
        assertEquals(given[r * 3 + 1], stored[r * 3 + 0], 0); // line 1
        assertEquals(given[r * 3 + 2], stored[r * 3 + 1], 0); // line 4
        assertEquals(given[r * 3 + 0], stored[r * 3 + 2], 0); // line 7
      }
    }
  }

  @Test
  public void fuseIsTheUnionWithWeightedSums() {
    try (Adapter a = makeAdapter("a", 1, 1, new long[] {1, 4}, null);
         Adapter b = makeAdapter("b", 1, 2, new long[] {4, 8}, null);
         Adapter f = Adapter.fuse(new Adapter[] {a, b}, new double[] {0.5, 2.0})) {
      assertEquals("a+b", f.name());
      assertArrayEquals(new long[] {1, 4, 8}, f.lines(1, S2ft.TARGET_DOWN));
      float[] da = a.delta(1, S2ft.TARGET_DOWN), db = b.delta(1, S2ft.TARGET_DOWN);
      float[] df = f.delta(1, S2ft.TARGET_DOWN);
      for (int r = 0; r < OUT; ++r) {
        assertEquals((float) (0.5 * da[r * 2]), df[r * 3], 1e-7);
        assertEquals((float) (0.5 * da[r * 2 + 1] + 2.0 * db[r * 2]), df[r * 3 + 1], 1e-6);
        assertEquals((float) (2.0 * db[r * 2 + 1]), df[r * 3 + 2], 1e-7);
      }
    }
  }

  @Test
  public void applyRemoveAndSwitch() {
    LayerWeights[] base = baseLayers();
    float[][] original = new float[SHAPE.nLayers][];
    for (int l = 0; l < SHAPE.nLayers; ++l) original[l] = base[l].down.toFloatArray();
    long[] linesA = {0, 5, 9}, linesB = {5, 6};
    try (Context ctx = new Context();
         Adapter a = makeAdapter("A", 0.75, 3, linesA, base);
         Adapter b = makeAdapter("B", 1.0, 4, linesB, base);
         Model m = new Model(ctx, SHAPE, base, null)) {
      assertNull(m.applied());
      m.apply(a); // default scale 0.75
      assertSame(a, m.applied());
      assertEquals(0.75, m.appliedScale(), 0);
      for (int l = 0; l < SHAPE.nLayers; ++l) {
        float[] w = base[l].down.toFloatArray(), d = a.delta(l, S2ft.TARGET_DOWN);
        for (int r = 0; r < OUT; ++r)
          for (int c = 0; c < IN; ++c) {
            int j = java.util.Arrays.binarySearch(linesA, c);
            float expect = j < 0 ? original[l][r * IN + c]
                                 : (float) ((double) original[l][r * IN + c] + 0.75 * d[r * linesA.length + j]);
            assertEquals("W[" + r + "," + c + "]", expect, w[r * IN + c], 0);
          }
      }
      m.remove();
      assertNull(m.applied());
      for (int l = 0; l < SHAPE.nLayers; ++l)
        assertArrayEquals("remove restores bit-exactly", bits(original[l]), bits(base[l].down.toFloatArray()));

      // switch A -> B equals remove + apply B
      m.apply(a, 2.0, 0);
      m.switchTo(b, 1.5, 0);
      assertSame(b, m.applied());
      float[][] switched = new float[SHAPE.nLayers][];
      for (int l = 0; l < SHAPE.nLayers; ++l) switched[l] = base[l].down.toFloatArray();
      m.remove();
      m.apply(b, 1.5, 0);
      for (int l = 0; l < SHAPE.nLayers; ++l)
        assertArrayEquals("switch == remove + apply", bits(switched[l]), bits(base[l].down.toFloatArray()));
      m.remove();
      for (int l = 0; l < SHAPE.nLayers; ++l) assertArrayEquals(bits(original[l]), bits(base[l].down.toFloatArray()));
    }
  }

  @Test
  public void fromTrainingTakesTheDifference() {
    SelectOptions opts = new SelectOptions().targets(S2ft.targetBit(S2ft.TARGET_DOWN)).count(S2ft.TARGET_DOWN, 2).seed(3);
    LayerWeights[] base = baseLayers();
    LayerWeights[] trained = new LayerWeights[SHAPE.nLayers];
    try (Context ctx = new Context(); Selection sel = Selection.select(ctx, SHAPE, opts, null)) {
      for (int l = 0; l < SHAPE.nLayers; ++l) {
        float[] w = base[l].down.toFloatArray();
        for (long c : sel.units(l, S2ft.TARGET_DOWN))
          for (int r = 0; r < OUT; ++r) w[r * IN + (int) c] += 0.125f * (r + 1);
        trained[l] = new LayerWeights().down(Tensor.of(w, OUT, IN)); // float[] is fine here
      }
      try (Adapter a = Adapter.fromTraining(ctx, sel, base, trained, false, "trained")) {
        for (int l = 0; l < SHAPE.nLayers; ++l) {
          assertArrayEquals(sel.units(l, S2ft.TARGET_DOWN), a.lines(l, S2ft.TARGET_DOWN));
          float[] d = a.delta(l, S2ft.TARGET_DOWN);
          for (int r = 0; r < OUT; ++r) assertEquals(0.125 * (r + 1), d[r * 2], 1e-5);
        }
      }
    }
  }

  @Test
  public void modelRejectsArrayBackedWeights() {
    LayerWeights[] layers = {new LayerWeights().down(Tensor.of(random(1, OUT * IN), OUT, IN)),
                             new LayerWeights().down(Tensor.of(random(2, OUT * IN), OUT, IN))};
    try (Context ctx = new Context()) {
      try {
        new Model(ctx, SHAPE, layers, null).close();
        fail("expected IllegalArgumentException");
      } catch (IllegalArgumentException e) {
        assertTrue(e.getMessage(), e.getMessage().contains("direct ByteBuffer"));
      }
    }
  }
}
