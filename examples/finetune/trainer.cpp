#include "trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

namespace ft {

double learning_rate(const TrainSettings &s, int64_t step) {
  const double warm = std::max(1.0, s.warmup_steps >= 0 ? static_cast<double>(s.warmup_steps)
                                                       : std::floor(s.warmup * static_cast<double>(s.steps)));
  if (static_cast<double>(step) < warm) return s.lr * static_cast<double>(step + 1) / warm;
  const double span = std::max(1.0, static_cast<double>(s.steps) - warm);
  const double progress = std::min(1.0, (static_cast<double>(step) - warm) / span);
  const double cosine = 0.5 * (1.0 + std::cos(3.141592653589793 * progress));
  return s.lr * (s.final_lr_ratio + (1.0 - s.final_lr_ratio) * cosine);
}

TrainStats train(LlamaModel<float> &model, FineTuning &method, const BatchSource &next, const TrainSettings &s,
                 const StepObserver &observe) {
  if (s.steps < 1 || !(s.lr > 0.0)) throw std::invalid_argument("train: steps must be >= 1 and lr > 0");
  TrainStats stats;
  double seconds = 0.0;
  for (int64_t step = 0; step < s.steps; ++step) {
    const Batch b = next(step);  // data preparation is not timed
    const auto t0 = std::chrono::steady_clock::now();
    model.zero_grad();
    const double loss = model.forward(b.tokens.data(), b.batch, b.seq, b.targets.data(), true);
    stats.activation_bytes = std::max(stats.activation_bytes, model.saved_activation_bytes());
    model.backward();
    const double lr = learning_rate(s, step);
    method.step(lr);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!std::isfinite(loss)) throw std::runtime_error("train: the loss is not finite at step " + std::to_string(step));
    stats.losses.push_back(loss);
    if (observe && !observe(step, loss, lr)) break;
  }
  stats.seconds_per_step = seconds / static_cast<double>(stats.losses.size());
  return stats;
}

}  // namespace ft
