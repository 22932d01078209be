// Synthetic tasks for the default demonstration, small enough to learn on a
// CPU in seconds and clear about forgetting:
//   sequence  [marker, x1 .. xn, SEP, y1 .. yn];
//   task A:   marker 1, xi from the first half of the symbols, yi = pa(xi);
//   task C:   marker 2, xi from all symbols, yi = xi (plain copy);
//   task B:   marker 2, xi from the second half, yi = pb(xi);
// pa and pb are fixed random substitutions. Pretraining learns A and C;
// fine-tuning teaches B: the same kind of task (so related) on inputs A
// never sees (so a model can learn B and keep A intact). Only the answers
// are scored (targets at SEP .. y(n-1)). How much of A a method loses while
// learning B is its forgetting.
// C splits in two for evaluation: C_LOW (copy on the first half, A's
// inputs), which B need not change, and C_HIGH (copy on the second half),
// which B contradicts: after fine-tuning, marker 2 on those inputs means pb.
#pragma once

#include <cstdint>
#include <vector>

#include "batch.hpp"
#include "llama_model.hpp"
#include "rng.hpp"

namespace ft {

enum class Task { A, B, C, C_LOW, C_HIGH };

class SyntheticTasks {
 public:
  // `symbols` >= 4, `length` >= 1; the substitutions come from `seed`.
  SyntheticTasks(int64_t symbols, int64_t length, uint64_t seed);

  int64_t vocab() const { return kFirstSymbol + symbols_; }
  int64_t seq_len() const { return 2 * length_ + 2; }
  // The substitution of `task` applied to symbol index s in [0, symbols).
  int64_t answer(Task task, int64_t s) const;

  // `batch` random sequences of `task`.
  Batch sample(Task task, int64_t batch, Rng &rng) const;
  // `batch` sequences, each of task A or C with equal odds (pretraining).
  Batch sample_pretraining(int64_t batch, Rng &rng) const;
  // Teacher-forced accuracy: the fraction of scored positions where the
  // model's most likely token is the answer.
  static double accuracy(LlamaModel<float> &model, const std::vector<Batch> &eval);

  static constexpr int32_t kSep = 0, kMarker1 = 1, kMarker2 = 2, kFirstSymbol = 3;

 private:
  Batch sample_tasks(const std::vector<Task> &tasks, Rng &rng) const;

  int64_t symbols_, length_;
  std::vector<int64_t> pa_, pb_;
};

}  // namespace ft
