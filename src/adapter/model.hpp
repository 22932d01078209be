// The model object behind s2ft_model: the caller's borrowed base weights
// (any of the seven of every layer, on the context's device), the permutation
// they are stored in, and what the applied adapter displaced so that
// removing it restores the base bit-exactly: its positions here, the bytes
// in the context's backend.
#pragma once

#include "common/live_handles.hpp"
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "adapter/adapter.hpp"
#include "backend/backend.hpp"
#include "common/tensor.hpp"
#include "s2ft/s2ft.h"
#include "select/selection.hpp"

namespace s2ft {

// One weight of one layer, as the caller described it at create.
struct ModelWeight {
  bool present = false;
  s2ft_tensor tensor{};  // copy of the caller's descriptor (the memory is borrowed)
  Matrix view;           // checked view of it
  ElementMap map;        // where base rows and columns sit in it (the model's permutation)
};

// The sparse entries the applied adapter displaced in one weight: their
// base-order indices (ascending) and their flat positions in the weight as
// stored, in the same order (the order of the backend's record).
struct SparseDisplaced {
  std::vector<int64_t> base, positions;
};

}  // namespace s2ft

struct s2ft_model {
  s2ft::LiveHandle<s2ft::HandleKind::model> live;  // first: counted, and tagged while alive
  s2ft_context *ctx = nullptr;
  s2ft_model_shape shape{};
  std::vector<std::array<s2ft::ModelWeight, S2FT_NUM_WEIGHTS>> weights;  // n_layers, [layer][weight id]
  std::unique_ptr<s2ft_selection> perm;  // copy of the permutation, or NULL for base order

  // Applied state: the adapter (NULL when none), its resolved scale, and per
  // (layer, target) where the lines it displaced sit in the weight, in the
  // order of its entry.
  const s2ft_adapter *applied = nullptr;
  std::unique_ptr<s2ft_adapter> owned;  // the applied adapter when the model loaded it (s2ft_model_apply_files)
  double scale = 0.0;
  std::vector<std::array<std::vector<int64_t>, S2FT_NUM_TARGETS>> displaced;  // n_layers
  std::vector<std::array<s2ft::SparseDisplaced, S2FT_NUM_WEIGHTS>> sparse_displaced;  // n_layers
  // The backend's record of the displaced lines' base bytes (and whatever
  // else it keeps to check and write lines fast: base fingerprints, buffers).
  s2ft::backend::Object records;
};

namespace s2ft {

// s2ft_model_create after its `out` check.
std::unique_ptr<s2ft_model> make_model(s2ft_context *ctx, const s2ft_model_shape *shape,
                                       const s2ft_layer_weights *layers, const s2ft_selection *perm);
// The scale argument of apply and switch: NaN means the adapter's default.
double resolve_scale(double scale, const s2ft_adapter &a);
// Refuses unknown S2FT_APPLY_* bits.
void check_apply_flags(uint32_t flags);
// Moves the model from its applied adapter (if any) to `adapter` (NULL:
// none) at `scale`; on error the model is unchanged. An adapter the model
// owned and no longer applies is destroyed.
void transition(s2ft_model &m, const s2ft_adapter *adapter, double scale, bool force);

}  // namespace s2ft
