package org.s2ft;

import static org.junit.Assert.*;

import java.io.File;
import org.junit.Test;

public class SelectionTest extends TestSupport {
  @Test
  public void versionIsReported() {
    assertEquals(S2ft.version() / 10000, Long.parseLong(S2ft.versionString().split("\\.")[0]));
    assertEquals("invalid argument", S2ft.statusString(S2ft.ERR_INVALID_ARGUMENT));
  }

  @Test
  public void selectsTheRequestedCountsPerLayer() {
    SelectOptions opts = new SelectOptions()
        .targets(S2ft.targetBit(S2ft.TARGET_O) | S2ft.targetBit(S2ft.TARGET_DOWN))
        .count(S2ft.TARGET_O, 1)   // one KV group = 2 query heads
        .count(S2ft.TARGET_DOWN, 3)
        .seed(42);
    try (Context ctx = new Context(); Selection sel = Selection.select(ctx, SHAPE, opts, null)) {
      assertEquals(SHAPE, sel.shape());
      assertEquals(opts.targets(), sel.targets());
      for (int l = 0; l < SHAPE.nLayers; ++l) {
        long[] heads = sel.units(l, S2ft.TARGET_O);
        assertEquals(2, heads.length);
        assertEquals("heads of one KV group", heads[0] / 2, heads[1] / 2);
        long[] channels = sel.units(l, S2ft.TARGET_DOWN);
        assertEquals(3, channels.length);
        for (int i = 0; i < channels.length; ++i) {
          assertTrue(channels[i] >= 0 && channels[i] < SHAPE.dFf);
          if (i > 0) assertTrue("ascending", channels[i] > channels[i - 1]);
        }
        long[] lines = sel.indices(l, S2ft.TARGET_O, S2ft.INDEX_LINES | S2ft.INDEX_BASE);
        assertEquals(2 * SHAPE.headDim, lines.length);
        assertEquals(heads[0] * SHAPE.headDim, lines[0]);
        assertArrayEquals(new long[] {0, 3}, sel.range(l, S2ft.TARGET_DOWN));
        assertArrayEquals(new long[0], sel.units(l, S2ft.TARGET_V));
        long[] perm = sel.permutation(l, S2ft.PERM_CHANNELS);
        assertEquals(SHAPE.dFf, perm.length);
        for (int i = 0; i < 3; ++i) assertEquals(channels[i], perm[i]);
      }
    }
  }

  @Test
  public void sameSeedSameSelectionAndSaveLoadRoundTrips() throws Exception {
    SelectOptions opts = new SelectOptions().count(S2ft.TARGET_DOWN, 4).seed(7);
    File f = File.createTempFile("s2ft-sel", ".json");
    f.deleteOnExit();
    try (Context ctx = new Context();
         Selection a = Selection.select(ctx, SHAPE, opts, null);
         Selection b = Selection.select(ctx, SHAPE, opts, null)) {
      a.save(f.getPath());
      try (Selection c = Selection.load(f.getPath())) {
        for (int l = 0; l < SHAPE.nLayers; ++l) {
          assertArrayEquals(a.units(l, S2ft.TARGET_DOWN), b.units(l, S2ft.TARGET_DOWN));
          assertArrayEquals(a.units(l, S2ft.TARGET_DOWN), c.units(l, S2ft.TARGET_DOWN));
          assertArrayEquals(a.units(l, S2ft.TARGET_O), c.units(l, S2ft.TARGET_O));
        }
      }
    }
  }

  @Test
  public void weightStatisticsDriveSelection() {
    try (Context ctx = new Context(); Statistics stats = new Statistics(ctx, SHAPE)) {
      for (int l = 0; l < SHAPE.nLayers; ++l) {
        float[] w = random(100 + l, SHAPE.dModel * SHAPE.dFf);
        for (int r = 0; r < SHAPE.dModel; ++r) w[r * SHAPE.dFf + 6] *= 50; // channel 6 is the largest
        stats.addWeight(l, S2ft.TARGET_DOWN, Tensor.of(w, SHAPE.dModel, SHAPE.dFf));
        double[] scores = stats.get(l, S2ft.TARGET_DOWN, S2ft.STAT_WEIGHT);
        assertEquals(SHAPE.dFf, scores.length);
        double expect = 0;
        for (int r = 0; r < SHAPE.dModel; ++r) expect += (double) w[r * SHAPE.dFf + 6] * w[r * SHAPE.dFf + 6];
        assertClose("score of channel 6", expect, scores[6], 1e-6);
      }
      SelectOptions opts = new SelectOptions().targets(S2ft.targetBit(S2ft.TARGET_DOWN))
          .count(S2ft.TARGET_DOWN, 1).strategy(SelectOptions.STRATEGY_WEIGHT);
      try (Selection sel = Selection.select(ctx, SHAPE, opts, stats)) {
        assertArrayEquals(new long[] {6}, sel.units(0, S2ft.TARGET_DOWN));
        assertArrayEquals(new long[] {6}, sel.units(1, S2ft.TARGET_DOWN));
      }
    }
  }
}
