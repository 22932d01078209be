/* Saves two adapters for a 1-layer model, loads them back from their files,
 * applies the first to the model's down_proj, switches to the second,
 * removes it and checks that the base weights are restored bit-exactly. */
#include <stdio.h>
#include <string.h>
#include <s2ft/s2ft.h>

#define CHECK(call) do { s2ft_status st_ = (call); if (st_ != S2FT_OK) { \
  fprintf(stderr, "%s: %s\n", #call, s2ft_last_error()); return 1; } } while (0)

enum { D_MODEL = 4, D_FF = 8, K = 2 };

/* An adapter on two down_proj columns (base order), saved to `path`. */
static int save_adapter(const s2ft_model_shape *shape, const char *name, const int64_t lines[K],
                        float step, s2ft_tensor *base, const char *path) {
  float delta[D_MODEL * K];
  s2ft_tensor d;
  s2ft_adapter *a;
  for (int i = 0; i < D_MODEL * K; ++i) delta[i] = step * (float)(i + 1);
  CHECK(s2ft_tensor_cpu_f32_2d(&d, delta, D_MODEL, K));
  CHECK(s2ft_adapter_create(shape, name, 1.0, &a));
  s2ft_status st = s2ft_adapter_set(a, 0, S2FT_TARGET_DOWN, lines, K, &d, base);
  if (st == S2FT_OK) st = s2ft_adapter_save(a, path);
  s2ft_adapter_destroy(a);
  CHECK(st);
  return 0;
}

int main(void) {
  const s2ft_model_shape shape = {1, D_MODEL, 2, 1, 2, D_FF}; /* layers, d_model, heads, kv heads, head_dim, d_ff */
  float w[D_MODEL * D_FF], base[D_MODEL * D_FF];
  for (int i = 0; i < D_MODEL * D_FF; ++i) w[i] = (float)(i % 7) * 0.25f - 0.75f;
  memcpy(base, w, sizeof w);
  s2ft_tensor down;
  CHECK(s2ft_tensor_cpu_f32_2d(&down, w, D_MODEL, D_FF));

  const int64_t first_lines[K] = {1, 5}, second_lines[K] = {5, 6};
  if (save_adapter(&shape, "first", first_lines, 0.125f, &down, "first.safetensors") ||
      save_adapter(&shape, "second", second_lines, -0.5f, &down, "second.safetensors"))
    return 1;

  s2ft_context *ctx;
  s2ft_adapter *first, *second;
  s2ft_model *model;
  s2ft_layer_weights layer = {0};
  layer.down = &down; /* the model edits w in place */
  CHECK(s2ft_context_create(NULL, &ctx));
  CHECK(s2ft_adapter_load("first.safetensors", &first));
  CHECK(s2ft_adapter_load("second.safetensors", &second));
  CHECK(s2ft_model_create(ctx, &shape, &layer, NULL, &model));

  CHECK(s2ft_adapter_apply(model, first, 1.0, 0));
  int applied = w[1] == base[1] + 0.125f; /* row 0 of column 1: the first delta value */
  CHECK(s2ft_adapter_switch(model, second, 1.0, 0));
  int switched = w[1] == base[1] && w[6] == base[6] - 1.0f; /* column 1 restored, column 6 changed */
  CHECK(s2ft_adapter_remove(model));
  int restored = memcmp(w, base, sizeof w) == 0;

  s2ft_model_destroy(model);
  s2ft_adapter_destroy(second);
  s2ft_adapter_destroy(first);
  s2ft_context_destroy(ctx);
  remove("first.safetensors");
  remove("second.safetensors");
  if (!(applied && switched && restored)) {
    fprintf(stderr, "C: wrong weights (applied %d, switched %d, restored %d)\n", applied, switched, restored);
    return 1;
  }
  printf("C: loaded 'first' and 'second' from files, applied, switched, removed: base restored bit-exactly\n");
  return 0;
}
