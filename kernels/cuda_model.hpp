// The CUDA side of s2ft_model: base-line fingerprints of device weights,
// the device copies of the lines an adapter displaced, and the one-pass
// apply/remove/switch. Plain C++: no CUDA types.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "cuda_context.hpp"

struct s2ft_adapter;

namespace s2ft {
namespace cuda {

// One weight whose lines to fingerprint: every column (axis COLUMNS) or
// every row (axis ROWS) of the device view `m`; `out` receives one
// fingerprint per line and `max_abs` the largest |value| over the line's
// finite elements (for backend/merge_range.hpp), by line index. With
// col_map (rows only; NULL or empty: the identity) element i of a row is
// read at column (*col_map)[i], so a row of a column-permuted weight is
// hashed in base order (the whole-weight fingerprint of sparse entries).
struct FingerprintJob {
  Matrix m;
  int32_t axis = 0;
  std::vector<uint64_t> *out = nullptr;
  std::vector<float> *max_abs = nullptr;
  const std::vector<int64_t> *col_map = nullptr;
};

// line_fingerprint() (src/adapter/geometry.cpp, common/fingerprint.hpp) and
// the largest finite |value| of every line of every job, computed on the
// device and copied to the host: synchronises (once, after all jobs). Reads
// the weights on ctx's stream.
void line_fingerprints(Context &ctx, const std::vector<FingerprintJob> &jobs);

// The device memory of one model: per (layer, target) the original bytes
// of the lines the applied adapter displaced, plus a spare buffer the next
// transition writes its record into (swapped in when it is done). Buffers
// grow on demand and are never shrunk; releasing them waits for the
// context's stream.
struct ModelBuffers;
std::shared_ptr<ModelBuffers> make_model_buffers(Context &ctx, int32_t n_layers);

using backend::LowRankStep;
using backend::SparseStep;
using backend::TransitionStep;

// For every step, in one pass over the union of the old and new lines at
// position p (W0 = the saved original where the line is displaced now,
// else the weight's current bytes):
//   line only in the old set:  W[p] = W0                      (bytes)
//   line in the new entry j:   record'[j] = W0;
//                              W[p] = round(double(W0) + scale * double(delta[j]))
// rounded once from double to the weight's dtype, bit-identical to the CPU
// backend. The new adapter's deltas come from its device mirror
// (cuda_adapter_mirror.hpp), uploaded first if missing (which
// synchronises). Record buffers that must grow are reallocated before
// anything is written (after waiting for the stream: synchronises); a
// failure then leaves the weights and the records unchanged. Otherwise the
// work is queued on ctx's stream and the call returns.
// Sparse steps go element by element in two launches around the lines':
// before them every new element's W0 is saved (from the weight, the old
// line record or the old sparse record, as SparseStep says) and the old
// elements the new entry lacks get their W0 back; after them the new
// elements get round(W0 + scale * delta).
// Low-rank steps go over whole weights: first every weight whose old
// low-rank entry leaves gets its saved base back (so the lines and
// elements then read base values); after the sparse writes, every weight
// with a new entry first saves its base (when the old adapter had no entry
// there, its lines and elements are base by then) and then gets
//   W[r, c] = round(double(W0[r, c]) + scale * sum_k double(b[r, k]) * double(a[k, c]))
// one thread per element, rows and columns through the step's maps. The
// factors are uploaded with the call; a weight's saved base buffer is kept
// until the model is destroyed.
void model_transition(Context &ctx, ModelBuffers &buffers, const std::vector<TransitionStep> &steps,
                      const std::vector<SparseStep> &sparse, const std::vector<LowRankStep> &low_rank,
                      const s2ft_adapter *adapter, double scale);

}  // namespace cuda
}  // namespace s2ft
