// Sparse deltas in the tests: a host CSR, random ones, and an owner of the
// library's s2ft_sparse_delta handle.
#pragma once

#include <cstdint>
#include <vector>

#include "support/test_util.hpp"

namespace s2ft_test {

struct Csr {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> offsets{0}, indices;
  std::vector<float> values;
  int64_t nnz() const { return static_cast<int64_t>(indices.size()); }
};

// A random CSR with about `density` of its entries set; rows listed in
// `empty` get none.
inline Csr random_csr(Random &rng, int64_t rows, int64_t cols, double density, const std::vector<int64_t> &empty = {}) {
  Csr c;
  c.rows = rows;
  c.cols = cols;
  for (int64_t r = 0; r < rows; ++r) {
    bool skip = false;
    for (int64_t e : empty) skip = skip || e == r;
    for (int64_t j = 0; j < cols && !skip; ++j)
      if (rng.uniform(0.0, 1.0) < density) {
        c.indices.push_back(j);
        c.values.push_back(static_cast<float>(rng.uniform()));
      }
    c.offsets.push_back(c.nnz());
  }
  return c;
}

struct DeltaOwner {
  s2ft_sparse_delta *d = nullptr;
  DeltaOwner() = default;
  DeltaOwner(const DeltaOwner &) = delete;
  DeltaOwner &operator=(const DeltaOwner &) = delete;
  ~DeltaOwner() { s2ft_sparse_delta_destroy(d); }
};

inline s2ft_status create_sparse_delta(s2ft_context *ctx, const Csr &c, s2ft_sparse_delta **out) {
  return s2ft_sparse_delta_create(ctx, c.rows, c.cols, c.offsets.data(), c.indices.data(), c.values.data(), c.nnz(),
                                  out);
}

}  // namespace s2ft_test
