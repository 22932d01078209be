// s2ft_sparse_set_*: the trained entries of a weight for unstructured
// sparse fine-tuning, validated once here and handed to the context's
// backend (which keeps its own copy: a plan on the CPU, device arrays on
// CUDA).
#include "train/sparse_set.hpp"

#include <string>
#include <utility>

#include "common/error.hpp"
#include "common/tensor.hpp"
#include "context.hpp"

namespace s2ft {

const s2ft_sparse_set &require_sparse_set(const s2ft_sparse_set *set, const char *name, const s2ft_device &device,
                                          int64_t rows, int64_t cols, const char *weight_name) {
  const s2ft_sparse_set &s = require_live(set, name);
  if (s.device.type != device.type || s.device.id != device.id)
    fail(S2FT_ERR_DEVICE, std::string(name) + " was created on " + device_name(s.device) + ", the context is on " +
                              device_name(device));
  if (rows >= 0 && (s.rows() != rows || s.cols() != cols))
    fail_shape(std::string(name) + " was made for a [" + std::to_string(s.rows()) + ", " + std::to_string(s.cols()) +
               "] weight but " + weight_name + " is [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
  return s;
}

}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_sparse_set_create(s2ft_context *ctx, int64_t rows, int64_t cols, const int64_t *indices,
                                            int64_t count, s2ft_sparse_set **out) {
  if (out != nullptr) *out = nullptr;
  return s2ft::guard("s2ft_sparse_set_create", [&] {
    using namespace s2ft;
    require_not_null(out, "out");
    s2ft_context &c = require_context(ctx);
    auto entries = std::make_shared<const SparseEntries>(checked_sparse_entries(rows, cols, indices, count, "indices"));
    auto set = std::make_unique<s2ft_sparse_set>();
    set->device = c.device;
    set->entries = entries;
    run(c, &backend::Ops::sparse_set_create, entries, &set->data);
    *out = set.release();
  });
}

S2FT_API void s2ft_sparse_set_destroy(s2ft_sparse_set *set) {
  if (s2ft::destroyable(set)) delete set;
}

S2FT_API s2ft_status s2ft_sparse_set_count(const s2ft_sparse_set *set, int64_t *count) {
  return s2ft::guard("s2ft_sparse_set_count", [&] {
    s2ft::require_live(set, "set");
    s2ft::require_not_null(count, "count");
    *count = set->count();
  });
}

S2FT_API s2ft_status s2ft_sparse_set_shape(const s2ft_sparse_set *set, int64_t *rows, int64_t *cols) {
  return s2ft::guard("s2ft_sparse_set_shape", [&] {
    s2ft::require_live(set, "set");
    if (rows != nullptr) *rows = set->rows();
    if (cols != nullptr) *cols = set->cols();
  });
}

S2FT_API s2ft_status s2ft_sparse_set_indices(const s2ft_sparse_set *set, int64_t *out, int64_t capacity) {
  return s2ft::guard("s2ft_sparse_set_indices", [&] {
    s2ft::require_live(set, "set");
    s2ft::require_not_null(out, "out");
    if (capacity < set->count())
      s2ft::fail_arg("capacity " + std::to_string(capacity) + " is below the set's count " +
                     std::to_string(set->count()));
    const std::vector<int64_t> &v = set->entries->indices;
    std::copy(v.begin(), v.end(), out);
  });
}

}  // extern "C"
