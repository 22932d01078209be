// CSR matrices in host memory, and the CSR of an adapter entry (which the
// CUDA backend's mixed forward uses for its SPARSE delta path). Shared by
// libs2ft.so and the backend modules.
#include "adapter/csr.hpp"

#include <algorithm>

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

}  // namespace s2ft
