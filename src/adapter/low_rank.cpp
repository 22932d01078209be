// Low-rank adapter entries: the delta of a whole weight kept as factors,
// delta = b a with b [rows, k] and a [k, cols] in f32, and SORSA's update
// written in that form. A low-rank entry owns its (layer, weight): the
// adapter holds no structured lines and no sparse entries beside it, so a
// transition never has to order two kinds of writes on one weight.
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "adapter/adapter.hpp"
#include "common/error.hpp"
#include "model_shape.hpp"

namespace s2ft {
namespace {

const s2ft_device kCpu{S2FT_DEVICE_CPU, 0};

std::string where_weight(int32_t layer, int32_t weight) {
  return "layer " + std::to_string(layer) + " weight " + weight_name(weight);
}

void require_cpu(const s2ft_tensor *t, const char *name) {
  if (t != nullptr && t->device.type != S2FT_DEVICE_CPU)
    fail(S2FT_ERR_DEVICE, std::string(name) + " is on " + device_name(t->device) + "; adapters are built from CPU tensors");
}

Matrix cpu_matrix(const s2ft_tensor *t, const char *name) {
  require_cpu(t, name);
  return check_matrix(t, name, kCpu);
}

// A factor copied to compact row-major f32, refusing non-finite values.
std::vector<float> finite_copy(const Matrix &m, const char *name) {
  std::vector<float> v = to_f32(m);
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i]))
      fail_arg(std::string(name) + " holds a non-finite value at (row " + std::to_string(static_cast<int64_t>(i) / m.cols) +
               ", column " + std::to_string(static_cast<int64_t>(i) % m.cols) + ")");
  return v;
}

// Refuses a low-rank entry where the adapter has lines or sparse entries.
void check_weight_free(const s2ft_adapter &a, int32_t layer, int32_t weight) {
  if (weight < S2FT_NUM_TARGETS && !a.layers[static_cast<size_t>(layer)][static_cast<size_t>(weight)].empty())
    fail_arg("the adapter has a structured entry for " + where_weight(layer, weight) +
             " (a low-rank entry changes the whole weight: remove the structured entry first, or fuse)");
  if (!a.sparse[static_cast<size_t>(layer)][static_cast<size_t>(weight)].empty())
    fail_arg("the adapter has sparse entries on " + where_weight(layer, weight) +
             " (a low-rank entry changes the whole weight: remove the sparse entries first)");
}

// Stores (b, a) in the slot of (layer, weight) after the checks every
// setter shares: the slot is free of other entries, base has the weight's
// shape (its fingerprint is taken here).
void store(s2ft_adapter &adapter, int32_t layer, int32_t weight, LowRankEntry e, const s2ft_tensor *base) {
  int64_t rows, cols;
  weight_shape(adapter.shape, weight, &rows, &cols);
  check_weight_free(adapter, layer, weight);
  if (base != nullptr) {
    const Matrix bm = cpu_matrix(base, "base");
    require_shape(bm, "base", rows, cols);
    e.fingerprint = weight_fingerprint(bm);
  }
  adapter.low_rank[static_cast<size_t>(layer)][static_cast<size_t>(weight)] = std::move(e);
  adapter.entries_changed();
}

// An f32 factor of SORSA on the CPU: u/u0 [rows, r], vt/vt0 [r, cols].
Matrix sorsa_factor(const s2ft_tensor *t, const char *name) {
  const Matrix m = cpu_matrix(t, name);
  if (m.dtype != S2FT_F32) fail(S2FT_ERR_DTYPE, std::string(name) + " must be f32 (SORSA's factors are f32)");
  return m;
}

Matrix sorsa_values(const s2ft_tensor *t, const char *name, int64_t r) {
  require_cpu(t, name);
  const Matrix m = check_vector(t, name, kCpu, r);
  if (m.dtype != S2FT_F32) fail(S2FT_ERR_DTYPE, std::string(name) + " must be f32 (SORSA's factors are f32)");
  return m;
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_adapter_set_low_rank(s2ft_adapter *adapter, int32_t layer, int32_t weight,
                                               const s2ft_tensor *b, const s2ft_tensor *a, const s2ft_tensor *base) {
  return s2ft::guard("s2ft_adapter_set_low_rank", [&] {
    using namespace s2ft;
    require_live(adapter, "adapter");
    check_layer(adapter->shape, layer);
    check_weight_id(weight);
    LowRankEntry &slot = adapter->low_rank[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
    if (b == nullptr && a == nullptr) {
      slot = LowRankEntry{};
      adapter->entries_changed();
      return;
    }
    if (b == nullptr || a == nullptr)
      fail_arg(std::string(b == nullptr ? "b" : "a") + " is NULL (pass both factors, or both NULL to remove the entry)");
    int64_t rows, cols;
    weight_shape(adapter->shape, weight, &rows, &cols);
    const Matrix bm = cpu_matrix(b, "b"), am = cpu_matrix(a, "a");
    if (bm.cols < 1) fail_shape("b is [" + std::to_string(bm.rows) + ", 0]: the rank must be at least 1");
    require_shape(bm, "b", rows, bm.cols);
    require_shape(am, "a", bm.cols, cols);
    LowRankEntry e;
    e.rank = bm.cols;
    e.b = finite_copy(bm, "b");
    e.a = finite_copy(am, "a");
    store(*adapter, layer, weight, std::move(e), base);
  });
}

S2FT_API s2ft_status s2ft_adapter_set_sorsa(s2ft_adapter *adapter, int32_t layer, int32_t weight, const s2ft_tensor *u0,
                                            const s2ft_tensor *s0, const s2ft_tensor *vt0, const s2ft_tensor *u,
                                            const s2ft_tensor *s, const s2ft_tensor *vt, const s2ft_tensor *base) {
  return s2ft::guard("s2ft_adapter_set_sorsa", [&] {
    using namespace s2ft;
    require_live(adapter, "adapter");
    check_layer(adapter->shape, layer);
    check_weight_id(weight);
    int64_t rows, cols;
    weight_shape(adapter->shape, weight, &rows, &cols);
    const Matrix um = sorsa_factor(u, "u"), u0m = sorsa_factor(u0, "u0");
    const int64_t r = um.cols;
    if (r < 1) fail_shape("u is [" + std::to_string(um.rows) + ", 0]: the rank must be at least 1");
    require_shape(um, "u", rows, r);
    require_shape(u0m, "u0", rows, r);
    const Matrix vtm = sorsa_factor(vt, "vt"), vt0m = sorsa_factor(vt0, "vt0");
    require_shape(vtm, "vt", r, cols);
    require_shape(vt0m, "vt0", r, cols);
    const Matrix sm = sorsa_values(s, "s", r), s0m = sorsa_values(s0, "s0", r);
    // b = [u diag(s) | -u0 diag(s0)], a = [vt ; vt0]: b a = u S vt - u0 S0 vt0.
    LowRankEntry e;
    e.rank = 2 * r;
    e.b.resize(static_cast<size_t>(rows * 2 * r));
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = 0; j < r; ++j) {
        const double now = static_cast<double>(um.get(i, j)) * sm.get(0, j);
        const double was = static_cast<double>(u0m.get(i, j)) * s0m.get(0, j);
        float *row = e.b.data() + static_cast<size_t>(i * 2 * r);
        row[j] = static_cast<float>(now);
        row[r + j] = static_cast<float>(-was);
        if (!std::isfinite(row[j]) || !std::isfinite(row[r + j]))
          fail_arg("u diag(s) or u0 diag(s0) is not finite in f32 at row " + std::to_string(i) + ", column " +
                   std::to_string(j));
      }
    e.a.resize(static_cast<size_t>(2 * r * cols));
    const std::vector<float> now = finite_copy(vtm, "vt"), was = finite_copy(vt0m, "vt0");
    std::copy(now.begin(), now.end(), e.a.begin());
    std::copy(was.begin(), was.end(), e.a.begin() + static_cast<std::ptrdiff_t>(now.size()));
    store(*adapter, layer, weight, std::move(e), base);
  });
}

S2FT_API s2ft_status s2ft_adapter_low_rank(const s2ft_adapter *adapter, int32_t layer, int32_t weight, int64_t *rank,
                                           s2ft_tensor *b, s2ft_tensor *a, uint64_t *fingerprint) {
  return s2ft::guard("s2ft_adapter_low_rank", [&] {
    using namespace s2ft;
    require_live(adapter, "adapter");
    require_not_null(rank, "rank");
    check_layer(adapter->shape, layer);
    check_weight_id(weight);
    const LowRankEntry &e = adapter->low_rank[static_cast<size_t>(layer)][static_cast<size_t>(weight)];
    if ((b != nullptr || a != nullptr) && e.empty())
      fail(S2FT_ERR_STATE, "the adapter has no low-rank entry for " + where_weight(layer, weight));
    int64_t rows, cols;
    weight_shape(adapter->shape, weight, &rows, &cols);
    Matrix bm, am;
    if (b != nullptr) {
      bm = cpu_matrix(b, "b");
      require_shape(bm, "b", rows, e.rank);
    }
    if (a != nullptr) {
      am = cpu_matrix(a, "a");
      require_shape(am, "a", e.rank, cols);
    }
    if (b != nullptr) from_f32(e.b.data(), bm, false);
    if (a != nullptr) from_f32(e.a.data(), am, false);
    if (fingerprint != nullptr) *fingerprint = e.fingerprint;
    *rank = e.rank;
  });
}

S2FT_API s2ft_status s2ft_adapter_low_rank_info(const s2ft_adapter *adapter, uint32_t *weights, int64_t *entries) {
  return s2ft::guard("s2ft_adapter_low_rank_info", [&] {
    s2ft::require_live(adapter, "adapter");
    uint32_t mask = 0;
    int64_t total = 0;
    for (const auto &layer : adapter->low_rank)
      for (int32_t w = 0; w < S2FT_NUM_WEIGHTS; ++w)
        if (!layer[static_cast<size_t>(w)].empty()) {
          mask |= S2FT_WEIGHT_BIT(w);
          ++total;
        }
    if (weights != nullptr) *weights = mask;
    if (entries != nullptr) *entries = total;
  });
}

}  // extern "C"
