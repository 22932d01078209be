// The weights of a LLaMA-architecture decoder, row-major, in the Hugging Face
// layout: every projection is [out, in] (nn.Linear), q and k rows are ordered
// for rotate-half RoPE.
#pragma once

#include <cstdint>
#include <vector>

#include "llama_config.hpp"

namespace ft {

template <typename T>
struct LayerWeights {
  std::vector<T> attn_norm;  // [d_model]
  std::vector<T> q;          // [n_heads*head_dim, d_model]
  std::vector<T> k;          // [n_kv_heads*head_dim, d_model]
  std::vector<T> v;          // [n_kv_heads*head_dim, d_model]
  std::vector<T> o;          // [d_model, n_heads*head_dim]
  std::vector<T> ffn_norm;   // [d_model]
  std::vector<T> gate;       // [d_ff, d_model]
  std::vector<T> up;         // [d_ff, d_model]
  std::vector<T> down;       // [d_model, d_ff]

  // The weight of projection `p`.
  std::vector<T> &weight(Proj p) {
    std::vector<T> *w[kNumProj] = {&q, &k, &v, &o, &gate, &up, &down};
    return *w[static_cast<int>(p)];
  }
  const std::vector<T> &weight(Proj p) const { return const_cast<LayerWeights *>(this)->weight(p); }

  // Visits every tensor with its Hugging Face name suffix
  // ("self_attn.q_proj.weight", "input_layernorm.weight", ...).
  template <typename F>
  void for_each(F &&f) {
    f("input_layernorm.weight", attn_norm);
    f("self_attn.q_proj.weight", q);
    f("self_attn.k_proj.weight", k);
    f("self_attn.v_proj.weight", v);
    f("self_attn.o_proj.weight", o);
    f("post_attention_layernorm.weight", ffn_norm);
    f("mlp.gate_proj.weight", gate);
    f("mlp.up_proj.weight", up);
    f("mlp.down_proj.weight", down);
  }
};

template <typename T>
struct LlamaWeights {
  std::vector<T> embed;  // [vocab, d_model]
  std::vector<LayerWeights<T>> layers;
  std::vector<T> final_norm;  // [d_model]
  std::vector<T> lm_head;     // [vocab, d_model]; empty when the config is tied

  // The output layer: lm_head, or the embedding when tied.
  const std::vector<T> &head() const { return lm_head.empty() ? embed : lm_head; }
};

// Zero-filled weights of the right shapes (norm gains are 1).
template <typename T>
LlamaWeights<T> empty_weights(const LlamaConfig &c);

// A freshly initialised model: projections and embeddings ~ N(0, 0.02^2)
// (GPT-2/LLaMA practice; o_proj and down_proj scaled by 1/sqrt(2 n_layers)
// so the residual stream does not grow with depth), norm gains 1.
// Deterministic in `seed` on every platform.
template <typename T>
LlamaWeights<T> random_weights(const LlamaConfig &c, uint64_t seed);

// Element-wise conversion (e.g. float weights to double for a reference).
template <typename To, typename From>
LlamaWeights<To> convert_weights(const LlamaWeights<From> &w);

// The number of parameters (the tied head is counted once).
template <typename T>
int64_t parameter_count(const LlamaWeights<T> &w);

}  // namespace ft
