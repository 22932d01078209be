// The small GQA model the fine-tuning tests train: 2 layers, 4 query heads
// over 2 KV heads, untied head; small enough for float64 references; and
// the context and random batches the tests train it with.
#pragma once

#include <gtest/gtest.h>

#include <s2ft/s2ft.h>

#include "batch.hpp"
#include "llama_config.hpp"
#include "rng.hpp"

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

// A CPU context for one test.
struct Context {
  Context() { EXPECT_EQ(s2ft_context_create(nullptr, &ctx), S2FT_OK); }
  ~Context() { s2ft_context_destroy(ctx); }
  Context(const Context &) = delete;
  Context &operator=(const Context &) = delete;
  s2ft_context *ctx = nullptr;
};

// batch x seq random tokens and targets of c's vocabulary, from `seed`.
inline ft::Batch random_batch(const ft::LlamaConfig &c, int64_t batch, int64_t seq, uint64_t seed) {
  ft::Rng rng(seed);
  ft::Batch b;
  b.batch = batch;
  b.seq = seq;
  for (int64_t i = 0; i < batch * seq; ++i) {
    b.tokens.push_back(static_cast<int32_t>(rng.below(c.vocab)));
    b.targets.push_back(static_cast<int32_t>(rng.below(c.vocab)));
  }
  return b;
}

}  // namespace ft_test
