// A cache of pretrained weights, so that every run of the comparison (and
// every invocation, with other methods or rates) fine-tunes the very same
// model without pretraining it again. The file is only a cache: a file that
// is missing, of another key, or damaged is ignored and rewritten.
#pragma once

#include <cstdint>
#include <string>

#include "llama_weights.hpp"

namespace ft {

// FNV-1a of `text`: the key of the settings that made the weights.
uint64_t cache_key(const std::string &text);

// Reads weights of config `c` cached under `key` from `path`; false when the
// file is missing, holds another key or shape, or is damaged.
bool load_cached_weights(const std::string &path, uint64_t key, const LlamaConfig &c, LlamaWeights<float> &out);

// Writes them (to a temporary name, then renamed). Throws std::runtime_error
// on an I/O error.
void save_cached_weights(const std::string &path, uint64_t key, LlamaWeights<float> &w);

}  // namespace ft
