// Writes seed inputs for the fuzzers, made by the library's own writers so
// that they follow the current formats: small valid files and folders of
// every kind the fuzzers read, in variants that reach different checks
// (GQA and not, every target, f32/f16/bf16, sharded and not, misaligned
// tensor data). tests/fuzz/update_corpora.sh turns them into the committed
// corpora with libFuzzer's -merge=1, which keeps only seeds that add
// coverage.
//
// usage: fuzz_make_seeds OUTDIR   (writes OUTDIR/<target>/<seed>)
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_folder.hpp"
#include "io/safetensors.hpp"
#include "s2ft/s2ft.h"

namespace {

std::string g_out;

[[noreturn]] void die(const std::string &what) {
  std::fprintf(stderr, "fuzz_make_seeds: %s (%s)\n", what.c_str(), s2ft_last_error());
  std::exit(1);
}

void ok(s2ft_status status, const char *what) {
  if (status != S2FT_OK) die(what);
}

void make_dir(const std::string &dir) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) die("cannot create " + dir);
}

void write_seed(const std::string &target, const std::string &name, const std::string &bytes) {
  make_dir(g_out + "/" + target);
  std::ofstream out(g_out + "/" + target + "/" + name, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) die("cannot write seed " + target + "/" + name);
}

std::string read_whole(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) die("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string as_text(const std::vector<uint8_t> &bytes) { return std::string(bytes.begin(), bytes.end()); }

// ---- selections -------------------------------------------------------------

void selection_seeds() {
  const std::string tmp = g_out + "/selection.tmp.json";
  // GQA (4 query heads in 2 KV groups), made by s2ft_select so that the
  // file carries the options it was made with.
  const s2ft_model_shape gqa = {2, 8, 4, 2, 2, 6};
  s2ft_context *ctx = nullptr;
  ok(s2ft_context_create(nullptr, &ctx), "s2ft_context_create");
  s2ft_select_options o;
  ok(s2ft_select_options_init(&o, S2FT_SELECT_OPTIONS_VERSION), "s2ft_select_options_init");
  o.strategy = S2FT_STRATEGY_RANDOM;
  o.seed = 7;
  o.targets = S2FT_TARGET_BIT(S2FT_TARGET_O) | S2FT_TARGET_BIT(S2FT_TARGET_DOWN);
  o.ratio[S2FT_TARGET_O] = 0.5;
  o.ratio[S2FT_TARGET_DOWN] = 0.5;
  s2ft_selection *sel = nullptr;
  ok(s2ft_select(ctx, &gqa, &o, nullptr, &sel), "s2ft_select");
  ok(s2ft_selection_save(sel, tmp.c_str()), "s2ft_selection_save");
  write_seed("selection_load", "gqa-by-group-o-down.json", read_whole(tmp));
  s2ft_selection_destroy(sel);
  s2ft_context_destroy(ctx);

  // Single query heads and every target, from explicit units.
  const int64_t o_units[] = {1, 2, 3, 0};
  const int64_t v_units[] = {1, 0};
  const int64_t down_units[] = {5, 0, 4, 2};
  const int64_t up_units[] = {2, 3};
  const int64_t *units[S2FT_NUM_TARGETS] = {o_units, v_units, down_units, up_units};
  const int64_t counts[S2FT_NUM_TARGETS] = {2, 1, 2, 1};
  ok(s2ft_selection_create(&gqa, S2FT_HEADS_SINGLE, units, counts, &sel), "s2ft_selection_create");
  ok(s2ft_selection_save(sel, tmp.c_str()), "s2ft_selection_save");
  write_seed("selection_load", "gqa-single-all-targets.json", read_whole(tmp));
  s2ft_selection_destroy(sel);

  // Multi-head attention, V and UP only.
  const s2ft_model_shape mha = {1, 4, 2, 2, 2, 3};
  const int64_t none[] = {0};
  const int64_t *units2[S2FT_NUM_TARGETS] = {none, v_units, none, up_units};
  const int64_t counts2[S2FT_NUM_TARGETS] = {0, 1, 0, 1};
  ok(s2ft_selection_create(&mha, S2FT_HEADS_BY_GROUP, units2, counts2, &sel), "s2ft_selection_create");
  ok(s2ft_selection_save(sel, tmp.c_str()), "s2ft_selection_save");
  write_seed("selection_load", "mha-v-up.json", read_whole(tmp));
  s2ft_selection_destroy(sel);
  std::remove(tmp.c_str());
}

// ---- adapters ---------------------------------------------------------------

s2ft_tensor matrix(std::vector<float> &storage, int64_t rows, int64_t cols, float scale) {
  storage.resize(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < storage.size(); ++i) storage[i] = scale * static_cast<float>(static_cast<int>(i % 7) - 3);
  const int64_t dims[2] = {rows, cols};
  s2ft_tensor t;
  ok(s2ft_tensor_init(&t, storage.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 2, dims), "s2ft_tensor_init");
  return t;
}

void adapter_seeds() {
  const std::string tmp = g_out + "/adapter.tmp.safetensors";
  const s2ft_model_shape s = {2, 4, 2, 1, 2, 3};  // GQA: 2 query heads share 1 KV head
  std::vector<float> d1, d2, b1, b2;

  // O and DOWN (columns) with base fingerprints.
  s2ft_adapter *a = nullptr;
  ok(s2ft_adapter_create(&s, "seed-o-down", 0.5, &a), "s2ft_adapter_create");
  const int64_t o_lines[] = {1, 3};
  s2ft_tensor delta = matrix(d1, 4, 2, 0.25f), base = matrix(b1, 4, 4, 1.0f);
  ok(s2ft_adapter_set(a, 0, S2FT_TARGET_O, o_lines, 2, &delta, &base), "s2ft_adapter_set O");
  const int64_t down_lines[] = {2};
  delta = matrix(d2, 4, 1, -0.5f);
  base = matrix(b2, 4, 3, 2.0f);
  ok(s2ft_adapter_set(a, 1, S2FT_TARGET_DOWN, down_lines, 1, &delta, &base), "s2ft_adapter_set DOWN");
  ok(s2ft_adapter_save(a, tmp.c_str()), "s2ft_adapter_save");
  const std::string o_down = read_whole(tmp);
  write_seed("adapter_load", "o-down-fingerprinted.safetensors", o_down);
  write_seed("safetensors", "adapter.safetensors", o_down);
  s2ft_adapter_destroy(a);

  // V and UP (rows) without a base (fingerprints 0).
  ok(s2ft_adapter_create(&s, "", 1.0, &a), "s2ft_adapter_create");
  const int64_t v_lines[] = {0, 1};
  delta = matrix(d1, 2, 4, 0.125f);
  ok(s2ft_adapter_set(a, 1, S2FT_TARGET_V, v_lines, 2, &delta, nullptr), "s2ft_adapter_set V");
  const int64_t up_lines[] = {0, 2};
  delta = matrix(d2, 2, 4, 1.5f);
  ok(s2ft_adapter_set(a, 0, S2FT_TARGET_UP, up_lines, 2, &delta, nullptr), "s2ft_adapter_set UP");
  ok(s2ft_adapter_save(a, tmp.c_str()), "s2ft_adapter_save");
  write_seed("adapter_load", "v-up.safetensors", read_whole(tmp));
  s2ft_adapter_destroy(a);

  // Sparse entries (format version 3): on q and gate (weights without
  // lines), and beside a line on DOWN; fingerprinted and not.
  ok(s2ft_adapter_create(&s, "seed-sparse", 1.0, &a), "s2ft_adapter_create");
  delta = matrix(d1, 4, 1, 0.5f);
  ok(s2ft_adapter_set(a, 0, S2FT_TARGET_DOWN, down_lines, 1, &delta, nullptr), "s2ft_adapter_set DOWN");
  const int64_t down_sparse[] = {0, 4, 9};  // [4, 3]: not in column 2, the line
  const int64_t q_sparse[] = {3};
  const int64_t gate_sparse[] = {1, 2, 7, 8};
  std::vector<float> sv = {0.25f, -1.0f, 2.0f, 0.5f};
  const int64_t dims1[1] = {3}, dims_q[1] = {1}, dims_g[1] = {4};
  s2ft_tensor sd;
  ok(s2ft_tensor_init(&sd, sv.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, dims1), "s2ft_tensor_init");
  base = matrix(b2, 4, 3, 2.0f);
  ok(s2ft_adapter_set_sparse(a, 0, S2FT_WEIGHT_DOWN, down_sparse, 3, &sd, &base), "s2ft_adapter_set_sparse DOWN");
  ok(s2ft_tensor_init(&sd, sv.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, dims_q), "s2ft_tensor_init");
  ok(s2ft_adapter_set_sparse(a, 1, S2FT_WEIGHT_Q, q_sparse, 1, &sd, nullptr), "s2ft_adapter_set_sparse Q");
  ok(s2ft_tensor_init(&sd, sv.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, dims_g), "s2ft_tensor_init");
  base = matrix(b1, 3, 4, 1.0f);
  ok(s2ft_adapter_set_sparse(a, 1, S2FT_WEIGHT_GATE, gate_sparse, 4, &sd, &base), "s2ft_adapter_set_sparse GATE");
  ok(s2ft_adapter_save(a, tmp.c_str()), "s2ft_adapter_save");
  write_seed("adapter_load", "sparse-v3.safetensors", read_whole(tmp));
  s2ft_adapter_destroy(a);

  // Low-rank entries (format version 4): on q (fingerprinted) and down,
  // beside a line on V and a sparse entry on gate.
  ok(s2ft_adapter_create(&s, "seed-low-rank", 1.0, &a), "s2ft_adapter_create");
  delta = matrix(d1, 1, 4, 0.5f);
  ok(s2ft_adapter_set(a, 0, S2FT_TARGET_V, v_lines, 1, &delta, nullptr), "s2ft_adapter_set V");
  ok(s2ft_tensor_init(&sd, sv.data(), S2FT_F32, S2FT_DEVICE_CPU, 0, 1, dims_q), "s2ft_tensor_init");
  ok(s2ft_adapter_set_sparse(a, 1, S2FT_WEIGHT_GATE, q_sparse, 1, &sd, nullptr), "s2ft_adapter_set_sparse GATE");
  std::vector<float> lb(24), la(24), lq(16);
  s2ft_tensor fb = matrix(lb, 4, 2, 0.75f), fa = matrix(la, 2, 4, -0.5f), wq = matrix(lq, 4, 4, 1.0f);
  ok(s2ft_adapter_set_low_rank(a, 0, S2FT_WEIGHT_Q, &fb, &fa, &wq), "s2ft_adapter_set_low_rank Q");
  fb = matrix(lb, 4, 1, 2.0f);
  fa = matrix(la, 1, 3, 0.25f);
  ok(s2ft_adapter_set_low_rank(a, 1, S2FT_WEIGHT_DOWN, &fb, &fa, nullptr), "s2ft_adapter_set_low_rank DOWN");
  ok(s2ft_adapter_save(a, tmp.c_str()), "s2ft_adapter_save");
  write_seed("adapter_load", "low-rank-v4.safetensors", read_whole(tmp));
  s2ft_adapter_destroy(a);

  // No entries at all.
  ok(s2ft_adapter_create(&s, "empty", 1.0, &a), "s2ft_adapter_create");
  ok(s2ft_adapter_save(a, tmp.c_str()), "s2ft_adapter_save");
  write_seed("adapter_load", "empty.safetensors", read_whole(tmp));
  s2ft_adapter_destroy(a);
  std::remove(tmp.c_str());
}

// ---- safetensors --------------------------------------------------------------

void safetensors_seeds() {
  // Every dtype family, a scalar, an empty tensor, metadata.
  s2ft::io::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  const float f[3] = {1.0f, -2.0f, 0.5f};
  w.add("f32", "F32", {3}, f, sizeof f);
  const uint16_t h[4] = {0x3c00, 0x4000, 0x3f80, 0x4000};
  w.add("f16", "F16", {2, 2}, h, sizeof h);
  w.add("bf16", "BF16", {1, 2}, h, 4);
  const int64_t i64 = -5;
  w.add("scalar", "I64", {}, &i64, sizeof i64);
  const uint8_t b[2] = {1, 0};
  w.add("mask", "BOOL", {2}, b, sizeof b);
  w.add("empty", "U8", {0, 4}, nullptr, 0);
  write_seed("safetensors", "dtypes.safetensors", as_text(w.serialize()));
}

// ---- checkpoint folders -------------------------------------------------------

// Deterministic tensor bytes that never contain 0xff (so the folder
// encoding's marker cannot appear inside them): small positive numbers.
std::vector<uint8_t> tensor_bytes(const std::string &dtype, int64_t elements, int salt) {
  std::vector<uint8_t> out;
  for (int64_t i = 0; i < elements; ++i) {
    const uint32_t step = static_cast<uint32_t>((i * 13 + salt) % 64);
    if (dtype == "F32") {
      const uint32_t bits = 0x3c000000u + (step << 16);
      for (int b = 0; b < 4; ++b) out.push_back(static_cast<uint8_t>(bits >> (8 * b)));
    } else {
      const uint16_t bits = static_cast<uint16_t>((dtype == "F16" ? 0x2c00u : 0x3c00u) + step);
      out.push_back(static_cast<uint8_t>(bits & 0xffu));
      out.push_back(static_cast<uint8_t>(bits >> 8));
    }
  }
  return out;
}

struct Tensor {
  std::string name;
  std::vector<int64_t> shape;
};

// The seven projections of every layer of a LLaMA checkpoint of this shape
// and, with `vocab` > 0, its embeddings and norms (which the reader only
// lists: seeds without them are smaller and so faster to fuzz).
std::vector<Tensor> llama_tensors(const s2ft_model_shape &s, int32_t vocab) {
  const int64_t d = s.d_model, q = int64_t{s.n_heads} * s.head_dim, kv = int64_t{s.n_kv_heads} * s.head_dim;
  std::vector<Tensor> out;
  if (vocab > 0) out = {{"model.embed_tokens.weight", {vocab, d}}, {"model.norm.weight", {d}}};
  for (int32_t l = 0; l < s.n_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    if (vocab > 0) out.push_back({p + "input_layernorm.weight", {d}});
    out.push_back({p + "self_attn.q_proj.weight", {q, d}});
    out.push_back({p + "self_attn.k_proj.weight", {kv, d}});
    out.push_back({p + "self_attn.v_proj.weight", {kv, d}});
    out.push_back({p + "self_attn.o_proj.weight", {d, q}});
    if (vocab > 0) out.push_back({p + "post_attention_layernorm.weight", {d}});
    out.push_back({p + "mlp.gate_proj.weight", {s.d_ff, d}});
    out.push_back({p + "mlp.up_proj.weight", {s.d_ff, d}});
    out.push_back({p + "mlp.down_proj.weight", {d, s.d_ff}});
  }
  return out;
}

std::string shard(const std::vector<Tensor> &tensors, const std::string &dtype, bool misaligned) {
  s2ft::io::SafetensorsWriter w;
  w.set_metadata("format", "pt");
  int salt = 0;
  for (const Tensor &t : tensors) {
    int64_t n = 1;
    for (int64_t x : t.shape) n *= x;
    const std::vector<uint8_t> bytes = tensor_bytes(dtype, n, salt++);
    w.add(t.name, dtype, t.shape, bytes.data(), bytes.size());
  }
  std::string image = as_text(w.serialize());
  if (!misaligned) return image;
  // Drop the writer's alignment padding and make the data start at an odd
  // offset, as another writer may: the reader then stages aligned copies.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(image[static_cast<size_t>(i)]);
  std::string header = image.substr(8, static_cast<size_t>(n));
  while (!header.empty() && header.back() == ' ') header.pop_back();
  if ((8 + header.size()) % 2 == 0) header += ' ';
  std::string out;
  for (int i = 0; i < 8; ++i) out += static_cast<char>((header.size() >> (8 * i)) & 0xffu);
  return out + header + image.substr(8 + static_cast<size_t>(n));
}

std::string config(const s2ft_model_shape &s, int32_t vocab, const std::string &dtype, bool explicit_head_dim,
                   bool tied) {
  nlohmann::ordered_json c = {{"architectures", {"LlamaForCausalLM"}},
                              {"model_type", "llama"},
                              {"hidden_size", s.d_model},
                              {"intermediate_size", s.d_ff},
                              {"num_attention_heads", s.n_heads},
                              {"num_hidden_layers", s.n_layers},
                              {"num_key_value_heads", s.n_kv_heads},
                              {"vocab_size", vocab},
                              {"rms_norm_eps", 1e-5},
                              {"tie_word_embeddings", tied},
                              {"torch_dtype", dtype}};
  if (explicit_head_dim) c["head_dim"] = s.head_dim;
  return c.dump();  // compact: whitespace would only slow the fuzzer down
}

void checkpoint_seeds() {
  using s2ft_fuzz::FolderFile;
  // One file, bf16, multi-head attention, tied embeddings.
  const s2ft_model_shape mha = {1, 4, 2, 2, 2, 4};
  write_seed("checkpoint", "single-bf16-mha",
             s2ft_fuzz::encode_folder({{"config.json", config(mha, 4, "bfloat16", false, true)},
                                       {"model.safetensors", shard(llama_tensors(mha, 4), "BF16", false)}}));

  // One file, f32, GQA, head_dim given (d_model != n_heads * head_dim),
  // data at an odd offset.
  const s2ft_model_shape odd = {1, 4, 2, 1, 3, 2};
  write_seed("checkpoint", "single-f32-gqa-misaligned",
             s2ft_fuzz::encode_folder({{"config.json", config(odd, 3, "float32", true, false)},
                                       {"model.safetensors", shard(llama_tensors(odd, 0), "F32", true)}}));

  // Two shards (a layer each) and an index, f16, GQA, plus a file the
  // reader ignores.
  const s2ft_model_shape gqa = {2, 4, 2, 1, 2, 3};
  const std::vector<Tensor> all = llama_tensors(gqa, 0);
  const std::vector<Tensor> first(all.begin(), all.begin() + 7), second(all.begin() + 7, all.end());
  const char *const names[2] = {"model-1.safetensors", "model-2.safetensors"};
  nlohmann::ordered_json map = nlohmann::ordered_json::object();
  for (const Tensor &t : first) map[t.name] = names[0];
  for (const Tensor &t : second) map[t.name] = names[1];
  const std::string s1 = shard(first, "F16", false), s2 = shard(second, "F16", false);
  const nlohmann::ordered_json index = {{"metadata", {{"total_size", s1.size() + s2.size()}}}, {"weight_map", map}};
  write_seed("checkpoint", "sharded-f16-gqa",
             s2ft_fuzz::encode_folder({{"config.json", config(gqa, 3, "float16", false, false)},
                                       {"model.safetensors.index.json", index.dump()},
                                       {names[0], s1},
                                       {names[1], s2},
                                       {"generation_config.json", "{\"bos_token_id\": 1}\n"}}));
}

// ---- command lines --------------------------------------------------------------

std::string words(char mode, const std::vector<std::string> &list) {
  std::string out(1, mode);
  for (size_t i = 0; i < list.size(); ++i) out += (i ? std::string(1, '\0') : std::string()) + list[i];
  return out;
}

void cli_seeds() {
  write_seed("cli_args", "permute-every-option",
             words(1, {"ckpt", "--strategy", "random", "--order", "smallest", "--targets", "o,down,v,up", "--ratio-o",
                       "0.5", "--count-down", "2", "--count-v=1", "--ratio-up=1", "--allocation", "global", "--heads",
                       "single", "--seed", "7", "-o", "out", "--inverse"}));
  write_seed("cli_args", "permute-defaults", words(1, {"ckpt", "-o", "out", "--selection=sel.json"}));
  write_seed("cli_args", "generic",
             words(0, {"--output,--seed,--name", "--force,--inverse", "a", "--seed=3", "--force", "-o", "x", "--",
                       "--name", "b", "-"}));
  write_seed("cli_args", "values",
             words(2, {"0.25", "-17", "18446744073709551615", "o,,down,", "adapter.safetensors:0.5", "1e308", "+3",
                       "007"}));
}

}  // namespace

int main(int argc, char **argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  g_out = argv[1];
  make_dir(g_out);
  selection_seeds();
  adapter_seeds();
  safetensors_seeds();
  checkpoint_seeds();
  cli_seeds();
  return 0;
}
