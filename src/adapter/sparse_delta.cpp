// s2ft_sparse_delta_*: weight deltas that are not whole rows or columns, in
// CSR form on a context's device. The CPU forward is a plain loop (the
// reference: f32 accumulation, one rounding into y); the CUDA forward is
// cusparseSpMM (kernels/cuda_sparse.cu).
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
#include "cuda_sparse.hpp"
#include "model_shape.hpp"
#include "select/selection.hpp"

namespace s2ft {
namespace {

std::string at(const char *name, int64_t i) { return std::string(name) + "[" + std::to_string(i) + "]"; }

bool same_shape(const s2ft_model_shape &a, const s2ft_model_shape &b) {
  return a.n_layers == b.n_layers && a.d_model == b.d_model && a.n_heads == b.n_heads &&
         a.n_kv_heads == b.n_kv_heads && a.head_dim == b.head_dim && a.d_ff == b.d_ff;
}

// The delta object for `csr` on ctx's device (uploaded on CUDA).
s2ft_sparse_delta *make_delta(s2ft_context &c, HostCsr &&csr) {
  auto d = std::make_unique<s2ft_sparse_delta>();
  d->device = c.device;
  d->rows = csr.rows;
  d->cols = csr.cols;
  d->nnz = csr.nnz();
  if (c.on_cuda()) {
#ifdef S2FT_WITH_CUDA
    d->dev = cuda::upload_csr(*c.cuda, csr);
#else
    fail(S2FT_ERR_UNSUPPORTED, "libs2ft was built without CUDA");
#endif
  } else {
    d->host = std::move(csr);
  }
  return d.release();
}

// y += scale * x D^T on the host, row by row of x: f32 sums, one rounding.
void cpu_forward(const HostCsr &d, float scale, const Matrix &x, const Matrix &y) {
  const int64_t T = x.rows;
  if (T == 0 || d.rows == 0) return;
  const std::vector<float> xf = to_f32(x);  // [T, cols]
  for (int64_t t = 0; t < T; ++t) {
    const float *xt = xf.data() + static_cast<size_t>(t * d.cols);
    for (int64_t r = 0; r < d.rows; ++r) {
      const int64_t b = d.offsets[static_cast<size_t>(r)], e = d.offsets[static_cast<size_t>(r + 1)];
      if (b == e) continue;  // an empty row of D leaves y as it is
      float acc = 0.0f;
      for (int64_t i = b; i < e; ++i)
        acc += d.values[static_cast<size_t>(i)] * xt[static_cast<size_t>(d.indices[static_cast<size_t>(i)])];
      y.set(t, r, y.get(t, r) + scale * acc);
    }
  }
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

HostCsr entry_csr(int64_t out, int64_t in, int32_t axis, const AdapterEntry &e, const std::vector<int64_t> &positions) {
  HostCsr h;
  h.rows = out;
  h.cols = in;
  h.offsets.assign(static_cast<size_t>(out + 1), 0);
  const int64_t k = static_cast<int64_t>(e.lines.size());
  if (k == 0) return h;
  if (static_cast<int64_t>(positions.size()) != k) fail(S2FT_ERR_INTERNAL, "entry_csr: one position per line needed");
  const int64_t n_lines = axis == S2FT_AXIS_COLUMNS ? in : out;
  for (int64_t p : positions)
    if (p < 0 || p >= n_lines) fail(S2FT_ERR_INTERNAL, "entry_csr: a line position is out of range");
  if (axis == S2FT_AXIS_COLUMNS) {
    // delta [out, k]: row o holds delta[o, j] at column positions[j]; the
    // columns go in ascending order.
    if (static_cast<int64_t>(e.delta.size()) != out * k) fail(S2FT_ERR_INTERNAL, "entry_csr: delta size");
    std::vector<int64_t> order(static_cast<size_t>(k));
    for (int64_t j = 0; j < k; ++j) order[static_cast<size_t>(j)] = j;
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return positions[static_cast<size_t>(a)] < positions[static_cast<size_t>(b)];
    });
    h.indices.resize(static_cast<size_t>(out * k));
    h.values.resize(static_cast<size_t>(out * k));
    for (int64_t o = 0; o < out; ++o) {
      h.offsets[static_cast<size_t>(o + 1)] = (o + 1) * k;
      for (int64_t q = 0; q < k; ++q) {
        const int64_t j = order[static_cast<size_t>(q)];
        h.indices[static_cast<size_t>(o * k + q)] = positions[static_cast<size_t>(j)];
        h.values[static_cast<size_t>(o * k + q)] = e.delta[static_cast<size_t>(o * k + j)];
      }
    }
  } else {
    // delta [k, in]: row positions[j] holds delta[j, :] at every column.
    if (static_cast<int64_t>(e.delta.size()) != k * in) fail(S2FT_ERR_INTERNAL, "entry_csr: delta size");
    std::vector<int64_t> line_at(static_cast<size_t>(out), -1);  // row -> j
    for (int64_t j = 0; j < k; ++j) line_at[static_cast<size_t>(positions[static_cast<size_t>(j)])] = j;
    h.indices.reserve(static_cast<size_t>(k * in));
    h.values.reserve(static_cast<size_t>(k * in));
    for (int64_t r = 0; r < out; ++r) {
      const int64_t j = line_at[static_cast<size_t>(r)];
      if (j >= 0)
        for (int64_t c = 0; c < in; ++c) {
          h.indices.push_back(c);
          h.values.push_back(e.delta[static_cast<size_t>(j * in + c)]);
        }
      h.offsets[static_cast<size_t>(r + 1)] = static_cast<int64_t>(h.indices.size());
    }
  }
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
    require_not_null(adapter, "adapter");
    check_layer(adapter->shape, layer);
    check_target(target);
    if (perm != nullptr && !same_shape(adapter->shape, perm->shape))
      fail_arg("perm was made for a different model shape than the adapter");
    int64_t out_rows, in_cols;
    target_weight_shape(adapter->shape, target, &out_rows, &in_cols);
    const AdapterEntry &e = adapter->layers[static_cast<size_t>(layer)][static_cast<size_t>(target)];
    std::vector<int64_t> positions(e.lines.size());
    for (size_t j = 0; j < e.lines.size(); ++j)
      positions[j] = perm != nullptr ? permuted_line(*perm, layer, target, e.lines[j]) : e.lines[j];
    HostCsr h = entry_csr(out_rows, in_cols, target_axis(target), e, positions);
    // The same checks as for a caller's arrays (the adapter's invariants make
    // them pass; they guard this function's own construction).
    HostCsr checked = checked_csr(h.rows, h.cols, h.offsets.data(), h.indices.data(), h.values.data(), h.nnz());
    *out = make_delta(c, std::move(checked));
  });
}

S2FT_API void s2ft_sparse_delta_destroy(s2ft_sparse_delta *delta) { delete delta; }

S2FT_API s2ft_status s2ft_sparse_delta_info(const s2ft_sparse_delta *delta, int64_t *rows, int64_t *cols,
                                            int64_t *nnz) {
  return s2ft::guard("s2ft_sparse_delta_info", [&] {
    s2ft::require_not_null(delta, "delta");
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
    require_not_null(delta, "delta");
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
#ifdef S2FT_WITH_CUDA
    if (c.on_cuda()) {
      cuda::sparse_forward(*c.cuda, *delta->dev, s, X, Y);
      return;
    }
#endif
    cpu_forward(delta->host, s, X, Y);
  });
}

}  // extern "C"
