// Loading model checkpoints: Hugging Face LLaMA folders (config.json +
// safetensors, single file or shards, read through libs2ft's checkpoint
// API) and llama2.c `.bin` files; and merging an adapter into a Hugging
// Face folder with libs2ft. Every reader treats its files as hostile and
// throws std::runtime_error naming the file and what is wrong.
#pragma once

#include <string>

#include <s2ft/s2ft.h>

#include "llama_config.hpp"
#include "llama_weights.hpp"

namespace ft {

struct Checkpoint {
  LlamaConfig config;
  LlamaWeights<float> weights;  // HF layout (rotate-half q/k rows); lm_head empty when tied
};

// A Hugging Face folder: config.json plus model.safetensors, or the shards
// listed by model.safetensors.index.json, opened with s2ft_checkpoint_open
// (memory-mapped; headers, offsets and the index checked by the library).
// F32, F16 and BF16 are read (as float). Every tensor's shape is checked
// against the config; an lm_head.weight is ignored when tie_word_embeddings
// is true; the model shape libs2ft reads (s2ft_checkpoint_shape) must be the
// config's.
Checkpoint load_hf_checkpoint(const std::string &dir);

// Merges the adapter file `adapter_path` into the Hugging Face checkpoint
// `base_dir` and writes the result to `out_dir` (what `s2ft merge` does):
// s2ft_checkpoint_open, s2ft_model_from_checkpoint, s2ft_model_apply_files,
// s2ft_checkpoint_write. The base files are never changed; `out_dir` gets
// the base's files, headers and tensor order, with the merged weights in the
// base's dtype. `ctx` must be a CPU context.
void merge_hf_checkpoint(s2ft_context *ctx, const std::string &base_dir, const std::string &adapter_path,
                         const std::string &out_dir);

// A llama2.c `.bin` (version 0, "legacy") file, with q/k rows reordered from
// llama2.c's interleaved RoPE pairs to Hugging Face's rotate-half layout.
Checkpoint load_llama2c_checkpoint(const std::string &path);

// A folder is read as a Hugging Face checkpoint, a file as llama2.c.
Checkpoint load_checkpoint(const std::string &path);

// The LlamaConfig of a config.json text (`what` names it in messages);
// applies the Hugging Face defaults and LlamaConfig::check().
LlamaConfig parse_hf_config(const std::string &json_text, const std::string &what);

}  // namespace ft
