#include "evaluation.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace ft {

void log_softmax(const float *logits, int64_t n, std::vector<double> &out) {
  out.resize(static_cast<size_t>(n));
  double mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, static_cast<double>(logits[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = static_cast<double>(logits[i]) - lse;
}

void record_base(LlamaModel<float> &base, EvalSet &set) {
  const int64_t vocab = base.config().vocab;
  std::vector<double> lp;
  set.base_log_probs.assign(set.batches.size(), {});
  for (size_t i = 0; i < set.batches.size(); ++i) {
    const Batch &b = set.batches[i];
    base.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
    const std::vector<float> &z = base.logits();
    std::vector<float> &keep = set.base_log_probs[i];
    for (size_t p = 0; p < b.targets.size(); ++p) {
      if (b.targets[p] < 0) continue;
      log_softmax(z.data() + static_cast<int64_t>(p) * vocab, vocab, lp);
      keep.insert(keep.end(), lp.begin(), lp.end());
    }
  }
}

SetMetrics evaluate(LlamaModel<float> &model, const EvalSet &set) {
  const int64_t vocab = model.config().vocab;
  const bool with_kl = set.base_log_probs.size() == set.batches.size();
  int64_t right = 0, total = 0;
  double loss = 0.0, kl = 0.0;
  std::vector<double> lp;
  for (size_t i = 0; i < set.batches.size(); ++i) {
    const Batch &b = set.batches[i];
    model.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
    const std::vector<float> &z = model.logits();
    int64_t scored = 0;
    for (size_t p = 0; p < b.targets.size(); ++p) {
      if (b.targets[p] < 0) continue;
      const float *row = z.data() + static_cast<int64_t>(p) * vocab;
      log_softmax(row, vocab, lp);
      right += (std::max_element(row, row + vocab) - row) == b.targets[p];
      loss -= lp[static_cast<size_t>(b.targets[p])];
      if (with_kl) {
        // KL(base || tuned) = sum_v p_base(v) (log p_base(v) - log p_tuned(v)).
        const size_t at = static_cast<size_t>(scored * vocab);
        if (at + static_cast<size_t>(vocab) > set.base_log_probs[i].size())
          throw std::logic_error("evaluate: the base log-probabilities do not match the set '" + set.info.name + "'");
        const float *base = set.base_log_probs[i].data() + at;
        double d = 0.0;
        for (int64_t v = 0; v < vocab; ++v) {
          const double lb = base[v];
          d += std::exp(lb) * (lb - lp[static_cast<size_t>(v)]);
        }
        kl += d;
      }
      ++scored;
      ++total;
    }
  }
  SetMetrics m;
  if (total == 0) return m;
  const double n = static_cast<double>(total);
  m.accuracy = set.info.has_accuracy ? static_cast<double>(right) / n : NAN;
  m.loss = loss / n;
  m.kl = with_kl ? kl / n : NAN;
  return m;
}

std::vector<SetMetrics> evaluate_all(LlamaModel<float> &model, const std::vector<EvalSet> &sets) {
  std::vector<SetMetrics> m;
  for (const EvalSet &e : sets) m.push_back(evaluate(model, e));
  return m;
}

}  // namespace ft
