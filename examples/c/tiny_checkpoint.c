/* Writes a small random LLaMA checkpoint folder (config.json and
 * model.safetensors: 2 layers, d_model 16, 4 query heads, 2 KV heads,
 * head_dim 4, d_ff 24, F32), for trying the serving examples without a
 * downloaded model. It is no trained model: its weights are noise.
 *
 * usage: tiny_checkpoint OUT_DIR   (OUT_DIR must exist) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { LAYERS = 2, D_MODEL = 16, HEADS = 4, KV_HEADS = 2, HEAD_DIM = 4, D_FF = 24, PROJECTIONS = 7 };

static const char *const names[PROJECTIONS] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                               "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                               "mlp.down_proj"};
static const int64_t rows[PROJECTIONS] = {HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM, D_MODEL,
                                          D_FF, D_FF, D_MODEL};
static const int64_t cols[PROJECTIONS] = {D_MODEL, D_MODEL, D_MODEL, HEADS * HEAD_DIM, D_MODEL, D_MODEL, D_FF};

static int write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
    perror(path);
    return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s OUT_DIR\n", argv[0]);
    return 2;
  }
  char path[4096], config[512], header[LAYERS * PROJECTIONS * 128 + 16];
  snprintf(config, sizeof config,
           "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_size\": %d, "
           "\"num_hidden_layers\": %d, \"num_attention_heads\": %d, \"num_key_value_heads\": %d, "
           "\"head_dim\": %d, \"intermediate_size\": %d, \"torch_dtype\": \"float32\"}\n",
           D_MODEL, LAYERS, HEADS, KV_HEADS, HEAD_DIM, D_FF);
  snprintf(path, sizeof path, "%s/config.json", argv[1]);
  if (write_text(path, config)) return 1;

  /* The safetensors header: each tensor's dtype, shape and byte range. */
  size_t used = (size_t)snprintf(header, sizeof header, "{"), offset = 0;
  for (int l = 0; l < LAYERS; ++l)
    for (int p = 0; p < PROJECTIONS; ++p) {
      const size_t bytes = (size_t)(rows[p] * cols[p]) * sizeof(float);
      used += (size_t)snprintf(header + used, sizeof header - used,
                               "%s\"model.layers.%d.%s.weight\":{\"dtype\":\"F32\",\"shape\":[%lld,%lld],"
                               "\"data_offsets\":[%zu,%zu]}",
                               used > 1 ? "," : "", l, names[p], (long long)rows[p], (long long)cols[p], offset,
                               offset + bytes);
      offset += bytes;
    }
  header[used++] = '}';
  while (used % 8 != 0) header[used++] = ' '; /* keeps the data 8-byte aligned */

  snprintf(path, sizeof path, "%s/model.safetensors", argv[1]);
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    perror(path);
    return 1;
  }
  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = (uint8_t)((uint64_t)used >> (8 * i)); /* little-endian */
  int ok = fwrite(length, 1, 8, f) == 8 && fwrite(header, 1, used, f) == used;
  uint64_t state = 2024;
  for (size_t i = 0; ok && i < offset / sizeof(float); ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const float v = ((float)(state >> 40) / (float)(1u << 24) * 2.0f - 1.0f) * 0.1f;
    uint8_t le[4];
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    for (int b = 0; b < 4; ++b) le[b] = (uint8_t)(bits >> (8 * b));
    ok = fwrite(le, 1, 4, f) == 4;
  }
  if (fclose(f) != 0 || !ok) {
    perror(path);
    return 1;
  }
  printf("wrote a %d-layer random LLaMA checkpoint to %s\n", LAYERS, argv[1]);
  return 0;
}
