// Saves two adapters for a 1-layer model, loads them back from their files,
// applies the first to the model's down_proj, switches to the second,
// removes it and checks that the base weights are restored bit-exactly.
import java.io.File;
import java.util.Arrays;
import org.s2ft.*;

public class AdapterSwitch {
  static final int D_MODEL = 4, D_FF = 8;

  /** An adapter on down_proj columns {@code lines} (base order), saved to {@code path}. */
  static void saveAdapter(ModelShape shape, String name, long[] lines, float step, Tensor base, String path) {
    float[] delta = new float[D_MODEL * lines.length];
    for (int i = 0; i < delta.length; ++i) delta[i] = step * (i + 1);
    try (Adapter a = Adapter.create(shape, name, 1.0)) {
      a.set(0, S2ft.TARGET_DOWN, lines, Tensor.of(delta, D_MODEL, lines.length), base);
      a.save(path);
    }
  }

  public static void main(String[] args) {
    ModelShape shape = new ModelShape(1, D_MODEL, 2, 1, 2, D_FF); // layers, d_model, heads, kv heads, head_dim, d_ff
    Tensor down = Tensor.allocate(S2ft.F32, D_MODEL, D_FF);        // direct memory: the model edits it in place
    for (int i = 0; i < D_MODEL * D_FF; ++i) down.floatBuffer().put(i, (i % 7) * 0.25f - 0.75f);
    float[] base = down.toFloatArray();

    saveAdapter(shape, "first", new long[] {1, 5}, 0.125f, down, "first.safetensors");
    saveAdapter(shape, "second", new long[] {5, 6}, -0.5f, down, "second.safetensors");
    try (Context ctx = new Context();
         Adapter first = Adapter.load("first.safetensors");
         Adapter second = Adapter.load("second.safetensors");
         Model model = new Model(ctx, shape, new LayerWeights[] {new LayerWeights().down(down)}, null)) {
      new File("first.safetensors").delete();
      new File("second.safetensors").delete();
      model.apply(first);
      boolean applied = down.get(0, 1) == base[1] + 0.125f;          // row 0 of column 1: the first delta value
      model.switchTo(second);
      boolean switched = down.get(0, 1) == base[1] && down.get(0, 6) == base[6] - 1.0f;
      model.remove();
      // Arrays.equals on float[] compares bit patterns (floatToIntBits).
      boolean restored = Arrays.equals(base, down.toFloatArray());
      if (!applied || !switched || !restored) throw new AssertionError("wrong weights after apply/switch/remove");
    }
    System.out.println("Java: loaded 'first' and 'second' from files, applied, switched, removed: base restored bit-exactly");
  }
}
