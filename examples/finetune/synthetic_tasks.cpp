#include "synthetic_tasks.hpp"

#include <algorithm>
#include <numeric>
#include <stdexcept>
#include <string>

namespace ft {

namespace {

std::vector<int64_t> random_permutation(int64_t n, Rng &rng) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  for (int64_t i = n - 1; i > 0; --i) std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(rng.below(i + 1))]);
  return p;
}

}  // namespace

SyntheticTasks::SyntheticTasks(int64_t symbols, int64_t length, uint64_t seed) : symbols_(symbols), length_(length) {
  if (symbols < 4 || symbols > 1 << 20 || length < 1 || length > 1 << 16)
    throw std::invalid_argument("SyntheticTasks: need 4 <= symbols <= 2^20 and 1 <= length <= 2^16");
  Rng rng(seed);
  pa_ = random_permutation(symbols, rng);
  pb_ = random_permutation(symbols, rng);
}

int64_t SyntheticTasks::answer(Task task, int64_t s) const {
  if (s < 0 || s >= symbols_) throw std::out_of_range("SyntheticTasks::answer: symbol out of range");
  const bool copy = task == Task::C || task == Task::C_LOW || task == Task::C_HIGH;
  return copy ? s : (task == Task::A ? pa_ : pb_)[static_cast<size_t>(s)];
}

Batch SyntheticTasks::sample(Task task, int64_t batch, Rng &rng) const {
  const std::vector<Task> tasks(static_cast<size_t>(std::max<int64_t>(0, batch)), task);
  return sample_tasks(tasks, rng);
}

Batch SyntheticTasks::sample_pretraining(int64_t batch, Rng &rng) const {
  std::vector<Task> tasks;
  for (int64_t r = 0; r < batch; ++r) tasks.push_back(rng.below(2) == 0 ? Task::A : Task::C);
  return sample_tasks(tasks, rng);
}

Batch SyntheticTasks::sample_tasks(const std::vector<Task> &tasks, Rng &rng) const {
  const int64_t batch = static_cast<int64_t>(tasks.size());
  if (batch < 1) throw std::invalid_argument("SyntheticTasks: a batch needs at least one sequence");
  Batch b;
  b.batch = batch;
  b.seq = seq_len();
  b.tokens.reserve(static_cast<size_t>(batch * b.seq));
  b.targets.assign(static_cast<size_t>(batch * b.seq), -1);
  std::vector<int64_t> xs(static_cast<size_t>(length_));
  for (int64_t r = 0; r < batch; ++r) {
    const Task task = tasks[static_cast<size_t>(r)];
    const size_t row = b.tokens.size();
    b.tokens.push_back(task == Task::A ? kMarker1 : kMarker2);
    // A's (and C_LOW's) inputs are the first half of the symbols, B's (and
    // C_HIGH's) the second half, C's all of them.
    const int64_t half = symbols_ / 2;
    const bool high = task == Task::B || task == Task::C_HIGH, low = task == Task::A || task == Task::C_LOW;
    const int64_t lo = high ? half : 0, count = high ? symbols_ - half : low ? half : symbols_;
    for (auto &x : xs) {
      x = lo + rng.below(count);
      b.tokens.push_back(static_cast<int32_t>(kFirstSymbol + x));
    }
    b.tokens.push_back(kSep);
    for (int64_t x : xs) b.tokens.push_back(static_cast<int32_t>(kFirstSymbol + answer(task, x)));
    // Position p predicts token p + 1: score the answers only.
    for (int64_t i = 0; i < length_; ++i) {
      const size_t p = row + static_cast<size_t>(length_ + 1 + i);
      b.targets[p] = b.tokens[p + 1];
    }
  }
  return b;
}

double SyntheticTasks::accuracy(LlamaModel<float> &model, const std::vector<Batch> &eval) {
  int64_t right = 0, total = 0;
  const int64_t vocab = model.config().vocab;
  for (const Batch &b : eval) {
    model.forward(b.tokens.data(), b.batch, b.seq, nullptr, false);
    const std::vector<float> &z = model.logits();
    for (size_t p = 0; p < b.targets.size(); ++p) {
      if (b.targets[p] < 0) continue;
      const float *row = z.data() + static_cast<int64_t>(p) * vocab;
      right += (std::max_element(row, row + vocab) - row) == b.targets[p];
      ++total;
    }
  }
  return total > 0 ? static_cast<double>(right) / static_cast<double>(total) : 0.0;
}

}  // namespace ft
