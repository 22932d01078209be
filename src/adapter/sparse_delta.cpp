// s2ft_sparse_delta_*: weight deltas that are not whole rows or columns, in
// CSR form on a context's device, applied by its backend (the CPU: a plain
// loop, the reference, f32 accumulation and one rounding into y; CUDA:
// cusparseSpMM).
//   y[t, r] += scale * sum_{e in row r} values[e] * x[t, indices[e]]
#include "adapter/sparse_delta.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "common/tensor.hpp"
#include "context.hpp"
#include "model_shape.hpp"
#include "select/selection.hpp"

namespace s2ft {
namespace {

std::string at(const char *name, int64_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

// The delta object for `csr` on ctx's device (the backend takes the arrays).
s2ft_sparse_delta *make_delta(s2ft_context &c, HostCsr &&csr) {
  auto d = std::make_unique<s2ft_sparse_delta>();
  d->device = c.device;
  d->rows = csr.rows;
  d->cols = csr.cols;
  d->nnz = csr.nnz();
  run(c, &backend::Ops::csr_create, &csr, &d->csr);
  return d.release();
}

}  // namespace

HostCsr checked_csr(int64_t rows, int64_t cols, const int64_t *row_offsets, const int64_t *col_indices,
                    const float *values, int64_t nnz) {
  if (rows < 0) fail_arg("rows " + std::to_string(rows) + " is negative");
  if (cols < 0) fail_arg("cols " + std::to_string(cols) + " is negative");
  if (nnz < 0) fail_arg("nnz " + std::to_string(nnz) + " is negative");
  require_not_null(row_offsets, "row_offsets");
  if (nnz > 0) {
    require_not_null(col_indices, "col_indices");
    require_not_null(values, "values");
  }
  // Sizes: rows + 1 offsets and nnz indices and values must be allocatable;
  // each row holds at most cols entries, so nnz <= rows * cols.
  constexpr int64_t kMaxElems = std::numeric_limits<int64_t>::max() / 16;
  if (rows >= kMaxElems) fail_arg("rows " + std::to_string(rows) + " is too large");
  if (nnz >= kMaxElems) fail_arg("nnz " + std::to_string(nnz) + " is too large");
  if (nnz > 0 && (cols == 0 || (nnz - 1) / cols >= rows))
    fail_arg("nnz " + std::to_string(nnz) + " is more than rows * cols = " + std::to_string(rows) + " * " +
             std::to_string(cols) + " entries");
  if (row_offsets[0] != 0) fail_arg("row_offsets[0] is " + std::to_string(row_offsets[0]) + ", not 0");
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t b = row_offsets[r], e = row_offsets[r + 1];
    if (e < b)
      fail_arg(at("row_offsets", r + 1) + " = " + std::to_string(e) + " is below " + at("row_offsets", r) + " = " +
               std::to_string(b));
    if (e > nnz)
      fail_arg(at("row_offsets", r + 1) + " = " + std::to_string(e) + " is beyond nnz = " + std::to_string(nnz));
  }
  if (row_offsets[rows] != nnz)
    fail_arg("row_offsets[rows] = " + std::to_string(row_offsets[rows]) + " is not nnz = " + std::to_string(nnz));
  // Offsets are now known to be in [0, nnz] and non-decreasing.
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = row_offsets[r]; i < row_offsets[r + 1]; ++i) {
      const int64_t c = col_indices[i];
      if (c < 0 || c >= cols)
        fail_arg(at("col_indices", i) + " = " + std::to_string(c) + " (row " + std::to_string(r) +
                 ") is out of range [0, " + std::to_string(cols) + ")");
      if (i > row_offsets[r] && c <= col_indices[i - 1])
        fail_arg(at("col_indices", i) + " = " + std::to_string(c) + " (row " + std::to_string(r) +
                 ") does not ascend strictly after " + std::to_string(col_indices[i - 1]));
    }
  for (int64_t i = 0; i < nnz; ++i)
    if (!std::isfinite(values[i])) fail_arg(at("values", i) + " is not finite");
  HostCsr h;
  h.rows = rows;
  h.cols = cols;
  h.offsets.assign(row_offsets, row_offsets + rows + 1);
  h.indices.assign(col_indices, col_indices + nnz);
  h.values.assign(values, values + nnz);
  return h;
}

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_sparse_delta_create(s2ft_context *ctx, int64_t rows, int64_t cols,
                                              const int64_t *row_offsets, const int64_t *col_indices,
                                              const float *values, int64_t nnz, s2ft_sparse_delta **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_sparse_delta_create", [&] {
    s2ft::require_not_null(out, "out");
    s2ft_context &c = s2ft::require_context(ctx);
    *out = s2ft::make_delta(c, s2ft::checked_csr(rows, cols, row_offsets, col_indices, values, nnz));
  });
}

S2FT_API s2ft_status s2ft_sparse_delta_from_adapter(s2ft_context *ctx, const s2ft_adapter *adapter, int32_t layer,
                                                    int32_t target, const s2ft_selection *perm,
                                                    s2ft_sparse_delta **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_sparse_delta_from_adapter", [&] {
    using namespace s2ft;
    require_not_null(out, "out");
    s2ft_context &c = require_context(ctx);
    require_live(adapter, "adapter");
    check_layer(adapter->shape, layer);
    check_weight_id(target, "target");
    require_live_or_null(perm, "perm");
    if (perm != nullptr && !same_shape(adapter->shape, perm->shape))
      fail_arg("perm was made for a different model shape than the adapter");
    if (!adapter->low_rank[static_cast<size_t>(layer)][static_cast<size_t>(target)].empty())
      fail(S2FT_ERR_UNSUPPORTED, "the adapter's delta of layer " + std::to_string(layer) + " weight " +
                                     weight_name(target) + " is a low-rank entry, which has no sparse form");
    int64_t out_rows, in_cols;
    weight_shape(adapter->shape, target, &out_rows, &in_cols);
    HostCsr h;
    h.rows = out_rows;
    h.cols = in_cols;
    h.offsets.assign(static_cast<size_t>(out_rows + 1), 0);
    if (target < S2FT_NUM_TARGETS) {  // the structured entry
      const AdapterEntry &e = adapter->layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
      std::vector<int64_t> positions(e.lines.size());
      for (size_t j = 0; j < e.lines.size(); ++j)
        positions[j] = perm != nullptr ? permuted_line(*perm, layer, target, e.lines[j]) : e.lines[j];
      h = entry_csr(out_rows, in_cols, target_axis(target), e, positions);
    }
    // The sparse entries (never on a line of the structured entry).
    const SparseEntry &sp = adapter->sparse[static_cast<size_t>(layer)][static_cast<size_t>(target)];
    if (!sp.empty()) {
      const ElementMap map = element_map(perm, adapter->shape, layer, target);
      std::vector<int64_t> positions(sp.indices.size());
      for (size_t j = 0; j < sp.indices.size(); ++j) positions[j] = map.position(sp.indices[j]);
      h = add_csr(h, sparse_csr(out_rows, in_cols, positions, sp.delta));
    }
    // The same checks as for a caller's arrays (the adapter's invariants make
    // them pass; they guard this function's own construction).
    HostCsr checked = checked_csr(h.rows, h.cols, h.offsets.data(), h.indices.data(), h.values.data(), h.nnz());
    *out = make_delta(c, std::move(checked));
  });
}

S2FT_API void s2ft_sparse_delta_destroy(s2ft_sparse_delta *delta) {
  if (s2ft::destroyable(delta)) delete delta;
}

S2FT_API s2ft_status s2ft_sparse_delta_info(const s2ft_sparse_delta *delta, int64_t *rows, int64_t *cols,
                                            int64_t *nnz) {
  return s2ft::guard("s2ft_sparse_delta_info", [&] {
    s2ft::require_live(delta, "delta");
    if (rows != nullptr) *rows = delta->rows;
    if (cols != nullptr) *cols = delta->cols;
    if (nnz != nullptr) *nnz = delta->nnz;
  });
}

S2FT_API s2ft_status s2ft_sparse_delta_forward(s2ft_context *ctx, const s2ft_sparse_delta *delta, double scale,
                                               const s2ft_tensor *x, s2ft_tensor *y) {
  return s2ft::guard("s2ft_sparse_delta_forward", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    require_live(delta, "delta");
    if (!std::isfinite(scale)) fail_arg("scale is not finite");
    const float s = static_cast<float>(scale);
    if (!std::isfinite(s)) fail_arg("scale " + std::to_string(scale) + " is out of the f32 range");
    if (delta->device.type != c.device.type || delta->device.id != c.device.id)
      fail(S2FT_ERR_DEVICE, "the delta was created on " + device_name(delta->device) + ", the context is on " +
                                device_name(c.device));
    const Matrix X = check_matrix(x, "x", c.device);
    const Matrix Y = check_matrix(y, "y", c.device);
    require_shape(X, "x", X.rows, delta->cols);
    require_shape(Y, "y", X.rows, delta->rows);
    require_same_dtype(Y, "y", X, "x");
    require_disjoint(Y, "y", X, "x");
    run(c, &backend::Ops::csr_forward, delta->csr.get(), s, X, Y);
  });
}

}  // extern "C"
