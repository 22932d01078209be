// A training or evaluation batch: tokens [batch, seq] and next-token targets
// (-1 where a position is not scored).
#pragma once

#include <cstdint>
#include <vector>

namespace ft {

struct Batch {
  int64_t batch = 0, seq = 0;
  std::vector<int32_t> tokens, targets;
};

}  // namespace ft
