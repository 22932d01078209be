#include "generate.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <utility>

namespace ft {

namespace {

// The decoding loop both generators share; `pick` chooses each next token
// from the last position's logits. `who` names the caller in errors.
template <typename Pick>
std::vector<int32_t> generate(LlamaModel<float> &model, std::vector<int32_t> prompt, int64_t n_new, int32_t stop,
                              const char *who, Pick pick) {
  if (prompt.empty()) throw std::invalid_argument(std::string(who) + ": the prompt is empty");
  const int64_t vocab = model.config().vocab, window = model.config().max_seq;
  for (int64_t i = 0; i < n_new; ++i) {
    const int64_t len = static_cast<int64_t>(prompt.size()), ctx = std::min(len, window);
    model.forward(prompt.data() + (len - ctx), 1, ctx, nullptr, false);
    const int32_t next = pick(model.logits().data() + (ctx - 1) * vocab, vocab);
    prompt.push_back(next);
    if (next == stop) break;
  }
  return prompt;
}

}  // namespace

std::vector<int32_t> generate_greedy(LlamaModel<float> &model, std::vector<int32_t> prompt, int64_t n_new,
                                     int32_t stop) {
  return generate(model, std::move(prompt), n_new, stop, "generate_greedy", [](const float *last, int64_t vocab) {
    return static_cast<int32_t>(std::max_element(last, last + vocab) - last);
  });
}

std::vector<int32_t> generate_sampled(LlamaModel<float> &model, std::vector<int32_t> prompt, int64_t n_new, Rng &rng,
                                      double temperature, int32_t stop) {
  if (!(temperature > 0.0)) throw std::invalid_argument("generate_sampled: the temperature must be > 0");
  std::vector<double> p;
  return generate(model, std::move(prompt), n_new, stop, "generate_sampled", [&](const float *last, int64_t vocab) {
    // Inverse-CDF draw in double: the same rng state gives the same token
    // on every platform (std:: distributions do not promise that).
    const double mx = *std::max_element(last, last + vocab);
    p.resize(static_cast<size_t>(vocab));
    double sum = 0.0;
    for (int64_t v = 0; v < vocab; ++v) sum += p[static_cast<size_t>(v)] = std::exp((last[v] - mx) / temperature);
    double u = rng.uniform() * sum;
    for (int64_t v = 0; v < vocab; ++v) {
      u -= p[static_cast<size_t>(v)];
      if (u < 0.0) return static_cast<int32_t>(v);
    }
    // Rounding left u just above zero: the last token with any mass.
    int64_t v = vocab - 1;
    while (v > 0 && p[static_cast<size_t>(v)] == 0.0) --v;
    return static_cast<int32_t>(v);
  });
}

}  // namespace ft
