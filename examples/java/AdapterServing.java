// Serving two S2FT adapters on one base layer with the Java binding:
// build adapters, fuse, save/load, apply/switch/remove on a model, then run a
// batch of requests that use different adapters with forwardMixed.
import java.io.File;
import java.util.Random;
import org.s2ft.*;

public class AdapterServing {
  public static void main(String[] args) throws Exception {
    // One layer of a small GQA model; we serve its down_proj [d_model, d_ff].
    ModelShape shape = new ModelShape(1, 64, 8, 2, 8, 96);
    final int out = shape.dModel, in = shape.dFf;
    Random rng = new Random(2024);
    Tensor down = Tensor.allocate(S2ft.F32, out, in);   // direct memory: the model edits it in place
    for (int i = 0; i < out * in; ++i) down.floatBuffer().put(i, (float) rng.nextGaussian() * 0.05f);
    float[] original = down.toFloatArray();
    LayerWeights[] layers = {new LayerWeights().down(down)};

    try (Context ctx = new Context();
         Adapter a = Adapter.create(shape, "math", 1.0);
         Adapter b = Adapter.create(shape, "code", 1.0)) {
      // Two adapters over a few channels each (as s2ft_adapter_from_training would produce).
      long[] linesA = {3, 17, 40, 77}, linesB = {17, 50, 91};
      a.set(0, S2ft.TARGET_DOWN, linesA, deltaOf(rng, out, linesA.length), down);
      b.set(0, S2ft.TARGET_DOWN, linesB, deltaOf(rng, out, linesB.length), down);

      File file = File.createTempFile("s2ft-fused", ".safetensors");
      file.deleteOnExit();
      try (Adapter fused = Adapter.fuse(new Adapter[] {a, b}, new double[] {0.5, 0.5})) {
        fused.save(file.getPath());
      }
      try (Adapter fused = Adapter.load(file.getPath());
           Model model = new Model(ctx, shape, layers, null)) {
        System.out.printf("fused adapter '%s': %d lines%n", fused.name(), fused.lines(0, S2ft.TARGET_DOWN).length);
        model.apply(a);
        System.out.printf("applied %s, W[0,3] %.5f -> %.5f%n", model.applied().name(), original[3], down.get(0, 3));
        model.switchTo(b);
        System.out.printf("switched to %s, W[0,3] back to %.5f%n", model.applied().name(), down.get(0, 3));
        model.switchTo(fused);
        model.remove();
        boolean exact = java.util.Arrays.equals(original, down.toFloatArray());
        System.out.println("removed: base restored bit-exactly = " + exact);
        if (!exact) throw new AssertionError("base not restored");
      }

      // A batch of three requests: rows 0-4 use "math", 5-6 no adapter, 7-11 "code".
      long[] offsets = {0, 5, 7, 12};
      int[] segmentAdapter = {0, -1, 1};
      int tokens = (int) offsets[offsets.length - 1];
      float[] x = new float[tokens * in], y = new float[tokens * out];
      for (int i = 0; i < x.length; ++i) x[i] = (float) rng.nextGaussian();
      Adapter.forwardMixed(ctx, 0, S2ft.TARGET_DOWN, Tensor.of(x, tokens, in), down, null,
          new Adapter[] {a, b}, null, offsets, segmentAdapter, Tensor.of(y, tokens, out));
      for (int s = 0; s < segmentAdapter.length; ++s) {
        double sum = 0;
        for (long r = offsets[s]; r < offsets[s + 1]; ++r)
          for (int o = 0; o < out; ++o) sum += Math.abs(y[(int) r * out + o]);
        System.out.printf("request %d (%s): %d tokens, mean |y| %.5f%n", s,
            segmentAdapter[s] < 0 ? "base" : (segmentAdapter[s] == 0 ? a : b).name(),
            offsets[s + 1] - offsets[s], sum / ((offsets[s + 1] - offsets[s]) * out));
      }
    }
    System.out.println("live handles at exit: " + S2ft.liveHandles());
  }

  static Tensor deltaOf(Random rng, int rows, int cols) {
    float[] d = new float[rows * cols];
    for (int i = 0; i < d.length; ++i) d[i] = (float) rng.nextGaussian() * 0.01f;
    return Tensor.of(d, rows, cols);
  }
}
