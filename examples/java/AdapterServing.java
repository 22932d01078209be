// Serves two S2FT adapters on a model opened from its checkpoint folder with the
// Java binding: loads both, applies the first and switches to the second on the
// model (only the union of their lines is touched), restores the base, then runs
// one batch whose requests use different adapters with forwardMixed over the
// model's own down_proj, merging nothing.
//
// usage: java -cp s2ft.jar:. AdapterServing FIRST.safetensors SECOND.safetensors [BASE_DIR]
// BASE_DIR defaults to stories260K-hf in the test data ($S2FT_TEST_DATA, else
// ../shared/data). `make_adapters BASE_DIR OUT_DIR` (examples/c) makes two
// adapters for a base, and `tiny_checkpoint DIR` a small random base.
import java.util.Arrays;
import org.s2ft.*;

public class AdapterServing {
  public static void main(String[] args) {
    if (args.length < 2 || args.length > 3) {
      System.err.println("usage: AdapterServing FIRST.safetensors SECOND.safetensors [BASE_DIR]");
      System.exit(2);
    }
    String base = args.length > 2 ? args[2] : defaultBase();
    long[] offsets = {0, 4, 6, 9}; // 9 tokens: 4 with adapter 0, 2 with none, 3 with adapter 1
    int[] uses = {0, -1, 1};
    try (Context ctx = new Context();
         Adapter first = Adapter.load(args[0]);
         Adapter second = Adapter.load(args[1]);
         Checkpoint ckpt = Checkpoint.open(base);
         Model model = Model.fromCheckpoint(ctx, ckpt)) {
      float[] before = model.layer(0).down().toFloatArray();
      model.apply(first); // W[lines] += delta; the displaced lines are kept
      model.switchTo(second); // touches only the union of both adapters' lines
      model.remove(); // the base again, bit-exactly
      Tensor down = model.layer(0).down(); // [d_model, d_ff], a view into the checkpoint
      long dModel = down.shape()[0], dFf = down.shape()[1];
      Tensor x = Tensor.of(inputs(9, dFf), 9, dFf), y = Tensor.allocate(S2ft.F32, 9, dModel);
      Adapter.forwardMixed(ctx, 0, S2ft.TARGET_DOWN, x, down, null, new Adapter[] {first, second}, null,
          offsets, uses, y);

      boolean restored = Arrays.equals(before, down.toFloatArray());
      System.out.printf("base %s: layer 0's down_proj is [%d, %d]%n", base, dModel, dFf);
      System.out.printf("applied '%s', switched to '%s', removed: base restored bit-exactly = %b%n",
          first.name(), second.name(), restored);
      report(ctx, x, down, offsets, uses, new Adapter[] {first, second}, y);
      if (!restored) throw new IllegalStateException("the base was not restored");
    }
    System.out.println("live handles at exit: " + S2ft.liveHandles());
  }

  /** Inputs [tokens, dFf] in [-1, 1), deterministic. */
  static float[] inputs(int tokens, long dFf) {
    float[] x = new float[(int) (tokens * dFf)];
    for (int i = 0; i < x.length; ++i) x[i] = (i * 7919 % 1000) / 500.0f - 1;
    return x;
  }

  /** Prints each request's largest change against the base layer's output. */
  static void report(Context ctx, Tensor x, Tensor w, long[] offsets, int[] uses, Adapter[] adapters, Tensor y) {
    long tokens = offsets[offsets.length - 1], dModel = w.shape()[0];
    Tensor yBase = Tensor.allocate(S2ft.F32, tokens, dModel);
    Adapter.forwardMixed(ctx, 0, S2ft.TARGET_DOWN, x, w, null, new Adapter[0], null, new long[] {0, tokens},
        new int[] {-1}, yBase);
    for (int s = 0; s < uses.length; ++s) {
      double change = 0;
      for (long r = offsets[s]; r < offsets[s + 1]; ++r)
        for (long o = 0; o < dModel; ++o) change = Math.max(change, Math.abs(y.get(r, o) - yBase.get(r, o)));
      String name = uses[s] < 0 ? "no adapter" : "adapter '" + adapters[uses[s]].name() + "'";
      System.out.printf("request %d (%s): %d tokens, max |y - y_base| = %.6f%n", s, name, offsets[s + 1] - offsets[s],
          change);
    }
  }

  /** stories260K-hf in the test data: $S2FT_TEST_DATA, else ../shared/data. */
  static String defaultBase() {
    String data = System.getenv("S2FT_TEST_DATA");
    return (data != null ? data : "../shared/data") + "/stories260K-hf";
  }
}
