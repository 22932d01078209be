#include "llama_weights.hpp"

#include <cmath>

#include "rng.hpp"

namespace ft {

template <typename T>
LlamaWeights<T> empty_weights(const LlamaConfig &c) {
  const auto n = [](int64_t a, int64_t b) { return static_cast<size_t>(a * b); };
  LlamaWeights<T> w;
  w.embed.assign(n(c.vocab, c.d_model), T(0));
  w.final_norm.assign(static_cast<size_t>(c.d_model), T(1));
  if (!c.tied) w.lm_head.assign(n(c.vocab, c.d_model), T(0));
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (auto &l : w.layers) {
    l.attn_norm.assign(static_cast<size_t>(c.d_model), T(1));
    l.ffn_norm.assign(static_cast<size_t>(c.d_model), T(1));
    for (int p = 0; p < kNumProj; ++p) {
      const Proj pp = static_cast<Proj>(p);
      l.weight(pp).assign(n(c.out_features(pp), c.in_features(pp)), T(0));
    }
  }
  return w;
}

template <typename T>
LlamaWeights<T> random_weights(const LlamaConfig &c, uint64_t seed) {
  LlamaWeights<T> w = empty_weights<T>(c);
  Rng rng(seed);
  const double std_in = 0.02, std_out = 0.02 / std::sqrt(2.0 * static_cast<double>(c.n_layers));
  auto fill = [&](std::vector<T> &v, double std) {
    for (auto &x : v) x = static_cast<T>(std * rng.normal());
  };
  fill(w.embed, std_in);
  fill(w.lm_head, std_in);
  for (auto &l : w.layers) {
    fill(l.q, std_in);
    fill(l.k, std_in);
    fill(l.v, std_in);
    fill(l.o, std_out);
    fill(l.gate, std_in);
    fill(l.up, std_in);
    fill(l.down, std_out);
  }
  return w;
}

template <typename To, typename From>
LlamaWeights<To> convert_weights(const LlamaWeights<From> &w) {
  auto cv = [](const std::vector<From> &v) { return std::vector<To>(v.begin(), v.end()); };
  LlamaWeights<To> r;
  r.embed = cv(w.embed);
  r.final_norm = cv(w.final_norm);
  r.lm_head = cv(w.lm_head);
  for (const auto &l : w.layers)
    r.layers.push_back({cv(l.attn_norm), cv(l.q), cv(l.k), cv(l.v), cv(l.o), cv(l.ffn_norm), cv(l.gate), cv(l.up),
                        cv(l.down)});
  return r;
}

template <typename T>
int64_t parameter_count(const LlamaWeights<T> &w) {
  int64_t n = static_cast<int64_t>(w.embed.size() + w.final_norm.size() + w.lm_head.size());
  for (const auto &l : w.layers)
    for (const std::vector<T> *t : {&l.attn_norm, &l.q, &l.k, &l.v, &l.o, &l.ffn_norm, &l.gate, &l.up, &l.down})
      n += static_cast<int64_t>(t->size());
  return n;
}

template LlamaWeights<float> empty_weights<float>(const LlamaConfig &);
template LlamaWeights<double> empty_weights<double>(const LlamaConfig &);
template LlamaWeights<float> random_weights<float>(const LlamaConfig &, uint64_t);
template LlamaWeights<double> random_weights<double>(const LlamaConfig &, uint64_t);
template LlamaWeights<double> convert_weights<double, float>(const LlamaWeights<float> &);
template LlamaWeights<float> convert_weights<float, double>(const LlamaWeights<double> &);
template LlamaWeights<float> convert_weights<float, float>(const LlamaWeights<float> &);
template int64_t parameter_count<float>(const LlamaWeights<float> &);
template int64_t parameter_count<double>(const LlamaWeights<double> &);

}  // namespace ft
