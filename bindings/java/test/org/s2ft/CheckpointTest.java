package org.s2ft;

import static org.junit.Assert.*;

import java.io.File;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.After;
import org.junit.Before;
import org.junit.Test;

/** Checkpoints, models over them, adapter files and metadata, on a small checkpoint written here. */
public class CheckpointTest extends TestSupport {
  // SHAPE: 2 layers, d_model 12, 4 heads over 2 KV heads of dim 3, d_ff 10.
  static final int D = SHAPE.dModel, F = SHAPE.dFf, KV = SHAPE.nKvHeads * SHAPE.headDim;

  private Path dir;

  @Before
  public void makeDir() throws IOException {
    dir = Files.createTempDirectory("s2ft-java-ckpt");
  }

  @After
  public void removeDir() throws IOException {
    try (Stream<Path> all = Files.walk(dir)) {
      all.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
    }
  }

  static String weightName(int layer, int target) {
    if (target == S2ft.TARGET_O) return "model.layers." + layer + ".self_attn.o_proj.weight";
    if (target == S2ft.TARGET_V) return "model.layers." + layer + ".self_attn.v_proj.weight";
    if (target == S2ft.TARGET_DOWN) return "model.layers." + layer + ".mlp.down_proj.weight";
    return "model.layers." + layer + ".mlp.up_proj.weight";
  }

  /** A safetensors file: 8-byte little-endian header length, JSON header (padded to 8), data. */
  static void writeSafetensors(Path file, Map<String, Object[]> tensors) throws IOException {
    StringBuilder header = new StringBuilder("{");
    long offset = 0;
    List<byte[]> data = new ArrayList<>();
    for (Map.Entry<String, Object[]> e : tensors.entrySet()) {
      String dtype = (String) e.getValue()[0];
      long[] shape = (long[]) e.getValue()[1];
      byte[] bytes = (byte[]) e.getValue()[2];
      if (header.length() > 1) header.append(',');
      StringBuilder dims = new StringBuilder();
      for (long d : shape) dims.append(dims.length() > 0 ? "," : "").append(d);
      header.append(String.format("\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%d,%d]}",
          e.getKey(), dtype, dims, offset, offset + bytes.length));
      offset += bytes.length;
      data.add(bytes);
    }
    header.append('}');
    while (header.length() % 8 != 0) header.append(' ');
    byte[] h = header.toString().getBytes(StandardCharsets.UTF_8);
    ByteBuffer out = ByteBuffer.allocate((int) (8 + h.length + offset)).order(ByteOrder.LITTLE_ENDIAN);
    out.putLong(h.length).put(h);
    for (byte[] b : data) out.put(b);
    Files.write(file, out.array());
  }

  static byte[] f32Bytes(float[] v) {
    ByteBuffer b = ByteBuffer.allocate(v.length * 4).order(ByteOrder.LITTLE_ENDIAN);
    for (float x : v) b.putFloat(x);
    return b.array();
  }

  /**
   * A small LLaMA checkpoint (config.json, model.safetensors: the seven projections of each
   * layer in F32, a BF16 embedding, an I64 buffer); returns the F32 values written by name.
   */
  static Map<String, float[]> tinyCheckpoint(Path folder, long seed) throws IOException {
    Files.createDirectories(folder);
    Files.write(folder.resolve("config.json"), String.format(
        "{\"model_type\": \"llama\", \"hidden_size\": %d, \"num_hidden_layers\": %d, \"num_attention_heads\": %d, "
            + "\"num_key_value_heads\": %d, \"intermediate_size\": %d, \"head_dim\": %d}\n",
        D, SHAPE.nLayers, SHAPE.nHeads, SHAPE.nKvHeads, F, SHAPE.headDim).getBytes(StandardCharsets.UTF_8));
    Map<String, Object[]> stored = new LinkedHashMap<>();
    Map<String, float[]> values = new TreeMap<>();
    float[] embed = new float[16 * D];
    ByteBuffer bf16 = ByteBuffer.allocate(embed.length * 2).order(ByteOrder.LITTLE_ENDIAN);
    for (int i = 0; i < embed.length; ++i) {
      embed[i] = ((i % 13) - 6) * 0.125f;
      bf16.putShort((short) (Float.floatToRawIntBits(embed[i]) >>> 16));
    }
    stored.put("model.embed_tokens.weight", new Object[] {"BF16", new long[] {16, D}, bf16.array()});
    values.put("model.embed_tokens.weight", embed);
    int nq = SHAPE.nHeads * SHAPE.headDim;
    String[] names = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
    long[][] shapes = {{nq, D}, {KV, D}, {KV, D}, {D, nq}, {F, D}, {F, D}, {D, F}};
    for (int l = 0; l < SHAPE.nLayers; ++l)
      for (int p = 0; p < names.length; ++p) {
        String name = "model.layers." + l + "." + names[p] + ".weight";
        float[] v = random(seed + 10 * l + p, (int) (shapes[p][0] * shapes[p][1]));
        stored.put(name, new Object[] {"F32", shapes[p], f32Bytes(v)});
        values.put(name, v);
      }
    ByteBuffer i64 = ByteBuffer.allocate(24).order(ByteOrder.LITTLE_ENDIAN).putLong(7).putLong(-1).putLong(42);
    stored.put("model.rotary_buffer", new Object[] {"I64", new long[] {3}, i64.array()});
    writeSafetensors(folder.resolve("model.safetensors"), stored);
    return values;
  }

  /** An adapter on DOWN columns and V rows of every layer, fingerprinted against the checkpoint. */
  static Adapter makeAdapter(Checkpoint ckpt, String name, long[] down, long[] v, long seed) {
    Adapter a = Adapter.create(SHAPE, name, 1.0);
    for (int l = 0; l < SHAPE.nLayers; ++l) {
      a.set(l, S2ft.TARGET_DOWN, down, Tensor.of(random(seed + l, D * down.length), D, down.length),
          ckpt.tensor(weightName(l, S2ft.TARGET_DOWN)));
      a.set(l, S2ft.TARGET_V, v, Tensor.of(random(seed + 50 + l, v.length * D), v.length, D),
          ckpt.tensor(weightName(l, S2ft.TARGET_V)));
    }
    return a;
  }

  /** W[line] + scale * delta in double, rounded once to float, on the adapter's lines. */
  static float[] merged(float[] base, Adapter a, int layer, int target, double scale, int rows, int cols) {
    float[] w = base.clone();
    long[] lines = a.lines(layer, target);
    float[] delta = a.delta(layer, target);
    int k = lines.length;
    boolean columns = target == S2ft.TARGET_O || target == S2ft.TARGET_DOWN;
    for (int j = 0; j < k; ++j) {
      int line = (int) lines[j];
      if (columns) {
        for (int r = 0; r < rows; ++r) w[r * cols + line] = (float) (w[r * cols + line] + scale * delta[r * k + j]);
      } else {
        for (int c = 0; c < cols; ++c) w[line * cols + c] = (float) (w[line * cols + c] + scale * delta[j * cols + c]);
      }
    }
    return w;
  }

  @Test
  public void viewsReadTheValuesThatWereWritten() throws IOException {
    Map<String, float[]> written = tinyCheckpoint(dir.resolve("base"), 1);
    try (Checkpoint ckpt = Checkpoint.open(dir.resolve("base").toString())) {
      assertEquals(SHAPE, ckpt.shape());
      assertTrue(ckpt.config(), ckpt.config().contains("\"model_type\": \"llama\""));
      assertEquals(List.of("model.safetensors"), ckpt.files());
      assertEquals(2 * 7 + 2, ckpt.tensorCount());
      Map<String, TensorInfo> infos = new TreeMap<>();
      for (TensorInfo i : ckpt.tensors()) infos.put(i.name, i);
      TensorInfo down = infos.get(weightName(1, S2ft.TARGET_DOWN));
      assertEquals("F32", down.dtype);
      assertArrayEquals(new long[] {D, F}, down.shape());
      assertEquals(D * F * 4, down.nbytes);
      assertEquals("BF16", infos.get("model.embed_tokens.weight").dtype);
      for (Map.Entry<String, float[]> e : written.entrySet()) {
        Tensor t = ckpt.tensor(e.getKey());
        assertArrayEquals(e.getKey(), infos.get(e.getKey()).shape(), t.shape());
        assertArrayEquals(e.getKey(), bits(e.getValue()), bits(t.toFloatArray()));
      }
      assertEquals(S2ft.BF16, ckpt.tensor("model.embed_tokens.weight").dtype());
      assertEquals(written.get("model.embed_tokens.weight")[13], ckpt.tensor("model.embed_tokens.weight").get(1, 1), 0);
      ByteBuffer raw = ckpt.tensorData("model.rotary_buffer");
      assertTrue(raw.isReadOnly());
      assertEquals(24, raw.remaining());
      assertEquals(7, raw.getLong(0));
      assertEquals(-1, raw.getLong(8));
      assertEquals(42, raw.getLong(16));

      S2ftException e = ErrorTest.expectS2ft(() -> ckpt.tensor("model.rotary_buffer"));
      assertEquals(S2ft.ERR_DTYPE, e.status());
      e = ErrorTest.expectS2ft(() -> ckpt.tensor("model.layers.9.mlp.down_proj.weight"));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertTrue(e.getMessage(), e.getMessage().contains("model.layers.9"));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, ErrorTest.expectS2ft(() -> ckpt.tensorInfo(99)).status());
    }
    assertEquals(S2ft.ERR_IO, ErrorTest.expectS2ft(() -> Checkpoint.open(dir.resolve("missing").toString())).status());
  }

  @Test
  public void aSingleFileHasNoConfig() throws IOException {
    Map<String, Object[]> one = new LinkedHashMap<>();
    one.put("w", new Object[] {"F32", new long[] {2, 3}, f32Bytes(new float[] {1, 2, 3, 4, 5, 6})});
    Path file = dir.resolve("one.safetensors");
    writeSafetensors(file, one);
    try (Checkpoint ckpt = Checkpoint.open(file.toString())) {
      assertNull(ckpt.config());
      assertEquals(S2ft.ERR_STATE, ErrorTest.expectS2ft(ckpt::shape).status());
      assertArrayEquals(new float[] {1, 2, 3, 4, 5, 6}, ckpt.tensor("w").toFloatArray(), 0);
    }
  }

  @Test
  public void writeThenReopenRoundTripsReplacementsAndViewWrites() throws IOException {
    Path src = dir.resolve("src");
    Map<String, float[]> written = tinyCheckpoint(src, 2);
    Files.write(src.resolve("tokenizer.json"), "{}".getBytes(StandardCharsets.UTF_8));
    Files.write(src.resolve("notes.txt"), "hello".getBytes(StandardCharsets.UTF_8));
    String oName = weightName(0, S2ft.TARGET_O), downName = weightName(1, S2ft.TARGET_DOWN);
    float[] newDown = new float[D * F];
    for (int i = 0; i < newDown.length; ++i) newDown[i] = i * 0.5f;
    try (Checkpoint ckpt = Checkpoint.open(src.toString())) {
      ckpt.tensor(oName).set(123.5f, 0, 5); // this process's copy, not the file
      assertEquals(123.5f, ckpt.tensor(oName).get(0, 5), 0);
      try (Checkpoint again = Checkpoint.open(src.toString())) {
        assertEquals(written.get(oName)[5], again.tensor(oName).get(0, 5), 0);
      }
      Map<String, Tensor> replacements = new LinkedHashMap<>();
      replacements.put(downName, Tensor.of(newDown, D, F));
      Path out = dir.resolve("out");
      ckpt.write(out.toString(), replacements, new WriteOptions().exclude("notes.txt"));
      assertTrue(Files.exists(out.resolve("tokenizer.json")));
      assertFalse(Files.exists(out.resolve("notes.txt")));
      assertArrayEquals(Files.readAllBytes(src.resolve("config.json")), Files.readAllBytes(out.resolve("config.json")));
      try (Checkpoint back = Checkpoint.open(out.toString())) {
        assertArrayEquals(bits(newDown), bits(back.tensor(downName).toFloatArray()));
        assertEquals(123.5f, back.tensor(oName).get(0, 5), 0);
        for (Map.Entry<String, float[]> e : written.entrySet())
          if (!e.getKey().equals(downName) && !e.getKey().equals(oName))
            assertArrayEquals(e.getKey(), bits(e.getValue()), bits(back.tensor(e.getKey()).toFloatArray()));
        assertEquals(ckpt.tensorData("model.rotary_buffer"), back.tensorData("model.rotary_buffer"));
      }

      Path sharded = dir.resolve("sharded");
      ckpt.write(sharded.toString(), null, new WriteOptions().maxShardBytes(1024).copyOtherFiles(false));
      assertFalse(Files.exists(sharded.resolve("tokenizer.json")));
      try (Checkpoint back = Checkpoint.open(sharded.toString())) {
        assertTrue(back.files().toString(), back.files().size() > 1);
        assertEquals(SHAPE, back.shape());
        assertArrayEquals(bits(written.get(downName)), bits(back.tensor(downName).toFloatArray()));
      }

      // Progress: after each tensor, the bytes written so far and their total.
      List<long[]> calls = new ArrayList<>();
      ckpt.write(dir.resolve("progress").toString(), null,
          new WriteOptions().progress((done, total) -> calls.add(new long[] {done, total})));
      long total = 0;
      for (TensorInfo i : ckpt.tensors()) total += i.nbytes;
      assertEquals(ckpt.tensorCount(), calls.size());
      for (int i = 1; i < calls.size(); ++i) assertTrue(calls.get(i - 1)[0] <= calls.get(i)[0]);
      assertArrayEquals(new long[] {total, total}, calls.get(calls.size() - 1));
      try {
        ckpt.write(dir.resolve("stopped").toString(), null, new WriteOptions().progress((done, all) -> {
          throw new IllegalStateException("stop");
        }));
        fail("the listener's exception must reach the caller");
      } catch (IllegalStateException expected) {
        assertEquals("stop", expected.getMessage());
      }

      Map<String, Tensor> bad = new LinkedHashMap<>();
      bad.put(downName, Tensor.of(newDown, F, D));
      assertEquals(S2ft.ERR_SHAPE, ErrorTest.expectS2ft(() -> ckpt.write(dir.resolve("bad").toString(), bad, null)).status());
      bad.clear();
      bad.put("no.such.tensor", Tensor.of(newDown, D, F));
      S2ftException e = ErrorTest.expectS2ft(() -> ckpt.write(dir.resolve("bad").toString(), bad, null));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
      assertTrue(e.getMessage(), e.getMessage().contains("no.such.tensor"));
    }
  }

  @Test
  public void applyFilesChangesTheLayerWeightsByExactlyTheDelta() throws IOException {
    Map<String, float[]> written = tinyCheckpoint(dir.resolve("base"), 3);
    String pa = dir.resolve("a.safetensors").toString(), pb = dir.resolve("b.safetensors").toString();
    try (Context ctx = new Context();
         Checkpoint ckpt = Checkpoint.open(dir.resolve("base").toString());
         Adapter a = makeAdapter(ckpt, "a", new long[] {1, 7, 9}, new long[] {0, 3}, 10);
         Adapter b = makeAdapter(ckpt, "b", new long[] {7, 2}, new long[] {3}, 20);
         Adapter fused = Adapter.fuse(new Adapter[] {a, b}, new double[] {0.5, 2.0})) {
      a.save(pa);
      b.save(pb);
      try (Model model = Model.fromCheckpoint(ctx, ckpt)) {
        assertNull(model.applied());
        model.applyFiles(pa);
        assertEquals("a", model.applied().name());
        assertEquals(1.0, model.appliedScale(), 0);
        for (int l = 0; l < SHAPE.nLayers; ++l) {
          LayerWeights w = model.layer(l);
          // A model from a checkpoint holds all seven projections; q, k and gate stay the checkpoint's.
          assertArrayEquals(bits(written.get("model.layers." + l + ".self_attn.q_proj.weight")), bits(w.q.toFloatArray()));
          assertArrayEquals(bits(written.get("model.layers." + l + ".self_attn.k_proj.weight")), bits(w.k.toFloatArray()));
          assertArrayEquals(bits(written.get("model.layers." + l + ".mlp.gate_proj.weight")), bits(w.gate.toFloatArray()));
          assertArrayEquals(bits(merged(written.get(weightName(l, S2ft.TARGET_DOWN)), a, l, S2ft.TARGET_DOWN, 1, D, F)),
              bits(w.down.toFloatArray()));
          assertArrayEquals(bits(merged(written.get(weightName(l, S2ft.TARGET_V)), a, l, S2ft.TARGET_V, 1, KV, D)),
              bits(w.v.toFloatArray()));
          assertArrayEquals(bits(written.get(weightName(l, S2ft.TARGET_O))), bits(w.o.toFloatArray()));
        }
        Adapter owned = model.applied();
        model.applyFiles(new String[] {pa, pb}, new double[] {0.5, 2.0}, 0);
        assertTrue("the replaced owned adapter is detached", owned.isClosed());
        assertEquals("a+b", model.applied().name());
        assertArrayEquals(bits(merged(written.get(weightName(1, S2ft.TARGET_DOWN)), fused, 1, S2ft.TARGET_DOWN, 1, D, F)),
            bits(model.layer(1).down.toFloatArray()));
        model.applyFiles(new String[] {pb}, new double[] {0.25}, 0);
        assertEquals(0.25, model.appliedScale(), 0);
        assertArrayEquals(bits(merged(written.get(weightName(0, S2ft.TARGET_V)), b, 0, S2ft.TARGET_V, 0.25, KV, D)),
            bits(model.layer(0).v.toFloatArray()));
        model.switchTo(a);
        assertSame(a, model.applied());

        // Errors leave the model as it was.
        S2ftException e = ErrorTest.expectS2ft(() -> model.applyFiles(dir.resolve("missing.safetensors").toString()));
        assertEquals(S2ft.ERR_IO, e.status());
        assertSame(a, model.applied());
        model.remove();
        for (int l = 0; l < SHAPE.nLayers; ++l)
          for (int t : new int[] {S2ft.TARGET_O, S2ft.TARGET_V, S2ft.TARGET_DOWN, S2ft.TARGET_UP})
            assertArrayEquals(bits(written.get(weightName(l, t))), bits(model.layer(l).target(t).toFloatArray()));
        model.applyFiles(pb);
      }
      // The merged model is the checkpoint's contents now: written out whole.
      Path out = dir.resolve("merged");
      ckpt.write(out.toString());
      try (Checkpoint back = Checkpoint.open(out.toString())) {
        assertArrayEquals(bits(merged(written.get(weightName(0, S2ft.TARGET_DOWN)), b, 0, S2ft.TARGET_DOWN, 1, D, F)),
            bits(back.tensor(weightName(0, S2ft.TARGET_DOWN)).toFloatArray()));
      }
    }
  }

  @Test
  public void forwardMixedOverTheModelLayerServesEachSegmentWithItsAdapter() throws IOException {
    Map<String, float[]> written = tinyCheckpoint(dir.resolve("base"), 4);
    int tokens = 5;
    long[] offsets = {0, 2, 3, 5};
    int[] segments = {0, -1, 1};
    float[] x = random(5, tokens * F), y = new float[tokens * D];
    try (Context ctx = new Context();
         Checkpoint ckpt = Checkpoint.open(dir.resolve("base").toString());
         Adapter a = makeAdapter(ckpt, "a", new long[] {0, 5}, new long[] {1}, 30);
         Adapter b = makeAdapter(ckpt, "b", new long[] {5, 9}, new long[] {2}, 40);
         Model model = Model.fromCheckpoint(ctx, ckpt)) {
      Tensor down = model.layer(1).down;
      Adapter.forwardMixed(ctx, 1, S2ft.TARGET_DOWN, Tensor.of(x, tokens, F), down, null, new Adapter[] {a, b},
          null, offsets, segments, Tensor.of(y, tokens, D));
      float[] w0 = written.get(weightName(1, S2ft.TARGET_DOWN));
      for (int s = 0; s < segments.length; ++s) {
        float[] w = segments[s] < 0 ? w0 : merged(w0, segments[s] == 0 ? a : b, 1, S2ft.TARGET_DOWN, 1, D, F);
        for (long r = offsets[s]; r < offsets[s + 1]; ++r)
          for (int o = 0; o < D; ++o) {
            double want = 0;
            for (int c = 0; c < F; ++c) want += (double) x[(int) r * F + c] * w[o * F + c];
            assertClose("segment " + s + " y[" + r + "," + o + "]", want, y[(int) r * D + o], 1e-5);
          }
      }
    }
  }

  @Test
  public void aCheckpointCannotBeClosedWhileAModelMadeFromItIsOpen() throws IOException {
    tinyCheckpoint(dir.resolve("base"), 6);
    Checkpoint ckpt = Checkpoint.open(dir.resolve("base").toString());
    try (Context ctx = new Context()) {
      Model model = Model.fromCheckpoint(ctx, ckpt);
      try {
        ckpt.close();
        fail("closing a checkpoint with an open model must throw");
      } catch (IllegalStateException expected) {
        assertFalse(ckpt.isClosed());
        assertTrue(expected.getMessage(), expected.getMessage().contains("model"));
      }
      model.close();
      assertSame(ctx, model.context());
    }
    ckpt.close();
    assertTrue(ckpt.isClosed());
  }

  @Test
  public void viewsOfAClosedCheckpointAreRefused() throws IOException {
    tinyCheckpoint(dir.resolve("base"), 5);
    Tensor view;
    try (Checkpoint ckpt = Checkpoint.open(dir.resolve("base").toString())) {
      view = ckpt.tensor(weightName(0, S2ft.TARGET_DOWN));
      assertEquals(view.get(0, 0), view.toFloatArray()[0], 0);
    }
    try {
      view.get(0, 0);
      fail("reading a view of a closed checkpoint must throw");
    } catch (IllegalStateException expected) {
      assertTrue(expected.getMessage(), expected.getMessage().contains("closed"));
    }
    float[] x = new float[F], y = new float[D];
    try (Context ctx = new Context()) {
      Adapter.forwardMixed(ctx, 0, S2ft.TARGET_DOWN, Tensor.of(x, 1, F), view, null, new Adapter[0], null,
          new long[] {0, 1}, new int[] {-1}, Tensor.of(y, 1, D));
      fail("passing a view of a closed checkpoint must throw");
    } catch (IllegalStateException expected) {
      assertTrue(expected.getMessage(), expected.getMessage().contains("closed checkpoint"));
    }
  }

  @Test
  public void metadataRoundTripsThroughSaveLoadAndFuse() throws IOException {
    File f = dir.resolve("meta.safetensors").toFile();
    try (Adapter a = Adapter.create(SHAPE, "a", 1.0); Adapter b = Adapter.create(SHAPE, "b", 1.0)) {
      a.set(0, S2ft.TARGET_DOWN, new long[] {3}, Tensor.of(random(1, D), D, 1), null);
      b.set(0, S2ft.TARGET_DOWN, new long[] {4}, Tensor.of(random(2, D), D, 1), null);
      assertTrue(a.metadata().isEmpty());
      a.setMeta("base_model", "tiny-llama");
      a.setMeta("note", "h\u00e9llo \ud83d\ude00"); // a character outside the BMP as well
      a.setMeta("empty", "");
      a.setMeta("selection.strategy", "x");
      a.removeMeta("selection.strategy");
      a.removeMeta("absent");
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, ErrorTest.expectS2ft(() -> a.setMeta("bad key", "x")).status());
      a.save(f.getPath());
      b.setMeta("base_model", "tiny-llama");
      try (Adapter back = Adapter.load(f.getPath());
           Adapter fused = Adapter.fuse(new Adapter[] {back, b}, new double[] {0.5, 1.0})) {
        assertEquals(List.of("base_model", "empty", "note"), new ArrayList<>(back.metadata().keySet()));
        assertEquals("h\u00e9llo \ud83d\ude00", back.meta("note"));
        assertEquals("", back.meta("empty"));
        assertNull(back.meta("missing"));
        assertEquals("a", fused.meta("input.0.name"));
        assertEquals("b", fused.meta("input.1.name"));
        assertEquals(0.5, Double.parseDouble(fused.meta("input.0.weight")), 0);
        assertEquals("h\u00e9llo \ud83d\ude00", fused.meta("input.0.note"));
        assertEquals("tiny-llama", fused.meta("input.1.base_model"));
      }
    }
  }

  @Test
  public void exportPeftWritesLoraFactorsWhoseProductIsTheDelta() throws IOException {
    float[] delta = new float[D * 2];
    for (int i = 0; i < delta.length; ++i) delta[i] = i * 0.25f - 1;
    try (Adapter a = Adapter.create(SHAPE, "a", 2.0)) {
      a.set(1, S2ft.TARGET_DOWN, new long[] {2, 9}, Tensor.of(delta, D, 2), null);
      Path out = dir.resolve("peft");
      a.exportPeft(out.toString(), new PeftExportOptions().baseModelNameOrPath("org/tiny-llama").scale(1.0));
      String config = new String(Files.readAllBytes(out.resolve("adapter_config.json")), StandardCharsets.UTF_8);
      assertTrue(config, config.contains("org/tiny-llama"));
      try (Checkpoint lora = Checkpoint.open(out.resolve("adapter_model.safetensors").toString())) {
        String bName = null, aName = null;
        for (TensorInfo i : lora.tensors()) {
          if (i.name.contains("layers.1.mlp.down_proj.lora_B")) bName = i.name;
          if (i.name.contains("layers.1.mlp.down_proj.lora_A")) aName = i.name;
        }
        assertNotNull(bName);
        assertNotNull(aName);
        assertArrayEquals(bits(delta), bits(lora.tensor(bName).toFloatArray()));
        Tensor oneHot = lora.tensor(aName);
        assertArrayEquals(new long[] {2, F}, oneHot.shape());
        for (int c = 0; c < F; ++c) {
          assertEquals(c == 2 ? 1 : 0, oneHot.get(0, c), 0);
          assertEquals(c == 9 ? 1 : 0, oneHot.get(1, c), 0);
        }
      }
      Path out2 = dir.resolve("peft2");
      a.exportPeft(out2.toString()); // the default scale, 2, folded into B
      try (Checkpoint lora = Checkpoint.open(out2.resolve("adapter_model.safetensors").toString())) {
        for (TensorInfo i : lora.tensors())
          if (i.name.contains("lora_B")) assertEquals(delta[3] * 2, lora.tensor(i.name).get(1, 1), 0);
      }
      S2ftException e = ErrorTest.expectS2ft(() -> a.exportPeft(dir.resolve("bad").toString(),
          new PeftExportOptions().scale(Double.POSITIVE_INFINITY)));
      assertEquals(S2ft.ERR_INVALID_ARGUMENT, e.status());
    }
  }
}
