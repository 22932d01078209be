// The object behind the opaque s2ft_sparse_set handle: the trained entries
// of one weight for unstructured sparse fine-tuning (LIFT, SpIEL), as
// sorted flat indices, kept on the host (for the core and for reading
// back) and by the backend of the context that made it.
#pragma once

#include <memory>

#include "backend/backend.hpp"
#include "common/live_handles.hpp"
#include "common/sparse_entries.hpp"
#include "s2ft/s2ft.h"

struct s2ft_sparse_set {
  s2ft::LiveHandle<s2ft::HandleKind::sparse_set> live;  // first: counted, and tagged while alive
  s2ft_device device{S2FT_DEVICE_CPU, 0};
  std::shared_ptr<const s2ft::SparseEntries> entries;  // host copy (the CPU backend shares it)
  s2ft::backend::Object data;                          // the backend's copy

  int64_t rows() const { return entries->rows; }
  int64_t cols() const { return entries->cols; }
  int64_t count() const { return entries->count(); }
};

namespace s2ft {

// The live set `set` (named `name`), after checking that it was made on
// `device` (S2FT_ERR_DEVICE) and, when rows >= 0, for a [rows, cols]
// weight (S2FT_ERR_SHAPE naming `weight_name`).
const s2ft_sparse_set &require_sparse_set(const s2ft_sparse_set *set, const char *name, const s2ft_device &device,
                                          int64_t rows = -1, int64_t cols = -1, const char *weight_name = "w");

}  // namespace s2ft
