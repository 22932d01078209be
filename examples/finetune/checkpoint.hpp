// Loading and saving model checkpoints: Hugging Face LLaMA folders
// (config.json + safetensors, single file or shards) and llama2.c `.bin`
// files. Every reader treats its files as hostile and throws
// std::runtime_error naming the file and what is wrong.
#pragma once

#include <string>

#include "llama_config.hpp"
#include "llama_weights.hpp"

namespace ft {

struct Checkpoint {
  LlamaConfig config;
  LlamaWeights<float> weights;  // HF layout (rotate-half q/k rows); lm_head empty when tied
};

// A Hugging Face folder: config.json plus model.safetensors, or the shards
// listed by model.safetensors.index.json. F32, F16 and BF16 are read (as
// float). Every tensor's shape is checked against the config; an lm_head.weight
// is ignored when tie_word_embeddings is true.
Checkpoint load_hf_checkpoint(const std::string &dir);

// Writes config.json and model.safetensors (F32, no lm_head.weight when tied)
// into `dir`, creating it if needed; each file goes to a temporary name first
// and is then renamed. The layout is what `s2ft inspect` / `s2ft merge` read.
void save_hf_checkpoint(const std::string &dir, const Checkpoint &ck);

// A llama2.c `.bin` (version 0, "legacy") file, with q/k rows reordered from
// llama2.c's interleaved RoPE pairs to Hugging Face's rotate-half layout.
Checkpoint load_llama2c_checkpoint(const std::string &path);

// A folder is read as a Hugging Face checkpoint, a file as llama2.c.
Checkpoint load_checkpoint(const std::string &path);

// The LlamaConfig of a config.json text (`what` names it in messages);
// applies the Hugging Face defaults and LlamaConfig::check().
LlamaConfig parse_hf_config(const std::string &json_text, const std::string &what);

// Throws, naming `what` and the tensor, unless every weight has the size the
// config gives it (lm_head empty exactly when the config is tied).
void check_weight_sizes(const LlamaConfig &config, const LlamaWeights<float> &weights, const std::string &what);

}  // namespace ft
