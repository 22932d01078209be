// Text generation with the example's model: greedy (temperature 0) decoding
// and ancestral sampling, recomputing the context each step (the model is
// small; no KV cache).
#pragma once

#include <cstdint>
#include <vector>

#include "llama_model.hpp"
#include "rng.hpp"

namespace ft {

// Appends up to `n_new` tokens to `prompt` (non-empty), each the argmax of
// the next-token logits, stopping after `stop` (-1: never). The context is
// the last config().max_seq tokens.
std::vector<int32_t> generate_greedy(LlamaModel<float> &model, std::vector<int32_t> prompt, int64_t n_new,
                                     int32_t stop = -1);

// The same, each token drawn from softmax(logits / temperature) (> 0) with
// `rng`: text as the model itself would write it, so the same rng state
// gives the same tokens.
std::vector<int32_t> generate_sampled(LlamaModel<float> &model, std::vector<int32_t> prompt, int64_t n_new, Rng &rng,
                                      double temperature = 1.0, int32_t stop = -1);

}  // namespace ft
