// The model object behind s2ft_model: the caller's borrowed base weights
// (o, v, down, up of every layer), the permutation they are stored in, and
// what the applied adapter displaced so that removing it restores the base
// bit-exactly. On a CUDA context the weights are device memory, the
// displaced bytes live on the device (kernels/cuda_model.hpp) and only
// their positions are kept here.
#pragma once

#include "common/live_handles.hpp"
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "adapter/adapter.hpp"
#include "common/tensor.hpp"
#include "s2ft/s2ft.h"
#include "select/selection.hpp"

namespace s2ft {
namespace cuda {
struct ModelBuffers;  // kernels/cuda_model.hpp
}

// One target weight of one layer, as the caller described it at create.
struct ModelWeight {
  bool present = false;
  s2ft_tensor tensor{};  // copy of the caller's descriptor (the memory is borrowed)
  Matrix view;           // checked view of it
};

// The lines an applied adapter changed in one weight and their original
// bytes. `positions[j]` is where the adapter's j-th line sits in the weight
// (its base index, mapped through the permutation when there is one).
// `original` holds the displaced elements in the weight's dtype, laid out
// like the adapter's delta: [line_length, k] row-major for column targets,
// [k, line_length] for row targets, so a row-major weight is read and
// written row by row.
// On CUDA models `original` stays empty: the bytes are in the device record.
struct Displaced {
  std::vector<int64_t> positions;
  std::vector<char> original;
  bool empty() const { return positions.empty(); }
};

}  // namespace s2ft

struct s2ft_model {
  s2ft::LiveHandle live;  // counted by s2ft_live_handles()
  s2ft_context *ctx = nullptr;
  s2ft_model_shape shape{};
  std::vector<std::array<s2ft::ModelWeight, S2FT_NUM_TARGETS>> weights;  // n_layers
  std::unique_ptr<s2ft_selection> perm;  // copy of the permutation, or NULL for base order

  // Applied state: the adapter (NULL when none), its resolved scale, and per
  // (layer, target) the lines it displaced.
  const s2ft_adapter *applied = nullptr;
  double scale = 0.0;
  std::vector<std::array<s2ft::Displaced, S2FT_NUM_TARGETS>> displaced;  // n_layers
  // Buffers of records replaced by the last transition, reused by the next
  // one so that switching back and forth does not allocate and page-fault.
  // Not state: a failed call may leave them empty.
  std::vector<std::array<std::vector<char>, S2FT_NUM_TARGETS>> spare;  // n_layers

  // CUDA models only. The base fingerprint of every line of every present
  // weight, by position in the weight, taken at create (the CPU hashes the
  // host lines at apply time instead; the base bytes of a line never change
  // while the model lives, since remove restores them exactly), so apply
  // and switch check fingerprints without reading the device. And the
  // device records of displaced lines (freed after the stream's work).
  std::vector<std::array<std::vector<uint64_t>, S2FT_NUM_TARGETS>> base_fingerprints;  // n_layers
  std::shared_ptr<s2ft::cuda::ModelBuffers> device;
};
