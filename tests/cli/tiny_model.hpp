// The small made-up checkpoint the tool's tests run on: a GQA model of 2
// layers, written as Hugging Face folders in F32 or BF16, in one file or in
// shards, optionally with every F32 tensor misaligned.
#pragma once

#include <cstring>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/checkpoint_folder.hpp"
#include "support/test_util.hpp"

namespace cli_test {

using s2ft_test::RawTensor;
using s2ft_test::write_checkpoint;

// A small GQA model: 2 layers, d_model 12, 4 query heads over 2 KV heads
// (head_dim 3), 10 FFN channels, vocabulary 16.
const int64_t kLayers = 2, kD = 12, kHeads = 4, kKv = 2, kHd = 3, kFf = 10, kVocab = 16;

inline nlohmann::json tiny_config(const std::string &torch_dtype) {
  return {{"architectures", {"LlamaForCausalLM"}}, {"model_type", "llama"}, {"hidden_size", kD},
          {"num_hidden_layers", kLayers},          {"num_attention_heads", kHeads},
          {"num_key_value_heads", kKv},            {"intermediate_size", kFf},
          {"head_dim", kHd},                       {"vocab_size", kVocab},
          {"rms_norm_eps", 1e-5},                  {"tie_word_embeddings", false},
          {"torch_dtype", torch_dtype}};
}

inline RawTensor random_tensor(const std::string &name, const std::string &dtype, std::vector<int64_t> shape,
                               s2ft_test::Random &rng) {
  RawTensor t{name, dtype, shape, {}};
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  for (int64_t i = 0; i < n; ++i) {
    const float v = static_cast<float>(rng.uniform(-1.0, 1.0));
    if (dtype == "F32") {
      uint8_t b[4];
      std::memcpy(b, &v, 4);
      t.bytes.insert(t.bytes.end(), b, b + 4);
    } else {
      const uint16_t h = s2ft_test::to_bf16(v);
      t.bytes.push_back(static_cast<uint8_t>(h & 0xff));
      t.bytes.push_back(static_cast<uint8_t>(h >> 8));
    }
  }
  return t;
}

// The tensors of the tiny model. With `misalign`, a 3-element BF16 tensor
// comes first so every later F32 tensor starts 2 bytes off 4-alignment.
inline std::vector<RawTensor> tiny_tensors(const std::string &dtype, uint64_t seed, bool misalign) {
  s2ft_test::Random rng(seed);
  std::vector<RawTensor> t;
  if (misalign) t.push_back(random_tensor("model.extra_scale", "BF16", {3}, rng));
  t.push_back(random_tensor("model.embed_tokens.weight", dtype, {kVocab, kD}, rng));
  for (int64_t l = 0; l < kLayers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    t.push_back(random_tensor(p + "input_layernorm.weight", dtype, {kD}, rng));
    t.push_back(random_tensor(p + "self_attn.q_proj.weight", dtype, {kHeads * kHd, kD}, rng));
    t.push_back(random_tensor(p + "self_attn.k_proj.weight", dtype, {kKv * kHd, kD}, rng));
    t.push_back(random_tensor(p + "self_attn.v_proj.weight", dtype, {kKv * kHd, kD}, rng));
    t.push_back(random_tensor(p + "self_attn.o_proj.weight", dtype, {kD, kHeads * kHd}, rng));
    t.push_back(random_tensor(p + "post_attention_layernorm.weight", dtype, {kD}, rng));
    t.push_back(random_tensor(p + "mlp.gate_proj.weight", dtype, {kFf, kD}, rng));
    t.push_back(random_tensor(p + "mlp.up_proj.weight", dtype, {kFf, kD}, rng));
    t.push_back(random_tensor(p + "mlp.down_proj.weight", dtype, {kD, kFf}, rng));
  }
  t.push_back(random_tensor("model.norm.weight", dtype, {kD}, rng));
  t.push_back(random_tensor("lm_head.weight", dtype, {kVocab, kD}, rng));
  return t;
}

struct Layout {
  const char *dtype;
  int shards;
  bool misalign;
};

inline void write_tiny(const std::string &dir, const Layout &lay, uint64_t seed = 1) {
  write_checkpoint(dir, tiny_config(std::string(lay.dtype) == "F32" ? "float32" : "bfloat16"),
                   tiny_tensors(lay.dtype, seed, lay.misalign), lay.shards);
}

}  // namespace cli_test
