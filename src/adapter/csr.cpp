// CSR matrices in host memory, and the CSR of an adapter entry (which the
// CUDA backend's mixed forward uses for its SPARSE delta path). Shared by
// libs2ft.so and the backend modules.
#include "adapter/csr.hpp"

#include <algorithm>
#include <cstdint>

#include "adapter/adapter.hpp"
#include "common/error.hpp"

namespace s2ft {

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

HostCsr sparse_csr(int64_t out, int64_t in, const std::vector<int64_t> &positions, const std::vector<float> &values) {
  if (positions.size() != values.size()) fail(S2FT_ERR_INTERNAL, "sparse_csr: one value per position needed");
  HostCsr h;
  h.rows = out;
  h.cols = in;
  h.offsets.assign(static_cast<size_t>(out + 1), 0);
  if (positions.empty()) return h;
  std::vector<size_t> order(positions.size());
  for (size_t j = 0; j < order.size(); ++j) order[j] = j;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return positions[a] < positions[b]; });
  h.indices.resize(positions.size());
  h.values.resize(positions.size());
  for (size_t q = 0; q < order.size(); ++q) {
    const int64_t p = positions[order[q]];
    if (p < 0 || in <= 0 || p / in >= out) fail(S2FT_ERR_INTERNAL, "sparse_csr: a position is out of range");
    if (q > 0 && p == positions[order[q - 1]]) fail(S2FT_ERR_INTERNAL, "sparse_csr: a position repeats");
    h.indices[q] = p % in;
    h.values[q] = values[order[q]];
    ++h.offsets[static_cast<size_t>(p / in + 1)];
  }
  for (int64_t r = 0; r < out; ++r) h.offsets[static_cast<size_t>(r + 1)] += h.offsets[static_cast<size_t>(r)];
  return h;
}

HostCsr add_csr(const HostCsr &a, const HostCsr &b) {
  if (a.rows != b.rows || a.cols != b.cols) fail(S2FT_ERR_INTERNAL, "add_csr: shapes differ");
  if (b.nnz() == 0) return a;
  if (a.nnz() == 0) return b;
  HostCsr h;
  h.rows = a.rows;
  h.cols = a.cols;
  h.offsets.assign(static_cast<size_t>(a.rows + 1), 0);
  h.indices.reserve(static_cast<size_t>(a.nnz() + b.nnz()));
  h.values.reserve(static_cast<size_t>(a.nnz() + b.nnz()));
  for (int64_t r = 0; r < a.rows; ++r) {
    int64_t i = a.offsets[static_cast<size_t>(r)], j = b.offsets[static_cast<size_t>(r)];
    const int64_t ie = a.offsets[static_cast<size_t>(r + 1)], je = b.offsets[static_cast<size_t>(r + 1)];
    while (i < ie || j < je) {
      const int64_t ci = i < ie ? a.indices[static_cast<size_t>(i)] : INT64_MAX;
      const int64_t cj = j < je ? b.indices[static_cast<size_t>(j)] : INT64_MAX;
      if (ci < cj) {
        h.indices.push_back(ci);
        h.values.push_back(a.values[static_cast<size_t>(i++)]);
      } else if (cj < ci) {
        h.indices.push_back(cj);
        h.values.push_back(b.values[static_cast<size_t>(j++)]);
      } else {
        h.indices.push_back(ci);
        h.values.push_back(a.values[static_cast<size_t>(i++)] + b.values[static_cast<size_t>(j++)]);
      }
    }
    h.offsets[static_cast<size_t>(r + 1)] = static_cast<int64_t>(h.indices.size());
  }
  return h;
}

}  // namespace s2ft
