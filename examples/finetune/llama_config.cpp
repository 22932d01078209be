#include "llama_config.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

namespace ft {

void LlamaConfig::check() const {
  // Every size is later multiplied with others and used as an int32 in the
  // C API's model shape, so keep each one well inside that range.
  const int64_t limit = int64_t{1} << 24;
  auto in_range = [&](int64_t v, const char *name) {
    if (v <= 0 || v > limit)
      throw std::runtime_error(std::string("config: ") + name + " = " + std::to_string(v) + " is outside [1, " +
                               std::to_string(limit) + "]");
  };
  in_range(vocab, "vocab_size");
  in_range(d_model, "hidden_size");
  in_range(n_layers, "num_hidden_layers");
  in_range(n_heads, "num_attention_heads");
  in_range(n_kv_heads, "num_key_value_heads");
  in_range(head_dim, "head_dim");
  in_range(d_ff, "intermediate_size");
  in_range(max_seq, "max_position_embeddings");
  if (n_heads % n_kv_heads != 0)
    throw std::runtime_error("config: num_attention_heads (" + std::to_string(n_heads) +
                             ") is not a multiple of num_key_value_heads (" + std::to_string(n_kv_heads) + ")");
  if (head_dim % 2 != 0) throw std::runtime_error("config: head_dim (" + std::to_string(head_dim) + ") must be even for RoPE");
  if (!(rms_eps > 0.0) || !(rope_theta > 1.0))
    throw std::runtime_error("config: rms_norm_eps must be > 0 and rope_theta > 1");
  // The largest weight must be addressable: [vocab or d_ff or q_dim, d_model].
  const int64_t widest = std::max(std::max(vocab, d_ff), std::max(q_dim(), kv_dim()));
  if (widest > std::numeric_limits<int32_t>::max() / d_model)
    throw std::runtime_error("config: weights of " + std::to_string(widest) + " x " + std::to_string(d_model) +
                             " are too large");
}

s2ft_model_shape LlamaConfig::shape() const {
  s2ft_model_shape s{};
  s.n_layers = static_cast<int32_t>(n_layers);
  s.d_model = static_cast<int32_t>(d_model);
  s.n_heads = static_cast<int32_t>(n_heads);
  s.n_kv_heads = static_cast<int32_t>(n_kv_heads);
  s.head_dim = static_cast<int32_t>(head_dim);
  s.d_ff = static_cast<int32_t>(d_ff);
  return s;
}

std::string LlamaConfig::describe() const {
  return "d_model " + std::to_string(d_model) + ", " + std::to_string(n_layers) + " layers, " +
         std::to_string(n_heads) + " heads (" + std::to_string(n_kv_heads) + " KV, head_dim " +
         std::to_string(head_dim) + "), d_ff " + std::to_string(d_ff) + ", vocab " + std::to_string(vocab) +
         (tied ? ", tied output layer" : ", separate output layer");
}

}  // namespace ft
