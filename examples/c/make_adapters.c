/* Makes two small demo adapters for a base checkpoint, the inputs of the
 * serving examples (examples/rust, examples/java, examples/go): "first" and
 * "second", each on a few down_proj columns and one v_proj row of every
 * layer, with small deltas, fingerprinted against the base weights (read
 * zero-copy through checkpoint views) and labelled with metadata.
 *
 * usage: make_adapters BASE_DIR OUT_DIR
 * writes OUT_DIR/first.safetensors and OUT_DIR/second.safetensors. */
#include <stdio.h>
#include <stdlib.h>
#include <s2ft/s2ft.h>

#define CHECK(call) do { s2ft_status st_ = (call); if (st_ != S2FT_OK) { \
  fprintf(stderr, "%s: %s\n", #call, s2ft_last_error()); goto done; } } while (0)

/* A deterministic value in [-scale, scale) (a linear congruential generator). */
static float next_value(uint64_t *state, float scale) {
  *state = *state * 6364136223846793005ull + 1442695040888963407ull;
  return ((float)(*state >> 40) / (float)(1u << 24) * 2.0f - 1.0f) * scale;
}

/* Sets (layer, target) of `a` to `lines` with small deltas, fingerprinted
 * against the base weight `name` of the checkpoint. */
static s2ft_status set_entry(s2ft_adapter *a, s2ft_checkpoint *ckpt, const char *name, int32_t layer,
                             int32_t target, const int64_t *lines, int64_t k, uint64_t *rng) {
  s2ft_tensor base, delta;
  s2ft_status st = s2ft_checkpoint_tensor(ckpt, name, &base); /* [out, in], zero-copy */
  if (st != S2FT_OK) return st;
  const int columns = target == S2FT_TARGET_O || target == S2FT_TARGET_DOWN;
  const int64_t rows = columns ? base.shape[0] : k, cols = columns ? k : base.shape[1];
  float *values = malloc((size_t)(rows * cols) * sizeof *values);
  if (values == NULL) return S2FT_ERR_OUT_OF_MEMORY;
  for (int64_t i = 0; i < rows * cols; ++i) values[i] = next_value(rng, 0.05f);
  st = s2ft_tensor_cpu_f32_2d(&delta, values, rows, cols);
  if (st == S2FT_OK) st = s2ft_adapter_set(a, layer, target, lines, k, &delta, &base);
  free(values);
  return st;
}

/* One adapter: down_proj columns `down`, v_proj row `v_row` of every layer. */
static s2ft_status make_adapter(s2ft_checkpoint *ckpt, const s2ft_model_shape *shape, const char *base_dir,
                                const char *name, const int64_t down[3], int64_t v_row, uint64_t seed,
                                const char *path) {
  s2ft_adapter *a = NULL;
  char tensor[128];
  s2ft_status st = s2ft_adapter_create(shape, name, 1.0, &a);
  for (int32_t l = 0; st == S2FT_OK && l < shape->n_layers; ++l) {
    snprintf(tensor, sizeof tensor, "model.layers.%d.mlp.down_proj.weight", (int)l);
    st = set_entry(a, ckpt, tensor, l, S2FT_TARGET_DOWN, down, 3, &seed);
    snprintf(tensor, sizeof tensor, "model.layers.%d.self_attn.v_proj.weight", (int)l);
    if (st == S2FT_OK) st = set_entry(a, ckpt, tensor, l, S2FT_TARGET_V, &v_row, 1, &seed);
  }
  if (st == S2FT_OK) st = s2ft_adapter_set_meta(a, "base_model", base_dir);
  if (st == S2FT_OK) st = s2ft_adapter_set_meta(a, "made_by", "examples/c/make_adapters.c");
  if (st == S2FT_OK) st = s2ft_adapter_save(a, path);
  s2ft_adapter_destroy(a);
  return st;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s BASE_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  int rc = 1;
  s2ft_checkpoint *ckpt = NULL;
  s2ft_model_shape shape;
  char first[4096], second[4096];
  snprintf(first, sizeof first, "%s/first.safetensors", argv[2]);
  snprintf(second, sizeof second, "%s/second.safetensors", argv[2]);
  CHECK(s2ft_checkpoint_open(argv[1], &ckpt));
  CHECK(s2ft_checkpoint_shape(ckpt, &shape));
  /* Overlapping lines: a switch between them touches only the union. */
  const int64_t f = shape.d_ff, v_rows = (int64_t)shape.n_kv_heads * shape.head_dim;
  if (f < 6) {
    fprintf(stderr, "%s: d_ff %d is too small for the demo adapters (at least 6)\n", argv[1], (int)f);
    goto done;
  }
  const int64_t first_down[3] = {0, f / 3, f - 1}, second_down[3] = {1, f / 3, f / 2};
  CHECK(make_adapter(ckpt, &shape, argv[1], "first", first_down, 0, 1, first));
  CHECK(make_adapter(ckpt, &shape, argv[1], "second", second_down, v_rows - 1, 2, second));
  printf("wrote %s and %s for %s (%d layers, d_model %d, d_ff %d)\n", first, second, argv[1],
         (int)shape.n_layers, (int)shape.d_model, (int)shape.d_ff);
  rc = 0;
done:
  s2ft_checkpoint_destroy(ckpt);
  return rc;
}
