// A float64 reference forward pass of a whole LLaMA-architecture model:
//   x = embed[tokens]; x = block_l(x) for every layer;
//   logits = (RMSNorm(x) * final_norm) lm_head^T
// lm_head is [vocab, d_model]; with tied embeddings it is the embedding table.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "support/llama_block_ref.hpp"

namespace s2ft_ref {

struct ModelWeights {
  std::vector<double> embed;  // [vocab, d_model]
  std::vector<BlockWeights> layers;
  std::vector<double> final_norm;  // [d_model]
  std::vector<double> lm_head;     // [vocab, d_model]
};

// Logits [T, vocab] for `tokens` at positions 0..T-1; taps (optional)
// receives each layer's projection inputs.
inline std::vector<double> llama_forward(const BlockShape &s, int64_t vocab, const ModelWeights &w,
                                         const std::vector<int64_t> &tokens, std::vector<BlockTaps> *taps = nullptr) {
  const int64_t T = static_cast<int64_t>(tokens.size()), d = s.d_model;
  std::vector<double> x(static_cast<size_t>(T * d));
  for (int64_t t = 0; t < T; ++t)
    std::copy_n(w.embed.begin() + tokens[static_cast<size_t>(t)] * d, d, x.begin() + t * d);
  if (taps != nullptr) taps->assign(w.layers.size(), BlockTaps{});
  for (size_t l = 0; l < w.layers.size(); ++l)
    x = llama_block(s, w.layers[l], x, T, taps != nullptr ? &(*taps)[l] : nullptr);
  const std::vector<double> h = rms_norm(x, T, d, w.final_norm, s.rms_eps);
  return linear(h, T, d, w.lm_head, vocab);
}

// Greedy continuation: appends n tokens, each the argmax of the last logits.
inline std::vector<int64_t> greedy(const BlockShape &s, int64_t vocab, const ModelWeights &w,
                                   std::vector<int64_t> tokens, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const std::vector<double> logits = llama_forward(s, vocab, w, tokens);
    const auto last = logits.begin() + static_cast<int64_t>(tokens.size() - 1) * vocab;
    tokens.push_back(std::max_element(last, last + vocab) - last);
  }
  return tokens;
}

}  // namespace s2ft_ref
