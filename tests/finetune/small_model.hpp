// The small GQA model the fine-tuning tests train: 2 layers, 4 query heads
// over 2 KV heads, untied head; small enough for float64 references.
#pragma once

#include "llama_config.hpp"

namespace ft_test {

inline ft::LlamaConfig small_gqa_config() {
  ft::LlamaConfig c;
  c.vocab = 13;
  c.d_model = 16;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 4;
  c.d_ff = 24;
  c.max_seq = 32;
  c.tied = false;
  return c;
}

}  // namespace ft_test
