// Device copies of adapters: for each (layer, target) the base-order lines
// (int64) and the f32 delta, and for each (layer, weight) the f32 deltas of
// its sparse entries, uploaded once per adapter revision and device
// and kept by the adapter (s2ft_adapter::mirrors) until it changes or dies.
// Used by the CUDA paths of apply/remove/switch and the mixed forward.
#pragma once

#include <cstdint>
#include <memory>

#include "adapter/adapter.hpp"
#include "cuda_context.hpp"

struct s2ft_adapter;

namespace s2ft {
namespace cuda {

// The copy itself (s2ft_adapter::mirrors holds them), defined in the .cu.
using AdapterMirror = backend::AdapterCopy;

// Device pointers of one entry; k == 0 means the adapter has no entry.
// delta is [out, k] (columns) or [k, in] (rows), row-major, like the host's.
struct DeviceEntry {
  const int64_t *lines = nullptr;
  const float *delta = nullptr;
  int64_t k = 0;
};

// The adapter's copy on ctx's device, uploaded on ctx's stream if missing or
// stale. Thread-safe for one adapter used by several threads; the returned
// reference stays valid until the adapter is changed or destroyed.
const AdapterMirror &mirror(Context &ctx, const s2ft_adapter &adapter);
DeviceEntry entry(const AdapterMirror &m, int32_t layer, int32_t target);

// Device pointer of one (layer, weight)'s sparse deltas, in the order of the
// entry's indices (the positions are the model's and are uploaded by the
// caller); count == 0 means none.
struct DeviceSparse {
  const float *delta = nullptr;
  int64_t count = 0;
};
DeviceSparse sparse_entry(const AdapterMirror &m, int32_t layer, int32_t weight);

// The owning pointer of copy `m` of `adapter` (NULL once the adapter dropped
// it): caches keyed on an adapter keep it as a weak_ptr, which expires when
// the adapter changes or dies, so a reused address never matches.
std::shared_ptr<AdapterMirror> mirror_token(const s2ft_adapter &adapter, const AdapterMirror &m);

}  // namespace cuda
}  // namespace s2ft
