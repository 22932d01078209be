// LIFT's selection of principal weights (s2ft_lift_select): the k entries
// of largest (or smallest) magnitude in a weight's rank-r approximation.
// The arguments are checked and the count worked out here; the backend
// computes W_r and ranks its entries. s2ft_lift_refresh re-selects them on
// the current weight and moves an optimizer parameter there (LIFT's mask
// refresh every N steps).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/options.hpp"
#include "common/sparse_entries.hpp"
#include "context.hpp"
#include "train/optimizer.hpp"
#include "train/sparse_set.hpp"

namespace s2ft {
namespace {

std::string num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

// The backend's plan for options o on a [rows, cols] weight (checked).
backend::LiftPlan lift_plan(const s2ft_lift_options &o, int64_t rows, int64_t cols) {
  check_options_version(o.version, S2FT_LIFT_OPTIONS_VERSION, "s2ft_lift_options_init");
  const int64_t min_dim = std::min(rows, cols);
  if (min_dim < 1) fail_shape("w is [" + std::to_string(rows) + ", " + std::to_string(cols) + "]; it must not be empty");
  if (o.rank < 1 || o.rank > min_dim)
    fail_arg("opts->rank is " + std::to_string(o.rank) + "; it must be in [1, min(rows, cols) = " +
             std::to_string(min_dim) + "]");
  const bool by_count = o.count != 0, by_density = o.density != 0.0;
  if (by_count && by_density)
    fail_arg("opts->count (" + std::to_string(o.count) + ") and opts->density (" + num(o.density) +
             ") are both set; set exactly one");
  if (!by_count && !by_density) fail_arg("neither opts->count nor opts->density is set; set exactly one");
  const int64_t size = rows * cols;  // a checked view's extent: no overflow
  backend::LiftPlan p;
  if (by_count) {
    if (o.count < 1 || o.count > size)
      fail_arg("opts->count is " + std::to_string(o.count) + "; it must be in [1, rows * cols = " +
               std::to_string(size) + "]");
    p.count = o.count;
  } else {
    if (!(o.density > 0.0 && o.density <= 1.0)) fail_arg("opts->density must be in (0, 1], got " + num(o.density));
    const double k = std::nearbyint(o.density * static_cast<double>(size));
    p.count = std::max<int64_t>(1, std::min<int64_t>(size, static_cast<int64_t>(k)));
  }
  if (o.order != S2FT_ORDER_LARGEST && o.order != S2FT_ORDER_SMALLEST)
    fail_arg("opts->order must be S2FT_ORDER_LARGEST or S2FT_ORDER_SMALLEST, got " + std::to_string(o.order));
  if (o.method != S2FT_LIFT_EXACT && o.method != S2FT_LIFT_RANDOMIZED)
    fail_arg("opts->method must be S2FT_LIFT_EXACT or S2FT_LIFT_RANDOMIZED, got " + std::to_string(o.method));
  if (o.oversampling < 0) fail_arg("opts->oversampling must be >= 0, got " + std::to_string(o.oversampling));
  if (o.power_iterations < 0 || o.power_iterations > 64)
    fail_arg("opts->power_iterations must be in [0, 64], got " + std::to_string(o.power_iterations));
  p.rank = o.rank;
  p.largest = o.order == S2FT_ORDER_LARGEST;
  p.randomized = o.method == S2FT_LIFT_RANDOMIZED;
  p.oversampling = o.oversampling;
  p.power_iterations = o.power_iterations;
  p.seed = o.seed;
  return p;
}

// The backend's selection for a checked weight, checked in turn.
std::vector<int64_t> select_principal(const s2ft_context &c, const Matrix &W, const backend::LiftPlan &plan) {
  std::vector<int64_t> picked;
  run(c, &backend::Ops::lift_select, W, plan, &picked);
  if (static_cast<int64_t>(picked.size()) != plan.count)
    fail(S2FT_ERR_INTERNAL, "the backend selected " + std::to_string(picked.size()) + " entries, not " +
                                std::to_string(plan.count));
  return picked;
}

}  // namespace
}  // namespace s2ft

extern "C" {

S2FT_API s2ft_status s2ft_lift_options_init(s2ft_lift_options *opts, uint32_t version) {
  return s2ft::guard("s2ft_lift_options_init", [&] {
    s2ft::require_not_null(opts, "opts");
    s2ft::check_init_version(version, S2FT_LIFT_OPTIONS_VERSION);
    *opts = s2ft_lift_options{};
    opts->version = version;
    opts->rank = 0;
    opts->count = 0;
    opts->density = 0.0;
    opts->order = S2FT_ORDER_LARGEST;
    opts->method = S2FT_LIFT_EXACT;
    opts->oversampling = 10;
    opts->power_iterations = 2;
    opts->seed = 0;
  });
}

S2FT_API s2ft_status s2ft_lift_select(s2ft_context *ctx, const s2ft_tensor *w, const s2ft_lift_options *opts,
                                      int64_t *indices, int64_t capacity, int64_t *count) {
  return s2ft::guard("s2ft_lift_select", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    require_not_null(opts, "opts");
    require_not_null(count, "count");
    const Matrix W = check_matrix(w, "w", c.device);
    const backend::LiftPlan plan = lift_plan(*opts, W.rows, W.cols);
    if (indices == nullptr) {
      *count = plan.count;
      return;
    }
    if (capacity < plan.count)
      fail_arg("capacity " + std::to_string(capacity) + " is below the number of entries selected, " +
               std::to_string(plan.count));
    const std::vector<int64_t> picked = select_principal(c, W, plan);
    std::copy(picked.begin(), picked.end(), indices);
    *count = plan.count;
  });
}

S2FT_API s2ft_status s2ft_lift_refresh(s2ft_context *ctx, s2ft_optimizer *opt, int64_t param_index,
                                       const s2ft_tensor *weight, const s2ft_lift_options *opts,
                                       s2ft_sparse_set **new_set, int64_t *kept) {
  if (new_set != nullptr) *new_set = nullptr;
  return s2ft::guard("s2ft_lift_refresh", [&] {
    using namespace s2ft;
    s2ft_context &c = require_context(ctx);
    require_live(opt, "opt");
    require_not_null(weight, "weight");
    require_not_null(opts, "opts");
    require_not_null(new_set, "new_set");
    if (c.device.type != opt->device.type || c.device.id != opt->device.id)
      fail(S2FT_ERR_DEVICE, "ctx is on " + device_name(c.device) + " but the optimizer is on " +
                                device_name(opt->device));
    const OptimizerParam &p = sparse_param(*opt, param_index, "param_index");
    const Matrix W = check_matrix(weight, "weight", c.device);
    if (!same_view(W, p.weight))
      fail_arg("weight is not the weight of optimizer parameter " + std::to_string(param_index) +
               " (the same memory, dtype, shape and strides as given to s2ft_optimizer_add_sparse)");
    const backend::LiftPlan plan = lift_plan(*opts, W.rows, W.cols);
    std::vector<int64_t> picked = select_principal(c, W, plan);
    std::vector<int64_t> common;
    std::set_intersection(p.lines.begin(), p.lines.end(), picked.begin(), picked.end(), std::back_inserter(common));
    auto set = std::make_unique<s2ft_sparse_set>();
    set->device = c.device;
    set->entries = std::make_shared<const SparseEntries>(make_sparse_entries(W.rows, W.cols, std::move(picked)));
    run(c, &backend::Ops::sparse_set_create, set->entries, &set->data);
    sparse_reindex(*opt, param_index, set.get(), "the refreshed set");
    *new_set = set.release();
    if (kept != nullptr) *kept = static_cast<int64_t>(common.size());
  });
}

S2FT_API int64_t s2ft_lift_count_for_lora_rank(int64_t rows, int64_t cols, int64_t lora_rank) {
  if (rows < 1 || cols < 1 || lora_rank < 1) return 0;
  int64_t size = 0, sum = 0, k = 0;
  if (__builtin_mul_overflow(rows, cols, &size)) return 0;
  if (__builtin_add_overflow(rows, cols, &sum) || __builtin_mul_overflow(sum, lora_rank, &k)) return size;
  return k < size ? k : size;
}

}  // extern "C"
