#include "generate.hpp"

#include <algorithm>
#include <stdexcept>

namespace ft {

std::vector<int32_t> generate_greedy(LlamaModel<float> &model, std::vector<int32_t> prompt, int64_t n_new,
                                     int32_t stop) {
  if (prompt.empty()) throw std::invalid_argument("generate_greedy: the prompt is empty");
  const int64_t vocab = model.config().vocab, window = model.config().max_seq;
  for (int64_t i = 0; i < n_new; ++i) {
    const int64_t len = static_cast<int64_t>(prompt.size()), ctx = std::min(len, window);
    model.forward(prompt.data() + (len - ctx), 1, ctx, nullptr, false);
    const float *last = model.logits().data() + (ctx - 1) * vocab;
    const int32_t next = static_cast<int32_t>(std::max_element(last, last + vocab) - last);
    prompt.push_back(next);
    if (next == stop) break;
  }
  return prompt;
}

}  // namespace ft
