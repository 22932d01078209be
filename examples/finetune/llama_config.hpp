// The hyper-parameters of a LLaMA-architecture decoder (the fields of a
// Hugging Face config.json that the example uses).
#pragma once

#include <cstdint>
#include <string>

#include <s2ft/s2ft.h>

namespace ft {

// The seven linear projections of a block, y = x W^T with W [out, in].
enum class Proj { Q, K, V, O, GATE, UP, DOWN };
constexpr int kNumProj = 7;
inline const char *proj_name(Proj p) {
  static const char *names[kNumProj] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names[static_cast<int>(p)];
}

struct LlamaConfig {
  int64_t vocab = 0;
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // < n_heads: grouped-query attention
  int64_t head_dim = 0;
  int64_t d_ff = 0;
  int64_t max_seq = 0;  // longest sequence the model was trained for
  double rms_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tied = true;  // the output layer is the token embedding
  int64_t bos = 1, eos = 2;

  int64_t q_dim() const { return n_heads * head_dim; }
  int64_t kv_dim() const { return n_kv_heads * head_dim; }
  // The [out, in] shape of projection `p`'s weight.
  int64_t out_features(Proj p) const {
    return p == Proj::Q ? q_dim() : p == Proj::K || p == Proj::V ? kv_dim() : p == Proj::GATE || p == Proj::UP ? d_ff : d_model;
  }
  int64_t in_features(Proj p) const { return p == Proj::O ? q_dim() : p == Proj::DOWN ? d_ff : d_model; }

  // Throws std::runtime_error naming the first field that is out of range
  // (non-positive, n_heads not a multiple of n_kv_heads, odd head_dim, or
  // too large to address).
  void check() const;

  // The shape libs2ft selects, permutes and trains on.
  s2ft_model_shape shape() const;

  // One line, e.g. "d_model 64, 5 layers, 8 heads (4 KV, head_dim 8), d_ff 172, vocab 512".
  std::string describe() const;
};

}  // namespace ft
