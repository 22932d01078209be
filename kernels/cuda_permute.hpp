// Co-permutation of weights on the device (the CUDA path of s2ft_permute).
#pragma once

#include <cstdint>
#include <vector>

#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "cuda_context.hpp"

namespace s2ft {
namespace cuda {

using backend::PermuteJob;  // the unit maps are documented there

// For every job, in order, with u(L) = L / width and j = L % width:
//   FORWARD  new line p*width + j       <- old line order[p]*width + j
//   INVERSE  new line order[p]*width + j <- old line p*width + j
// Units that order does not name stay where they are. Element bytes are
// moved, never converted (any dtype, NaN payloads kept), so INVERSE after
// FORWARD restores the weights bit-exactly; the results equal the CPU
// backend's byte for byte. Each weight is copied to compact scratch (one
// buffer the size of the largest weight) and gathered back in the new order.
// Queues the work on ctx's stream and returns; uploads the unit maps once.
void permute(Context &ctx, const std::vector<PermuteJob> &jobs, bool forward);

}  // namespace cuda
}  // namespace s2ft
